// Argument checks shared by the bindings. Every message names the function, the argument,
// what was expected and what was given, e.g.
//   "blendshape_forward: weights must have shape [B, K] = [4, 52], got [4, 51]".
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>

#include "facecore/common.h"

namespace facecore::bindings {

namespace nb = nanobind;
using Array = nb::ndarray<>;

enum class DType { f16, bf16, f32, f64, i32, i64, u8, b1, other };

inline DType dtype_of(const Array& a) {
  auto d = a.dtype();
  if (d == nb::dtype<float>()) return DType::f32;
  if (d == nb::dtype<double>()) return DType::f64;
  if (d == nb::dtype<int32_t>()) return DType::i32;
  if (d == nb::dtype<int64_t>()) return DType::i64;
  if (d == nb::dtype<uint8_t>()) return DType::u8;
  if (d == nb::dtype<bool>()) return DType::b1;
  if (d.code == (uint8_t)nb::dlpack::dtype_code::Float && d.bits == 16) return DType::f16;
  if (d.code == (uint8_t)nb::dlpack::dtype_code::Bfloat && d.bits == 16) return DType::bf16;
  return DType::other;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::b1: return "bool";
    default: return "an unsupported dtype";
  }
}

inline std::string shape_str(const Array& a) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << "]";
  return s.str();
}

[[noreturn]] inline void fail(const char* fn, const std::string& msg) {
  throw Error(std::string(fn) + ": " + msg);
}

// Checks ndim and every dimension; -1 in `dims` accepts any size. `spec` is the symbolic
// shape shown in the message, e.g. "[B, V, 3]".
inline void check_shape(const char* fn, const char* name, const Array& a,
                        std::initializer_list<int64_t> dims, const char* spec) {
  bool ok = a.ndim() == dims.size();
  size_t i = 0;
  for (int64_t d : dims) {
    if (!ok) break;
    ok = d < 0 || (int64_t)a.shape(i) == d;
    ++i;
  }
  if (!ok) {
    std::ostringstream s;
    s << name << " must have shape " << spec << " = [";
    i = 0;
    for (int64_t d : dims) {
      s << (i++ ? ", " : "");
      if (d < 0) s << "*"; else s << d;
    }
    s << "], got " << shape_str(a);
    fail(fn, s.str());
  }
}

inline void check_dtype(const char* fn, const char* name, const Array& a, DType expected) {
  if (dtype_of(a) != expected)
    fail(fn, std::string(name) + " must be " + dtype_name(expected) + ", got " +
                 dtype_name(dtype_of(a)));
}

inline void check_contiguous(const char* fn, const char* name, const Array& a) {
  int64_t expected = 1;
  for (size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride(i) != expected)
      fail(fn, std::string(name) + " must be C-contiguous (the Python layer makes it so)");
    expected *= (int64_t)a.shape(i);
  }
}

inline bool is_cuda(const Array& a) { return a.device_type() == nb::device::cuda::value; }
inline bool is_cpu(const Array& a) { return a.device_type() == nb::device::cpu::value; }

// All arrays on the same device as `ref` (CPU, or the same CUDA device).
inline void check_same_device(const char* fn, const char* ref_name, const Array& ref,
                              std::initializer_list<std::pair<const char*, const Array*>> others) {
  for (auto& [name, a] : others) {
    if (a->device_type() != ref.device_type() || a->device_id() != ref.device_id())
      fail(fn, std::string(name) + " must be on the same device as " + ref_name);
  }
}

template <class T>
inline T* data(const Array& a) {
  return static_cast<T*>(a.data());
}

// Calls f(T{}) with T = float or double according to `t`.
template <class F>
inline void dispatch_float(const char* fn, const char* name, DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    default:
      fail(fn, std::string(name) + " must be float32 or float64, got " + dtype_name(t));
  }
}

[[noreturn]] inline void no_cuda(const char* fn) {
  fail(fn, "this facecore build has no CUDA kernels (facecore.build_info()['cuda'] is False); "
           "rebuild with nvcc available or use backend='triton'/'reference'");
}

}  // namespace facecore::bindings
