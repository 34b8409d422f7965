// Area-weighted vertex normals, forward and backward.
//   m[v] = sum over faces f touching v of cross(p1 - p0, p2 - p0)   (twice the area times the normal)
//   n[v] = m[v] / |m[v]|, and n[v] = 0 (with zero gradient) when |m[v]| <= eps (no area around v).
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

template <class T>
struct VertexNormalsParams {
  int64_t B = 0, V = 0, F = 0;
  const T* verts = nullptr;        // [B, V, 3]
  const int32_t* faces = nullptr;  // [F, 3], every index in [0, V)
  T eps = T(1e-12);
};

// Throws facecore::Error naming the first face with an index outside [0, V).
void validate_faces(const int32_t* faces, int64_t F, int64_t V);

template <class T>
void vertex_normals_forward(const VertexNormalsParams<T>& p, T* normals /* [B, V, 3] */, const CpuOptions& opt);

template <class T>
void vertex_normals_backward(const VertexNormalsParams<T>& p, const T* grad_normals /* [B, V, 3] */,
                             T* grad_verts /* [B, V, 3] */, const CpuOptions& opt);

#ifdef FACECORE_WITH_CUDA
// Faces must have been validated on the host (validate_faces); kernels skip bad indices anyway.
void vertex_normals_forward_cuda(const VertexNormalsParams<float>& p, float* normals, Stream stream);
void vertex_normals_backward_cuda(const VertexNormalsParams<float>& p, const float* grad_normals,
                                  float* grad_verts, Stream stream);
#endif

}  // namespace facecore
