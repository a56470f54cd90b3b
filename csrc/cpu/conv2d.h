// CPU kernels of conv2d (the planner conv2d.cpp; its variants in conv2d_variants.h).  The contract
// csrc/ops/conv2d.cpp relies on (geometry in ../common/conv2d.h):
//   x  (N, C, H, W)        contiguous NCHW input
//   w  (K, C/groups, R, S) contiguous weight
//   b  (K) or nullptr      bias
//   y  (N, K, P, Q)        contiguous NCHW output, fully written
// Backward kernels write their outputs fully (no accumulation into the caller's buffer):
//   conv2d_backward_input   gx (N, C, H, W) from gy (N, K, P, Q) and w
//   conv2d_backward_weight  gw (K, C/groups, R, S) from x and gy; gb (K) = sum of gy over N, P, Q
//                           when gb != nullptr
// Results are deterministic: bit-identical across runs at a fixed thread count.
#pragma once
#include <cstdint>

#include "../common/conv2d.h"

namespace cnnext::cpu {

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);
template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx);
template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);

}  // namespace cnnext::cpu
