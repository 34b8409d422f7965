// CudaDeviceGuard: makes `device` the current CUDA device for its lifetime and restores the previous one, so
// that a kernel entry point launches on, and allocates from, the device that holds its arrays (tensors on
// cuda:1 while cuda:0 is current). device < 0 and builds without CUDA: a no-op. Throws CudaError when the
// device cannot be made current. Defined in kernels/cuda/device_guard.cu.
#pragma once

#include "facecore/common.h"

namespace facecore {

class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;  // the device to restore, -1 when nothing was changed
};

#ifndef FACECORE_WITH_CUDA
inline CudaDeviceGuard::CudaDeviceGuard(int) {}
inline CudaDeviceGuard::~CudaDeviceGuard() {}
#endif

}  // namespace facecore
