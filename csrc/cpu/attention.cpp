// CPU fused attention (see facecore/attention.h for the maths).
//
// Layout of the work:
// - forward: one task per (b, query head, block of BQ query rows); each task streams key blocks of BKF
//   keys through an online softmax, so memory is O(L) and no [Lq, Lk] matrix is ever stored.
// - backward: one task per (b, kv head, chunk of key blocks); a task owns dK and dV of its key blocks
//   (summed over the query heads of its group and every query block) and adds dS K into its own
//   per-chunk dQ buffer (grad_q itself when there is one chunk and D is a multiple of NR), so no two
//   threads ever write the same number; the chunk buffers are summed in a fixed order at the end
//   (deterministic). When the bias gradient is wanted, dimensions along which the bias broadcasts
//   are folded into one task, so that task alone accumulates those dbias entries.
// - all matrix products go through one register-tiled micro-kernel C (+)= A B (A, C row-major, or A
//   read transposed; B in NR-wide column panels, N a multiple of NR), so K^T (and in backward V^T)
//   are packed once per call into zero-padded panels; V (and in backward K, Q, dO) are read in place
//   when D is a multiple of NR and packed otherwise. Backward reads P^T and dS^T straight from P and
//   dS. SIMD is written with GCC/Clang vector extensions, and the per-tile functions are compiled for
//   AVX2+FMA and the baseline (FACECORE_CPU_DISPATCH).
// - tiny problems run single-threaded (OpenMP fork/join would dominate).
#include "facecore/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "parallel.h"

#ifndef FACECORE_CPU_DISPATCH
#define FACECORE_CPU_DISPATCH
#endif

#if defined(__GNUC__) && !defined(__clang__)
// The vector-extension helpers are always inlined, so the AVX argument-passing ABI note is moot.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FC_INLINE inline __attribute__((always_inline))
#else
#define FC_INLINE inline
#endif

