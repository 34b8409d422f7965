// Thread-local scratch for the CPU kernels that a thread keeps between calls (a renderer draws the same mesh
// at the same size every frame: no allocation, no page faults per frame) but never hoards: when a call
// returns or throws, a scratch set holding more than kKeepScratchBytes is released, so one huge call does not
// leave the process hundreds of MB larger for the rest of its life.
#pragma once

#include <cstddef>
#include <vector>

namespace facecore::cpu {

constexpr size_t kKeepScratchBytes = size_t(128) << 20;

template <class... V>
size_t capacity_bytes(const V&... v) {
  return (size_t(0) + ... + (v.capacity() * sizeof(typename V::value_type)));
}

// Usage: `static thread_local Scratch sc; ScratchTrim<Scratch> trim(sc);` with Scratch::bytes().
template <class S>
struct ScratchTrim {
  S& s;
  explicit ScratchTrim(S& scratch) : s(scratch) {}
  ~ScratchTrim() {
    if (s.bytes() > kKeepScratchBytes) s = S{};
  }
  ScratchTrim(const ScratchTrim&) = delete;
  ScratchTrim& operator=(const ScratchTrim&) = delete;
};

}  // namespace facecore::cpu
