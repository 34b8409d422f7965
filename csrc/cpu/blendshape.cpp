// CPU blendshape / deform kernels. Parallel over vertex blocks (and batch chunks in the forward),
// so each thread writes disjoint output and reads a block's deltas while they are hot in cache.
#include "facecore/blendshape.h"

#include <algorithm>
#include <string>
#include <vector>

#include "parallel.h"

namespace facecore {

namespace {

constexpr int BS = kBlendshapeBlock;
constexpr int BS3 = 3 * kBlendshapeBlock;

inline int64_t num_blocks(int64_t V) { return (V + BS - 1) / BS; }

// Calls f(k, values) for every stored (shape, block) entry of vertex block j, where `values`
// points at 3 * kBlendshapeBlock (sparse) or 3 * nv (dense, last block) contiguous deltas.
template <class T, class F>
inline void for_each_entry(const BlendshapeParams<T>& p, int64_t j, F&& f) {
  if (p.block_ptr == nullptr) {
    for (int64_t k = 0; k < p.K; ++k) f(k, p.deltas + (k * p.V + j * BS) * 3);
  } else {
    for (int64_t e = p.block_ptr[j]; e < p.block_ptr[j + 1]; ++e)
      f(int64_t(p.block_shape[e]), p.deltas + e * BS3);
  }
}

inline int64_t entries_in_block(const int32_t* block_ptr, int64_t K, int64_t j) {
  return block_ptr ? block_ptr[j + 1] - block_ptr[j] : K;
}

// acc[0:n] += w * d[0:n]; n is 96 for every full block so the loop gets a constant trip count.
template <class T>
inline void axpy(T* __restrict acc, T w, const T* __restrict d, int n) {
  if (n == BS3) {
#pragma omp simd
    for (int i = 0; i < BS3; ++i) acc[i] += w * d[i];
  } else {
    for (int i = 0; i < n; ++i) acc[i] += w * d[i];
  }
}

// Blendshape sum for vertex block j of batch row b into acc[0 : 3 * nv].
template <class T>
inline void block_sum(const BlendshapeParams<T>& p, int64_t j, int64_t b, int nv, T* acc) {
  const int n = 3 * nv;
  std::copy(p.neutral + j * BS3, p.neutral + j * BS3 + n, acc);
  const T* w = p.weights + b * p.K;
  const int len = p.block_ptr ? BS3 : n;  // sparse entries are padded to full blocks
  // No zero-weight skip: 0 * NaN must stay NaN, as on every other backend (IEEE semantics).
  for_each_entry(p, j, [&](int64_t k, const T* d) { axpy(acc, w[k], d, std::min(len, n)); });
}

template <class T>
inline void rotate_about(const T* R, const T* c, T* x) {
  const T a = x[0] - c[0], b = x[1] - c[1], d = x[2] - c[2];
  x[0] = R[0] * a + R[1] * b + R[2] * d + c[0];
  x[1] = R[3] * a + R[4] * b + R[5] * d + c[1];
  x[2] = R[6] * a + R[7] * b + R[8] * d + c[2];
}

// y = R^T x
template <class T>
inline void rotate_t(const T* R, const T* x, T* y) {
  y[0] = R[0] * x[0] + R[3] * x[1] + R[6] * x[2];
  y[1] = R[1] * x[0] + R[4] * x[1] + R[7] * x[2];
  y[2] = R[2] * x[0] + R[5] * x[1] + R[8] * x[2];
}

// Rigid transforms of one vertex block for batch row b (acc holds its 3 * nv coordinates).
template <class T>
inline void apply_rigid(const RigidParams<T>& r, int64_t j, int64_t b, int nv, T* acc) {
  const T* R = r.rotations + b * r.G * 9;
  for (int i = 0; i < nv; ++i) {
    const int32_t g = r.group[j * BS + i];
    if (g > 0) rotate_about(R + g * 9, r.pivots + g * 3, acc + 3 * i);
    rotate_about(R, r.pivots, acc + 3 * i);
  }
}

// Forward of vertex block j for the batch rows [bt, bt + rows), rows <= ROWS: a register-blocked
// micro-kernel. For each strip of S values it keeps a ROWS x S tile of accumulators in registers and
// streams the block's entries through it (one delta load feeds ROWS multiply-adds). Entries with
// zero weights are not skipped, so non-finite deltas propagate (0 * NaN = NaN) as on every backend.
template <class T, int ROWS>
__attribute__((always_inline)) inline void forward_tile(const BlendshapeParams<T>& p, const RigidParams<T>* r, int64_t j, int64_t bt,
                         int rows, T* out) {
  constexpr int S = 96 / int(sizeof(T));  // 24 floats = 3 AVX2 registers per row
  const int nv = int(std::min<int64_t>(BS, p.V - j * BS));
  thread_local std::vector<const T*> dptr;
  thread_local std::vector<T> wt;  // [entry][ROWS]
  dptr.clear();
  wt.clear();
  for_each_entry(p, j, [&](int64_t k, const T* d) {
    T w[ROWS] = {};
    for (int q = 0; q < rows; ++q) w[q] = p.weights[(bt + q) * p.K + k];
    dptr.push_back(d);
    wt.insert(wt.end(), w, w + ROWS);
  });
  // Sparse entries are padded to full blocks but neutral is not: the last block's neutral is
  // copied into a zero-padded block so the strips below never read past the end of neutral.
  const T* nb = p.neutral + j * BS3;
  alignas(64) T ntail[BS3];
  if (nv < BS) {
    std::fill(std::copy(nb, nb + 3 * nv, ntail), ntail + BS3, T(0));
    nb = ntail;
  }
  const int64_t m = int64_t(dptr.size());
  alignas(64) T acc[ROWS][BS3];
  for (int s = 0; s < BS3; s += S) {
    T a[ROWS][S];
    for (int q = 0; q < ROWS; ++q)
      for (int i = 0; i < S; ++i) a[q][i] = nb[s + i];
    for (int64_t e = 0; e < m; ++e) {
      const T* d = dptr[e] + s;
      const T* w = wt.data() + e * ROWS;
      for (int q = 0; q < ROWS; ++q)
#pragma omp simd
        for (int i = 0; i < S; ++i) a[q][i] += w[q] * d[i];
    }
    for (int q = 0; q < ROWS; ++q) std::copy(a[q], a[q] + S, acc[q] + s);
  }
  for (int q = 0; q < rows; ++q) {
    if (r) apply_rigid(*r, j, bt + q, nv, acc[q]);
    std::copy(acc[q], acc[q] + 3 * nv, out + ((bt + q) * p.V + j * BS) * 3);
  }
}

// Forward of vertex block j for batch rows [b0, b1), in tiles of 4, 2 or 1 rows.
template <class T>
FACECORE_CPU_DISPATCH void forward_rows(const BlendshapeParams<T>& p, const RigidParams<T>* r, int64_t j,
                                        int64_t b0, int64_t b1, T* out) {
  const int nv = int(std::min<int64_t>(BS, p.V - j * BS));
  if ((!p.block_ptr && nv != BS) || b1 - b0 == 1) {
    // A single row (nothing to reuse a delta load for) or the partial last block of dense deltas:
    // stream the entries through one accumulator.
    alignas(64) T acc[BS3];
    for (int64_t b = b0; b < b1; ++b) {
      block_sum(p, j, b, nv, acc);
      if (r) apply_rigid(*r, j, b, nv, acc);
      std::copy(acc, acc + 3 * nv, out + (b * p.V + j * BS) * 3);
    }
    return;
  }
  int64_t b = b0;
  for (; b + 4 <= b1; b += 4) forward_tile<T, 4>(p, r, j, b, 4, out);
  if (b + 2 <= b1) forward_tile<T, 2>(p, r, j, b, 2, out), b += 2;
  if (b < b1) forward_tile<T, 2>(p, r, j, b, 1, out);
}

template <class T>
void forward_impl(const BlendshapeParams<T>& p, const RigidParams<T>* r, T* out, const CpuOptions& opt) {
  validate_blendshape(p);
  const int64_t nblk = num_blocks(p.V);
  const int64_t bchunk = 16;  // batch rows per work item: a block's deltas are reused from L1/L2
  const int64_t nbc = (p.B + bchunk - 1) / bchunk;
#pragma omp parallel for collapse(2) schedule(static) num_threads(cpu::resolve_threads(opt))
  for (int64_t j = 0; j < nblk; ++j)
    for (int64_t c = 0; c < nbc; ++c)
      forward_rows(p, r, j, c * bchunk, std::min(p.B, (c + 1) * bchunk), out);
}

}  // namespace

template <class T>
void validate_blendshape(const BlendshapeParams<T>& p) {
  if (p.B < 0 || p.K < 0 || p.V < 0) throw Error("blendshape: negative size");
  if (!p.block_ptr) return;
  const int64_t nblk = num_blocks(p.V);
  if (p.block_ptr[0] != 0 || p.block_ptr[nblk] != p.nnzb)
    throw Error("blendshape: block_ptr must start at 0 and end at the number of stored blocks (" +
                std::to_string(p.nnzb) + "), got " + std::to_string(p.block_ptr[0]) + " and " +
                std::to_string(p.block_ptr[nblk]));
  for (int64_t j = 0; j < nblk; ++j)
    if (p.block_ptr[j + 1] < p.block_ptr[j])
      throw Error("blendshape: block_ptr must be non-decreasing (at block " + std::to_string(j) + ")");
  for (int64_t e = 0; e < p.nnzb; ++e)
    if (p.block_shape[e] < 0 || p.block_shape[e] >= p.K)
      throw Error("blendshape: block_shape[" + std::to_string(e) + "] = " +
                  std::to_string(p.block_shape[e]) + " is outside [0, K=" + std::to_string(p.K) + ")");
}

template <class T>
void blendshape_forward(const BlendshapeParams<T>& p, T* out, const CpuOptions& opt) {
  forward_impl<T>(p, nullptr, out, opt);
}

template <class T>
void validate_rigid(const RigidParams<T>& r, int64_t V, const char* fn) {
  for (int64_t v = 0; v < V; ++v)
    if (r.group[v] < 0 || r.group[v] >= r.G)
      throw Error(std::string(fn) + ": group[" + std::to_string(v) + "] = " + std::to_string(r.group[v]) +
                  " is outside [0, G=" + std::to_string(r.G) + ")");
}

template <class T>
void deform_forward(const BlendshapeParams<T>& p, const RigidParams<T>& r, T* out, const CpuOptions& opt) {
  validate_rigid(r, p.V, "deform_forward");
  forward_impl<T>(p, &r, out, opt);
}

// Backward of vertex block j over the whole batch, 4 rows at a time so that each load of an entry's
// deltas feeds 4 dot products (grad_weights) and each update of its gradient sums 4 rows
// (grad_deltas). gw: this thread's partial [B, K]; gval: scratch for the block's delta gradients.
template <class T>
FACECORE_CPU_DISPATCH void backward_block(const BlendshapeParams<T>& p, int64_t j, const T* grad_out, T* gw,
                                          T* grad_neutral, T* grad_deltas, std::vector<T>& gval) {
  const int nv = int(std::min<int64_t>(BS, p.V - j * BS));
  const int n = 3 * nv;
  const int len = p.block_ptr ? BS3 : n;
  const int64_t ne = entries_in_block(p.block_ptr, p.K, j);
  if (grad_deltas) gval.assign(size_t(ne) * BS3, T(0));
  alignas(64) T gb[4][BS3];
  alignas(64) T gn[BS3] = {};
  for (int64_t b0 = 0; b0 < p.B; b0 += 4) {
    const int rows = int(std::min<int64_t>(4, p.B - b0));
    for (int q = 0; q < 4; ++q) {
      if (q < rows) {
        const T* src = grad_out + ((b0 + q) * p.V + j * BS) * 3;
        std::copy(src, src + n, gb[q]);
        std::fill(gb[q] + n, gb[q] + BS3, T(0));
      } else {
        std::fill(gb[q], gb[q] + BS3, T(0));  // padding rows contribute nothing
      }
    }
    if (grad_neutral)
      for (int q = 0; q < rows; ++q)
#pragma omp simd
        for (int i = 0; i < BS3; ++i) gn[i] += gb[q][i];
    int64_t e = 0;
    for_each_entry(p, j, [&](int64_t k, const T* d) {
      if (gw) {
        T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (n == BS3) {
#pragma omp simd reduction(+ : s0, s1, s2, s3)
          for (int i = 0; i < BS3; ++i) {
            s0 += gb[0][i] * d[i], s1 += gb[1][i] * d[i], s2 += gb[2][i] * d[i], s3 += gb[3][i] * d[i];
          }
        } else {
          for (int i = 0; i < n; ++i) {
            s0 += gb[0][i] * d[i], s1 += gb[1][i] * d[i], s2 += gb[2][i] * d[i], s3 += gb[3][i] * d[i];
          }
        }
        const T sums[4] = {s0, s1, s2, s3};
        for (int q = 0; q < rows; ++q) gw[(b0 + q) * p.K + k] += sums[q];
      }
      if (grad_deltas) {
        T w[4] = {};
        for (int q = 0; q < rows; ++q) w[q] = p.weights[(b0 + q) * p.K + k];
        T* gv = gval.data() + e * BS3;
#pragma omp simd
        for (int i = 0; i < BS3; ++i) gv[i] += w[0] * gb[0][i] + w[1] * gb[1][i] + w[2] * gb[2][i] + w[3] * gb[3][i];
      }
      ++e;
    });
  }
  if (grad_neutral) std::copy(gn, gn + n, grad_neutral + j * BS3);
  if (grad_deltas) {
    int64_t i = 0;
    for_each_entry(p, j, [&](int64_t, const T* d) {
      T* dst = grad_deltas + (d - p.deltas);  // same offset in the gradient as in the deltas
      std::copy(gval.data() + i * BS3, gval.data() + i * BS3 + len, dst);
      ++i;
    });
  }
}

template <class T>
void blendshape_backward(const BlendshapeParams<T>& p, const T* grad_out, T* grad_weights,
                         T* grad_neutral, T* grad_deltas, const CpuOptions& opt) {
  validate_blendshape(p);
  const int64_t nblk = num_blocks(p.V);
  const int nthreads = cpu::resolve_threads(opt);
  // grad_weights is a reduction over vertices: one partial [B, K] per thread, summed at the end.
  std::vector<T> gw_partial(grad_weights ? size_t(nthreads) * p.B * p.K : 0, T(0));
#pragma omp parallel num_threads(nthreads)
  {
    T* gw = grad_weights ? gw_partial.data() + size_t(omp_get_thread_num()) * p.B * p.K : nullptr;
    std::vector<T> gval;  // per-entry delta gradients of the current block
#pragma omp for schedule(dynamic, 4)
    for (int64_t j = 0; j < nblk; ++j) backward_block(p, j, grad_out, gw, grad_neutral, grad_deltas, gval);
  }
  if (grad_weights) {
    const int64_t n = p.B * p.K;
    std::fill(grad_weights, grad_weights + n, T(0));
    for (int t = 0; t < nthreads; ++t)
      for (int64_t i = 0; i < n; ++i) grad_weights[i] += gw_partial[size_t(t) * n + i];
  }
}

template <class T>
void rigid_backward(const BlendshapeParams<T>& p, const RigidParams<T>& r, const T* out,
                    const T* grad_out, T* grad_points, T* grad_rotations, const CpuOptions& opt) {
  validate_rigid(r, p.V, "rigid_backward");  // group indexes rotations and pivots below
  const int nthreads = cpu::resolve_threads(opt);
  const int64_t nr = p.B * r.G * 9;
  std::vector<T> gr_partial(size_t(nthreads) * nr, T(0));
  const int64_t vchunk = 1024;
  const int64_t nvc = (p.V + vchunk - 1) / vchunk;
#pragma omp parallel num_threads(nthreads)
  {
    T* gr = gr_partial.data() + size_t(omp_get_thread_num()) * nr;
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < p.B; ++b) {
      for (int64_t c = 0; c < nvc; ++c) {
        const T* R = r.rotations + b * r.G * 9;
        for (int64_t v = c * vchunk; v < std::min(p.V, (c + 1) * vchunk); ++v) {
          const int32_t g = r.group[v];
          const T* o = out + (b * p.V + v) * 3;
          const T* go = grad_out + (b * p.V + v) * 3;
          // out = R0 (q - c0) + c0  =>  q - c0 = R0^T (out - c0), dL/dR0 += go (q - c0)^T
          T x[3] = {o[0] - r.pivots[0], o[1] - r.pivots[1], o[2] - r.pivots[2]};
          T q[3], gq[3];
          rotate_t(R, x, q);
          T* G0 = gr + b * r.G * 9;
          for (int a = 0; a < 3; ++a)
            for (int e = 0; e < 3; ++e) G0[a * 3 + e] += go[a] * q[e];
          rotate_t(R, go, gq);
          T* gp = grad_points + (b * p.V + v) * 3;
          if (g > 0) {
            const T* Rg = R + g * 9;
            const T* cg = r.pivots + g * 3;
            // q = Rg (p - cg) + cg  =>  p - cg = Rg^T (q - cg)
            T y[3] = {q[0] + r.pivots[0] - cg[0], q[1] + r.pivots[1] - cg[1], q[2] + r.pivots[2] - cg[2]};
            T pc[3];
            rotate_t(Rg, y, pc);
            T* Gg = gr + (b * r.G + g) * 9;
            for (int a = 0; a < 3; ++a)
              for (int e = 0; e < 3; ++e) Gg[a * 3 + e] += gq[a] * pc[e];
            rotate_t(Rg, gq, gp);
          } else {
            gp[0] = gq[0], gp[1] = gq[1], gp[2] = gq[2];
          }
        }
      }
    }
  }
  std::fill(grad_rotations, grad_rotations + nr, T(0));
  for (int t = 0; t < nthreads; ++t)
    for (int64_t i = 0; i < nr; ++i) grad_rotations[i] += gr_partial[size_t(t) * nr + i];
}

#define FACECORE_INSTANTIATE(T)                                                                  \
  template void validate_blendshape<T>(const BlendshapeParams<T>&);                              \
  template void validate_rigid<T>(const RigidParams<T>&, int64_t, const char*);                  \
  template void blendshape_forward<T>(const BlendshapeParams<T>&, T*, const CpuOptions&);        \
  template void blendshape_backward<T>(const BlendshapeParams<T>&, const T*, T*, T*, T*,         \
                                       const CpuOptions&);                                       \
  template void deform_forward<T>(const BlendshapeParams<T>&, const RigidParams<T>&, T*,         \
                                  const CpuOptions&);                                            \
  template void rigid_backward<T>(const BlendshapeParams<T>&, const RigidParams<T>&, const T*,   \
                                  const T*, T*, T*, const CpuOptions&);
FACECORE_INSTANTIATE(float)
FACECORE_INSTANTIATE(double)
#undef FACECORE_INSTANTIATE

}  // namespace facecore
