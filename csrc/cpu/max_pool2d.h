// CPU kernels of max_pool2d (see max_pool2d.cpp); shapes and index convention in
// ../common/max_pool2d.h (MaxPool2dShape).
//   forward   x (NC, H, W) -> y, ind (NC, OH, OW); ind[p, oh, ow] = h*W + w of the max in plane p
//   backward  gx (NC, H, W) = scatter-add of gy into ind, fully written; returns false (and skips
//             them) if some index lies outside [0, H*W)
// ind may be nullptr (forward): the values only.
// Ties and NaN as PyTorch: scan the window row by row, replace when (v > max || isnan(v)).
#pragma once
#include <cstdint>

#include "../common/max_pool2d.h"

namespace cnnext::cpu {
template <typename T>
void max_pool2d_forward(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind);
// channels_last: x (N, H, W, C) physically, y and ind (N, OH, OW, C); NC = N*C planes as above.
template <typename T>
void max_pool2d_forward_nhwc(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind);
template <typename T>
bool max_pool2d_backward(const MaxPool2dShape& s, const T* gy, const int64_t* ind, T* gx);
}  // namespace cnnext::cpu
