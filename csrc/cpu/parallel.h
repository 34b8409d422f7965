// Internal helpers for the CPU kernels: OpenMP thread count resolution.
#pragma once

#include <omp.h>

#include "facecore/common.h"

namespace facecore::cpu {

inline int resolve_threads(const CpuOptions& opt) {
  return opt.num_threads > 0 ? opt.num_threads : omp_get_max_threads();
}

}  // namespace facecore::cpu
