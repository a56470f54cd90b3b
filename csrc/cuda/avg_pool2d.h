// Launchers of csrc/cuda/avg_pool2d.cu; geometry, window clipping and entry points in
// ../common/avg_pool2d.h.
#pragma once
#include "../common/avg_pool2d.h"
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void avg_pool2d_forward(const AvgPool2dShape& s, const T* x, T* y, cudaStream_t stream);
  template <typename T>
  void avg_pool2d_backward(const AvgPool2dShape& s, const T* gy, T* gx, cudaStream_t stream);
)
