// common/batch_norm.h -- the dimensions and settings of one batch_norm call (filled by
// csrc/ops/batch_norm.cpp, read by csrc/cpu/batch_norm.cpp and csrc/cuda/batch_norm.cu), its tensors,
// and the entry points (common/backend.h).
//   x, y, gy, gx: (N, C, S) contiguous, S = prod(spatial dims).  S == 1 also covers the channels-last
//   layout (N*H*W, C, 1) and (N, C) inputs: rows of C channels.
//   w, b: (C,) or nullptr (affine=False: w = 1, b = 0).  running_mean, running_var: (C,) or nullptr.
//   mean, invstd: (C,) outputs of the forward (the batch's statistics in training, the running ones
//   otherwise) that the backward reads.  relu: y = max(BN(x), 0), and the backward masks grad_output
//   with BN(x) > 0.
#pragma once
#include <cstdint>

#include "backend.h"

namespace cnnext {

struct BatchNormShape {
  int64_t N, C, S;
  bool training;
  double momentum, eps;  // the forward's
  bool relu;
};

template <typename T>
struct BatchNormForwardArgs {
  const T* x;
  T* y;
  const T *w, *b;
  T *running_mean, *running_var;
  T *mean, *invstd;
};

template <typename T>
struct BatchNormBackwardArgs {
  const T *gy, *x;
  const T *w, *b;
  const T *mean, *invstd;
  T *gx, *gw, *gb;  // gw, gb: (C,) always written (the sums of gy * xhat and of gy)
};

struct BatchNormForward {
  template <typename T>
  using Fn = void(const BatchNormShape& s, const BatchNormForwardArgs<T>& a, cudaStream_t stream);
};
struct BatchNormBackward {
  template <typename T>
  using Fn = void(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a, cudaStream_t stream);
};

}  // namespace cnnext
