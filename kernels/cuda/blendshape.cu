// CUDA blendshape / deform kernels (float32), same contracts as csrc/cpu/blendshape.cpp.
//
// Work unit: one vertex block of kBlendshapeBlock vertices = 96 contiguous floats. A CTA has
// 96 x kRows threads: thread (i, r) owns value i of the block for batch row r, so every stored
// entry (dense or block-sparse) is read as one coalesced 384-byte run and reused by kRows rows
// through L1. Sparse indices come from SparseDeltas, validated in Python; kernels still skip
// out-of-range shape indices rather than read out of bounds.
#include <algorithm>

#include "cuda_common.cuh"
#include "facecore/blendshape.h"

namespace facecore {
namespace {

constexpr int BS = kBlendshapeBlock;
constexpr int BS3 = 3 * kBlendshapeBlock;
constexpr int kRows = 4;      // batch rows per CTA (blockDim.y)
constexpr int kMaxGroups = 16;  // rigid groups reduced in shared memory (more fall back to global atomics)

using cuda::blocks_for;
using cuda::check;
using cuda::check_launch;

inline int64_t num_blocks(int64_t V) { return (V + BS - 1) / BS; }
inline unsigned grid_rows(int64_t B) {  // the kernels loop over the rest (grid-stride)
  return unsigned(std::min<int64_t>((B + kRows - 1) / kRows, cuda::kMaxGridYZ));
}

// Vertices in block j (kBlendshapeBlock except for the last block).
__host__ __device__ inline int block_nv(int64_t V, int64_t j) {
  const int64_t r = V - j * BS;
  return r < BS ? int(r) : BS;
}

// Entry t of vertex block j: its shape index and the start of its 96 (or 3 * nv) values.
struct Entry {
  int64_t k;
  const float* d;
};

// block_ptr is not validated on the GPU (that would cost a sync per call): its entries are clamped
// into [0, nnzb] so that a malformed one never reads outside deltas/block_shape.
__device__ inline int64_t entry_begin(const BlendshapeParams<float>& p, int64_t j) {
  return min(max(int64_t(p.block_ptr[j]), int64_t(0)), p.nnzb);
}

__device__ inline int64_t entry_count(const BlendshapeParams<float>& p, int64_t j) {
  if (!p.block_ptr) return p.K;
  const int64_t lo = entry_begin(p, j);
  return min(max(int64_t(p.block_ptr[j + 1]), lo), p.nnzb) - lo;
}

__device__ inline Entry entry_at(const BlendshapeParams<float>& p, int64_t j, int64_t t) {
  if (!p.block_ptr) return {t, p.deltas + (t * p.V + j * BS) * 3};
  const int64_t e = entry_begin(p, j) + t;
  return {int64_t(p.block_shape[e]), p.deltas + e * BS3};
}

__device__ inline void rotate_about(const float* R, const float* c, float* x) {
  const float a = x[0] - c[0], b = x[1] - c[1], d = x[2] - c[2];
  x[0] = R[0] * a + R[1] * b + R[2] * d + c[0];
  x[1] = R[3] * a + R[4] * b + R[5] * d + c[1];
  x[2] = R[6] * a + R[7] * b + R[8] * d + c[2];
}

__device__ inline void rotate_t(const float* R, const float* x, float* y) {
  y[0] = R[0] * x[0] + R[3] * x[1] + R[6] * x[2];
  y[1] = R[1] * x[0] + R[4] * x[1] + R[7] * x[2];
  y[2] = R[2] * x[0] + R[5] * x[1] + R[8] * x[2];
}

// out[b, block j] = neutral + sum_k w[b, k] deltas[k]  (then the rigid transforms when RIGID).
template <bool RIGID>
__global__ void forward_kernel(BlendshapeParams<float> p, RigidParams<float> r, float* __restrict__ out) {
  __shared__ float tile[kRows][BS3];
  const int64_t j = blockIdx.x;
  const int i = threadIdx.x, row = threadIdx.y;
  const int nv = block_nv(p.V, j);
  const int n = 3 * nv;
  const int64_t ne = entry_count(p, j);
  for (int64_t b0 = int64_t(blockIdx.y) * kRows; b0 < p.B; b0 += int64_t(gridDim.y) * kRows) {
    const int64_t b = b0 + row;
    float acc = 0.f;
    if (b < p.B && i < n) {
      acc = p.neutral[j * BS3 + i];
      const float* w = p.weights + b * p.K;
      for (int64_t t = 0; t < ne; ++t) {
        const Entry en = entry_at(p, j, t);
        if (en.k >= 0 && en.k < p.K) acc = fmaf(w[en.k], en.d[i], acc);
      }
    }
    if constexpr (!RIGID) {
      if (b < p.B && i < n) out[(b * p.V + j * BS) * 3 + i] = acc;
    } else {
      tile[row][i] = acc;
      __syncthreads();
      if (b < p.B && i < nv) {
        const float* R = r.rotations + b * r.G * 9;
        const int32_t g = r.group[j * BS + i];
        float* x = &tile[row][3 * i];
        if (g > 0 && g < r.G) rotate_about(R + g * 9, r.pivots + g * 3, x);
        rotate_about(R, r.pivots, x);
      }
      __syncthreads();
      if (b < p.B && i < n) out[(b * p.V + j * BS) * 3 + i] = tile[row][i];
      __syncthreads();
    }
  }
}

// grad_neutral[v] = sum_b grad_out[b, v]
__global__ void grad_neutral_kernel(int64_t B, int64_t n, const float* __restrict__ grad_out,
                                    float* __restrict__ grad_neutral) {
  for (int64_t x = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; x < n; x += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int64_t b = 0; b < B; ++b) s += grad_out[b * n + x];
    grad_neutral[x] = s;
  }
}

// grad_deltas[entry, i] = sum_b w[b, k] grad_out[b, block j, i]: one CTA per (block, entry).
__global__ void grad_deltas_kernel(BlendshapeParams<float> p, const float* __restrict__ grad_out,
                                   float* __restrict__ grad_deltas) {
  const int64_t j = blockIdx.x;
  const int i = threadIdx.x;
  const int n = 3 * block_nv(p.V, j);
  const int64_t ne = entry_count(p, j);
  for (int64_t t = blockIdx.y; t < ne; t += gridDim.y) {
    const Entry en = entry_at(p, j, t);
    const int len = p.block_ptr ? BS3 : n;  // sparse entries are padded to full blocks
    if (i >= len) continue;
    float s = 0.f;
    if (i < n && en.k >= 0 && en.k < p.K)
      for (int64_t b = 0; b < p.B; ++b) s = fmaf(p.weights[b * p.K + en.k], grad_out[(b * p.V + j * BS) * 3 + i], s);
    grad_deltas[(en.d - p.deltas) + i] = s;
  }
}

// grad_weights[b, k] += dot(grad_out[b, block j], deltas[entry]): reduced over the 96 threads of
// a row in shared memory, one atomic per (row, entry). Needs grad_weights zeroed.
__global__ void grad_weights_kernel(BlendshapeParams<float> p, const float* __restrict__ grad_out,
                                    float* __restrict__ grad_weights) {
  __shared__ float red[kRows][BS3];
  const int64_t j = blockIdx.x;
  const int i = threadIdx.x, row = threadIdx.y;
  const int n = 3 * block_nv(p.V, j);
  const int64_t ne = entry_count(p, j);
  for (int64_t b0 = int64_t(blockIdx.y) * kRows; b0 < p.B; b0 += int64_t(gridDim.y) * kRows) {
    const int64_t b = b0 + row;
    const float g = (b < p.B && i < n) ? grad_out[(b * p.V + j * BS) * 3 + i] : 0.f;
    for (int64_t t = 0; t < ne; ++t) {
      const Entry en = entry_at(p, j, t);
      red[row][i] = i < n ? g * en.d[i] : 0.f;
      __syncthreads();
      // 96 = 64 + 32: fold the top 32 in, then a power-of-two tree over 64.
      if (i < 32) red[row][i] += red[row][i + 64];
      __syncthreads();
      for (int s = 32; s > 0; s >>= 1) {
        if (i < s) red[row][i] += red[row][i + s];
        __syncthreads();
      }
      if (i == 0 && b < p.B && en.k >= 0 && en.k < p.K) atomicAdd(grad_weights + b * p.K + en.k, red[row][0]);
      __syncthreads();
    }
  }
}

// Rigid backward per vertex (see csrc/cpu/blendshape.cpp for the algebra); grad_rotations summed
// in shared memory per CTA, then one atomic per value. Needs grad_rotations zeroed.
__global__ void rigid_backward_kernel(int64_t B, int64_t V, RigidParams<float> r, const float* __restrict__ out,
                                      const float* __restrict__ grad_out, float* __restrict__ grad_points,
                                      float* __restrict__ grad_rotations) {
  __shared__ float sg[kMaxGroups * 9];
  const bool shared_sum = r.G <= kMaxGroups;
  const int64_t b = blockIdx.y;
  for (int x = threadIdx.x; x < kMaxGroups * 9; x += blockDim.x) sg[x] = 0.f;
  __syncthreads();
  const int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (v < V) {
    const float* R = r.rotations + b * r.G * 9;
    const int32_t g = r.group[v];
    const float* o = out + (b * V + v) * 3;
    const float* go = grad_out + (b * V + v) * 3;
    float xo[3] = {o[0] - r.pivots[0], o[1] - r.pivots[1], o[2] - r.pivots[2]};
    float q[3], gq[3];
    rotate_t(R, xo, q);
    float* G0 = shared_sum ? sg : grad_rotations + b * r.G * 9;
    for (int a = 0; a < 3; ++a)
      for (int e = 0; e < 3; ++e) atomicAdd(G0 + a * 3 + e, go[a] * q[e]);
    rotate_t(R, go, gq);
    float* gp = grad_points + (b * V + v) * 3;
    if (g > 0 && g < r.G) {
      const float* Rg = R + g * 9;
      const float* cg = r.pivots + g * 3;
      float y[3] = {q[0] + r.pivots[0] - cg[0], q[1] + r.pivots[1] - cg[1], q[2] + r.pivots[2] - cg[2]};
      float pc[3];
      rotate_t(Rg, y, pc);
      float* Gg = shared_sum ? sg + g * 9 : grad_rotations + (b * r.G + g) * 9;
      for (int a = 0; a < 3; ++a)
        for (int e = 0; e < 3; ++e) atomicAdd(Gg + a * 3 + e, gq[a] * pc[e]);
      rotate_t(Rg, gq, gp);
    } else {
      gp[0] = gq[0], gp[1] = gq[1], gp[2] = gq[2];
    }
  }
  __syncthreads();
  if (shared_sum)
    for (int x = threadIdx.x; x < r.G * 9; x += blockDim.x)
      if (sg[x] != 0.f) atomicAdd(grad_rotations + b * r.G * 9 + x, sg[x]);
}

template <bool RIGID>
void launch_forward(const BlendshapeParams<float>& p, const RigidParams<float>& r, float* out, Stream stream) {
  if (p.B == 0 || p.V == 0) return;
  const char* fn = RIGID ? "deform_forward" : "blendshape_forward";
  const dim3 grid(blocks_for(p.V, BS, fn), grid_rows(p.B));
  forward_kernel<RIGID><<<grid, dim3(BS3, kRows), 0, (cudaStream_t)stream>>>(p, r, out);
  check_launch(fn, "forward");
}

}  // namespace

