// CPU fused linear log-probs. The [N, V] logits never exist: the vocabulary is walked in chunks of
// bv columns; for each chunk and each block of BM rows the [BM, bv] logits tile is computed into a small
// buffer and folded into an online log-sum-exp (forward), or turned into dlogits = g (onehot - softmax)
// and accumulated into grad_hidden, grad_weight and grad_bias (backward, from the saved lse).
//
// All three products use one register-blocked outer-product micro-kernel (axpy form: 4 rows x 3
// vectors of accumulators, GCC vector extensions, compiled for AVX2+FMA and the baseline through
// FACECORE_CPU_DISPATCH). For the logits the chunk's weight rows are first transposed into a
// [H, bv] panel so that the kernel streams contiguous vectors; measured on AVX2 this form computed the
// logits about twice as fast as an inner-product kernel over the untransposed rows (horizontal sums,
// register pressure), and per product it runs at the speed of torch's BLAS matmul.
//
// Parallel layout: threads own vocabulary chunks (static schedule, so the result is deterministic for
// a given thread count). Forward: each thread keeps a running (max, sum) per row over its chunks;
// these partial log-sum-exps are merged at the end. Backward: grad_weight / grad_bias rows of a chunk
// have exactly one writer; grad_hidden is accumulated in a per-thread [rows, H] slab and the slabs are
// summed in thread order.
#include "facecore/linear_logprobs.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "parallel.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 32-byte vectors only cross inlined internal helpers
#endif

