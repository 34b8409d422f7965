// CUDA attribute interpolation: one thread per (pixel, channel) forward; backward one thread per pixel
// (grad_rast directly, grad_attr with float atomics).
#include "cuda_common.cuh"
#include "facecore/interpolate.h"
#include "facecore/rasterize.h"

namespace facecore {

namespace {

using cuda::blocks_for;
using cuda::check;
using cuda::check_launch;
using raster::pixel_triangle;
using raster::triangle_ok;

__global__ void forward_kernel(InterpolateParams<float> p, float* out) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long C = p.C;
  if (i >= p.B * p.H * p.W * C) return;
  const long long pix = i / C, c = i % C, b = pix / (p.H * p.W);
  const float* r = p.rast + pix * 4;
  const long long t = pixel_triangle(r, p.T_);
  if (t < 0 || !triangle_ok(p.tri + 3 * t, p.V)) {  // background; bad indices were rejected by the caller
    out[i] = 0.f;
    return;
  }
  const int* tr = p.tri + 3 * t;
  const float* a = p.attr + b * p.V * C;
  out[i] = r[0] * a[tr[0] * C + c] + r[1] * a[tr[1] * C + c] + (1.f - r[0] - r[1]) * a[tr[2] * C + c];
}

__global__ void backward_kernel(InterpolateParams<float> p, const float* grad_out, float* grad_attr,
                                float* grad_rast) {
  const long long pix = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (pix >= p.B * p.H * p.W) return;
  const long long C = p.C, b = pix / (p.H * p.W);
  const float* r = p.rast + pix * 4;
  float* gr = grad_rast + pix * 4;
  gr[0] = gr[1] = gr[2] = gr[3] = 0.f;
  const long long t = pixel_triangle(r, p.T_);
  if (t < 0) return;
  const int* tr = p.tri + 3 * t;
  if (!triangle_ok(tr, p.V)) return;
  const float* a = p.attr + b * p.V * C;
  float* ga = grad_attr + b * p.V * C;
  const float* g = grad_out + pix * C;
  const float u = r[0], v = r[1], w = 1.f - r[0] - r[1];
  float du = 0.f, dv = 0.f;
  for (long long c = 0; c < C; ++c) {
    const float a0 = a[tr[0] * C + c], a1 = a[tr[1] * C + c], a2 = a[tr[2] * C + c];
    du += g[c] * (a0 - a2), dv += g[c] * (a1 - a2);
    atomicAdd(ga + tr[0] * C + c, u * g[c]);
    atomicAdd(ga + tr[1] * C + c, v * g[c]);
    atomicAdd(ga + tr[2] * C + c, w * g[c]);
  }
  gr[0] = du, gr[1] = dv;
}

}  // namespace

void interpolate_forward_cuda(const InterpolateParams<float>& p, float* out, Stream stream) {
  const char* fn = "interpolate";
  check_triangle_count<float>(fn, p.T_);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const long long n = p.B * p.H * p.W * p.C;
  if (n == 0) return;
  forward_kernel<<<blocks_for(n, 256, fn), 256, 0, s>>>(p, out);
  check_launch(fn, "forward");
}

void interpolate_backward_cuda(const InterpolateParams<float>& p, const float* grad_out, float* grad_attr,
                               float* grad_rast, Stream stream) {
  const char* fn = "interpolate_backward";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  check(cudaMemsetAsync(grad_attr, 0, sizeof(float) * p.B * p.V * p.C, s), fn, "memset");
  const long long n = p.B * p.H * p.W;
  if (n == 0) return;
  backward_kernel<<<blocks_for(n, 256, fn), 256, 0, s>>>(p, grad_out, grad_attr, grad_rast);
  check_launch(fn, "backward");
}

}  // namespace facecore
