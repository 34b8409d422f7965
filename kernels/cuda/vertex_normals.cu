// CUDA area-weighted vertex normals (float32), same contract as csrc/cpu/vertex_normals.cpp.
// Face normals are scattered to their corners with atomics (the GPU's natural reduction; the
// summation order, and so the last bit, can vary between runs). Faces are validated in Python;
// kernels skip faces with an out-of-range index instead of reading out of bounds.
#include <algorithm>

#include "cuda_common.cuh"
#include "facecore/vertex_normals.h"

namespace facecore {
namespace {

using cuda::check;
using cuda::check_launch;

__device__ inline bool face_ok(const int32_t* t, int64_t V) {
  return t[0] >= 0 && t[0] < V && t[1] >= 0 && t[1] < V && t[2] >= 0 && t[2] < V;
}

__device__ inline void cross(const float* a, const float* b, float* o) {
  o[0] = a[1] * b[2] - a[2] * b[1];
  o[1] = a[2] * b[0] - a[0] * b[2];
  o[2] = a[0] * b[1] - a[1] * b[0];
}

__device__ inline void edges(const float* x, const int32_t* t, float* e1, float* e2) {
  for (int c = 0; c < 3; ++c) {
    e1[c] = x[3 * t[1] + c] - x[3 * t[0] + c];
    e2[c] = x[3 * t[2] + c] - x[3 * t[0] + c];
  }
}

// m[b, v] += cross(p1 - p0, p2 - p0) for each corner v of each face. m must be zeroed.
__global__ void accumulate_kernel(VertexNormalsParams<float> p, float* __restrict__ m) {
  const int64_t b = blockIdx.y;
  const int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (f >= p.F) return;
  const int32_t* t = p.faces + f * 3;
  if (!face_ok(t, p.V)) return;
  float e1[3], e2[3], n[3];
  edges(p.verts + b * p.V * 3, t, e1, e2);
  cross(e1, e2, n);
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 3; ++c) atomicAdd(m + (b * p.V + t[k]) * 3 + c, n[c]);
}

// normals = m / |m| (zero when |m| <= eps), in place.
__global__ void normalize_kernel(int64_t n, float eps, float* __restrict__ m) {
  const int64_t x = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (x >= n) return;
  float* v = m + x * 3;
  const float len = sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  const float inv = len > eps ? 1.f / len : 0.f;
  v[0] *= inv, v[1] *= inv, v[2] *= inv;
}

// gm = (g - n (n . g)) / |m|, in place over m.
__global__ void grad_m_kernel(int64_t n, float eps, const float* __restrict__ grad_normals, float* __restrict__ m) {
  const int64_t x = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (x >= n) return;
  float* v = m + x * 3;
  const float* g = grad_normals + x * 3;
  const float len = sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  if (len <= eps) {
    v[0] = v[1] = v[2] = 0.f;
    return;
  }
  const float inv = 1.f / len;
  const float nn[3] = {v[0] * inv, v[1] * inv, v[2] * inv};
  const float ng = nn[0] * g[0] + nn[1] * g[1] + nn[2] * g[2];
  for (int c = 0; c < 3; ++c) v[c] = (g[c] - nn[c] * ng) * inv;
}

// Per face: gf = sum of gm over its corners; d/dp1 = e2 x gf, d/dp2 = gf x e1, d/dp0 = -(both).
__global__ void scatter_grad_kernel(VertexNormalsParams<float> p, const float* __restrict__ gm,
                                    float* __restrict__ grad_verts) {
  const int64_t b = blockIdx.y;
  const int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (f >= p.F) return;
  const int32_t* t = p.faces + f * 3;
  if (!face_ok(t, p.V)) return;
  float e1[3], e2[3], gf[3], d1[3], d2[3];
  edges(p.verts + b * p.V * 3, t, e1, e2);
  for (int c = 0; c < 3; ++c)
    gf[c] = gm[(b * p.V + t[0]) * 3 + c] + gm[(b * p.V + t[1]) * 3 + c] + gm[(b * p.V + t[2]) * 3 + c];
  cross(e2, gf, d1);
  cross(gf, e1, d2);
  for (int c = 0; c < 3; ++c) {
    atomicAdd(grad_verts + (b * p.V + t[0]) * 3 + c, -(d1[c] + d2[c]));
    atomicAdd(grad_verts + (b * p.V + t[1]) * 3 + c, d1[c]);
    atomicAdd(grad_verts + (b * p.V + t[2]) * 3 + c, d2[c]);
  }
}

constexpr int kThreads = 256;

// Launches a per-face kernel over the batch in chunks of at most 65535 (grid.y limit), checking each launch.
template <class Launch>
void per_batch_chunks(int64_t B, const char* fn, const char* kernel, Launch&& launch) {
  for (int64_t b0 = 0; b0 < B; b0 += cuda::kMaxGridYZ) {
    launch(b0, std::min<int64_t>(cuda::kMaxGridYZ, B - b0));
    check_launch(fn, kernel);
  }
}

VertexNormalsParams<float> slice(const VertexNormalsParams<float>& p, int64_t b0, int64_t nb) {
  VertexNormalsParams<float> q = p;
  q.B = nb;
  q.verts = p.verts + b0 * p.V * 3;
  return q;
}

}  // namespace

