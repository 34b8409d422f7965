// Bindings for the blendshape family (blendshape, deform): checks, device dispatch, GIL release.
#include "facecore/blendshape.h"

#include <nanobind/stl/optional.h>

#include <optional>
#include <type_traits>

#include "checks.h"
#include "device_dispatch.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

using OptArray = std::optional<Array>;

// Checks the (weights, neutral, deltas, block_ptr, block_shape) set and fills the params.
template <class T>
BlendshapeParams<T> make_params(const char* fn, const Array& weights, const Array& neutral,
                                const Array& deltas, const OptArray& block_ptr,
                                const OptArray& block_shape) {
  check_shape(fn, "weights", weights, {-1, -1}, "[B, K]");
  check_shape(fn, "neutral", neutral, {-1, 3}, "[V, 3]");
  const int64_t B = weights.shape(0), K = weights.shape(1), V = neutral.shape(0);
  const DType dt = dtype_of(weights);
  check_dtype(fn, "neutral", neutral, dt);
  check_dtype(fn, "deltas", deltas, dt);
  for (auto [name, a] : {std::pair{"weights", &weights}, {"neutral", &neutral}, {"deltas", &deltas}})
    check_contiguous(fn, name, *a);
  check_same_device(fn, "weights", weights, {{"neutral", &neutral}, {"deltas", &deltas}});
  BlendshapeParams<T> p;
  p.B = B, p.K = K, p.V = V;
  p.weights = data<T>(weights), p.neutral = data<T>(neutral), p.deltas = data<T>(deltas);
  if (block_ptr.has_value() != block_shape.has_value())
    fail(fn, "block_ptr and block_shape must be given together (sparse deltas) or both omitted");
  if (!block_ptr) {
    check_shape(fn, "deltas", deltas, {K, V, 3}, "[K, V, 3]");
    return p;
  }
  const int64_t nblk = (V + kBlendshapeBlock - 1) / kBlendshapeBlock;
  check_shape(fn, "block_ptr", *block_ptr, {nblk + 1}, "[ceil(V / 32) + 1]");
  check_dtype(fn, "block_ptr", *block_ptr, DType::i32);
  check_dtype(fn, "block_shape", *block_shape, DType::i32);
  check_shape(fn, "block_shape", *block_shape, {-1}, "[nnzb]");
  const int64_t nnzb = block_shape->shape(0);
  check_shape(fn, "deltas", deltas, {nnzb, kBlendshapeBlock, 3}, "[nnzb, 32, 3]");
  check_same_device(fn, "weights", weights, {{"block_ptr", &*block_ptr}, {"block_shape", &*block_shape}});
  p.block_ptr = data<int32_t>(*block_ptr), p.block_shape = data<int32_t>(*block_shape), p.nnzb = nnzb;
  return p;
}

template <class T>
RigidParams<T> make_rigid(const char* fn, int64_t B, int64_t V, DType dt, const Array& ref,
                          const Array& rotations, const Array& pivots, const Array& group) {
  check_shape(fn, "rotations", rotations, {B, -1, 3, 3}, "[B, G, 3, 3]");
  const int64_t G = rotations.shape(1);
  check_shape(fn, "pivots", pivots, {G, 3}, "[G, 3]");
  check_shape(fn, "group", group, {V}, "[V]");
  check_dtype(fn, "rotations", rotations, dt);
  check_dtype(fn, "pivots", pivots, dt);
  check_dtype(fn, "group", group, DType::i32);
  for (auto [name, a] : {std::pair{"rotations", &rotations}, {"pivots", &pivots}, {"group", &group}})
    check_contiguous(fn, name, *a);
  check_same_device(fn, "weights", ref, {{"rotations", &rotations}, {"pivots", &pivots}, {"group", &group}});
  RigidParams<T> r;
  r.G = G, r.rotations = data<T>(rotations), r.pivots = data<T>(pivots), r.group = data<int32_t>(group);
  return r;
}

void check_out(const char* fn, const char* name, const Array& out, const Array& ref,
               std::initializer_list<int64_t> dims, const char* spec) {
  check_shape(fn, name, out, dims, spec);
  check_dtype(fn, name, out, dtype_of(ref));
  check_contiguous(fn, name, out);
  check_same_device(fn, "weights", ref, {{name, &out}});
}

template <class T>
T* opt_data(const OptArray& a) {
  return a ? data<T>(*a) : nullptr;
}

// Runs f(T{}) for CPU arrays (float32/float64) or f(float{}) plus the CUDA flag for GPU arrays.
template <class F>
void dispatch(const char* fn, const Array& ref, F&& f) {
  if (is_cuda(ref)) {
#ifdef FACECORE_WITH_CUDA
    check_dtype(fn, "weights", ref, DType::f32);
    const auto guard = device_guard(ref);  // launch on the tensors' device
    f(float{}, true);
#else
    no_cuda(fn);
#endif
  } else {
    dispatch_float(fn, "weights", dtype_of(ref), [&](auto tag) { f(tag, false); });
  }
}

void blendshape_forward_binding(const Array& weights, const Array& neutral, const Array& deltas,
                                const OptArray& block_ptr, const OptArray& block_shape,
                                const Array& out, int threads, std::uintptr_t stream) {
  const char* fn = "blendshape_forward";
  dispatch(fn, weights, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, weights, neutral, deltas, block_ptr, block_shape);
    check_out(fn, "out", out, weights, {p.B, p.V, 3}, "[B, V, 3]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda) return blendshape_forward_cuda(p, data<T>(out), (Stream)stream);
#endif
    blendshape_forward<T>(p, data<T>(out), CpuOptions{threads});
  });
}

