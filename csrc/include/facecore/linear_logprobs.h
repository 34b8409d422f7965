// Fused linear log-probs: per-row log-probability of a target class under a linear softmax head,
// without ever materialising the [N, V] logits.
//   logits[n, v] = hidden[n] . weight[v] + bias[v]
//   lse[n]       = log sum_v exp(logits[n, v])              (online, vocab chunk by vocab chunk)
//   logp[n]      = logits[n, targets[n]] - lse[n]           (0 where targets[n] == ignore_index)
// Backward with g = grad_logp and p = exp(logits - lse) (recomputed chunk by chunk):
//   dlogits[n, v] = g[n] (onehot(targets[n])[v] - p[n, v])  (0 for ignored rows)
//   grad_hidden = dlogits . weight,  grad_weight = dlogits^T . hidden,  grad_bias = sum_n dlogits
#pragma once

#include <cstdint>

#include "facecore/common.h"

namespace facecore {

template <class T>
struct LinearLogprobsParams {
  int64_t N = 0, H = 0, V = 0;
  const T* hidden = nullptr;          // [N, H]
  const T* weight = nullptr;          // [V, H]
  const T* bias = nullptr;            // [V] or nullptr
  const int64_t* targets = nullptr;   // [N], each in [0, V) or == ignore_index
  int64_t ignore_index = -100;
};

// Throws facecore::Error naming the first row whose target is neither in [0, V) nor ignore_index.
void validate_targets(const int64_t* targets, int64_t N, int64_t V, int64_t ignore_index);

// logp [N] and the per-row log-sum-exp lse [N] (saved for the backward; 0 for ignored rows).
template <class T>
void linear_logprobs_forward(const LinearLogprobsParams<T>& p, T* logp /* [N] */, T* lse /* [N] */,
                             const CpuOptions& opt);

// Any of grad_hidden [N, H], grad_weight [V, H], grad_bias [V] may be nullptr (not needed).
// Deterministic for a given thread count. Workspace: (threads x A x H) values for grad_hidden, where A
// is the number of rows not ignored, plus an [A, H] copy of those rows when some rows are ignored
// (the forward needs only the copy); never anything of size N x V.
template <class T>
void linear_logprobs_backward(const LinearLogprobsParams<T>& p, const T* grad_logp /* [N] */,
                              const T* lse /* [N] */, T* grad_hidden, T* grad_weight, T* grad_bias,
                              const CpuOptions& opt);

}  // namespace facecore
