// Launchers of csrc/cuda/batch_norm.cu.  Same contract as csrc/cpu/batch_norm.h:
// x, y, gy, gx: (N, C, S) contiguous (channels_last is (N*H*W, C, 1)); w, b,
// rmean, rvar may be nullptr; mean, invstd: (C,) written by the forward, read by
// the backward.
#pragma once
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void batch_norm_forward(const T* x, T* y, const T* w, const T* b, T* rmean, T* rvar, T* mean, T* invstd,
                          int64_t N, int64_t C, int64_t S, bool training, double momentum, double eps, bool relu,
                          cudaStream_t stream);
  template <typename T>
  void batch_norm_backward(const T* gy, const T* x, const T* w, const T* b, const T* mean, const T* invstd, T* gx,
                           T* gw, T* gb, int64_t N, int64_t C, int64_t S, bool training, bool relu,
                           cudaStream_t stream);
)
