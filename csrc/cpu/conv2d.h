// CPU kernels of conv2d (see conv2d.cpp).  The contract csrc/ops/conv2d.cpp relies on:
//   x  (N, C, H, W)        contiguous NCHW input
//   w  (K, C/groups, R, S) contiguous weight
//   b  (K) or nullptr      bias
//   y  (N, K, P, Q)        contiguous NCHW output, fully written
//   P = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1, Q likewise (callers check P, Q >= 1).
// Backward kernels write their outputs fully (no accumulation into the caller's buffer):
//   conv2d_backward_input   gx (N, C, H, W) from gy (N, K, P, Q) and w
//   conv2d_backward_weight  gw (K, C/groups, R, S) from x and gy; gb (K) = sum of gy over N, P, Q
//                           when gb != nullptr
// Results are deterministic: bit-identical across runs at a fixed thread count.
#pragma once
#include <cstdint>

#include "../cuda/conv2d_shape.h"

namespace cnnext::cpu {

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);
template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx);
template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);

}  // namespace cnnext::cpu
