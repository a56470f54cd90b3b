// Launchers of csrc/cuda/avg_pool2d.cu.  x: (planes, H, W), y: (planes, OH, OW), contiguous
// (planes = N*C); divisor_override 0 means none.
#pragma once
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          int64_t kH, int64_t kW, int64_t sH, int64_t sW, int64_t pH, int64_t pW,
                          bool count_include_pad, int64_t divisor_override, cudaStream_t stream);
  template <typename T>
  void avg_pool2d_backward(const T* gy, T* gx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                           int64_t kH, int64_t kW, int64_t sH, int64_t sW, int64_t pH, int64_t pW,
                           bool count_include_pad, int64_t divisor_override, cudaStream_t stream);
)
