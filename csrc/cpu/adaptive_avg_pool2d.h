// CPU kernels of adaptive_avg_pool2d (see adaptive_avg_pool2d.cpp): the window tables for the
// shared average-pooling kernels of avg_pool2d.h (whose planner takes the global variant for (1, 1)).
#pragma once
#include <cstdint>

#include "../common/adaptive_avg_pool2d.h"
#include "avg_pool2d.h"

namespace cnnext::cpu {

// Output i of a length-n axis pools the input [floor(i*n/on), ceil((i+1)*n/on)); divisor = window area.
template <typename T>
AvgPoolPlan<T> adaptive_avg_pool2d_plan(int64_t H, int64_t W, int64_t OH, int64_t OW);

// The entry points (../common/adaptive_avg_pool2d.h): the plan, then avg_pool_forward / avg_pool_backward.
template <typename T>
void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dShape& s, const T* x, T* y);
template <typename T>
void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dShape& s, const T* gy, T* gx);

}  // namespace cnnext::cpu
