// common/adaptive_avg_pool2d.h -- the geometry of one adaptive_avg_pool2d call (filled by
// csrc/ops/adaptive_avg_pool2d.cpp, read by csrc/cpu/adaptive_avg_pool2d.cpp and
// csrc/cuda/adaptive_avg_pool2d.cu) and the entry points (common/backend.h).
//   x (planes, H, W) -> y (planes, OH, OW), contiguous (planes = N*C).  Output i of a length-n axis
//   pools the input [floor(i*n/on), ceil((i+1)*n/on)); divisor = window area.
#pragma once
#include <cstdint>

#include "backend.h"

namespace cnnext {

struct AdaptiveAvgPool2dShape {
  int64_t planes, H, W, OH, OW;
};

struct AdaptiveAvgPool2dForward {
  template <typename T>
  using Fn = void(const AdaptiveAvgPool2dShape& s, const T* x, T* y, cudaStream_t stream);
};
struct AdaptiveAvgPool2dBackward {  // gx fully written
  template <typename T>
  using Fn = void(const AdaptiveAvgPool2dShape& s, const T* gy, T* gx, cudaStream_t stream);
};

}  // namespace cnnext
