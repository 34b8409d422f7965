// What every kernels/cuda/*.cu shares: the CUDA error check (throws facecore::CudaError, a RuntimeError in
// Python, never the ValueError of bad input), stream-ordered RAII scratch that is freed on every path out of
// a function (exceptions included), and launch sizes checked against what the hardware can run.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "facecore/common.h"

namespace facecore::cuda {

// Throws CudaError("<fn> (cuda): <what>: <CUDA's message>") unless e is cudaSuccess. The runtime's last-error
// state is cleared first, so that a recoverable failure (out of memory) does not resurface at the next
// launch check of an unrelated call.
inline void check(cudaError_t e, const char* fn, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();
  throw CudaError(std::string(fn) + " (cuda): " + what + ": " + cudaGetErrorString(e));
}

// After every launch: a bad configuration (and an earlier asynchronous fault) surfaces here, named.
inline void check_launch(const char* fn, const char* kernel) { check(cudaGetLastError(), fn, kernel); }

constexpr int64_t kMaxGridX = 2147483647;  // gridDim.x
constexpr int64_t kMaxGridYZ = 65535;      // gridDim.y, gridDim.z

// Blocks of `threads` that cover n items along gridDim.x. More than the hardware allows is the caller's
// (too large) input: facecore::Error, a ValueError.
inline unsigned blocks_for(int64_t n, int threads, const char* fn) {
  const int64_t b = (n + threads - 1) / threads;
  if (b > kMaxGridX)
    throw Error(std::string(fn) + ": " + std::to_string(n) + " work items need " + std::to_string(b) +
                " CUDA blocks, more than the grid limit " + std::to_string(kMaxGridX) + "; split the batch");
  return unsigned(b);
}

// Stream-ordered scratch of n elements, freed (stream-ordered, so after the kernels that use it) when the
// owner leaves scope.
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  cudaStream_t stream;
  DeviceBuffer(size_t n, cudaStream_t s, const char* fn) : stream(s) {
    if (n == 0) return;
    if (n > SIZE_MAX / sizeof(T)) throw Error(std::string(fn) + ": scratch size overflows size_t");
    check(cudaMallocAsync(reinterpret_cast<void**>(&ptr), n * sizeof(T), s), fn, "cudaMallocAsync");
  }
  ~DeviceBuffer() {
    if (ptr) cudaFreeAsync(ptr, stream);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace facecore::cuda
