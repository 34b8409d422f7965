// Triangle rasterization with perspective-correct barycentrics, forward and backward.
//
//   rast[b, y, x] = (u, v, z/w, triangle_id + 1), all zeros where no triangle covers the pixel centre.
//
// Conventions: pos is clip space [B, V, 4]; pixel (x, y) has its centre at NDC
//   px = 2 (x + 0.5) / W - 1,  py = 1 - 2 (y + 0.5) / H        (row 0 is the top row).
// Coverage: triangles leaving z >= -w, w >= kWEps or the guard band |x|, |y| <= G w (G = 2^21 / max(H, W))
// are clipped in homogeneous space and fanned into sub-triangles that keep the original id; corners are
// snapped to 1/256 pixel, integer edge functions with a top-left fill rule decide coverage exactly.
// Barycentrics come from the original triangle in homogeneous form (no division by w per vertex):
//   P_i = (x_i, y_i, w_i),  c_i(px, py) = (P_j x P_k) . (px, py, 1)  for (i, j, k) cyclic,
//   b_i = c_i / sum(c),  u = b_0, v = b_1,  z/w = sum(b_i z_i) / sum(b_i w_i).
// The nearest z/w wins; exact ties go to the lower triangle id. Spec: python/facecore/reference/rasterize.py.
#pragma once

#include <cstdint>

#include "facecore/common.h"

#if defined(__CUDACC__)
#define FACECORE_HD __host__ __device__ __forceinline__
#else
#define FACECORE_HD inline
#endif

namespace facecore {

namespace raster {
constexpr int kSubpixelBits = 8;  // corners snapped to 1/256 pixel
constexpr int64_t kSubpixel = int64_t(1) << kSubpixelBits;
constexpr double kWEps = 1e-6;   // clip plane w >= kWEps
constexpr double kGuard = 2097152.0;  // 2^21: guard band |x/w| <= kGuard / max(H, W)

// Homogeneous edge function c_i = r_j x r_k with r = (x - px w, y - py w); linear in (px, py).
template <class T>
FACECORE_HD T edge(const T* pj, const T* pk, T px, T py) {  // pj, pk: clip-space (x, y, z, w)
  const T rjx = pj[0] - px * pj[3], rjy = pj[1] - py * pj[3];
  const T rkx = pk[0] - px * pk[3], rky = pk[1] - py * pk[3];
  return rjx * rky - rjy * rkx;
}

// Backward of edge(): accumulate g * dc/d(pj, pk) into gj, gk (each [4]: x, y, z, w).
template <class T>
FACECORE_HD void edge_backward(const T* pj, const T* pk, T px, T py, T g, T* gj, T* gk) {
  const T rjx = pj[0] - px * pj[3], rjy = pj[1] - py * pj[3];
  const T rkx = pk[0] - px * pk[3], rky = pk[1] - py * pk[3];
  const T grjx = g * rky, grjy = -g * rkx, grkx = -g * rjy, grky = g * rjx;
  gj[0] += grjx, gj[1] += grjy, gj[3] -= px * grjx + py * grjy;
  gk[0] += grkx, gk[1] += grky, gk[3] -= px * grkx + py * grky;
}

// Gradient of (u, v, z/w) at NDC (px, py) of triangle (p0, p1, p2) with upstream (gu, gv, gz);
// accumulates into g[3][4]. Returns false (and adds nothing) when the triangle is degenerate there.
template <class T>
FACECORE_HD bool bary_backward(const T* const p[3], T px, T py, T gu, T gv, T gz, T g[3][4]) {
  T c[3];
  for (int i = 0; i < 3; ++i) c[i] = edge(p[(i + 1) % 3], p[(i + 2) % 3], px, py);
  const T S = c[0] + c[1] + c[2];
  if (S == T(0)) return false;
  const T b[3] = {c[0] / S, c[1] / S, c[2] / S};
  const T Wd = b[0] * p[0][3] + b[1] * p[1][3] + b[2] * p[2][3];
  const T Zn = b[0] * p[0][2] + b[1] * p[1][2] + b[2] * p[2][2];
  T gb[3] = {gu, gv, T(0)};
  if (gz != T(0) && Wd != T(0)) {
    const T zw = Zn / Wd;
    for (int i = 0; i < 3; ++i) {
      gb[i] += gz * (p[i][2] - zw * p[i][3]) / Wd;
      g[i][2] += gz * b[i] / Wd;
      g[i][3] -= gz * zw * b[i] / Wd;
    }
  }
  const T gbb = gb[0] * b[0] + gb[1] * b[1] + gb[2] * b[2];
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    edge_backward(p[j], p[k], px, py, (gb[i] - gbb) / S, g[j], g[k]);
  }
  return true;
}
}  // namespace raster

template <class T>
struct RasterizeParams {
  int64_t B = 0, V = 0, T_ = 0, H = 0, W = 0;
  const T* pos = nullptr;        // [B, V, 4] clip space
  const int32_t* tri = nullptr;  // [T, 3], every index in [0, V)
  bool cull_backfaces = false;   // drop triangles that are clockwise in NDC (y up)
};

// Throws facecore::Error naming the first triangle with an index outside [0, V).
void validate_triangles(const char* fn, const int32_t* tri, int64_t T, int64_t V);

// rast [B, H, W, 4]; db [B, H, W, 4] = (du/dX, du/dY, dv/dX, dv/dY) in pixels, or nullptr.
template <class T>
void rasterize_forward(const RasterizeParams<T>& p, T* rast, T* db, const CpuOptions& opt);

// grad_rast [B, H, W, 4] (gradients of u, v, z/w; the id channel's is ignored) -> grad_pos [B, V, 4].
template <class T>
void rasterize_backward(const RasterizeParams<T>& p, const T* rast, const T* grad_rast, T* grad_pos,
                        const CpuOptions& opt);

#ifdef FACECORE_WITH_CUDA
// Triangles must have been validated on the host; kernels skip bad indices anyway. Defined in
// kernels/cuda/rasterize.cu.
void rasterize_forward_cuda(const RasterizeParams<float>& p, float* rast, float* db, Stream stream);
void rasterize_backward_cuda(const RasterizeParams<float>& p, const float* rast, const float* grad_rast,
                             float* grad_pos, Stream stream);
#endif

}  // namespace facecore