void vertex_normals_forward_cuda(const VertexNormalsParams<float>& p, float* normals, Stream stream) {
  const char* fn = "vertex_normals_forward";
  auto s = (cudaStream_t)stream;
  const int64_t n = p.B * p.V;
  check(cudaMemsetAsync(normals, 0, sizeof(float) * n * 3, s), fn, "memset");
  if (n == 0) return;
  if (p.F > 0) {
    const unsigned face_blocks = cuda::blocks_for(p.F, kThreads, fn);
    per_batch_chunks(p.B, fn, "accumulate", [&](int64_t b0, int64_t nb) {
      accumulate_kernel<<<dim3(face_blocks, unsigned(nb)), kThreads, 0, s>>>(slice(p, b0, nb), normals + b0 * p.V * 3);
    });
  }
  normalize_kernel<<<cuda::blocks_for(n, kThreads, fn), kThreads, 0, s>>>(n, p.eps, normals);
  check_launch(fn, "normalize");
}

void vertex_normals_backward_cuda(const VertexNormalsParams<float>& p, const float* grad_normals,
                                  float* grad_verts, Stream stream) {
  const char* fn = "vertex_normals_backward";
  auto s = (cudaStream_t)stream;
  const int64_t n = p.B * p.V;
  check(cudaMemsetAsync(grad_verts, 0, sizeof(float) * n * 3, s), fn, "memset");
  if (n == 0 || p.F == 0) return;
  const unsigned face_blocks = cuda::blocks_for(p.F, kThreads, fn);
  cuda::DeviceBuffer<float> m(size_t(n) * 3, s, fn);  // freed on every path out, exceptions included
  check(cudaMemsetAsync(m.ptr, 0, sizeof(float) * n * 3, s), fn, "memset");
  per_batch_chunks(p.B, fn, "accumulate", [&](int64_t b0, int64_t nb) {
    accumulate_kernel<<<dim3(face_blocks, unsigned(nb)), kThreads, 0, s>>>(slice(p, b0, nb), m.ptr + b0 * p.V * 3);
  });
  grad_m_kernel<<<cuda::blocks_for(n, kThreads, fn), kThreads, 0, s>>>(n, p.eps, grad_normals, m.ptr);
  check_launch(fn, "grad_m");
  per_batch_chunks(p.B, fn, "scatter_grad", [&](int64_t b0, int64_t nb) {
    scatter_grad_kernel<<<dim3(face_blocks, unsigned(nb)), kThreads, 0, s>>>(slice(p, b0, nb), m.ptr + b0 * p.V * 3,
                                                                            grad_verts + b0 * p.V * 3);
  });
}

}  // namespace facecore
