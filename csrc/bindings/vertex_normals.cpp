// Bindings for vertex_normals: checks, device dispatch, GIL release.
#include "facecore/vertex_normals.h"

#include <type_traits>

#include "checks.h"
#include "device_dispatch.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

template <class T>
VertexNormalsParams<T> make_params(const char* fn, const Array& verts, const Array& faces) {
  check_shape(fn, "verts", verts, {-1, -1, 3}, "[B, V, 3]");
  check_shape(fn, "faces", faces, {-1, 3}, "[F, 3]");
  check_dtype(fn, "faces", faces, DType::i32);
  check_contiguous(fn, "verts", verts);
  check_contiguous(fn, "faces", faces);
  check_same_device(fn, "verts", verts, {{"faces", &faces}});
  VertexNormalsParams<T> p;
  p.B = verts.shape(0), p.V = verts.shape(1), p.F = faces.shape(0);
  p.verts = data<T>(verts), p.faces = data<int32_t>(faces);
  return p;
}

void check_like(const char* fn, const char* name, const Array& a, const Array& verts) {
  check_shape(fn, name, a, {(int64_t)verts.shape(0), (int64_t)verts.shape(1), 3}, "[B, V, 3]");
  check_dtype(fn, name, a, dtype_of(verts));
  check_contiguous(fn, name, a);
  check_same_device(fn, "verts", verts, {{name, &a}});
}

template <class F>
void dispatch(const char* fn, const Array& verts, F&& f) {
  if (is_cuda(verts)) {
#ifdef FACECORE_WITH_CUDA
    check_dtype(fn, "verts", verts, DType::f32);
    const auto guard = device_guard(verts);  // launch on the tensors' device
    f(float{}, true);
#else
    no_cuda(fn);
#endif
  } else {
    dispatch_float(fn, "verts", dtype_of(verts), [&](auto tag) { f(tag, false); });
  }
}

void forward(const Array& verts, const Array& faces, const Array& normals, int threads, std::uintptr_t stream) {
  const char* fn = "vertex_normals_forward";
  dispatch(fn, verts, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, verts, faces);
    check_like(fn, "normals", normals, verts);
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda) return vertex_normals_forward_cuda(p, data<T>(normals), (Stream)stream);
#endif
    vertex_normals_forward<T>(p, data<T>(normals), CpuOptions{threads});
  });
}

void backward(const Array& verts, const Array& faces, const Array& grad_normals, const Array& grad_verts,
              int threads, std::uintptr_t stream) {
  const char* fn = "vertex_normals_backward";
  dispatch(fn, verts, [&](auto tag, bool cuda) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, verts, faces);
    check_like(fn, "grad_normals", grad_normals, verts);
    check_like(fn, "grad_verts", grad_verts, verts);
#ifdef FACECORE_WITH_CUDA
    if constexpr (std::is_same_v<T, float>)
      if (cuda)
        return vertex_normals_backward_cuda(p, data<T>(grad_normals), data<T>(grad_verts), (Stream)stream);
#endif
    vertex_normals_backward<T>(p, data<T>(grad_normals), data<T>(grad_verts), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(vertex_normals) {
  using namespace nb::literals;
  auto release = nb::call_guard<nb::gil_scoped_release>();
  m.def("vertex_normals_forward", &forward, "verts"_a, "faces"_a, "normals"_a, "threads"_a, "stream"_a, release);
  m.def("vertex_normals_backward", &backward, "verts"_a, "faces"_a, "grad_normals"_a, "grad_verts"_a,
        "threads"_a, "stream"_a, release);
}

}  // namespace facecore::bindings
