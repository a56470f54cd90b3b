// CPU max, average and adaptive average pooling on bfloat16 and float16 planes (pool2d_half.cpp): the
// float32 kernels of max_pool2d.h / avg_pool2d.h / adaptive_avg_pool2d.h on blocks of planes widened in a
// per-thread scratch, each output rounded once. H = bfloat16 or float16. Same contracts as those headers.
#pragma once
#include <cstdint>

#include "../common/adaptive_avg_pool2d.h"
#include "../common/avg_pool2d.h"
#include "../common/bfloat16.h"
#include "../common/float16.h"
#include "../common/max_pool2d.h"

namespace cnnext::cpu {
template <typename H>
void max_pool2d_forward_half(const MaxPool2dShape& s, const H* x, H* y, int64_t* ind);
// channels_last: x (N, H, W, C) physically, y and ind (N, OH, OW, C); NC = N*C (max_pool2d.h's nhwc)
template <typename H>
void max_pool2d_forward_nhwc_half(const MaxPool2dShape& s, int64_t C, const H* x, H* y, int64_t* ind);
template <typename H>
bool max_pool2d_backward_half(const MaxPool2dShape& s, const H* gy, const int64_t* ind, H* gx);
template <typename H>
void avg_pool2d_forward_half(const AvgPool2dShape& s, const H* x, H* y);
template <typename H>
void avg_pool2d_backward_half(const AvgPool2dShape& s, const H* gy, H* gx);
template <typename H>
void adaptive_avg_pool2d_forward_half(const AdaptiveAvgPool2dShape& s, const H* x, H* y);
template <typename H>
void adaptive_avg_pool2d_backward_half(const AdaptiveAvgPool2dShape& s, const H* gy, H* gx);
}  // namespace cnnext::cpu
