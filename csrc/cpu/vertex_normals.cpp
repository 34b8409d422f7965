// CPU vertex normals. Race-free and deterministic: per-face quantities are computed in parallel over
// faces, then gathered per vertex through a vertex -> (face, corner) adjacency built by counting sort.
#include "facecore/vertex_normals.h"

#include <cmath>
#include <string>
#include <vector>

#include "parallel.h"

namespace facecore {

namespace {

struct Adjacency {
  std::vector<int64_t> ptr;    // [V + 1]
  std::vector<int32_t> entry;  // [3F] face * 3 + corner
};

Adjacency build_adjacency(const int32_t* faces, int64_t F, int64_t V) {
  Adjacency a;
  a.ptr.assign(V + 1, 0);
  for (int64_t i = 0; i < 3 * F; ++i) a.ptr[faces[i] + 1]++;
  for (int64_t v = 0; v < V; ++v) a.ptr[v + 1] += a.ptr[v];
  a.entry.resize(3 * F);
  std::vector<int64_t> fill(a.ptr.begin(), a.ptr.end() - 1);
  for (int64_t i = 0; i < 3 * F; ++i) a.entry[fill[faces[i]]++] = int32_t(i);
  return a;
}

template <class T>
inline void sub(const T* a, const T* b, T* out) {
  out[0] = a[0] - b[0], out[1] = a[1] - b[1], out[2] = a[2] - b[2];
}

template <class T>
inline void cross(const T* a, const T* b, T* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

// Unnormalised face normals cross(p1 - p0, p2 - p0) for every (b, f): [B, F, 3].
template <class T>
void face_normals(const VertexNormalsParams<T>& p, std::vector<T>& fn, int nthreads) {
  fn.resize(size_t(p.B) * p.F * 3);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t f = 0; f < p.F; ++f) {
      const T* x = p.verts + b * p.V * 3;
      const int32_t* t = p.faces + f * 3;
      T e1[3], e2[3];
      sub(x + 3 * t[1], x + 3 * t[0], e1);
      sub(x + 3 * t[2], x + 3 * t[0], e2);
      cross(e1, e2, fn.data() + (b * p.F + f) * 3);
    }
}

// m[b, v] = sum of the face normals around v.
template <class T>
inline void gather_vertex(const std::vector<T>& fn, const Adjacency& a, int64_t F, int64_t b, int64_t v, T* m) {
  m[0] = m[1] = m[2] = T(0);
  for (int64_t i = a.ptr[v]; i < a.ptr[v + 1]; ++i) {
    const T* n = fn.data() + (b * F + a.entry[i] / 3) * 3;
    m[0] += n[0], m[1] += n[1], m[2] += n[2];
  }
}

}  // namespace

void validate_faces(const int32_t* faces, int64_t F, int64_t V) {
  for (int64_t i = 0; i < 3 * F; ++i)
    if (faces[i] < 0 || faces[i] >= V)
      throw Error("vertex_normals: faces[" + std::to_string(i / 3) + "] has vertex index " +
                  std::to_string(faces[i]) + " outside [0, V=" + std::to_string(V) + ")");
}

template <class T>
void vertex_normals_forward(const VertexNormalsParams<T>& p, T* normals, const CpuOptions& opt) {
  validate_faces(p.faces, p.F, p.V);
  const int nthreads = cpu::resolve_threads(opt);
  const Adjacency adj = build_adjacency(p.faces, p.F, p.V);
  std::vector<T> fn;
  face_normals(p, fn, nthreads);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t v = 0; v < p.V; ++v) {
      T m[3];
      gather_vertex(fn, adj, p.F, b, v, m);
      const T len = std::sqrt(m[0] * m[0] + m[1] * m[1] + m[2] * m[2]);
      const T inv = len > p.eps ? T(1) / len : T(0);
      T* n = normals + (b * p.V + v) * 3;
      n[0] = m[0] * inv, n[1] = m[1] * inv, n[2] = m[2] * inv;
    }
}

template <class T>
void vertex_normals_backward(const VertexNormalsParams<T>& p, const T* grad_normals, T* grad_verts,
                             const CpuOptions& opt) {
  validate_faces(p.faces, p.F, p.V);
  const int nthreads = cpu::resolve_threads(opt);
  const Adjacency adj = build_adjacency(p.faces, p.F, p.V);
  std::vector<T> fn;
  face_normals(p, fn, nthreads);
  // 1. gradient with respect to m[v]: (g - n (n . g)) / |m|
  std::vector<T> gm(size_t(p.B) * p.V * 3);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t v = 0; v < p.V; ++v) {
      T m[3];
      gather_vertex(fn, adj, p.F, b, v, m);
      const T len = std::sqrt(m[0] * m[0] + m[1] * m[1] + m[2] * m[2]);
      const T* g = grad_normals + (b * p.V + v) * 3;
      T* o = gm.data() + (b * p.V + v) * 3;
      if (len <= p.eps) {
        o[0] = o[1] = o[2] = T(0);
        continue;
      }
      const T inv = T(1) / len;
      const T n[3] = {m[0] * inv, m[1] * inv, m[2] * inv};
      const T ng = n[0] * g[0] + n[1] * g[1] + n[2] * g[2];
      for (int c = 0; c < 3; ++c) o[c] = (g[c] - n[c] * ng) * inv;
    }
  // 2. per face and corner: gradient of cross(p1 - p0, p2 - p0) with respect to each corner,
  //    given gf = sum of gm over the face's corners. d/dp1 = e2 x gf, d/dp2 = gf x e1, d/dp0 = -both.
  std::vector<T> corner(size_t(p.B) * p.F * 9);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t f = 0; f < p.F; ++f) {
      const T* x = p.verts + b * p.V * 3;
      const int32_t* t = p.faces + f * 3;
      T e1[3], e2[3], gf[3], d1[3], d2[3];
      sub(x + 3 * t[1], x + 3 * t[0], e1);
      sub(x + 3 * t[2], x + 3 * t[0], e2);
      for (int c = 0; c < 3; ++c)
        gf[c] = gm[(b * p.V + t[0]) * 3 + c] + gm[(b * p.V + t[1]) * 3 + c] + gm[(b * p.V + t[2]) * 3 + c];
      cross(e2, gf, d1);
      cross(gf, e1, d2);
      T* o = corner.data() + (b * p.F + f) * 9;
      for (int c = 0; c < 3; ++c) o[c] = -(d1[c] + d2[c]), o[3 + c] = d1[c], o[6 + c] = d2[c];
    }
  // 3. gather corners per vertex.
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t v = 0; v < p.V; ++v) {
      T s[3] = {0, 0, 0};
      for (int64_t i = adj.ptr[v]; i < adj.ptr[v + 1]; ++i) {
        const T* c = corner.data() + (b * p.F) * 9 + int64_t(adj.entry[i]) * 3;
        s[0] += c[0], s[1] += c[1], s[2] += c[2];
      }
      T* o = grad_verts + (b * p.V + v) * 3;
      o[0] = s[0], o[1] = s[1], o[2] = s[2];
    }
}

template void vertex_normals_forward<float>(const VertexNormalsParams<float>&, float*, const CpuOptions&);
template void vertex_normals_forward<double>(const VertexNormalsParams<double>&, double*, const CpuOptions&);
template void vertex_normals_backward<float>(const VertexNormalsParams<float>&, const float*, float*,
                                             const CpuOptions&);
template void vertex_normals_backward<double>(const VertexNormalsParams<double>&, const double*, double*,
                                              const CpuOptions&);

}  // namespace facecore
