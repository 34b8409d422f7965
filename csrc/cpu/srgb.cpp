// CPU linear -> 8-bit encoding by step thresholds (srgb.h): one table of the 255 input values where the code
// steps up, found once per process, and a bucket table on the value's float bits that leaves a compare or two per
// value; the optional noise term is added first. OpenMP over chunks.
#include "facecore/srgb.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "parallel.h"

namespace facecore {

namespace {

constexpr double kKnee = 0.0031308;

// The float64 formula of one value (srgb.h), for finding the thresholds.
inline int code_of(double v, bool srgb) {
  if (std::isnan(v)) return 0;
  v = std::min(1.0, std::max(0.0, v));
  const double e = !srgb ? v : (v <= kKnee ? 12.92 * v : 1.055 * std::pow(v, 1.0 / 2.4) - 0.055);
  return int(std::floor(255.0 * e + 0.5));
}

inline double decode(double s, bool srgb) {  // E^-1, a starting point for the threshold search
  if (!srgb) return s;
  return s <= 12.92 * kKnee ? s / 12.92 : std::pow((s + 0.055) / 1.055, 2.4);
}

// thr[k - 1] = the smallest T value whose code is >= k (k = 1..255).
template <class T>
void thresholds(bool srgb, T* thr) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  for (int k = 1; k <= 255; ++k) {
    T v = T(decode((k - 0.5) / 255.0, srgb));
    while (code_of(double(v), srgb) >= k) v = std::nextafter(v, -inf);  // now below the step
    while (code_of(double(v), srgb) < k) v = std::nextafter(v, inf);    // the first value at or above it
    thr[k - 1] = v;
  }
}

// Values in [2^-13, 1) fall into buckets by their exponent and top 7 mantissa bits (13 * 128 buckets, each
// far narrower than one code step); lut[bucket] is the code of the bucket's smallest value, so a value
// needs a compare or two against thr. Below 2^-13 every code is 0 (and NaN, negatives), from 1 on 255.
constexpr int kMantissaBits = 7, kExponents = 13, kBuckets = kExponents << kMantissaBits;

template <class T>
struct Bits;
template <>
struct Bits<float> {
  using U = uint32_t;
  static constexpr int shift = 23 - kMantissaBits;
};
template <>
struct Bits<double> {
  using U = uint64_t;
  static constexpr int shift = 52 - kMantissaBits;
};

template <class T>
struct Table {
  T thr[255];
  uint8_t lut[kBuckets];
  typename Bits<T>::U base;  // bucket number of 2^-13
  T lo = std::ldexp(T(1), -kExponents);

  explicit Table(bool srgb) {
    thresholds<T>(srgb, thr);
    base = to_bits(lo) >> Bits<T>::shift;
    for (int b = 0; b < kBuckets; ++b) {
      const typename Bits<T>::U u = (base + typename Bits<T>::U(b)) << Bits<T>::shift;
      T start;
      std::memcpy(&start, &u, sizeof(T));
      lut[b] = uint8_t(std::upper_bound(thr, thr + 255, start) - thr);  // thresholds <= start
    }
  }
  static typename Bits<T>::U to_bits(T v) {
    typename Bits<T>::U u;
    std::memcpy(&u, &v, sizeof(T));
    return u;
  }
  uint8_t code(T v) const {
    if (!(v >= lo)) return 0;
    if (v >= T(1)) return 255;
    int q = lut[(to_bits(v) >> Bits<T>::shift) - base];
    while (q < 255 && v >= thr[q]) ++q;
    return uint8_t(q);
  }
};

template <class T>
FACECORE_CPU_DISPATCH void encode_range(const SrgbParams<T>& p, const T* x, uint8_t* out, const Table<T>& tab,
                                        int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    T v = x[i];
    if (p.noise) v = v + p.noise_scale[i / p.N] * p.noise[i];
    out[i] = tab.code(v);
  }
}

}  // namespace

template <class T>
void srgb_uint8_forward(const SrgbParams<T>& p, const T* x, uint8_t* out, const CpuOptions& opt) {
  static const Table<T> srgb_table(true), linear_table(false);  // found once per process (thread-safe)
  const Table<T>& tab = p.srgb ? srgb_table : linear_table;
  const int64_t n = p.B * p.N;
  constexpr int64_t kChunk = 1 << 15;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int nthreads = int(std::clamp<int64_t>(chunks, 1, cpu::resolve_threads(opt)));
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t c = 0; c < chunks; ++c) encode_range(p, x, out, tab, c * kChunk, std::min(n, (c + 1) * kChunk));
}

template void srgb_uint8_forward<float>(const SrgbParams<float>&, const float*, uint8_t*, const CpuOptions&);
template void srgb_uint8_forward<double>(const SrgbParams<double>&, const double*, uint8_t*, const CpuOptions&);

}  // namespace facecore
