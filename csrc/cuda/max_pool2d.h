// Launchers of csrc/cuda/max_pool2d.cu; the geometry and index convention in
// ../common/max_pool2d.h (MaxPool2dShape).
#pragma once
#include <cstdint>

#include "../common/max_pool2d.h"
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void max_pool2d_forward(const ::cnnext::MaxPool2dShape& s, const T* x, T* y, int64_t* ind, cudaStream_t stream);
  // gx (NC, H, W) = sum of gy over the outputs whose index points at each input element; fully written.
  template <typename T>
  void max_pool2d_backward(const ::cnnext::MaxPool2dShape& s, const T* gy, const int64_t* ind, T* gx,
                           cudaStream_t stream);
)