void blendshape_forward_cuda(const BlendshapeParams<float>& p, float* out, Stream stream) {
  launch_forward<false>(p, RigidParams<float>{}, out, stream);
}

void deform_forward_cuda(const BlendshapeParams<float>& p, const RigidParams<float>& r, float* out,
                         Stream stream) {
  launch_forward<true>(p, r, out, stream);
}

void blendshape_backward_cuda(const BlendshapeParams<float>& p, const float* grad_out, float* grad_weights,
                              float* grad_neutral, float* grad_deltas, Stream stream) {
  const char* fn = "blendshape_backward";
  auto s = (cudaStream_t)stream;
  const int64_t nblk = num_blocks(p.V);
  if (grad_weights) {
    check(cudaMemsetAsync(grad_weights, 0, sizeof(float) * p.B * p.K, s), fn, "memset");
    if (p.B > 0 && nblk > 0) {
      grad_weights_kernel<<<dim3(blocks_for(p.V, BS, fn), grid_rows(p.B)), dim3(BS3, kRows), 0, s>>>(p, grad_out,
                                                                                                grad_weights);
      check_launch(fn, "grad_weights");
    }
  }
  if (grad_neutral && p.V > 0) {
    const int64_t n = p.V * 3;
    grad_neutral_kernel<<<unsigned(std::min<int64_t>((n + 255) / 256, 65535)), 256, 0, s>>>(p.B, n, grad_out,
                                                                                          grad_neutral);
    check_launch(fn, "grad_neutral");
  }
  if (grad_deltas && nblk > 0) {
    const int64_t max_entries = std::min<int64_t>(p.K, cuda::kMaxGridYZ);  // a block holds at most one entry per shape
    if (max_entries > 0) {
      grad_deltas_kernel<<<dim3(blocks_for(p.V, BS, fn), unsigned(max_entries)), BS3, 0, s>>>(p, grad_out,
                                                                                            grad_deltas);
      check_launch(fn, "grad_deltas");
    }
  }
}

void rigid_backward_cuda(const BlendshapeParams<float>& p, const RigidParams<float>& r, const float* out,
                         const float* grad_out, float* grad_points, float* grad_rotations, Stream stream) {
  const char* fn = "rigid_backward";
  auto s = (cudaStream_t)stream;
  check(cudaMemsetAsync(grad_rotations, 0, sizeof(float) * p.B * r.G * 9, s), fn, "memset");
  if (p.B == 0 || p.V == 0) return;
  for (int64_t b0 = 0; b0 < p.B; b0 += cuda::kMaxGridYZ) {  // grid.y limit
    const int64_t nb = std::min<int64_t>(cuda::kMaxGridYZ, p.B - b0);
    rigid_backward_kernel<<<dim3(blocks_for(p.V, 256, fn), unsigned(nb)), 256, 0, s>>>(
        nb, p.V, RigidParams<float>{r.G, r.rotations + b0 * r.G * 9, r.pivots, r.group}, out + b0 * p.V * 3,
        grad_out + b0 * p.V * 3, grad_points + b0 * p.V * 3, grad_rotations + b0 * r.G * 9);
    check_launch(fn, "rigid_backward");
  }
}

}  // namespace facecore
