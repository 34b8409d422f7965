// Device handling shared by the bindings: the device guard every CUDA branch opens first, and the
// float/CUDA dispatch of the raster bindings (rasterize, interpolate, antialias).
#pragma once

#include "checks.h"
#include "facecore/cuda_device.h"

namespace facecore::bindings {

// Makes the device holding `a` current until the guard leaves scope (a no-op for CPU arrays and in builds
// without CUDA): kernels then launch on, and allocate from, the tensors' device whichever one is current.
inline CudaDeviceGuard device_guard(const Array& a) { return CudaDeviceGuard(is_cuda(a) ? int(a.device_id()) : -1); }

// Calls f(T{}, cuda): T = float on CUDA (under a device guard), float or double on the CPU, by ref's dtype.
template <class F>
void dispatch_device(const char* fn, const char* name, const Array& ref, F&& f) {
  if (is_cuda(ref)) {
#ifdef FACECORE_WITH_CUDA
    check_dtype(fn, name, ref, DType::f32);
    const auto guard = device_guard(ref);
    f(float{}, true);
#else
    no_cuda(fn);
#endif
  } else {
    dispatch_float(fn, name, dtype_of(ref), [&](auto tag) { f(tag, false); });
  }
}

// `a` has the shape, dtype and device of `like`, and is contiguous.
inline void check_like(const char* fn, const char* name, const Array& a, const char* like_name, const Array& like,
                       const char* spec) {
  bool same = a.ndim() == like.ndim();
  for (size_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == like.shape(i);
  if (!same) fail(fn, std::string(name) + " must have shape " + spec + " = " + shape_str(like) + ", got " + shape_str(a));
  check_dtype(fn, name, a, dtype_of(like));
  check_contiguous(fn, name, a);
  check_same_device(fn, like_name, like, {{name, &a}});
}

}  // namespace facecore::bindings
