// Analytic silhouette antialiasing (after Laine et al. 2020, "Modular Primitives for High-Performance
// Differentiable Rendering"), forward and backward.
//
// For every pair of horizontally or vertically adjacent pixels (A, B) showing different triangles, the
// nearer one F (z/w, ties to the lower id; background is farthest) is examined. Walking from F's pixel
// centre towards the other one, the segment leaves F through its first-crossed edge; an interior edge
// (shared with a same-facing neighbour) hands the walk to that neighbour (up to 4 triangles, so thin
// foreshortened triangles along a contour are crossed). At the first silhouette edge (no neighbour, more
// than one, or a neighbour facing the other way on screen) of triangle X, crossed at fraction
//   e = n_k(F's pixel) / (n_k(F's pixel) - n_k(other pixel))      (n_k: X's homogeneous edge function)
// the pair is blended as by a box filter across the edge:
//   e >  1/2: the other pixel  += (e - 1/2) (color_F - color_other)
//   e <= 1/2: F's pixel        += (1/2 - e) (color_other - color_F).
// e depends on the clip-space corners of that edge, which is where the visibility gradient to pos comes
// from; rast is a constant. Spec: python/facecore/reference/rasterize.py (antialias).
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

template <class T>
struct AntialiasParams {
  int64_t B = 0, V = 0, T_ = 0, H = 0, W = 0, C = 0;
  const T* color = nullptr;      // [B, H, W, C]
  const T* rast = nullptr;       // [B, H, W, 4]
  const T* pos = nullptr;        // [B, V, 4]
  const int32_t* tri = nullptr;  // [T, 3], every index in [0, V)
};

template <class T>
void antialias_forward(const AntialiasParams<T>& p, T* out /* [B, H, W, C] */, const CpuOptions& opt);

template <class T>
void antialias_backward(const AntialiasParams<T>& p, const T* grad_out /* [B, H, W, C] */,
                        T* grad_color /* [B, H, W, C] */, T* grad_pos /* [B, V, 4] */, const CpuOptions& opt);

#ifdef FACECORE_WITH_CUDA
// Defined in kernels/cuda/antialias.cu.
void antialias_forward_cuda(const AntialiasParams<float>& p, float* out, Stream stream);
void antialias_backward_cuda(const AntialiasParams<float>& p, const float* grad_out, float* grad_color,
                             float* grad_pos, Stream stream);
#endif

}  // namespace facecore
