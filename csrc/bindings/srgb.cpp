// Bindings for srgb_uint8: checks, GIL release (CPU only: on CUDA facecore.ops.srgb_uint8 runs the reference).
#include "facecore/srgb.h"

#include "checks.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

// noise [B, N] and noise_scale [B] are optional: empty arrays (0 elements) mean "absent".
void forward(const Array& x, const Array& noise, const Array& noise_scale, bool srgb, const Array& out,
             int threads) {
  const char* fn = "srgb_uint8_forward";
  if (!is_cpu(x)) fail(fn, "the srgb_uint8 kernel runs on the CPU (CUDA tensors use the reference)");
  check_shape(fn, "x", x, {-1, -1}, "[B, N]");
  const int64_t B = x.shape(0), N = x.shape(1);
  check_contiguous(fn, "x", x);
  check_shape(fn, "out", out, {B, N}, "[B, N] (like x)");
  check_dtype(fn, "out", out, DType::u8);
  check_contiguous(fn, "out", out);
  const bool has_noise = noise.size() != 0;
  dispatch_float(fn, "x", dtype_of(x), [&](auto tag) {
    using T = decltype(tag);
    SrgbParams<T> p;
    p.B = B, p.N = N, p.srgb = srgb;
    if (has_noise) {
      check_shape(fn, "noise", noise, {B, N}, "[B, N] (like x)");
      check_dtype(fn, "noise", noise, dtype_of(x));
      check_contiguous(fn, "noise", noise);
      check_shape(fn, "noise_scale", noise_scale, {B}, "[B]");
      check_dtype(fn, "noise_scale", noise_scale, dtype_of(x));
      check_contiguous(fn, "noise_scale", noise_scale);
      check_same_device(fn, "x", x, {{"noise", &noise}, {"noise_scale", &noise_scale}});
      p.noise = data<T>(noise), p.noise_scale = data<T>(noise_scale);
    }
    check_same_device(fn, "x", x, {{"out", &out}});
    srgb_uint8_forward<T>(p, data<T>(x), data<uint8_t>(out), CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(srgb) {
  using namespace nb::literals;
  m.def("srgb_uint8_forward", &forward, "x"_a, "noise"_a, "noise_scale"_a, "srgb"_a, "out"_a, "threads"_a,
        nb::call_guard<nb::gil_scoped_release>());
}

}  // namespace facecore::bindings
