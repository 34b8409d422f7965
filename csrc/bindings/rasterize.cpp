// Bindings for rasterize: checks, device dispatch, GIL release.
#include "facecore/rasterize.h"

#include <type_traits>

#include "checks.h"
#include "device_dispatch.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

template <class T>
RasterizeParams<T> make_params(const char* fn, const Array& pos, const Array& tri, const Array& rast, bool cull) {
  check_shape(fn, "pos", pos, {-1, -1, 4}, "[B, V, 4]");
  check_shape(fn, "tri", tri, {-1, 3}, "[T, 3]");
  check_dtype(fn, "tri", tri, DType::i32);
  check_shape(fn, "rast", rast, {(int64_t)pos.shape(0), -1, -1, 4}, "[B, H, W, 4]");
  check_dtype(fn, "rast", rast, dtype_of(pos));
  for (auto [name, a] : {std::pair{"pos", &pos}, {"tri", &tri}, {"rast", &rast}}) check_contiguous(fn, name, *a);
  check_same_device(fn, "pos", pos, {{"tri", &tri}, {"rast", &rast}});
  if (rast.shape(1) == 0 || rast.shape(2) == 0) fail(fn, "resolution must be at least 1x1, got " + shape_str(rast));
  RasterizeParams<T> p;
  p.B = pos.shape(0), p.V = pos.shape(1), p.T_ = tri.shape(0), p.H = rast.shape(1), p.W = rast.shape(2);
  p.pos = data<T>(pos), p.tri = data<int32_t>(tri), p.cull_backfaces = cull;
  return p;
}

void forward(const Array& pos, const Array& tri, const Array& rast, const Array& db, bool want_db, bool cull,
             int threads, std::uintptr_t stream) {
  const char* fn = "rasterize_forward";
  dispatch_device(fn, "pos", pos, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, pos, tri, rast, cull);
    if (want_db) check_like(fn, "db", db, "rast", rast, "[B, H, W, 4]");
    T* dbp = want_db ? data<T>(db) : nullptr;
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda) return rasterize_forward_cuda(p, data<T>(rast), dbp, (Stream)stream);
#endif
    rasterize_forward<T>(p, data<T>(rast), dbp, CpuOptions{threads});
  });
}

void backward(const Array& pos, const Array& tri, const Array& rast, const Array& grad_rast, const Array& grad_pos,
              int threads, std::uintptr_t stream) {
  const char* fn = "rasterize_backward";
  dispatch_device(fn, "pos", pos, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, pos, tri, rast, false);
    check_like(fn, "grad_rast", grad_rast, "rast", rast, "[B, H, W, 4]");
    check_like(fn, "grad_pos", grad_pos, "pos", pos, "[B, V, 4]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda) return rasterize_backward_cuda(p, data<T>(rast), data<T>(grad_rast), data<T>(grad_pos), (Stream)stream);
#endif
    rasterize_backward<T>(p, data<T>(rast), data<T>(grad_rast), data<T>(grad_pos), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(rasterize) {
  using namespace nb::literals;
  auto release = nb::call_guard<nb::gil_scoped_release>();
  m.def("rasterize_forward", &forward, "pos"_a, "tri"_a, "rast"_a, "db"_a, "want_db"_a, "cull_backfaces"_a,
        "threads"_a, "stream"_a, release);
  m.def("rasterize_backward", &backward, "pos"_a, "tri"_a, "rast"_a, "grad_rast"_a, "grad_pos"_a, "threads"_a,
        "stream"_a, release);
}

}  // namespace facecore::bindings
