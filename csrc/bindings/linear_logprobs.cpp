// Bindings for linear_logprobs: checks, GIL release. CPU only (the GPU path is the Triton kernel).
#include "facecore/linear_logprobs.h"

#include <nanobind/stl/optional.h>

#include <optional>

#include "checks.h"
#include "registry.h"

namespace facecore::bindings {
namespace {

using OptArray = std::optional<Array>;

template <class T>
LinearLogprobsParams<T> make_params(const char* fn, const Array& hidden, const Array& weight, const OptArray& bias,
                                    const Array& targets, int64_t ignore_index) {
  check_shape(fn, "hidden", hidden, {-1, -1}, "[N, H]");
  const int64_t N = hidden.shape(0), H = hidden.shape(1);
  check_shape(fn, "weight", weight, {-1, H}, "[V, H]");
  const int64_t V = weight.shape(0);
  check_shape(fn, "targets", targets, {N}, "[N]");
  check_dtype(fn, "weight", weight, dtype_of(hidden));
  check_dtype(fn, "targets", targets, DType::i64);
  check_contiguous(fn, "hidden", hidden);
  check_contiguous(fn, "weight", weight);
  check_contiguous(fn, "targets", targets);
  check_same_device(fn, "hidden", hidden, {{"weight", &weight}, {"targets", &targets}});
  LinearLogprobsParams<T> p;
  p.N = N, p.H = H, p.V = V;
  p.hidden = data<T>(hidden), p.weight = data<T>(weight), p.targets = data<int64_t>(targets);
  p.ignore_index = ignore_index;
  if (bias) {
    check_shape(fn, "bias", *bias, {V}, "[V]");
    check_dtype(fn, "bias", *bias, dtype_of(hidden));
    check_contiguous(fn, "bias", *bias);
    check_same_device(fn, "hidden", hidden, {{"bias", &*bias}});
    p.bias = data<T>(*bias);
  }
  return p;
}

void check_out(const char* fn, const char* name, const Array& a, std::initializer_list<int64_t> dims,
               const char* spec, const Array& hidden) {
  check_shape(fn, name, a, dims, spec);
  check_dtype(fn, name, a, dtype_of(hidden));
  check_contiguous(fn, name, a);
  check_same_device(fn, "hidden", hidden, {{name, &a}});
}

template <class F>
void dispatch(const char* fn, const Array& hidden, F&& f) {
  if (!is_cpu(hidden))
    fail(fn, "there is no CUDA kernel for linear_logprobs; use backend='triton' for GPU tensors");
  dispatch_float(fn, "hidden", dtype_of(hidden), f);
}

void forward(const Array& hidden, const Array& weight, const OptArray& bias, const Array& targets,
             int64_t ignore_index, const Array& logp, const Array& lse, int threads) {
  const char* fn = "linear_logprobs_forward";
  dispatch(fn, hidden, [&](auto tag) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, hidden, weight, bias, targets, ignore_index);
    check_out(fn, "logp", logp, {p.N}, "[N]", hidden);
    check_out(fn, "lse", lse, {p.N}, "[N]", hidden);
    linear_logprobs_forward<T>(p, data<T>(logp), data<T>(lse), CpuOptions{threads});
  });
}

void backward(const Array& hidden, const Array& weight, const OptArray& bias, const Array& targets,
              int64_t ignore_index, const Array& grad_logp, const Array& lse, const OptArray& grad_hidden,
              const OptArray& grad_weight, const OptArray& grad_bias, int threads) {
  const char* fn = "linear_logprobs_backward";
  dispatch(fn, hidden, [&](auto tag) {
    using T = decltype(tag);
    auto p = make_params<T>(fn, hidden, weight, bias, targets, ignore_index);
    check_out(fn, "grad_logp", grad_logp, {p.N}, "[N]", hidden);
    check_out(fn, "lse", lse, {p.N}, "[N]", hidden);
    if (grad_hidden) check_out(fn, "grad_hidden", *grad_hidden, {p.N, p.H}, "[N, H]", hidden);
    if (grad_weight) check_out(fn, "grad_weight", *grad_weight, {p.V, p.H}, "[V, H]", hidden);
    if (grad_bias) check_out(fn, "grad_bias", *grad_bias, {p.V}, "[V]", hidden);
    linear_logprobs_backward<T>(p, data<T>(grad_logp), data<T>(lse), grad_hidden ? data<T>(*grad_hidden) : nullptr,
                                grad_weight ? data<T>(*grad_weight) : nullptr,
                                grad_bias ? data<T>(*grad_bias) : nullptr, CpuOptions{threads});
  });
}

}  // namespace

FACECORE_BINDINGS(linear_logprobs) {
  using namespace nb::literals;
  auto release = nb::call_guard<nb::gil_scoped_release>();
  m.def("linear_logprobs_forward", &forward, "hidden"_a, "weight"_a, "bias"_a.none(), "targets"_a,
        "ignore_index"_a, "logp"_a, "lse"_a, "threads"_a, release);
  m.def("linear_logprobs_backward", &backward, "hidden"_a, "weight"_a, "bias"_a.none(), "targets"_a,
        "ignore_index"_a, "grad_logp"_a, "lse"_a, "grad_hidden"_a.none(), "grad_weight"_a.none(),
        "grad_bias"_a.none(), "threads"_a, release);
}

}  // namespace facecore::bindings
