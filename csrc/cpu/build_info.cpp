#include <omp.h>

#include "facecore/common.h"

#ifndef FACECORE_CUDA_ARCHS
#define FACECORE_CUDA_ARCHS ""
#endif

namespace facecore {

BuildInfo build_info() {
#ifdef FACECORE_WITH_CUDA
  constexpr bool cuda = true;
#else
  constexpr bool cuda = false;
#endif
  return BuildInfo{FACECORE_VERSION, FACECORE_COMPILER, cuda, FACECORE_CUDA_ARCHS,
                   omp_get_max_threads()};
}

}  // namespace facecore