namespace facecore {

namespace {

constexpr int64_t BQ = 64;  // query rows per block
constexpr int64_t BK = 64;  // keys per block
constexpr int64_t BKF = 128;  // keys per block in forward: fewer online-softmax rescales of O
constexpr int MR = 6;       // micro-tile rows: 12 accumulators hide the FMA latency

// GCC/Clang vector extensions: explicit SIMD that compiles for every target (the baseline clone
// splits a 256-bit vector into two SSE halves), so the hot loops never depend on the auto-vectoriser.
template <class T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef int32_t itype __attribute__((vector_size(32)));
  static constexpr int W = 8;
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef int64_t itype __attribute__((vector_size(32)));
  static constexpr int W = 4;
};

template <class T>
FC_INLINE typename Vec<T>::type vload(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
FC_INLINE void vstore(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof(v));
}
// Broadcast written as an explicit initializer: GCC turns it into vbroadcastss even when the helper is
// inlined into a target_clones clone (arithmetic forms such as x + V{} are not folded there).
FC_INLINE Vec<float>::type vset(float x) { return Vec<float>::type{x, x, x, x, x, x, x, x}; }
FC_INLINE Vec<double>::type vset(double x) { return Vec<double>::type{x, x, x, x}; }

// Micro-tile width: two vectors (16 floats / 8 doubles).
template <class T>
constexpr int nr() {
  return 2 * Vec<T>::W;
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// C[R, NR] (+)= A[R, K] B[K, NR]; the R x NR accumulator stays in 2R vector registers. TA: A is
// stored transposed (element (r, k) at A[k * lda + r]); A is only ever broadcast one scalar at a
// time, so reading it transposed costs nothing and saves transposing P and dS in backward.
template <class T, int R, bool ACC, bool TA = false>
FC_INLINE void micro(int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  V c0[R], c1[R];
  for (int r = 0; r < R; ++r) {
    if constexpr (ACC) {
      c0[r] = vload(C + r * ldc), c1[r] = vload(C + r * ldc + W);
    } else {
      c0[r] = V{}, c1[r] = V{};
    }
  }
  for (int64_t kk = 0; kk < K; ++kk) {
    const V b0 = vload(B + kk * ldb), b1 = vload(B + kk * ldb + W);
    for (int r = 0; r < R; ++r) {
      const T a = TA ? A[kk * lda + r] : A[r * lda + kk];  // scalar * vector: one vbroadcastss from memory
      c0[r] += a * b0;
      c1[r] += a * b1;
    }
  }
  for (int r = 0; r < R; ++r) vstore(C + r * ldc, c0[r]), vstore(C + r * ldc + W, c1[r]);
}

// C[M, N] += A[M, K] B[K, N] (ACC) or C = A B; A and C row-major, N a multiple of nr<T>(). B is stored as column panels
// of width NR: element (k, n) at B[(n / NR) * panel + k * ldb + n % NR] (row-major B: ldb = N, panel = NR;
// packed B: ldb = NR, panel = K_total * NR, which makes the micro-kernel read B contiguously).
template <class T, bool ACC = true, bool TA = false>
FC_INLINE void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
                    int64_t panel, T* C, int64_t ldc) {
  constexpr int NR = nr<T>();
  const int64_t ra = TA ? 1 : lda;  // A offset per row
  for (int64_t c0 = 0; c0 < N; c0 += NR) {
    const T* Bc = B + (c0 / NR) * panel;
    int64_t r0 = 0;
    for (; r0 + MR <= M; r0 += MR) micro<T, MR, ACC, TA>(K, A + r0 * ra, lda, Bc, ldb, C + r0 * ldc + c0, ldc);
    if (r0 + 4 <= M) micro<T, 4, ACC, TA>(K, A + r0 * ra, lda, Bc, ldb, C + r0 * ldc + c0, ldc), r0 += 4;
    if (r0 + 2 <= M) micro<T, 2, ACC, TA>(K, A + r0 * ra, lda, Bc, ldb, C + r0 * ldc + c0, ldc), r0 += 2;
    if (r0 < M) micro<T, 1, ACC, TA>(K, A + r0 * ra, lda, Bc, ldb, C + r0 * ldc + c0, ldc);
  }
}

// max and sum over n (a multiple of NR), lane-wise in vectors, then across lanes. The max may drop
// NaNs (a NaN-propagating select costs ~15 % of the forward); forward_task handles that rare case.
template <class T>
FC_INLINE T lane_max(const T* x, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  V acc = vload(x);
  for (int64_t c = W; c < n; c += W) {
    const V y = vload(x + c);
    acc = acc < y ? y : acc;
  }
  T m = acc[0];
  for (int l = 1; l < W; ++l) m = m < acc[l] ? acc[l] : m;
  return m;
}

template <class T>
FC_INLINE T lane_sum(const T* x, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  V acc = V{};
  for (int64_t c = 0; c < n; c += W) acc += vload(x + c);
  T s = 0;
  for (int l = 0; l < W; ++l) s += acc[l];
  return s;
}

// exp(x) for x <= 0 (Cephes expf polynomial, about 1 ulp), exactly 0 below -87.3 and for -inf.
using VF = Vec<float>::type;
using VI = Vec<float>::itype;
FC_INLINE VF exp_neg(VF x) {
  const VF lo = vset(-87.3f), magic = vset(12582912.0f);  // 1.5 * 2^23: adding it rounds to nearest
  const VF xc = x < lo ? lo : x;
  const VF n = (xc * 1.44269504088896341f + magic) - magic;
  const VF r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  VF p = vset(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const VF y = p * (r * r) + r + 1.0f;
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  VF pow2;
  std::memcpy(&pow2, &bits, sizeof(pow2));
  return x < lo ? VF{} : y * pow2;
}
FC_INLINE float exp_neg(float x) { return exp_neg(vset(x))[0]; }
FC_INLINE double exp_neg(double x) { return std::exp(x); }

// x[c] = exp(x[c] - m) for c < n (a multiple of NR).
FC_INLINE void exp_shift(float* x, int64_t n, float m) {
  for (int64_t c = 0; c < n; c += 8) vstore(x + c, exp_neg(vload(x + c) - m));
}
FC_INLINE void exp_shift(double* x, int64_t n, double m) {
  for (int64_t c = 0; c < n; ++c) x[c] = std::exp(x[c] - m);
}

template <class T>
constexpr T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

template <class T>
struct Strides {  // bias element strides, 0 along broadcast dimensions
  int64_t b, h, i, j;
};

template <class T>
Strides<T> bias_strides(const AttentionParams<T>& p) {
  const int64_t* s = p.bias_shape;
  return {s[0] == 1 ? 0 : s[1] * s[2] * s[3], s[1] == 1 ? 0 : s[2] * s[3], s[2] == 1 ? 0 : s[3],
          s[3] == 1 ? 0 : 1};
}

// Per-key mask for one key block: 0 for a real, unpadded key, -inf otherwise (incl. the zero-padded
// columns nk..nkp). Returns whether any real key of the block is padding.
template <class T>
FC_INLINE bool key_mask(const AttentionParams<T>& p, int64_t b, int64_t j0, int64_t nk, int64_t nkp, T* kmask) {
  const uint8_t* pad = p.key_padding_mask ? p.key_padding_mask + b * p.Lk + j0 : nullptr;
  bool any = false;
  for (int64_t c = 0; c < nkp; ++c) {
    const bool padded = c < nk && pad && pad[c];
    any |= padded;
    kmask[c] = (c < nk && !padded) ? T(0) : neg_inf<T>();
  }
  return any;
}

// Scores of one tile in place: s = scale * s + bias, -inf for padding keys, columns past the last key
// and right of the causal limit. Masked scores are overwritten (masked_fill, never an added -inf):
// padding keys and their bias may hold NaN or inf. `padded`: the block has padding keys (key_mask).
template <class T>
FC_INLINE void scores(const AttentionParams<T>& p, const Strides<T>& bs, int64_t b, int64_t h, int64_t i,
                      int64_t j0, int64_t nkp, const T* kmask, bool padded, T* s) {
  int64_t lim = std::min(nkp, p.Lk - j0);  // columns c < lim are real keys, not causally masked
  if (p.causal) lim = std::clamp<int64_t>(i + (p.Lk - p.Lq) - j0 + 1, 0, lim);
  const T scale = p.scale;
  if (p.bias) {
    const T* br = p.bias + b * bs.b + h * bs.h + i * bs.i;
    if (bs.j) {
      for (int64_t c = 0; c < lim; ++c) s[c] = s[c] * scale + br[j0 + c];
    } else {
      const T b0 = br[0];
      for (int64_t c = 0; c < lim; ++c) s[c] = s[c] * scale + b0;
    }
  } else {
    for (int64_t c = 0; c < lim; ++c) s[c] = s[c] * scale;
  }
  if (padded)  // a separate pass, so that blocks without padding keep the plain loops above
    for (int64_t c = 0; c < lim; ++c) s[c] = kmask[c] == T(0) ? s[c] : neg_inf<T>();
  for (int64_t c = lim; c < nkp; ++c) s[c] = neg_inf<T>();
}

// ------------------------------------------------------------------------------------------------
// Packing: every B operand is stored as NR-wide column panels (see gemm), zero-padded.

// Packed buffers are filled completely by the packers, so they are left uninitialised, and buffers
// up to 8 MiB are kept per calling thread and slot for the next call: fresh memory costs a page fault
// and a kernel zero fill per 4 KiB, which showed up at several percent of the time at L = 256. Calls
// on one thread run one after another, so a slot is never in use twice at once.
template <class T>
struct Buf {
  int slot;  // 0..kSlots-1, distinct for buffers alive at the same time
  std::unique_ptr<T[]> own;
  T* p = nullptr;
  static constexpr int kSlots = 5;
  explicit Buf(int s) : slot(s) {}
  T* alloc(int64_t n) {
    n = std::max<int64_t>(n, 1);
    struct Cached {
      std::unique_ptr<T[]> p;
      int64_t cap = 0;
    };
    static thread_local Cached cache[kSlots];
    if (n * int64_t(sizeof(T)) > (int64_t(8) << 20)) {
      own.reset(new T[n]);
      return p = own.get();
    }
    Cached& c = cache[slot];
    if (c.cap < n) c.p.reset(new T[n]), c.cap = n;
    return p = c.p.get();
  }
};

// Packers take an optional key padding mask pad [BH / heads, R]: padded rows are stored as zeros, so
// that a padding key or value holding NaN/inf meets P = 0 (or dS = 0) as 0 * 0, never 0 * NaN.

// src [BH, R, D] -> dst [BH, Dp / NR, R, NR]   (rows stay rows; columns d >= D are zero)
template <class T>
void pack_rows(const T* src, int64_t BH, int64_t R, int64_t D, int64_t Dp, Buf<T>& buf, int nthreads,
               const uint8_t* pad = nullptr, int64_t heads = 1) {
  constexpr int NR = nr<T>();
  T* dst = buf.alloc(BH * Dp * R);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t pnl = 0; pnl < Dp / NR; ++pnl) {
      T* dp = dst + (bh * (Dp / NR) + pnl) * R * NR;
      const int64_t d0 = pnl * NR, w = std::min<int64_t>(NR, D - d0);
      for (int64_t r = 0; r < R; ++r) {
        const T* sr = src + (bh * R + r) * D + d0;
        const bool zero = pad && pad[(bh / heads) * R + r];
        for (int64_t c = 0; c < w; ++c) dp[r * NR + c] = zero ? T(0) : sr[c];
        for (int64_t c = w; c < NR; ++c) dp[r * NR + c] = T(0);
      }
    }
}

// src [BH, Lk, D] -> dst [BH, Lkp / NR, D, NR]   (K^T: keys become columns; keys >= Lk are zero)
template <class T>
void pack_transposed(const T* src, int64_t BH, int64_t Lk, int64_t D, int64_t Lkp, Buf<T>& buf, int nthreads,
                     const uint8_t* pad = nullptr, int64_t heads = 1) {
  constexpr int NR = nr<T>();
  T* dst = buf.alloc(BH * Lkp * D);
  const int64_t np = Lkp / NR;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t t = 0; t < BH * np; ++t) {
    const int64_t bh = t / np, j0 = (t % np) * NR, w = std::min<int64_t>(NR, Lk - j0);
    T* dp = dst + t * D * NR;  // one NR x D panel: stays in L1 while it is transposed
    int64_t jj = 0;
#if defined(__SSE__)
    if constexpr (std::is_same_v<T, float>) {  // 4 x 4 register transposes (baseline SSE)
      const int64_t D4 = D / 4 * 4;
      for (; jj + 4 <= w; jj += 4) {
        const float* s0 = src + (bh * Lk + j0 + jj) * D;
        for (int64_t d = 0; d < D4; d += 4) {
          __m128 r0 = _mm_loadu_ps(s0 + d), r1 = _mm_loadu_ps(s0 + D + d), r2 = _mm_loadu_ps(s0 + 2 * D + d),
                 r3 = _mm_loadu_ps(s0 + 3 * D + d);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
          _mm_storeu_ps(dp + d * NR + jj, r0), _mm_storeu_ps(dp + (d + 1) * NR + jj, r1);
          _mm_storeu_ps(dp + (d + 2) * NR + jj, r2), _mm_storeu_ps(dp + (d + 3) * NR + jj, r3);
        }
        for (int64_t d = D4; d < D; ++d)
          for (int64_t u = 0; u < 4; ++u) dp[d * NR + jj + u] = s0[u * D + d];
      }
    }
#endif
    for (; jj < w; ++jj) {
      const T* sr = src + (bh * Lk + j0 + jj) * D;
      for (int64_t d = 0; d < D; ++d) dp[d * NR + jj] = sr[d];
    }
    for (int64_t jj = 0; jj < NR; ++jj)
      if (jj >= w || (pad && pad[(bh / heads) * Lk + j0 + jj]))
        for (int64_t d = 0; d < D; ++d) dp[d * NR + jj] = T(0);
  }
}

