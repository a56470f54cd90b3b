// Launchers of csrc/cuda/adaptive_avg_pool2d.cu.  x: (planes, H, W), y: (planes, OH, OW),
// contiguous (planes = N*C).
#pragma once
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void adaptive_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                   int64_t OW, cudaStream_t stream);
  template <typename T>
  void adaptive_avg_pool2d_backward(const T* gy, T* gx, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                    int64_t OW, cudaStream_t stream);
)
