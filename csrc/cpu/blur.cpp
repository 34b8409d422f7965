// CPU separable Gaussian blur (blur.h). Both passes work on whole rows of W * C contiguous values: the
// vertical pass adds weighted copies of neighbouring rows, the horizontal pass weighted shifts of one row
// (the interior as contiguous runs, the reflected borders pixel by pixel). The backward applies the
// transposed passes in reverse order. OpenMP over images when the batch has enough of them, else over
// the rows of each image.
#include "facecore/blur.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "parallel.h"
#include "scratch.h"

namespace facecore {

namespace {

// Normalised taps G[0 .. 2r] of one sigma (> 0), with the radius r = ceil(3 sigma); arithmetic in T as the
// reference's (k / s)^2.
template <class T>
int gaussian_taps(T sigma, std::vector<T>& w) {
  const int r = std::max(1, int(std::ceil(T(3) * sigma)));
  w.resize(2 * r + 1);
  T sum = 0;
  for (int j = -r; j <= r; ++j) {
    const T q = T(j) / sigma;
    w[j + r] = std::exp(T(-0.5) * q * q);
  }
  for (int j = 0; j <= 2 * r; ++j) sum += w[j];
  for (int j = 0; j <= 2 * r; ++j) w[j] /= sum;
  return r;
}

// Source index of i (may lie outside [0, n)) under the border rule: reflect when n > r, else replicate.
inline int64_t border(int64_t i, int64_t n, bool reflect) {
  if (reflect) return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
  return std::clamp<int64_t>(i, 0, n - 1);
}

// Vertical pass over rows [y0, y1) of one image: dst row y = sum_j w_j src row border(y + j - r).
template <class T>
FACECORE_CPU_DISPATCH void pass_y(const T* src, T* dst, int64_t H, int64_t row, const T* w, int r, int64_t y0,
                                  int64_t y1) {
  const bool reflect = H > r;
  for (int64_t y = y0; y < y1; ++y) {
    T* d = dst + y * row;
    std::fill(d, d + row, T(0));
    for (int j = 0; j <= 2 * r; ++j) {
      const T* s = src + border(y + j - r, H, reflect) * row;
      const T wj = w[j];
      for (int64_t i = 0; i < row; ++i) d[i] += wj * s[i];
    }
  }
}

// Horizontal pass over rows [y0, y1): dst pixel x = sum_j w_j src pixel border(x + j - r).
template <class T>
FACECORE_CPU_DISPATCH void pass_x(const T* src, T* dst, int64_t W, int64_t C, const T* w, int r, int64_t y0,
                                  int64_t y1) {
  const bool reflect = W > r;
  const int64_t row = W * C, lo = std::min<int64_t>(r, W), hi = std::max<int64_t>(lo, W - r);
  for (int64_t y = y0; y < y1; ++y) {
    const T* s = src + y * row;
    T* d = dst + y * row;
    std::fill(d, d + row, T(0));
    for (int j = 0; j <= 2 * r; ++j) {  // interior [lo, hi): every tap in range, a contiguous run
      const T wj = w[j];
      const T* sj = s + (j - r) * C;
      for (int64_t i = lo * C; i < hi * C; ++i) d[i] += wj * sj[i];
    }
    for (int64_t x = 0; x < W; ++x) {  // borders
      if (x == lo) x = hi;
      if (x >= W) break;
      for (int j = 0; j <= 2 * r; ++j) {
        const T* sp = s + border(x + j - r, W, reflect) * C;
        for (int64_t c = 0; c < C; ++c) d[x * C + c] += w[j] * sp[c];
      }
    }
  }
}

// Transposed passes (backward): scatter each output's gradient to its sources, in the forward's tap order.
template <class T>
void pass_x_transposed(const T* g, T* dst, int64_t H, int64_t W, int64_t C, const T* w, int r) {
  const bool reflect = W > r;
  std::fill(dst, dst + H * W * C, T(0));
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int j = 0; j <= 2 * r; ++j) {
        T* dp = dst + (y * W + border(x + j - r, W, reflect)) * C;
        const T* gp = g + (y * W + x) * C;
        for (int64_t c = 0; c < C; ++c) dp[c] += w[j] * gp[c];
      }
}

template <class T>
void pass_y_transposed(const T* g, T* dst, int64_t H, int64_t row, const T* w, int r) {
  const bool reflect = H > r;
  std::fill(dst, dst + H * row, T(0));
  for (int64_t y = 0; y < H; ++y)
    for (int j = 0; j <= 2 * r; ++j) {
      T* d = dst + border(y + j - r, H, reflect) * row;
      const T* gy = g + y * row;
      const T wj = w[j];
      for (int64_t i = 0; i < row; ++i) d[i] += wj * gy[i];
    }
}

// The intermediate image, one per thread that blurs (kept between calls: no page faults per batch;
// released after a call that made it bigger than scratch.h allows).
template <class T>
struct Scratch {
  std::vector<T> tmp;
  size_t bytes() const { return cpu::capacity_bytes(tmp); }
};

template <class T>
Scratch<T>& thread_scratch() {
  static thread_local Scratch<T> scratch;
  return scratch;
}

}  // namespace