// A [BH, R, D] operand used as gemm B (rows r0.. of slice bh start at at(bh, r0)).
template <class T>
struct Rows {
  const T* base;
  int64_t ldb, panel, slice;
  const T* at(int64_t bh, int64_t r) const { return base + bh * slice + r * ldb; }
};

// Row-major [R, D] needs no packing when D is a multiple of NR: gemm reads it in place as NR-wide
// panels with ldb = D (saves a copy of the whole tensor per call); otherwise pack zero-padded panels.
template <class T>
Rows<T> rows_operand(const T* src, int64_t BH, int64_t R, int64_t D, int64_t Dp, Buf<T>& buf, int nthreads,
                     const uint8_t* pad = nullptr, int64_t heads = 1) {
  constexpr int NR = nr<T>();
  if (D == Dp && !pad) return {src, D, NR, R * D};
  pack_rows(src, BH, R, D, Dp, buf, nthreads, pad, heads);
  return {buf.p, NR, R * NR, R * Dp};
}

// ------------------------------------------------------------------------------------------------
// Forward

template <class T>
struct FwdPacked {
  const T* kt;  // [B * Hkv, Lkp / NR, D, NR]  K^T
  Rows<T> v;    // V [B * Hkv, Lk, D]
  int64_t Lkp, Dp;
};

