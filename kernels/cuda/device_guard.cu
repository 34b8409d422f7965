// CudaDeviceGuard (facecore/cuda_device.h).
#include "cuda_common.cuh"
#include "facecore/cuda_device.h"

namespace facecore {

CudaDeviceGuard::CudaDeviceGuard(int device) {
  if (device < 0) return;
  int current = -1;
  cuda::check(cudaGetDevice(&current), "device guard", "cudaGetDevice");
  if (current == device) return;
  cuda::check(cudaSetDevice(device), "device guard", "cudaSetDevice");
  previous_ = current;
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // a destructor cannot throw; the next check reports
}

}  // namespace facecore
