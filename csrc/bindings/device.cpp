// Bindings about devices and errors that belong to no op family.
#include <nanobind/stl/string.h>

#include <string>

#include "facecore/common.h"
#include "registry.h"

namespace facecore::bindings {

FACECORE_BINDINGS(device) {
  // For the tests of the exception mapping (a CUDA failure is a RuntimeError, bad input a ValueError), which
  // must run without a GPU: throws what the CUDA error check throws.
  m.def("_raise_cuda_error", [](const std::string& message) { throw CudaError(message); });
}

}  // namespace facecore::bindings
