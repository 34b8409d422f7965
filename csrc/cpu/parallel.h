// Internal helpers for the CPU kernels: OpenMP thread count and runtime instruction-set dispatch.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <thread>

#include "facecore/common.h"

// FACECORE_CPU_DISPATCH compiles a function twice, for x86-64-v3 (AVX2 + FMA) and for the baseline,
// and picks one at load time (GCC/Clang target_clones), so one wheel runs everywhere at full speed.
// Put it on the per-tile work function called *inside* an OpenMP loop: OpenMP outlines parallel
// bodies into separate functions that would not inherit the clones.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#define FACECORE_CPU_DISPATCH __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FACECORE_CPU_DISPATCH
#endif

namespace facecore::cpu {

// Most threads a kernel ever starts: oversubscribing a core more than 4x only adds overhead, and an
// absurd request (threads=100000, torch.set_num_threads(40000)) would make libgomp abort on thread
// creation.
inline int max_threads() {
  static const int limit = [] {
    const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
    return int(std::clamp<int64_t>(omp_get_thread_limit(), 1, 4 * hw));
  }();
  return limit;
}

// The thread count for a kernel: the request (or OpenMP's default when <= 0), clamped to [1, max_threads()].
inline int resolve_threads(const CpuOptions& opt) {
  return std::clamp(opt.num_threads > 0 ? opt.num_threads : omp_get_max_threads(), 1, max_threads());
}

}  // namespace facecore::cpu
