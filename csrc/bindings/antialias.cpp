// Bindings for antialias: checks, device dispatch, GIL release.
#include "facecore/antialias.h"

#include <type_traits>

#include "checks.h"
#include "device_dispatch.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

template <class T>
AntialiasParams<T> make_params(const char* fn, const Array& color, const Array& rast, const Array& pos,
                               const Array& tri) {
  check_shape(fn, "color", color, {-1, -1, -1, -1}, "[B, H, W, C]");
  const int64_t B = color.shape(0), H = color.shape(1), W = color.shape(2);
  check_shape(fn, "rast", rast, {B, H, W, 4}, "[B, H, W, 4]");
  check_shape(fn, "pos", pos, {B, -1, 4}, "[B, V, 4]");
  check_shape(fn, "tri", tri, {-1, 3}, "[T, 3]");
  check_dtype(fn, "rast", rast, dtype_of(color));
  check_dtype(fn, "pos", pos, dtype_of(color));
  check_dtype(fn, "tri", tri, DType::i32);
  for (auto [name, a] : {std::pair{"color", &color}, {"rast", &rast}, {"pos", &pos}, {"tri", &tri}})
    check_contiguous(fn, name, *a);
  check_same_device(fn, "color", color, {{"rast", &rast}, {"pos", &pos}, {"tri", &tri}});
  AntialiasParams<T> p;
  p.B = B, p.H = H, p.W = W, p.C = color.shape(3), p.V = pos.shape(1), p.T_ = tri.shape(0);
  p.color = data<T>(color), p.rast = data<T>(rast), p.pos = data<T>(pos), p.tri = data<int32_t>(tri);
  return p;
}

void forward(const Array& color, const Array& rast, const Array& pos, const Array& tri, const Array& out,
             int threads, std::uintptr_t stream) {
  const char* fn = "antialias_forward";
  dispatch_device(fn, "color", color, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, color, rast, pos, tri);
    check_like(fn, "out", out, "color", color, "[B, H, W, C]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda) return antialias_forward_cuda(p, data<T>(out), (Stream)stream);
#endif
    antialias_forward<T>(p, data<T>(out), CpuOptions{threads});
  });
}

void backward(const Array& color, const Array& rast, const Array& pos, const Array& tri, const Array& grad_out,
              const Array& grad_color, const Array& grad_pos, int threads, std::uintptr_t stream) {
  const char* fn = "antialias_backward";
  dispatch_device(fn, "color", color, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, color, rast, pos, tri);
    check_like(fn, "grad_out", grad_out, "color", color, "[B, H, W, C]");
    check_like(fn, "grad_color", grad_color, "color", color, "[B, H, W, C]");
    check_like(fn, "grad_pos", grad_pos, "pos", pos, "[B, V, 4]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda)
        return antialias_backward_cuda(p, data<T>(grad_out), data<T>(grad_color), data<T>(grad_pos), (Stream)stream);
#endif
    antialias_backward<T>(p, data<T>(grad_out), data<T>(grad_color), data<T>(grad_pos), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(antialias) {
  using namespace nb::literals;
  auto release = nb::call_guard<nb::gil_scoped_release>();
  m.def("antialias_forward", &forward, "color"_a, "rast"_a, "pos"_a, "tri"_a, "out"_a, "threads"_a, "stream"_a,
        release);
  m.def("antialias_backward", &backward, "color"_a, "rast"_a, "pos"_a, "tri"_a, "grad_out"_a, "grad_color"_a,
        "grad_pos"_a, "threads"_a, "stream"_a, release);
}

}  // namespace facecore::bindings
