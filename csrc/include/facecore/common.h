// facecore public C++ API: shared definitions.
//
// Kernels are framework-free: they take plain pointers, sizes and (for CUDA) a stream.
// Every pointer argument is annotated with its shape, e.g. `const T* weights; // [B, K]`.
// Errors are reported by throwing facecore::Error (a std::invalid_argument, ValueError in Python),
// whose message names the argument and what was expected. Failures of the CUDA runtime (out of
// memory, a faulting kernel, a bad launch) throw facecore::CudaError (a std::runtime_error,
// RuntimeError in Python): they are not the caller's bad input.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace facecore {

struct Error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Opaque CUDA stream handle (cudaStream_t) so that headers need no CUDA include.
using Stream = void*;

// Number of threads a CPU kernel may use; 0 or less means "all the OpenMP default allows".
// Python passes torch.get_num_threads() so that facecore honours torch's setting.
struct CpuOptions {
  int num_threads = 0;
};

// Build facts, as reported by facecore.build_info().
struct BuildInfo {
  const char* version;
  const char* compiler;
  bool cuda;
  const char* cuda_archs;  // "" when CUDA kernels were not compiled
  int openmp_max_threads;
};
BuildInfo build_info();

}  // namespace facecore
