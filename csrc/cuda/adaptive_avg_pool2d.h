// Launchers of csrc/cuda/adaptive_avg_pool2d.cu; geometry and entry points in
// ../common/adaptive_avg_pool2d.h.
#pragma once
#include "../common/adaptive_avg_pool2d.h"
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dShape& s, const T* x, T* y, cudaStream_t stream);
  template <typename T>
  void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dShape& s, const T* gy, T* gx, cudaStream_t stream);
)
