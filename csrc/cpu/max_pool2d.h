// CPU kernels of max_pool2d (see max_pool2d.cpp); shapes and index convention in
// ../cuda/max_pool2d.h (MaxPool2dShape).
//   forward   x (NC, H, W) -> y, ind (NC, OH, OW); ind[p, oh, ow] = h*W + w of the max in plane p
//   backward  gx (NC, H, W) = scatter-add of gy into ind, fully written; returns false (and skips
//             them) if some index lies outside [0, H*W)
// Ties and NaN as PyTorch: scan the window row by row, replace when (v > max || isnan(v)).
#pragma once
#include <cstdint>

#include "../cuda/max_pool2d.h"

namespace cnnext::cpu {
template <typename T>
void max_pool2d_forward(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind);
template <typename T>
bool max_pool2d_backward(const MaxPool2dShape& s, const T* gy, const int64_t* ind, T* gx);
}  // namespace cnnext::cpu
