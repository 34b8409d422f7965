// Bindings for interpolate: checks, device dispatch, GIL release.
#include "facecore/interpolate.h"

#include <type_traits>

#include "checks.h"
#include "device_dispatch.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

template <class T>
InterpolateParams<T> make_params(const char* fn, const Array& attr, const Array& rast, const Array& tri) {
  check_shape(fn, "attr", attr, {-1, -1, -1}, "[B, V, C]");
  check_shape(fn, "rast", rast, {(int64_t)attr.shape(0), -1, -1, 4}, "[B, H, W, 4]");
  check_dtype(fn, "rast", rast, dtype_of(attr));
  check_shape(fn, "tri", tri, {-1, 3}, "[T, 3]");
  check_dtype(fn, "tri", tri, DType::i32);
  for (auto [name, a] : {std::pair{"attr", &attr}, {"rast", &rast}, {"tri", &tri}}) check_contiguous(fn, name, *a);
  check_same_device(fn, "attr", attr, {{"rast", &rast}, {"tri", &tri}});
  InterpolateParams<T> p;
  p.B = attr.shape(0), p.V = attr.shape(1), p.C = attr.shape(2), p.T_ = tri.shape(0);
  p.H = rast.shape(1), p.W = rast.shape(2);
  p.attr = data<T>(attr), p.rast = data<T>(rast), p.tri = data<int32_t>(tri);
  return p;
}

void check_out(const char* fn, const char* name, const Array& a, const Array& attr, std::initializer_list<int64_t> dims,
               const char* spec) {
  check_shape(fn, name, a, dims, spec);
  check_dtype(fn, name, a, dtype_of(attr));
  check_contiguous(fn, name, a);
  check_same_device(fn, "attr", attr, {{name, &a}});
}

void forward(const Array& attr, const Array& rast, const Array& tri, const Array& out, int threads,
             std::uintptr_t stream) {
  const char* fn = "interpolate_forward";
  dispatch_device(fn, "attr", attr, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, attr, rast, tri);
    check_out(fn, "out", out, attr, {p.B, p.H, p.W, p.C}, "[B, H, W, C]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda) return interpolate_forward_cuda(p, data<T>(out), (Stream)stream);
#endif
    interpolate_forward<T>(p, data<T>(out), CpuOptions{threads});
  });
}

void backward(const Array& attr, const Array& rast, const Array& tri, const Array& grad_out, const Array& grad_attr,
              const Array& grad_rast, int threads, std::uintptr_t stream) {
  const char* fn = "interpolate_backward";
  dispatch_device(fn, "attr", attr, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, attr, rast, tri);
    check_out(fn, "grad_out", grad_out, attr, {p.B, p.H, p.W, p.C}, "[B, H, W, C]");
    check_out(fn, "grad_attr", grad_attr, attr, {p.B, p.V, p.C}, "[B, V, C]");
    check_out(fn, "grad_rast", grad_rast, attr, {p.B, p.H, p.W, 4}, "[B, H, W, 4]");
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda)
        return interpolate_backward_cuda(p, data<T>(grad_out), data<T>(grad_attr), data<T>(grad_rast), (Stream)stream);
#endif
    interpolate_backward<T>(p, data<T>(grad_out), data<T>(grad_attr), data<T>(grad_rast), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(interpolate) {
  using namespace nb::literals;
  auto release = nb::call_guard<nb::gil_scoped_release>();
  m.def("interpolate_forward", &forward, "attr"_a, "rast"_a, "tri"_a, "out"_a, "threads"_a, "stream"_a, release);
  m.def("interpolate_backward", &backward, "attr"_a, "rast"_a, "tri"_a, "grad_out"_a, "grad_attr"_a, "grad_rast"_a,
        "threads"_a, "stream"_a, release);
}

}  // namespace facecore::bindings