namespace facecore {

namespace {

// Helpers must be inlined into the dispatched task functions to be compiled for their instruction set
// (an outlined copy would be baseline code operating on emulated 32-byte vectors).
#define FC_INLINE inline __attribute__((always_inline))

constexpr int BM = 64;  // rows per block: the [BM, bv] tile stays in L1/L2

// Vocab chunk width bv: the chunk's [H, bv] weight panel, its [bv, H] grad_weight rows and weight rows
// should share L2 with the streamed hidden/grad_hidden blocks. Larger chunks mean fewer passes over the
// grad_hidden slab in the backward. Measured (1 thread, N=1024, H=512, V=16000, float32): bv = 48 / 96 /
// 192 / 384 gave backward 1.24 / 1.12 / 0.99 / 1.41 s; so ~384 KiB of panel, i.e. 192 for H = 512.
template <class T>
int64_t chunk_width(int64_t H) {
  const int64_t bv = (int64_t(384) << 10) / (std::max<int64_t>(H, 1) * int64_t(sizeof(T))) / 16 * 16;
  return std::clamp<int64_t>(bv, 32, 256);
}

template <class T>
struct Simd {
  typedef T v __attribute__((vector_size(32)));
  static constexpr int L = 32 / int(sizeof(T));
};

template <class T>
FC_INLINE typename Simd<T>::v load(const T* p) {
  typename Simd<T>::v v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <class T>
FC_INLINE void store(T* p, const typename Simd<T>::v& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <class T>
FC_INLINE T hsum(const typename Simd<T>::v& v) {
  T s = 0;
  for (int l = 0; l < Simd<T>::L; ++l) s += v[l];
  return s;
}

// ---- the micro-kernel: acc[r * lda + c] += sum_s a[r * ars + s * ass] * b[s * bs + c] -----------------
// R rows x NV vectors of accumulators live in registers while s runs; a is broadcast, b streamed.
template <class T, int R, int NV>
FC_INLINE void axpy_tile(T* acc, int64_t lda, const T* a, int64_t ars, int64_t ass, const T* b, int64_t bs,
                         int64_t S) {
  using V = typename Simd<T>::v;
  constexpr int L = Simd<T>::L;
  V x[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) x[r][v] = load(acc + r * lda + v * L);
  for (int64_t s = 0; s < S; ++s) {
    V bvec[NV];
    for (int v = 0; v < NV; ++v) bvec[v] = load(b + s * bs + v * L);
    for (int r = 0; r < R; ++r) {
      const T ar = a[r * ars + s * ass];
      for (int v = 0; v < NV; ++v) x[r][v] += ar * bvec[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) store(acc + r * lda + v * L, x[r][v]);
}

template <class T, int NV>
FC_INLINE void axpy_rows(T* acc, int64_t lda, int rows, const T* a, int64_t ars, int64_t ass, const T* b,
                         int64_t bs, int64_t S) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) axpy_tile<T, 4, NV>(acc + r * lda, lda, a + r * ars, ars, ass, b, bs, S);
  switch (rows - r) {
    case 3: axpy_tile<T, 3, NV>(acc + r * lda, lda, a + r * ars, ars, ass, b, bs, S); break;
    case 2: axpy_tile<T, 2, NV>(acc + r * lda, lda, a + r * ars, ars, ass, b, bs, S); break;
    case 1: axpy_tile<T, 1, NV>(acc + r * lda, lda, a + r * ars, ars, ass, b, bs, S); break;
    default: break;
  }
}

// acc[rows, width] (row stride lda) += A[rows, S] . B[S, width] with A strided (ars, ass) and B rows bs apart.
// S is cut into KC-long slices so that the B strip of one column block (KC x 3 vectors) stays in L1
// while every row group streams past it.
constexpr int64_t KC = 128;

template <class T>
FC_INLINE void gemm_acc_slice(T* acc, int64_t lda, int rows, int64_t width, const T* a, int64_t ars,
                              int64_t ass, const T* b, int64_t bs, int64_t S);

template <class T>
FC_INLINE void gemm_acc(T* acc, int64_t lda, int rows, int64_t width, const T* a, int64_t ars, int64_t ass,
                        const T* b, int64_t bs, int64_t S) {
  for (int64_t k0 = 0; k0 < S; k0 += KC)
    gemm_acc_slice(acc, lda, rows, width, a + k0 * ass, ars, ass, b + k0 * bs, bs, std::min(KC, S - k0));
}

template <class T>
FC_INLINE void gemm_acc_slice(T* acc, int64_t lda, int rows, int64_t width, const T* a, int64_t ars,
                              int64_t ass, const T* b, int64_t bs, int64_t S) {
  constexpr int L = Simd<T>::L;
  int64_t c = 0;
  for (; c + 3 * L <= width; c += 3 * L) axpy_rows<T, 3>(acc + c, lda, rows, a, ars, ass, b + c, bs, S);
  if (c + 2 * L <= width) {
    axpy_rows<T, 2>(acc + c, lda, rows, a, ars, ass, b + c, bs, S);
    c += 2 * L;
  }
  for (; c + L <= width; c += L) axpy_rows<T, 1>(acc + c, lda, rows, a, ars, ass, b + c, bs, S);
  for (; c < width; ++c)
    for (int r = 0; r < rows; ++r) {
      T x = acc[r * lda + c];
      for (int64_t s = 0; s < S; ++s) x += a[r * ars + s * ass] * b[s * bs + c];
      acc[r * lda + c] = x;
    }
}

// ---- exp -------------------------------------------------------------------------------------
// float: Cephes expf polynomial on 8 lanes (max rel. error ~2 ulp); inputs below -87.3 give ~1e-38
// instead of 0, which is invisible next to the row maximum's exp(0) = 1. double: std::exp.
typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

FC_INLINE f8 splat8(float a) { return f8{} + a; }

FC_INLINE f8 exp8(const f8& x_in) {
  f8 x = x_in;
  x = x < splat8(-87.3f) ? splat8(-87.3f) : x;
  x = x > splat8(88.3f) ? splat8(88.3f) : x;
  const f8 fx = x * 1.44269504088896341f;
  const i8 n = __builtin_convertvector(fx + (fx >= 0 ? splat8(0.5f) : splat8(-0.5f)), i8);
  const f8 nf = __builtin_convertvector(n, f8);
  x = x - nf * 0.693359375f;
  x = x - nf * -2.12194440e-4f;
  f8 y = splat8(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  const i8 e = (n + 127) << 23;
  f8 scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return y * scale;
}

// sum_j exp(l[j] - m)
template <class T>
FC_INLINE T sum_exp(const T* l, int n, T m) {
  T s = 0;
  int j = 0;
  if constexpr (std::is_same_v<T, float>) {
    f8 acc = {};
    for (; j + 8 <= n; j += 8) acc += exp8(load(l + j) - m);
    s = hsum<float>(acc);
  }
  for (; j < n; ++j) s += std::exp(l[j] - m);
  return s;
}

// d[j] = -g * exp(l[j] - lse), in place
template <class T>
FC_INLINE void neg_scaled_softmax(T* l, int n, T lse, T g) {
  int j = 0;
  if constexpr (std::is_same_v<T, float>) {
    for (; j + 8 <= n; j += 8) store(l + j, exp8(load(l + j) - lse) * -g);
  }
  for (; j < n; ++j) l[j] = -g * std::exp(l[j] - lse);
}

// ---- per-chunk work functions (the dispatched hot paths) ---------------------------------------

// Logits of rows [a0, a0 + mr) of the compact hidden hc [A, H] against the chunk whose transposed
// weight panel is wt [H, bv]: tile [mr, bv] (first nc columns valid), bias included.
template <class T>
FC_INLINE void logits_tile(const LinearLogprobsParams<T>& p, const T* hc, int64_t a0, int mr, const T* wt,
                           int64_t j0, int nc, int64_t bv, T* tile) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nc; ++j) tile[i * bv + j] = p.bias ? p.bias[j0 + j] : T(0);
  gemm_acc<T>(tile, bv, mr, nc, hc + a0 * p.H, p.H, 1, wt, bv, p.H);
}

// wt[k, j] = weight[j0 + j, k]: the chunk's weight rows as a [H, bv] panel.
template <class T>
FC_INLINE void pack_panel(const LinearLogprobsParams<T>& p, int64_t j0, int nc, int64_t bv, T* wt) {
  for (int j = 0; j < nc; ++j) {
    const T* w = p.weight + (j0 + j) * p.H;
    for (int64_t k = 0; k < p.H; ++k) wt[k * bv + j] = w[k];
  }
}

// Forward over one vocab chunk for all A active rows: fold the chunk into this thread's running
// max m [A] and sum s [A] (relative to m); record the target logit tl [A] when the target is here.
template <class T>
FACECORE_CPU_DISPATCH void forward_chunk(const LinearLogprobsParams<T>& p, const T* hc, const int64_t* tgt,
                                         int64_t A, int64_t j0, int nc, int64_t bv, T* wt, T* tile, T* m, T* s,
                                         T* tl) {
  pack_panel(p, j0, nc, bv, wt);
  for (int64_t a0 = 0; a0 < A; a0 += BM) {
    const int mr = int(std::min<int64_t>(BM, A - a0));
    logits_tile(p, hc, a0, mr, wt, j0, nc, bv, tile);
    for (int i = 0; i < mr; ++i) {
      const T* l = tile + i * bv;
      const int64_t a = a0 + i;
      T mx = l[0];
      for (int j = 1; j < nc; ++j) mx = std::max(mx, l[j]);
      if (tgt[a] >= j0 && tgt[a] < j0 + nc) tl[a] = l[tgt[a] - j0];
      if (mx > m[a]) {  // rescale the running sum to the new maximum (exp(-inf) = 0 at the start)
        s[a] *= std::exp(m[a] - mx);
        m[a] = mx;
      }
      s[a] += sum_exp(l, nc, m[a]);
    }
  }
}

// Backward over one vocab chunk: grad_weight / grad_bias rows of the chunk (owned by this thread)
// and this thread's grad_hidden slab dh [A, H]. g, lse, tgt are compact [A].
template <class T>
FACECORE_CPU_DISPATCH void backward_chunk(const LinearLogprobsParams<T>& p, const T* hc, const int64_t* tgt,
                                          const T* g, const T* lse, int64_t A, int64_t j0, int nc, int64_t bv,
                                          T* wt, T* tile, T* dh, T* gw, T* gb) {
  const int64_t H = p.H;
  pack_panel(p, j0, nc, bv, wt);
  if (gw) std::fill(gw + j0 * H, gw + (j0 + nc) * H, T(0));
  if (gb) std::fill(gb + j0, gb + j0 + nc, T(0));
  for (int64_t a0 = 0; a0 < A; a0 += BM) {
    const int mr = int(std::min<int64_t>(BM, A - a0));
    logits_tile(p, hc, a0, mr, wt, j0, nc, bv, tile);
    for (int i = 0; i < mr; ++i) {  // tile becomes dlogits = g (onehot - softmax)
      const int64_t a = a0 + i;
      T* l = tile + i * bv;
      neg_scaled_softmax(l, nc, lse[a], g[a]);
      if (tgt[a] >= j0 && tgt[a] < j0 + nc) l[tgt[a] - j0] += g[a];
    }
    if (gb)
      for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nc; ++j) gb[j0 + j] += tile[i * bv + j];
    // grad_weight[chunk] += dlogits^T . hidden[block]
    if (gw) gemm_acc<T>(gw + j0 * H, H, nc, H, tile, 1, bv, hc + a0 * H, H, mr);
    // grad_hidden[block] += dlogits . weight[chunk]
    if (dh) gemm_acc<T>(dh + a0 * H, H, mr, H, tile, bv, 1, p.weight + j0 * H, H, nc);
  }
}

// Rows that contribute (target != ignore_index), in order.
std::vector<int64_t> active_rows(const int64_t* targets, int64_t N, int64_t ignore_index) {
  std::vector<int64_t> idx;
  idx.reserve(N);
  for (int64_t n = 0; n < N; ++n)
    if (targets[n] != ignore_index) idx.push_back(n);
  return idx;
}

void check_sizes(int64_t N, int64_t H, int64_t V) {
  if (N < 0 || H < 0 || V <= 0)
    throw Error("linear_logprobs: need N >= 0, H >= 0 and V >= 1, got N=" + std::to_string(N) +
                ", H=" + std::to_string(H) + ", V=" + std::to_string(V));
}

}  // namespace

void validate_targets(const int64_t* targets, int64_t N, int64_t V, int64_t ignore_index) {
  for (int64_t n = 0; n < N; ++n)
    if (targets[n] != ignore_index && (targets[n] < 0 || targets[n] >= V))
      throw Error("linear_logprobs: targets[" + std::to_string(n) + "] = " + std::to_string(targets[n]) +
                  " is outside [0, V=" + std::to_string(V) + ") and is not ignore_index=" +
                  std::to_string(ignore_index));
}

namespace {

// The active rows gathered into contiguous storage (no copy when every row is active).
template <class T>
struct Compact {
  std::vector<int64_t> idx;  // [A] original row of each active row
  std::vector<int64_t> tgt;  // [A]
  std::vector<T> copy;       // [A, H] when some rows are ignored
  const T* hidden = nullptr;
  int64_t A = 0;
};

template <class T>
Compact<T> compact(const LinearLogprobsParams<T>& p) {
  Compact<T> c;
  c.idx = active_rows(p.targets, p.N, p.ignore_index);
  c.A = int64_t(c.idx.size());
  c.tgt.resize(c.A);
  for (int64_t a = 0; a < c.A; ++a) c.tgt[a] = p.targets[c.idx[a]];
  if (c.A == p.N) {
    c.hidden = p.hidden;
  } else {
    c.copy.resize(size_t(c.A) * p.H);
    for (int64_t a = 0; a < c.A; ++a)
      std::copy(p.hidden + c.idx[a] * p.H, p.hidden + (c.idx[a] + 1) * p.H, c.copy.data() + a * p.H);
    c.hidden = c.copy.data();
  }
  return c;
}

}  // namespace

template <class T>
void linear_logprobs_forward(const LinearLogprobsParams<T>& p, T* logp, T* lse, const CpuOptions& opt) {
  check_sizes(p.N, p.H, p.V);
  validate_targets(p.targets, p.N, p.V, p.ignore_index);
  std::fill(logp, logp + p.N, T(0));
  std::fill(lse, lse + p.N, T(0));
  const Compact<T> c = compact(p);
  const int64_t A = c.A;
  if (A == 0) return;
  const int64_t bv = chunk_width<T>(p.H);
  const int64_t nchunks = (p.V + bv - 1) / bv;
  const int nthreads = int(std::min<int64_t>(cpu::resolve_threads(opt), nchunks));
  // per-thread running (max, sum) per row; the target logit has one writer (the chunk owning it)
  std::vector<T> m(size_t(nthreads) * A, -std::numeric_limits<T>::infinity()), s(size_t(nthreads) * A, T(0));
  std::vector<T> tl(A, T(0));
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> wt(size_t(p.H) * bv), tile(size_t(BM) * bv);
    const int t = omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t k = 0; k < nchunks; ++k) {
      const int64_t j0 = k * bv;
      forward_chunk(p, c.hidden, c.tgt.data(), A, j0, int(std::min<int64_t>(bv, p.V - j0)), bv, wt.data(),
                    tile.data(), m.data() + size_t(t) * A, s.data() + size_t(t) * A, tl.data());
    }
  }
  // merge: lse = M + log sum_t s_t exp(m_t - M)  (threads without chunks hold m = -inf, s = 0)
  for (int64_t a = 0; a < A; ++a) {
    T M = -std::numeric_limits<T>::infinity();
    for (int t = 0; t < nthreads; ++t) M = std::max(M, m[size_t(t) * A + a]);
    T sum = 0;
    for (int t = 0; t < nthreads; ++t)
      if (s[size_t(t) * A + a] > 0) sum += s[size_t(t) * A + a] * std::exp(m[size_t(t) * A + a] - M);
    const T l = M + std::log(sum);
    lse[c.idx[a]] = l;
    logp[c.idx[a]] = tl[a] - l;
  }
}

