// Bindings for attention: checks, dispatch float32/float64, GIL release. CPU only: the GPU path is the
// Triton kernel (kernels/triton/attention.py), chosen by facecore.ops.attention.
#include "facecore/attention.h"

#include <nanobind/stl/optional.h>

#include <optional>
#include <string>

#include "checks.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

using OptArray = std::optional<Array>;

template <class T>
AttentionParams<T> make_params(const char* fn, const Array& q, const Array& k, const Array& v,
                               const OptArray& bias, const OptArray& kpm, bool causal, double scale) {
  check_shape(fn, "q", q, {-1, -1, -1, -1}, "[B, Hq, Lq, D]");
  const int64_t B = q.shape(0), Hq = q.shape(1), Lq = q.shape(2), D = q.shape(3);
  check_shape(fn, "k", k, {B, -1, -1, D}, "[B, Hkv, Lk, D]");
  const int64_t Hkv = k.shape(1), Lk = k.shape(2);
  check_shape(fn, "v", v, {B, Hkv, Lk, D}, "[B, Hkv, Lk, D]");
  const DType t = dtype_of(q);
  for (auto [name, a] : {std::pair{"k", &k}, std::pair{"v", &v}}) check_dtype(fn, name, *a, t);
  check_contiguous(fn, "q", q);
  check_contiguous(fn, "k", k);
  check_contiguous(fn, "v", v);
  check_same_device(fn, "q", q, {{"k", &k}, {"v", &v}});
  if (!is_cpu(q)) fail(fn, "q must be a CPU tensor (the GPU path is the Triton kernel)");
  AttentionParams<T> p;
  p.B = B, p.Hq = Hq, p.Hkv = Hkv, p.Lq = Lq, p.Lk = Lk, p.D = D;
  p.q = data<T>(q), p.k = data<T>(k), p.v = data<T>(v);
  p.causal = causal;
  p.scale = T(scale);
  if (Hkv < 1 || Hq % Hkv != 0)
    fail(fn, "q has " + std::to_string(Hq) + " heads, which must be a multiple of the " + std::to_string(Hkv) +
                 " heads of k and v");
  if (bias) {
    check_shape(fn, "bias", *bias, {-1, -1, -1, -1}, "[B|1, Hq|1, Lq|1, Lk|1]");
    check_dtype(fn, "bias", *bias, t);
    check_contiguous(fn, "bias", *bias);
    check_same_device(fn, "q", q, {{"bias", &*bias}});
    const int64_t full[4] = {B, Hq, Lq, Lk};
    for (int a = 0; a < 4; ++a) {
      p.bias_shape[a] = bias->shape(a);
      if (p.bias_shape[a] != 1 && p.bias_shape[a] != full[a])
        fail(fn, "bias must broadcast to [B, Hq, Lq, Lk] = [" + std::to_string(B) + ", " + std::to_string(Hq) +
                     ", " + std::to_string(Lq) + ", " + std::to_string(Lk) + "], got " + shape_str(*bias));
    }
    p.bias = data<T>(*bias);
  }
  if (kpm) {
    check_shape(fn, "key_padding_mask", *kpm, {B, Lk}, "[B, Lk]");
    check_dtype(fn, "key_padding_mask", *kpm, DType::b1);
    check_contiguous(fn, "key_padding_mask", *kpm);
    check_same_device(fn, "q", q, {{"key_padding_mask", &*kpm}});
    p.key_padding_mask = data<uint8_t>(*kpm);
  }
  return p;
}

void check_like(const char* fn, const char* name, const Array& a, const Array& ref, const char* spec) {
  if (a.ndim() != ref.ndim()) fail(fn, std::string(name) + " must have shape " + spec + ", got " + shape_str(a));
  for (size_t i = 0; i < a.ndim(); ++i)
    if (a.shape(i) != ref.shape(i))
      fail(fn, std::string(name) + " must have shape " + spec + " = " + shape_str(ref) + ", got " + shape_str(a));
  check_dtype(fn, name, a, dtype_of(ref));
  check_contiguous(fn, name, a);
  check_same_device(fn, "q", ref, {{name, &a}});
}

void check_lse(const char* fn, const char* name, const Array& lse, const Array& q) {
  check_shape(fn, name, lse, {(int64_t)q.shape(0), (int64_t)q.shape(1), (int64_t)q.shape(2)}, "[B, Hq, Lq]");
  check_dtype(fn, name, lse, dtype_of(q));
  check_contiguous(fn, name, lse);
  check_same_device(fn, "q", q, {{name, &lse}});
}

void forward(const Array& q, const Array& k, const Array& v, const OptArray& bias, const OptArray& kpm,
             bool causal, double scale, const Array& out, const Array& lse, int threads) {
  const char* fn = "attention_forward";
  dispatch_float(fn, "q", dtype_of(q), [&](auto tag) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, q, k, v, bias, kpm, causal, scale);
    check_like(fn, "out", out, q, "[B, Hq, Lq, D]");
    check_lse(fn, "lse", lse, q);
    attention_forward<T>(p, data<T>(out), data<T>(lse), CpuOptions{threads});
  });
}

void backward(const Array& q, const Array& k, const Array& v, const OptArray& bias, const OptArray& kpm,
              bool causal, double scale, const Array& out, const Array& lse, const Array& grad_out,
              const OptArray& grad_lse, const Array& grad_q, const Array& grad_k, const Array& grad_v,
              const OptArray& grad_bias, int threads) {
  const char* fn = "attention_backward";
  dispatch_float(fn, "q", dtype_of(q), [&](auto tag) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, q, k, v, bias, kpm, causal, scale);
    check_like(fn, "out", out, q, "[B, Hq, Lq, D]");
    check_lse(fn, "lse", lse, q);
    check_like(fn, "grad_out", grad_out, q, "[B, Hq, Lq, D]");
    if (grad_lse) check_lse(fn, "grad_lse", *grad_lse, q);
    check_like(fn, "grad_q", grad_q, q, "[B, Hq, Lq, D]");
    check_like(fn, "grad_k", grad_k, k, "[B, Hkv, Lk, D]");
    check_like(fn, "grad_v", grad_v, v, "[B, Hkv, Lk, D]");
    if (grad_bias) {
      if (!bias) fail(fn, "grad_bias given without bias");
      check_like(fn, "grad_bias", *grad_bias, *bias, "bias.shape");
    }
    attention_backward<T>(p, data<T>(out), data<T>(lse), data<T>(grad_out),
                          grad_lse ? data<T>(*grad_lse) : nullptr, data<T>(grad_q), data<T>(grad_k),
                          data<T>(grad_v), grad_bias ? data<T>(*grad_bias) : nullptr, CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(attention) {
  using namespace nb::literals;
  auto release = nb::call_guard<nb::gil_scoped_release>();
  m.def("attention_forward", &forward, "q"_a, "k"_a, "v"_a, "bias"_a.none(), "key_padding_mask"_a.none(),
        "causal"_a, "scale"_a, "out"_a, "lse"_a, "threads"_a, release);
  m.def("attention_backward", &backward, "q"_a, "k"_a, "v"_a, "bias"_a.none(), "key_padding_mask"_a.none(),
        "causal"_a, "scale"_a, "out"_a, "lse"_a, "grad_out"_a, "grad_lse"_a.none(), "grad_q"_a, "grad_k"_a,
        "grad_v"_a, "grad_bias"_a.none(), "threads"_a, release);
}

}  // namespace facecore::bindings