template <class T>
void validate_sigma(const char* fn, const T* sigma, int64_t B) {
  for (int64_t b = 0; b < B; ++b)
    if (!(sigma[b] >= 0 && sigma[b] <= T(kMaxBlurSigma)))  // also rejects NaN
      throw Error(std::string(fn) + ": sigma[" + std::to_string(b) + "] = " + std::to_string(double(sigma[b])) +
                  ", expected a finite value in [0, " + std::to_string(int(kMaxBlurSigma)) + "] pixels");
}

// Runs passes(src, dst, tmp, w, r, inside) for every image b with sigma[b] > 0 (src, dst: image b of `in`
// and `out`; tmp: an image-sized thread scratch; w: its 2 r + 1 taps; inside: the threads for that image),
// and copies the images with sigma 0 through. The forward and the backward differ only in their passes.
template <class T, class Passes>
void blur_images(const char* fn, const BlurParams<T>& p, const T* in, T* out, const CpuOptions& opt,
                 Passes&& passes) {
  validate_sigma(fn, p.sigma, p.B);
  const int64_t n = p.H * p.W * p.C;
  cpu::for_each_image(p.B, cpu::resolve_threads(opt), [&](int64_t b, int inside) {
    const T* src = in + b * n;
    T* dst = out + b * n;
    if (!(p.sigma[b] > 0)) {
      std::copy(src, src + n, dst);
      return;
    }
    Scratch<T>& sc = thread_scratch<T>();  // (the threads inside one image share the caller's)
    const cpu::ScratchTrim<Scratch<T>> trim(sc);
    sc.tmp.resize(n);
    std::vector<T> w;
    const int r = gaussian_taps(p.sigma[b], w);
    passes(src, dst, sc.tmp.data(), w.data(), r, inside);
  });
}

template <class T>
void gaussian_blur_forward(const BlurParams<T>& p, const T* img, T* out, const CpuOptions& opt) {
  const int64_t H = p.H, W = p.W, C = p.C, row = W * C, n = H * row;
  blur_images("gaussian_blur", p, img, out, opt, [&](const T* src, T* dst, T* tmp, const T* w, int r, int inside) {
    const int threads = int(std::clamp<int64_t>(n / 16384, 1, inside));
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t y0 = H * t / nt, y1 = H * (t + 1) / nt;  // pass_x of row y reads tmp row y only
      pass_y(src, tmp, H, row, w, r, y0, y1);
      pass_x(tmp, dst, W, C, w, r, y0, y1);
    }
  });
}

template <class T>
void gaussian_blur_backward(const BlurParams<T>& p, const T* grad_out, T* grad_img, const CpuOptions& opt) {
  const int64_t H = p.H, W = p.W, C = p.C, row = W * C;
  blur_images("gaussian_blur_backward", p, grad_out, grad_img, opt,
              [&](const T* g, T* dst, T* tmp, const T* w, int r, int) {
                pass_x_transposed(g, tmp, H, W, C, w, r);
                pass_y_transposed(tmp, dst, H, row, w, r);
              });
}

template void validate_sigma<float>(const char*, const float*, int64_t);
template void validate_sigma<double>(const char*, const double*, int64_t);
template void gaussian_blur_forward<float>(const BlurParams<float>&, const float*, float*, const CpuOptions&);
template void gaussian_blur_forward<double>(const BlurParams<double>&, const double*, double*, const CpuOptions&);
template void gaussian_blur_backward<float>(const BlurParams<float>&, const float*, float*, const CpuOptions&);
template void gaussian_blur_backward<double>(const BlurParams<double>&, const double*, double*,
                                             const CpuOptions&);

}  // namespace facecore
