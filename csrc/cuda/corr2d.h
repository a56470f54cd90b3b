// Launchers of csrc/cuda/corr2d.cu.  x: (B, H, W), k: (kh, kw), y: (B, OH, OW), contiguous.
#pragma once
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void corr2d_forward(const T* x, const T* k, T* y, int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw,
                      cudaStream_t stream);
  template <typename T>
  void corr2d_backward_input(const T* gy, const T* k, T* gx, int64_t B, int64_t H, int64_t W, int64_t kh,
                             int64_t kw, cudaStream_t stream);
  template <typename T>
  void corr2d_backward_kernel(const T* gy, const T* x, T* gk, int64_t B, int64_t H, int64_t W, int64_t kh,
                              int64_t kw, cudaStream_t stream);
)
