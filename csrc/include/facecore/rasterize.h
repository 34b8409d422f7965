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
// The arithmetic shared by the CPU and CUDA kernels (and why they agree bit for bit) is in raster_common.h.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "facecore/common.h"
#include "facecore/raster_common.h"

namespace facecore {

// rast stores triangle_id + 1 in a channel of the output type: in float32 the ids stay exact integers up to
// 2^24 (and the kernels compare them against T + 0.5), so a float32 mesh may have at most 2^24 - 1
// triangles; the kernels index triangles with int32 in float64.
template <class T>
constexpr int64_t kMaxTriangles = std::is_same_v<T, float> ? (int64_t(1) << 24) - 1 : int64_t(INT32_MAX);

// Throws facecore::Error when T exceeds kMaxTriangles<Real>.
template <class Real>
void check_triangle_count(const char* fn, int64_t T) {
  if (T > kMaxTriangles<Real>)
    throw Error(std::string(fn) + ": tri has " + std::to_string(T) + " triangles, more than the " +
                std::to_string(kMaxTriangles<Real>) + " that rast can identify in " +
                (std::is_same_v<Real, float> ? "float32 (2^24 - 1: ids are stored as floats)" : "float64"));
}

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
// Throws facecore::Error for an index outside [0, V) or more than kMaxTriangles<T> triangles.
template <class T>
void rasterize_forward(const RasterizeParams<T>& p, T* rast, T* db, const CpuOptions& opt);

// grad_rast [B, H, W, 4] (gradients of u, v, z/w; the id channel's is ignored) -> grad_pos [B, V, 4].
template <class T>
void rasterize_backward(const RasterizeParams<T>& p, const T* rast, const T* grad_rast, T* grad_pos,
                        const CpuOptions& opt);

#ifdef FACECORE_WITH_CUDA
// Indices must have been checked by the caller (facecore.ops checks them on the device); the kernels skip a
// triangle with a bad index rather than read out of bounds. The triangle count is checked here (Error);
// CUDA failures throw CudaError. Defined in kernels/cuda/rasterize.cu.
void rasterize_forward_cuda(const RasterizeParams<float>& p, float* rast, float* db, Stream stream);
void rasterize_backward_cuda(const RasterizeParams<float>& p, const float* rast, const float* grad_rast,
                             float* grad_pos, Stream stream);
#endif

}  // namespace facecore
