// Linear float images -> 8-bit codes, with optional per-image additive noise first:
//
//   v = x + noise_scale[b] * noise        (in the input type; no noise term when noise is absent)
//   q = floor(255 * E(clamp(v, 0, 1)) + 1/2),  NaN -> 0
//   E(l) = 12.92 l for l <= 0.0031308, else 1.055 l^(1/2.4) - 0.055   (sRGB, IEC 61966-2-1)  or  E(l) = l
//
// E and the rounding are evaluated in float64. The kernel does not evaluate E per value: q is monotone in
// v, so it finds, once, the 255 smallest input values (of the input type) at which q steps up,
// and each value's code is the number of steps at or below it: exactly the float64 formula with the C
// library's pow (torch's pow may round its last bit differently, which moves a float64 value lying within
// an ulp of a step by one code; float32 values are never that close). Spec: python/facecore/reference/srgb.py.
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

template <class T>
struct SrgbParams {
  int64_t B = 0, N = 0;               // B images of N values each
  const T* noise = nullptr;           // [B, N] or nullptr
  const T* noise_scale = nullptr;     // [B] (with noise)
  bool srgb = true;                   // false: E(l) = l (alpha, masks, data)
};

template <class T>
void srgb_uint8_forward(const SrgbParams<T>& p, const T* x /* [B, N] */, uint8_t* out, const CpuOptions& opt);

}  // namespace facecore
