// Launchers of csrc/cuda/conv2d.cu; same contract as csrc/cpu/conv2d.h (NCHW contiguous x, y;
// weight (K, C/groups, R, S); b and gb may be nullptr; outputs fully written, deterministic).
#pragma once
#include "../common/conv2d.h"
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, cudaStream_t stream);
  template <typename T>
  void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx, cudaStream_t stream);
  template <typename T>
  void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb, cudaStream_t stream);
)