void blendshape_backward_binding(const Array& weights, const Array& neutral, const Array& deltas,
                                 const OptArray& block_ptr, const OptArray& block_shape,
                                 const Array& grad_out, const OptArray& grad_weights,
                                 const OptArray& grad_neutral, const OptArray& grad_deltas,
                                 int threads, std::uintptr_t stream) {
  const char* fn = "blendshape_backward";
  dispatch(fn, weights, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, weights, neutral, deltas, block_ptr, block_shape);
    check_out(fn, "grad_out", grad_out, weights, {p.B, p.V, 3}, "[B, V, 3]");
    if (grad_weights) check_out(fn, "grad_weights", *grad_weights, weights, {p.B, p.K}, "[B, K]");
    if (grad_neutral) check_out(fn, "grad_neutral", *grad_neutral, weights, {p.V, 3}, "[V, 3]");
    if (grad_deltas) {
      if (p.block_ptr)
        check_out(fn, "grad_deltas", *grad_deltas, weights, {p.nnzb, kBlendshapeBlock, 3}, "[nnzb, 32, 3]");
      else
        check_out(fn, "grad_deltas", *grad_deltas, weights, {p.K, p.V, 3}, "[K, V, 3]");
    }
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda)
        return blendshape_backward_cuda(p, data<T>(grad_out), opt_data<T>(grad_weights),
                                        opt_data<T>(grad_neutral), opt_data<T>(grad_deltas),
                                        (Stream)stream);
#endif
    blendshape_backward<T>(p, data<T>(grad_out), opt_data<T>(grad_weights), opt_data<T>(grad_neutral),
                           opt_data<T>(grad_deltas), CpuOptions{threads});
  });
}

void deform_forward_binding(const Array& weights, const Array& neutral, const Array& deltas,
                            const OptArray& block_ptr, const OptArray& block_shape,
                            const Array& rotations, const Array& pivots, const Array& group,
                            const Array& out, int threads, std::uintptr_t stream) {
  const char* fn = "deform_forward";
  dispatch(fn, weights, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, weights, neutral, deltas, block_ptr, block_shape);
    auto r = make_rigid<T>(fn, p.B, p.V, dtype_of(weights), weights, rotations, pivots, group);
    check_out(fn, "out", out, weights, {p.B, p.V, 3}, "[B, V, 3]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda) return deform_forward_cuda(p, r, data<T>(out), (Stream)stream);
#endif
    deform_forward<T>(p, r, data<T>(out), CpuOptions{threads});
  });
}

void rigid_backward_binding(const Array& out, const Array& grad_out, const Array& rotations,
                            const Array& pivots, const Array& group, const Array& grad_points,
                            const Array& grad_rotations, int threads, std::uintptr_t stream) {
  const char* fn = "rigid_backward";
  dispatch(fn, out, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    check_shape(fn, "out", out, {-1, -1, 3}, "[B, V, 3]");
    check_contiguous(fn, "out", out);
    BlendshapeParams<T> p;
    p.B = out.shape(0), p.V = out.shape(1);
    auto r = make_rigid<T>(fn, p.B, p.V, dtype_of(out), out, rotations, pivots, group);
    check_out(fn, "grad_out", grad_out, out, {p.B, p.V, 3}, "[B, V, 3]");
    check_out(fn, "grad_points", grad_points, out, {p.B, p.V, 3}, "[B, V, 3]");
    check_out(fn, "grad_rotations", grad_rotations, out, {p.B, r.G, 3, 3}, "[B, G, 3, 3]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda)
        return rigid_backward_cuda(p, r, data<T>(out), data<T>(grad_out), data<T>(grad_points),
                                   data<T>(grad_rotations), (Stream)stream);
#endif
    rigid_backward<T>(p, r, data<T>(out), data<T>(grad_out), data<T>(grad_points),
                      data<T>(grad_rotations), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(blendshape) {
  using namespace nb::literals;
  auto release = nb::call_guard<nb::gil_scoped_release>();
  m.def("blendshape_forward", &blendshape_forward_binding, "weights"_a, "neutral"_a, "deltas"_a,
        "block_ptr"_a.none(), "block_shape"_a.none(), "out"_a, "threads"_a, "stream"_a, release);
  m.def("blendshape_backward", &blendshape_backward_binding, "weights"_a, "neutral"_a, "deltas"_a,
        "block_ptr"_a.none(), "block_shape"_a.none(), "grad_out"_a, "grad_weights"_a.none(),
        "grad_neutral"_a.none(), "grad_deltas"_a.none(), "threads"_a, "stream"_a, release);
  m.def("deform_forward", &deform_forward_binding, "weights"_a, "neutral"_a, "deltas"_a,
        "block_ptr"_a.none(), "block_shape"_a.none(), "rotations"_a, "pivots"_a, "group"_a, "out"_a,
        "threads"_a, "stream"_a, release);
  m.def("rigid_backward", &rigid_backward_binding, "out"_a, "grad_out"_a, "rotations"_a, "pivots"_a,
        "group"_a, "grad_points"_a, "grad_rotations"_a, "threads"_a, "stream"_a, release);
  m.attr("BLENDSHAPE_BLOCK") = kBlendshapeBlock;
}

}  // namespace facecore::bindings