template <class T>
struct FwdScratch {
  std::vector<T> s, o, m, l, kmask;
  explicit FwdScratch(int64_t Dp) : s(BQ * BKF), o(BQ * Dp), m(BQ), l(BQ), kmask(BKF) {}
};

template <class T>
FACECORE_CPU_DISPATCH void forward_task(const AttentionParams<T>& p, const FwdPacked<T>& pk, int64_t b,
                                        int64_t h, int64_t i0, T* out, T* lse, T* s, T* o, T* mrow, T* lrow,
                                        T* kmask) {
  constexpr int NR = nr<T>();
  const int64_t D = p.D, Dp = pk.Dp, Lkp = pk.Lkp;
  const int64_t m = std::min(BQ, p.Lq - i0);
  const int64_t hk = h / (p.Hq / p.Hkv);
  const Strides<T> bs = bias_strides(p);
  const T* q = p.q + ((b * p.Hq + h) * p.Lq + i0) * D;
  std::fill(o, o + m * Dp, T(0));
  std::fill(mrow, mrow + m, neg_inf<T>());
  std::fill(lrow, lrow + m, T(0));
  // Keys beyond the last query's causal limit are never seen by this block.
  int64_t kend = p.Lk;
  if (p.causal) kend = std::clamp<int64_t>(i0 + m - 1 + (p.Lk - p.Lq) + 1, 0, p.Lk);
  const T* kt = pk.kt + (b * p.Hkv + hk) * Lkp * D;
  const Rows<T>& vr = pk.v;
  for (int64_t j0 = 0; j0 < kend; j0 += BKF) {
    const int64_t nk = std::min(BKF, p.Lk - j0), nkp = round_up(nk, NR);
    const bool padded = key_mask(p, b, j0, nk, nkp, kmask);
    gemm<T, false>(m, nkp, D, q, D, kt + j0 * D, NR, D * NR, s, BKF);  // S = Q K^T
    for (int64_t r = 0; r < m; ++r) {
      T* sr = s + r * BKF;
      scores(p, bs, b, h, i0 + r, j0, nkp, kmask, padded, sr);
      T mnew = std::max(mrow[r], lane_max(sr, nkp));  // a NaN mrow sticks
      if (mnew == neg_inf<T>()) {
        if (std::none_of(sr, sr + nkp, [](T x) { return x != x; })) {  // everything masked so far:
          std::fill(sr, sr + nkp, T(0));                              // contributes nothing
          continue;
        }
        mnew = std::numeric_limits<T>::quiet_NaN();  // NaN scores (a NaN query): a NaN row, not a masked one
      }
      exp_shift(sr, nkp, mnew);
      const T alpha = exp_neg(mrow[r] - mnew);
      lrow[r] = lrow[r] * alpha + lane_sum(sr, nkp);
      mrow[r] = mnew;
      if (alpha != T(1)) {
        T* orow = o + r * Dp;
        for (int64_t d = 0; d < Dp; ++d) orow[d] *= alpha;
      }
    }
    gemm<T>(m, Dp, nk, s, BKF, vr.at(b * p.Hkv + hk, j0), vr.ldb, vr.panel, o, Dp);  // O += P V
  }
  T* outp = out + ((b * p.Hq + h) * p.Lq + i0) * D;
  T* lsep = lse + (b * p.Hq + h) * p.Lq + i0;
  for (int64_t r = 0; r < m; ++r) {
    const T l = lrow[r];  // 0 for a fully masked row (O = 0, lse = -inf), NaN for a NaN row
    const T inv = l == T(0) ? T(0) : T(1) / l;
    for (int64_t d = 0; d < D; ++d) outp[r * D + d] = o[r * Dp + d] * inv;
    lsep[r] = l == T(0) ? neg_inf<T>() : mrow[r] + std::log(l);
  }
}

