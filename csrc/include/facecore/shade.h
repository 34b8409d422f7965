// Per-pixel shading of interpolated surface rows with one light set per image (facecore.render.Lights):
//   n = normal / max(|normal|, 1e-12),  ndl_l = max(0, n . d_l),  D = ndl (lambert, blinn_phong) or
//   floor(ndl * bands + 0.5) / bands (toon);  E = max(0, sum_k Y_k(n) sh[k]) (toon: banded the same way)
//   rgb = albedo * (ambient + sum_l D_l c_l + E)
//       + specular * sum_l [ndl_l > 0] S(max(0, n . h_l)) c_l,  h_l = normalize(normalize(view) + d_l),
//   S(x) = x^shininess (blinn_phong) or [x > 1 - 1 / max(shininess, 1)] (toon); no specular for lambert.
// Every row reads the light set of its image batch[i]; rows are independent (no cross-row sums), so a
// row's colour does not depend on how many rows are shaded together.
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

enum class ShadeModel : int { lambert = 0, blinn_phong = 1, toon = 2 };

template <class T>
struct ShadeParams {
  int64_t N = 0, B = 0, L = 0;
  const T* albedo = nullptr;       // [N, 3] rows `albedo_stride` apart
  const T* normal = nullptr;       // [N, 3] rows `normal_stride` apart, need not be unit
  const T* view = nullptr;         // [N, 3] rows `view_stride` apart, towards the camera, or nullptr (then
                                   // no specular term)
  int64_t albedo_stride = 3, normal_stride = 3, view_stride = 3;  // >= 3: rows may be columns of a wider
                                                                  // array (interpolated attributes)
  const int64_t* batch = nullptr;  // [N], every entry in [0, B)
  const T* ambient = nullptr;      // [B, 3]
  const T* directions = nullptr;   // [B, L, 3], unit, towards each light
  const T* colors = nullptr;       // [B, L, 3]
  const T* sh = nullptr;           // [B, 9, 3] irradiance coefficients, or nullptr
  const T* specular = nullptr;     // [B]
  const T* shininess = nullptr;    // [B]
  ShadeModel model = ShadeModel::lambert;
  int bands = 3;
};

// Throws facecore::Error naming the first row whose image index lies outside [0, B).
void validate_batch_index(const int64_t* batch, int64_t N, int64_t B);

template <class T>
void shade_forward(const ShadeParams<T>& p, T* rgb /* [N, 3] */, const CpuOptions& opt);

}  // namespace facecore
