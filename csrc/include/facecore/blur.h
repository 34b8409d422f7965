// Separable Gaussian blur of channels-last images with one sigma per image, forward and backward.
//
//   out[b] = Gx_b * (Gy_b * img[b])     (first along y, then along x; img [B, H, W, C])
//   G_b[j] = exp(-(j / sigma_b)^2 / 2) / sum_k exp(-(k / sigma_b)^2 / 2),  |j|, |k| <= r_b = ceil(3 sigma_b)
//
// Borders reflect without repeating the edge (torch's "reflect": index -1 reads 1) when the side is longer
// than r_b, and replicate the edge otherwise. sigma_b = 0 copies image b through. Each image's result
// depends only on that image and its sigma (no batch-wide radius), so an image blurs the same alone or in
// any batch. Spec: python/facecore/reference/blur.py.
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

// Largest sigma the kernels take (pixels): the radius, and the cost per pixel, grow with sigma.
constexpr double kMaxBlurSigma = 1024.0;

template <class T>
struct BlurParams {
  int64_t B = 0, H = 0, W = 0, C = 0;
  const T* sigma = nullptr;  // [B], each finite and in [0, kMaxBlurSigma]
};

// Throws facecore::Error naming the first image whose sigma is negative, not finite or too large.
template <class T>
void validate_sigma(const char* fn, const T* sigma, int64_t B);

template <class T>
void gaussian_blur_forward(const BlurParams<T>& p, const T* img /* [B, H, W, C] */, T* out, const CpuOptions& opt);

// grad_out [B, H, W, C] -> grad_img [B, H, W, C] (the transpose of the forward's linear map; sigma gets none).
template <class T>
void gaussian_blur_backward(const BlurParams<T>& p, const T* grad_out, T* grad_img, const CpuOptions& opt);

}  // namespace facecore