// Threads worth starting for `work` multiply-adds: tiny problems (gradcheck, decoding one token) run
// on the calling thread instead of paying for OpenMP fork/join and barrier waits.
int threads_for(const CpuOptions& opt, double work) {
  return work < double(1 << 20) ? 1 : cpu::resolve_threads(opt);
}

}  // namespace

template <class T>
void attention_validate(const AttentionParams<T>& p) {
  auto fail = [](const std::string& m) { throw Error("attention: " + m); };
  if (p.B < 1 || p.Hq < 1 || p.Hkv < 1 || p.Lq < 1 || p.Lk < 1 || p.D < 1)
    fail("every size must be >= 1, got B=" + std::to_string(p.B) + " Hq=" + std::to_string(p.Hq) +
         " Hkv=" + std::to_string(p.Hkv) + " Lq=" + std::to_string(p.Lq) + " Lk=" + std::to_string(p.Lk) +
         " D=" + std::to_string(p.D));
  if (p.Hq % p.Hkv != 0)
    fail("q heads Hq=" + std::to_string(p.Hq) + " must be a multiple of k/v heads Hkv=" +
         std::to_string(p.Hkv));
  const int64_t full[4] = {p.B, p.Hq, p.Lq, p.Lk};
  const char* names[4] = {"B", "Hq", "Lq", "Lk"};
  for (int a = 0; a < 4; ++a)
    if (p.bias_shape[a] != 1 && p.bias_shape[a] != full[a])
      fail("bias dimension " + std::to_string(a) + " must be 1 or " + names[a] + "=" + std::to_string(full[a]) +
           ", got " + std::to_string(p.bias_shape[a]));
}

