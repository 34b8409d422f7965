// Blendshape evaluation, forward and backward:  out[b, v] = neutral[v] + sum_k weights[b, k] * deltas[k, v]
//
// Deltas come dense ([K, V, 3]) or block-sparse. The block-sparse layout cuts the vertices into
// blocks of kBlendshapeBlock consecutive vertices; vertex block j lists, in entries
// block_ptr[j] .. block_ptr[j+1], the shapes that move at least one of its vertices, each with
// the deltas of the whole block (zeros for the vertices it does not move). That keeps sparsity
// exact (lossless) while every stored entry is a contiguous run of 3 * kBlendshapeBlock values:
// vectorisable on the CPU, coalesced on the GPU.
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

constexpr int kBlendshapeBlock = 32;  // vertices per sparse block (96 contiguous values)

template <class T>
struct BlendshapeParams {
  int64_t B = 0, K = 0, V = 0;
  const T* weights = nullptr;            // [B, K]
  const T* neutral = nullptr;            // [V, 3]
  const T* deltas = nullptr;             // dense [K, V, 3]  or  sparse values [nnzb, kBlendshapeBlock, 3]
  const int32_t* block_ptr = nullptr;    // [ceil(V / kBlendshapeBlock) + 1]; null means dense deltas
  const int32_t* block_shape = nullptr;  // [nnzb] shape index k of each stored block
  int64_t nnzb = 0;
};

// Optional per-vertex rigid transforms applied after the blendshapes (the pose part of `deform`):
//   q = R[b, g(v)] (p - pivot[g(v)]) + pivot[g(v)]   for vertices in group g(v) > 0 (e.g. eyeballs)
//   out = R[b, 0] (q - pivot[0]) + pivot[0]          for every vertex (the head about the neck)
template <class T>
struct RigidParams {
  int64_t G = 0;                  // number of groups, including group 0 (the head)
  const T* rotations = nullptr;   // [B, G, 3, 3] row-major rotation matrices
  const T* pivots = nullptr;      // [G, 3]
  const int32_t* group = nullptr; // [V] group of each vertex in [0, G); 0 = head only
};

// Throws facecore::Error when the sparse structure is inconsistent (indices out of range).
template <class T>
void validate_blendshape(const BlendshapeParams<T>& p);

// Throws facecore::Error (prefixed with fn) naming the first vertex whose group is outside [0, G).
// deform_forward and rigid_backward call it before any work.
template <class T>
void validate_rigid(const RigidParams<T>& r, int64_t V, const char* fn);

template <class T>
void blendshape_forward(const BlendshapeParams<T>& p, T* out /* [B, V, 3] */, const CpuOptions& opt);

// Any gradient pointer may be null (not needed). grad_deltas has the layout of p.deltas.
template <class T>
void blendshape_backward(const BlendshapeParams<T>& p, const T* grad_out /* [B, V, 3] */,
                         T* grad_weights /* [B, K] */, T* grad_neutral /* [V, 3] */,
                         T* grad_deltas /* like deltas */, const CpuOptions& opt);

// deform = blendshapes then rigid transforms, fused in one pass over the vertices.
template <class T>
void deform_forward(const BlendshapeParams<T>& p, const RigidParams<T>& r, T* out /* [B, V, 3] */,
                    const CpuOptions& opt);

// Backward of the rigid part, from the forward output: grad_points [B, V, 3] is the gradient with
// respect to the blendshape result p, grad_rotations [B, G, 3, 3] the gradient of each R.
// Feed grad_points to blendshape_backward for the rest.
template <class T>
void rigid_backward(const BlendshapeParams<T>& p, const RigidParams<T>& r, const T* out /* [B, V, 3] */,
                    const T* grad_out /* [B, V, 3] */, T* grad_points /* [B, V, 3] */,
                    T* grad_rotations /* [B, G, 3, 3] */, const CpuOptions& opt);

#ifdef FACECORE_WITH_CUDA
void blendshape_forward_cuda(const BlendshapeParams<float>& p, float* out, Stream stream);
void blendshape_backward_cuda(const BlendshapeParams<float>& p, const float* grad_out,
                              float* grad_weights, float* grad_neutral, float* grad_deltas,
                              Stream stream);
void deform_forward_cuda(const BlendshapeParams<float>& p, const RigidParams<float>& r, float* out,
                         Stream stream);
void rigid_backward_cuda(const BlendshapeParams<float>& p, const RigidParams<float>& r,
                         const float* out, const float* grad_out, float* grad_points,
                         float* grad_rotations, Stream stream);
#endif

}  // namespace facecore