template <class T>
void linear_logprobs_backward(const LinearLogprobsParams<T>& p, const T* grad_logp, const T* lse, T* grad_hidden,
                              T* grad_weight, T* grad_bias, const CpuOptions& opt) {
  check_sizes(p.N, p.H, p.V);
  validate_targets(p.targets, p.N, p.V, p.ignore_index);
  if (grad_hidden) std::fill(grad_hidden, grad_hidden + p.N * p.H, T(0));
  const Compact<T> c = compact(p);
  const int64_t A = c.A;
  if (A == 0) {  // otherwise every grad_weight / grad_bias chunk is written by its owner
    if (grad_weight) std::fill(grad_weight, grad_weight + p.V * p.H, T(0));
    if (grad_bias) std::fill(grad_bias, grad_bias + p.V, T(0));
    return;
  }
  if (!grad_hidden && !grad_weight && !grad_bias) return;
  std::vector<T> g(A), l(A);
  for (int64_t a = 0; a < A; ++a) g[a] = grad_logp[c.idx[a]], l[a] = lse[c.idx[a]];
  const int64_t bv = chunk_width<T>(p.H);
  const int64_t nchunks = (p.V + bv - 1) / bv;
  const int nthreads = int(std::min<int64_t>(cpu::resolve_threads(opt), nchunks));
  // one grad_hidden slab per thread over the active rows, summed in thread order below
  std::vector<T> slabs(grad_hidden ? size_t(nthreads) * A * p.H : 0, T(0));
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> wt(size_t(p.H) * bv), tile(size_t(BM) * bv);
    T* dh = grad_hidden ? slabs.data() + size_t(omp_get_thread_num()) * A * p.H : nullptr;
#pragma omp for schedule(static)
    for (int64_t k = 0; k < nchunks; ++k) {
      const int64_t j0 = k * bv;
      backward_chunk(p, c.hidden, c.tgt.data(), g.data(), l.data(), A, j0, int(std::min<int64_t>(bv, p.V - j0)),
                     bv, wt.data(), tile.data(), dh, grad_weight, grad_bias);
    }
  }
  if (grad_hidden) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t a = 0; a < A; ++a) {
      T* out = grad_hidden + c.idx[a] * p.H;
      for (int t = 0; t < nthreads; ++t) {
        const T* src = slabs.data() + (size_t(t) * A + a) * p.H;
        for (int64_t h = 0; h < p.H; ++h) out[h] += src[h];
      }
    }
  }
}

template void linear_logprobs_forward<float>(const LinearLogprobsParams<float>&, float*, float*,
                                             const CpuOptions&);
template void linear_logprobs_forward<double>(const LinearLogprobsParams<double>&, double*, double*,
                                              const CpuOptions&);
template void linear_logprobs_backward<float>(const LinearLogprobsParams<float>&, const float*, const float*,
                                              float*, float*, float*, const CpuOptions&);
template void linear_logprobs_backward<double>(const LinearLogprobsParams<double>&, const double*,
                                               const double*, double*, double*, double*, const CpuOptions&);

}  // namespace facecore