template <class T>
void attention_forward(const AttentionParams<T>& p, T* out, T* lse, const CpuOptions& opt) {
  attention_validate(p);
  const int nthreads = threads_for(opt, double(p.B) * p.Hq * p.Lq * p.Lk * p.D);
  const int64_t Dp = round_up(p.D, nr<T>()), Lkp = round_up(p.Lk, nr<T>());
  Buf<T> kt_buf{0}, v_buf{1};
  const uint8_t* pad = p.key_padding_mask;
  pack_transposed(p.k, p.B * p.Hkv, p.Lk, p.D, Lkp, kt_buf, nthreads, pad, p.Hkv);
  const FwdPacked<T> pk{kt_buf.p, rows_operand(p.v, p.B * p.Hkv, p.Lk, p.D, Dp, v_buf, nthreads, pad, p.Hkv),
                        Lkp, Dp};
  const int64_t nqb = (p.Lq + BQ - 1) / BQ, ntasks = p.B * p.Hq * nqb;
#pragma omp parallel num_threads(nthreads)
  {
    FwdScratch<T> w(Dp);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < ntasks; ++t) {
      // b varies fastest: consecutive tasks read the same rows of a batch-shared bias (cache reuse).
      const int64_t b = t % p.B, qb = (t / p.B) % nqb, h = t / (p.B * nqb);
      forward_task(p, pk, b, h, qb * BQ, out, lse, w.s.data(), w.o.data(), w.m.data(), w.l.data(),
                   w.kmask.data());
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Backward

namespace {

template <class T>
struct BwdPacked {
  const T* kt;     // [B * Hkv, Lkp / NR, D, NR]  K^T
  const T* vt;     // [B * Hkv, Lkp / NR, D, NR]  V^T
  Rows<T> kp;      // K  [B * Hkv, Lk, D]
  Rows<T> qp;      // Q  [B * Hq, Lq, D]
  Rows<T> dop;     // dO [B * Hq, Lq, D]
  const T* dout;   // [B, Hq, Lq, D]    dO
  const T* lse;    // [B, Hq, Lq]
  const T* delta;  // [B, Hq, Lq]       rowsum(dO * O) - dlse
  T* dq;           // [chunks, B, Hq, Lq, Dp], unscaled
  int64_t Lkp, Dp;
};

template <class T>
struct BwdScratch {
  std::vector<T> s, dp, dk, dv, kmask;
  explicit BwdScratch(int64_t Dp) : s(BQ * BK), dp(BQ * BK), dk(BK * Dp), dv(BK * Dp), kmask(BK) {}
};

// One key block of one (b, kv head): dK and dV of the block, its dQ (into the chunk's buffer) and
// dbias contributions. The caller guarantees that no other thread touches the same dbias entries.
template <class T>
FACECORE_CPU_DISPATCH void backward_block(const AttentionParams<T>& p, const BwdPacked<T>& pk, int64_t b,
                                          int64_t hk, int64_t kb, T* dq, T* grad_k, T* grad_v, T* grad_bias,
                                          T* s, T* dp, T* dk, T* dv, T* kmask) {
  const int64_t D = p.D, Dp = pk.Dp, Lkp = pk.Lkp, G = p.Hq / p.Hkv, off = p.Lk - p.Lq;
  const int64_t j0 = kb * BK, nk = std::min(BK, p.Lk - j0), nkp = round_up(nk, nr<T>());
  const Strides<T> bs = bias_strides(p);
  const bool padded = key_mask(p, b, j0, nk, nkp, kmask);
  std::fill(dk, dk + nk * Dp, T(0));
  std::fill(dv, dv + nk * Dp, T(0));
  constexpr int NR = nr<T>();
  const T* kt = pk.kt + (b * p.Hkv + hk) * Lkp * D + j0 * D;
  const T* vt = pk.vt + (b * p.Hkv + hk) * Lkp * D + j0 * D;
  const T* kp = pk.kp.at(b * p.Hkv + hk, j0);
  // Queries that see none of these keys (causal) are skipped: only i + off >= j0 matter.
  const int64_t qstart = p.causal ? std::clamp<int64_t>(j0 - off, 0, p.Lq) : 0;
  for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
    const int64_t bh = b * p.Hq + h;
    for (int64_t i0 = qstart; i0 < p.Lq; i0 += BQ) {
      const int64_t m = std::min(BQ, p.Lq - i0), row0 = bh * p.Lq + i0;
      // P = exp(S - lse) recomputed; dP = dO V^T; dS = P (dP - delta).
      gemm<T, false>(m, nkp, D, p.q + row0 * D, D, kt, NR, D * NR, s, BK);
      gemm<T, false>(m, nkp, D, pk.dout + row0 * D, D, vt, NR, D * NR, dp, BK);
      for (int64_t r = 0; r < m; ++r) {
        T* sr = s + r * BK;
        T* dpr = dp + r * BK;
        const T l = pk.lse[row0 + r], dl = pk.delta[row0 + r];
        if (l == neg_inf<T>()) {  // fully masked row: P = dS = 0
          std::fill(sr, sr + nkp, T(0));
          std::fill(dpr, dpr + nkp, T(0));
          continue;
        }
        scores(p, bs, b, h, i0 + r, j0, nkp, kmask, padded, sr);
        exp_shift(sr, nkp, l);
        for (int64_t c = 0; c < nkp; ++c) dpr[c] = sr[c] * (dpr[c] - dl);  // dp now holds dS
      }
      // P^T and dS^T are read in place (transposed A).
      gemm<T, true, true>(nk, Dp, m, s, BK, pk.dop.at(bh, i0), pk.dop.ldb, pk.dop.panel, dv, Dp);  // dV += P^T dO
      gemm<T, true, true>(nk, Dp, m, dp, BK, pk.qp.at(bh, i0), pk.qp.ldb, pk.qp.panel, dk, Dp);    // dK += dS^T Q
      gemm<T>(m, Dp, nk, dp, BK, kp, pk.kp.ldb, pk.kp.panel, dq + row0 * Dp, Dp);         // dQ += dS K
      if (grad_bias) {
        for (int64_t r = 0; r < m; ++r) {
          T* g = grad_bias + b * bs.b + h * bs.h + (i0 + r) * bs.i;
          const T* dsr = dp + r * BK;
          if (bs.j) {
            for (int64_t c = 0; c < nk; ++c) g[j0 + c] += dsr[c];
          } else {
            T acc = 0;
            for (int64_t c = 0; c < nk; ++c) acc += dsr[c];
            g[0] += acc;
          }
        }
      }
    }
  }
  // Padding keys get exactly zero gradient (masked_fill semantics), even next to a NaN query row.
  const int64_t kv0 = (b * p.Hkv + hk) * p.Lk + j0;
  for (int64_t c = 0; c < nk; ++c) {
    const bool keep = kmask[c] == T(0);
    for (int64_t d = 0; d < D; ++d) {
      grad_k[(kv0 + c) * D + d] = keep ? p.scale * dk[c * Dp + d] : T(0);
      grad_v[(kv0 + c) * D + d] = keep ? dv[c * Dp + d] : T(0);
    }
  }
}

}  // namespace

template <class T>
void attention_backward(const AttentionParams<T>& p, const T* out, const T* lse, const T* grad_out,
                        const T* grad_lse, T* grad_q, T* grad_k, T* grad_v, T* grad_bias, const CpuOptions& opt) {
  attention_validate(p);
  if (!p.bias) grad_bias = nullptr;
  const int nthreads = threads_for(opt, 2.0 * p.B * p.Hq * p.Lq * p.Lk * p.D);
  const int64_t D = p.D, Dp = round_up(p.D, nr<T>()), Lkp = round_up(p.Lk, nr<T>());
  const int64_t nq = p.B * p.Hq * p.Lq;
  Buf<T> kt_buf{0}, vt_buf{1}, kp_buf{2}, qp_buf{3}, dop_buf{4};
  std::vector<T> delta(nq);
  const uint8_t* pad = p.key_padding_mask;
  pack_transposed(p.k, p.B * p.Hkv, p.Lk, D, Lkp, kt_buf, nthreads, pad, p.Hkv);
  pack_transposed(p.v, p.B * p.Hkv, p.Lk, D, Lkp, vt_buf, nthreads, pad, p.Hkv);
  const Rows<T> kp = rows_operand(p.k, p.B * p.Hkv, p.Lk, D, Dp, kp_buf, nthreads, pad, p.Hkv);
  const Rows<T> qp = rows_operand(p.q, p.B * p.Hq, p.Lq, D, Dp, qp_buf, nthreads);
  const Rows<T> dop = rows_operand(grad_out, p.B * p.Hq, p.Lq, D, Dp, dop_buf, nthreads);
  // Task grid: (b, kv head, chunk of key blocks). Dimensions along which the bias broadcasts are
  // folded into one task when dbias is wanted, so each dbias entry has a single writer.
  const int64_t* bsh = p.bias_shape;
  const int64_t nkb = (p.Lk + BK - 1) / BK;
  const bool fold_b = grad_bias && bsh[0] == 1 && p.B > 1;
  const bool fold_h = grad_bias && bsh[1] == 1 && p.Hq > 1;
  const bool fold_k = grad_bias && bsh[3] == 1 && p.Lk > 1;
  const int64_t nbt = fold_b ? 1 : p.B, nht = fold_h ? 1 : p.Hkv;
  int64_t chunks = 1;
  if (!fold_k) chunks = std::clamp<int64_t>((nthreads + nbt * nht - 1) / (nbt * nht), 1, nkb);

  // One chunk and D == Dp: accumulate straight into grad_q (no extra buffer, no reduction copy).
  const bool dq_direct = chunks == 1 && D == Dp;
  std::vector<T> dq_buf(dq_direct ? 0 : chunks * nq * Dp, T(0));
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t r = 0; r < nq; ++r) {
    T acc = 0;
    for (int64_t d = 0; d < D; ++d) acc += grad_out[r * D + d] * out[r * D + d];
    delta[r] = acc - (grad_lse ? grad_lse[r] : T(0));
    if (dq_direct) std::fill(grad_q + r * D, grad_q + (r + 1) * D, T(0));
  }
  BwdPacked<T> pk{kt_buf.p,
                  vt_buf.p,
                  kp,
                  qp,
                  dop,
                  grad_out,
                  lse,
                  delta.data(),
                  dq_direct ? grad_q : dq_buf.data(),
                  Lkp,
                  Dp};
  if (grad_bias) std::fill(grad_bias, grad_bias + bsh[0] * bsh[1] * bsh[2] * bsh[3], T(0));

  const int64_t ntasks = nbt * nht * chunks;
#pragma omp parallel num_threads(nthreads)
  {
    BwdScratch<T> w(Dp);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < ntasks; ++t) {
      const int64_t c = t % chunks, ht = (t / chunks) % nht, bt = t / (chunks * nht);
      T* dq = pk.dq + c * nq * Dp;
      // Batch innermost: a batch-shared dbias tile stays in cache while every batch adds to it.
      for (int64_t hk = fold_h ? 0 : ht; hk < (fold_h ? p.Hkv : ht + 1); ++hk)
        for (int64_t kb = c; kb < nkb; kb += chunks)  // interleaved: balances causal work
          for (int64_t b = fold_b ? 0 : bt; b < (fold_b ? p.B : bt + 1); ++b)
            backward_block(p, pk, b, hk, kb, dq, grad_k, grad_v, grad_bias, w.s.data(), w.dp.data(),
                           w.dk.data(), w.dv.data(), w.kmask.data());
    }
  }
  // dQ = scale * sum over chunks, in chunk order.
  if (dq_direct) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t r = 0; r < nq; ++r)
      for (int64_t d = 0; d < D; ++d) grad_q[r * D + d] *= p.scale;
    return;
  }
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t r = 0; r < nq; ++r)
    for (int64_t d = 0; d < D; ++d) {
      T acc = 0;
      for (int64_t c = 0; c < chunks; ++c) acc += dq_buf[(c * nq + r) * Dp + d];
      grad_q[r * D + d] = p.scale * acc;
    }
}

#define FACECORE_ATTENTION_INSTANTIATE(T)                                                                  \
  template void attention_validate<T>(const AttentionParams<T>&);                                        \
  template void attention_forward<T>(const AttentionParams<T>&, T*, T*, const CpuOptions&);              \
  template void attention_backward<T>(const AttentionParams<T>&, const T*, const T*, const T*, const T*, \
                                      T*, T*, T*, T*, const CpuOptions&);
FACECORE_ATTENTION_INSTANTIATE(float)
FACECORE_ATTENTION_INSTANTIATE(double)

}  // namespace facecore
