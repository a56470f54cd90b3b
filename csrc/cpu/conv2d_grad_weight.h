// grad weight of conv2d on the CPU as dot products over padded phase planes (conv2d_grad_weight.cpp).
#pragma once
#include <cstdint>

#include "../cuda/conv2d_shape.h"

namespace cnnext::cpu {

// gw (K, C/groups, R, S) = sum over n, p, q of gy[n, k, p, q] * x[n, c, p*sh - ph + r, q*sw - pw + s],
// fully written (no bias: the caller sums gy for it).  Handles every shape with dilation 1 whose
// per-image offsets fit in 32 bits; returns false (and writes nothing) otherwise.
template <typename T>
bool conv2d_backward_weight_planes(const Conv2dShape& s, const T* x, const T* gy, T* gw);

}  // namespace cnnext::cpu
