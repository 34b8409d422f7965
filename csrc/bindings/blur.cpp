// Bindings for gaussian_blur: checks, GIL release (CPU only: on CUDA facecore.ops.gaussian_blur runs the
// reference).
#include "facecore/blur.h"

#include "checks.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

template <class T>
BlurParams<T> params(const char* fn, const Array& img, const Array& sigma, const Array& out) {
  if (!is_cpu(img)) fail(fn, "the gaussian_blur kernel runs on the CPU (CUDA tensors use the reference)");
  check_shape(fn, "img", img, {-1, -1, -1, -1}, "[B, H, W, C]");
  const DType t = dtype_of(img);
  BlurParams<T> p;
  p.B = img.shape(0), p.H = img.shape(1), p.W = img.shape(2), p.C = img.shape(3);
  check_contiguous(fn, "img", img);
  check_shape(fn, "sigma", sigma, {p.B}, "[B]");
  check_dtype(fn, "sigma", sigma, t);
  check_contiguous(fn, "sigma", sigma);
  check_shape(fn, "out", out, {p.B, p.H, p.W, p.C}, "[B, H, W, C] (like img)");
  check_dtype(fn, "out", out, t);
  check_contiguous(fn, "out", out);
  check_same_device(fn, "img", img, {{"sigma", &sigma}, {"out", &out}});
  p.sigma = data<T>(sigma);
  return p;
}

void forward(const Array& img, const Array& sigma, const Array& out, int threads) {
  const char* fn = "gaussian_blur_forward";
  dispatch_float(fn, "img", dtype_of(img), [&](auto tag) {
    using T = decltype(tag);
    const BlurParams<T> p = params<T>(fn, img, sigma, out);
    gaussian_blur_forward<T>(p, data<T>(img), data<T>(out), CpuOptions{threads});
  });
}

void backward(const Array& grad_out, const Array& sigma, const Array& grad_img, int threads) {
  const char* fn = "gaussian_blur_backward";
  dispatch_float(fn, "grad_out", dtype_of(grad_out), [&](auto tag) {
    using T = decltype(tag);
    const BlurParams<T> p = params<T>(fn, grad_out, sigma, grad_img);
    gaussian_blur_backward<T>(p, data<T>(grad_out), data<T>(grad_img), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(blur) {
  using namespace nb::literals;
  m.def("gaussian_blur_forward", &forward, "img"_a, "sigma"_a, "out"_a, "threads"_a,
        nb::call_guard<nb::gil_scoped_release>());
  m.def("gaussian_blur_backward", &backward, "grad_out"_a, "sigma"_a, "grad_img"_a, "threads"_a,
        nb::call_guard<nb::gil_scoped_release>());
}

}  // namespace facecore::bindings
