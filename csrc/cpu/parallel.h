// Internal helpers for the CPU kernels: OpenMP thread count and runtime instruction-set dispatch.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
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

// Runs body(b, threads_inside) for every image b of a batch: in parallel over images, one whole image per
// thread (threads_inside = 1), when there are at least as many images as threads; else one image at a time
// with all threads inside it. Kernels whose images do not depend on the thread count give the same result
// either way. An exception thrown by a worker (allocation) is rethrown on the calling thread.
template <class F>
void for_each_image(int64_t B, int nthreads, F&& body) {
  if (nthreads > 1 && B >= nthreads) {
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t b = 0; b < B; ++b) {
      try {
        body(b, 1);
      } catch (...) {
#pragma omp critical(facecore_for_each_image_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
  for (int64_t b = 0; b < B; ++b) body(b, nthreads);
}

}  // namespace facecore::cpu
