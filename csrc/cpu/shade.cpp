// CPU shading: one pass over the rows, each reading its image's light set (formula in shade.h).
// The gradient is not a kernel: facecore.ops.shade recomputes the reference under autograd.
#include "facecore/shade.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "parallel.h"

namespace facecore {

namespace {

constexpr double kSH[5] = {0.282095, 0.488603, 1.092548, 0.315392, 0.546274};

template <class T>
inline void unit(const T* x, T* out) {
  // as torch.nn.functional.normalize: x / max(|x|, 1e-12)
  const T len = std::max(std::sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]), T(1e-12));
  out[0] = x[0] / len, out[1] = x[1] / len, out[2] = x[2] / len;
}

template <class T>
inline T band(T x, int bands) {
  return std::floor(x * T(bands) + T(0.5)) / T(bands);
}

template <class T>
void shade_row(const ShadeParams<T>& p, int64_t i, T* out) {
  const int64_t b = p.batch[i];
  T n[3], v[3];
  unit(p.normal + p.normal_stride * i, n);
  const bool toon = p.model == ShadeModel::toon;
  const T* amb = p.ambient + 3 * b;
  T irr[3] = {amb[0], amb[1], amb[2]};
  const T* D = p.directions + b * p.L * 3;
  const T* C = p.colors + b * p.L * 3;
  for (int64_t l = 0; l < p.L; ++l) {
    T ndl = std::max(n[0] * D[3 * l] + n[1] * D[3 * l + 1] + n[2] * D[3 * l + 2], T(0));
    if (toon) ndl = band(ndl, p.bands);
    for (int c = 0; c < 3; ++c) irr[c] += ndl * C[3 * l + c];
  }
  if (p.sh) {
    const T x = n[0], y = n[1], z = n[2];
    const T Y[9] = {T(kSH[0]),         T(kSH[1]) * y,     T(kSH[1]) * z,
                    T(kSH[1]) * x,     T(kSH[2]) * x * y, T(kSH[2]) * y * z,
                    T(kSH[3]) * (3 * z * z - 1), T(kSH[2]) * x * z, T(kSH[4]) * (x * x - y * y)};
    const T* S = p.sh + b * 27;
    for (int c = 0; c < 3; ++c) {
      T e = 0;
      for (int k = 0; k < 9; ++k) e += Y[k] * S[3 * k + c];
      e = std::max(e, T(0));
      irr[c] += toon ? band(e, p.bands) : e;
    }
  }
  const T* alb = p.albedo + p.albedo_stride * i;
  for (int c = 0; c < 3; ++c) out[c] = alb[c] * irr[c];
  const T w = p.specular[b];
  if (p.model == ShadeModel::lambert || !p.view || w == T(0)) return;
  unit(p.view + p.view_stride * i, v);
  const T shin = p.shininess[b];
  T spec[3] = {0, 0, 0};
  for (int64_t l = 0; l < p.L; ++l) {
    const T* d = D + 3 * l;
    if (n[0] * d[0] + n[1] * d[1] + n[2] * d[2] <= T(0)) continue;
    T hsum[3] = {v[0] + d[0], v[1] + d[1], v[2] + d[2]}, h[3];
    unit(hsum, h);
    const T ndh = std::max(n[0] * h[0] + n[1] * h[1] + n[2] * h[2], T(0));
    const T s = toon ? T(ndh > T(1) - T(1) / std::max(shin, T(1))) : std::pow(ndh, shin);
    for (int c = 0; c < 3; ++c) spec[c] += s * C[3 * l + c];
  }
  for (int c = 0; c < 3; ++c) out[c] += w * spec[c];
}

}  // namespace

void validate_batch_index(const int64_t* batch, int64_t N, int64_t B) {
  for (int64_t i = 0; i < N; ++i)
    if (batch[i] < 0 || batch[i] >= B)
      throw Error("shade: batch[" + std::to_string(i) + "] = " + std::to_string(batch[i]) +
                  " is outside [0, B=" + std::to_string(B) + ") (the number of light sets)");
}

template <class T>
void shade_forward(const ShadeParams<T>& p, T* rgb, const CpuOptions& opt) {
  validate_batch_index(p.batch, p.N, p.B);
  const int nthreads = cpu::resolve_threads(opt);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < p.N; ++i) shade_row(p, i, rgb + 3 * i);
}

template void shade_forward<float>(const ShadeParams<float>&, float*, const CpuOptions&);
template void shade_forward<double>(const ShadeParams<double>&, double*, const CpuOptions&);

}  // namespace facecore
