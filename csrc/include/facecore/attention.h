// Fused scaled-dot-product attention with a learnable additive bias, forward and backward.
//   S = scale * Q K^T + bias,  S = -inf where masked,  P = softmax(S),  O = P V,  lse = logsumexp(S)
// Masks: causal aligned bottom-right (query i sees keys j <= i + Lk - Lq, FlashAttention >= 2.1);
// key_padding_mask[b, j] != 0 marks key j of batch b as padding (never attended).
// Grouped-query attention: query head h reads key/value head h / (Hq / Hkv).
// A fully masked query row gets O = 0, lse = -inf and zero gradients. Masked scores are overwritten
// (masked_fill semantics, not an added -inf), and padding keys' rows of K and V are read as zeros with
// exactly zero gradient, so NaN/inf held by padding keys (or their bias) never reaches a real row; a
// NaN query gives a NaN row (O and lse) of its own.
//
// The CPU kernels never store the attention matrix: the forward pass is a blocked online softmax
// (FlashAttention), the backward pass recomputes P from lse (FlashAttention-2):
//   D_i = rowsum(dO * O)_i - dlse_i,  dS = P * (dO V^T - D),  dQ = scale dS K,  dK = scale dS^T Q,
//   dV = P^T dO,  dbias = dS summed over the bias's broadcast dimensions.
// Results are deterministic for a given thread count (no atomics; fixed reduction order).
// The GPU path is the Triton kernel in kernels/triton/attention.py (no CUDA C++ kernel yet).
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

template <class T>
struct AttentionParams {
  int64_t B = 0, Hq = 0, Hkv = 0, Lq = 0, Lk = 0, D = 0;
  const T* q = nullptr;  // [B, Hq, Lq, D]
  const T* k = nullptr;  // [B, Hkv, Lk, D]
  const T* v = nullptr;  // [B, Hkv, Lk, D]
  // Optional, contiguous in its own shape bias_shape, each entry 1 (broadcast) or the full size of
  // [B, Hq, Lq, Lk].
  const T* bias = nullptr;
  int64_t bias_shape[4] = {1, 1, 1, 1};
  const uint8_t* key_padding_mask = nullptr;  // optional [B, Lk], nonzero = padding
  bool causal = false;
  T scale = T(1);
};

// Throws facecore::Error (naming the argument) on inconsistent sizes.
template <class T>
void attention_validate(const AttentionParams<T>& p);

template <class T>
void attention_forward(const AttentionParams<T>& p, T* out /* [B, Hq, Lq, D] */, T* lse /* [B, Hq, Lq] */,
                       const CpuOptions& opt);

// grad_lse and grad_bias may be null (no gradient flowing into lse / bias not requiring grad).
// grad_bias has the bias's own shape (bias_shape).
template <class T>
void attention_backward(const AttentionParams<T>& p, const T* out /* [B, Hq, Lq, D] */,
                        const T* lse /* [B, Hq, Lq] */, const T* grad_out /* [B, Hq, Lq, D] */,
                        const T* grad_lse /* [B, Hq, Lq] or null */, T* grad_q /* [B, Hq, Lq, D] */,
                        T* grad_k /* [B, Hkv, Lk, D] */, T* grad_v /* [B, Hkv, Lk, D] */,
                        T* grad_bias /* bias_shape or null */, const CpuOptions& opt);

}  // namespace facecore
