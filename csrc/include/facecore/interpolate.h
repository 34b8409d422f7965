// Attribute interpolation over a rasterized image, forward and backward.
//   out[b, y, x] = u a[t0] + v a[t1] + (1 - u - v) a[t2]   for the pixel's triangle t = rast id - 1,
//   out = 0 on the background.  Backward: grad_attr (scattered per corner) and grad_rast (u, v):
//   dL/du = g . (a[t0] - a[t2]),  dL/dv = g . (a[t1] - a[t2]).
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

template <class T>
struct InterpolateParams {
  int64_t B = 0, V = 0, C = 0, T_ = 0, H = 0, W = 0;
  const T* attr = nullptr;       // [B, V, C]
  const T* rast = nullptr;       // [B, H, W, 4]
  const int32_t* tri = nullptr;  // [T, 3], every index in [0, V)
};

template <class T>
void interpolate_forward(const InterpolateParams<T>& p, T* out /* [B, H, W, C] */, const CpuOptions& opt);

template <class T>
void interpolate_backward(const InterpolateParams<T>& p, const T* grad_out /* [B, H, W, C] */,
                          T* grad_attr /* [B, V, C] */, T* grad_rast /* [B, H, W, 4] */, const CpuOptions& opt);

#ifdef FACECORE_WITH_CUDA
// Defined in kernels/cuda/interpolate.cu.
void interpolate_forward_cuda(const InterpolateParams<float>& p, float* out, Stream stream);
void interpolate_backward_cuda(const InterpolateParams<float>& p, const float* grad_out, float* grad_attr,
                               float* grad_rast, Stream stream);
#endif

}  // namespace facecore
