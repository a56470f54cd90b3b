// common/avg_pool2d.h -- the geometry of one avg_pool2d call (filled by csrc/ops/avg_pool2d.cpp, read
// by csrc/cpu/avg_pool2d.cpp and csrc/cuda/avg_pool2d.cu), torch's window clipping, shared by both,
// and the entry points (common/backend.h).
//   x (planes, H, W) -> y (planes, OH, OW), contiguous (planes = N*C)
#pragma once
#include <cstdint>

#include "backend.h"

namespace cnnext {

struct AvgPool2dShape {
  int64_t planes, H, W, OH, OW;  // planes, input and output height, width (OH, OW from pool2d_out_size)
  int64_t kH, kW, sH, sW, pH, pW;
  bool count_include_pad;
  int64_t divisor_override;  // 0: none
};

// One axis of a window, torch.nn.functional.avg_pool2d's: output o pools [start, end) with
// start = o*s - p, end = min(start + k, n + p); clipped to the input it is [lo, hi) (lo <= hi; empty
// for a window wholly in the padding), and `padded` = end - start is what count_include_pad divides by.
template <typename I>
struct PoolWindow {
  I lo, hi, padded;
};
template <typename I>
CNNEXT_HOST_DEVICE inline PoolWindow<I> avg_pool2d_window(I o, I n, I k, I s, I p) {
  const I start = o * s - p, end = start + k < n + p ? start + k : n + p;
  const I lo = start > 0 ? start : I(0), clipped = end < n ? end : n;
  return {lo, clipped > lo ? clipped : lo, I(end - start)};
}

// y[p, oh, ow] = sum of x[p] over the clipped window / divisor, where divisor = divisor_override if
// nonzero, else the padded window's area if count_include_pad, else the clipped window's area
// (0 for an empty window).
struct AvgPool2dForward {
  template <typename T>
  using Fn = void(const AvgPool2dShape& s, const T* x, T* y, cudaStream_t stream);
};
// gx (planes, H, W) from gy (planes, OH, OW); every gx element written.
struct AvgPool2dBackward {
  template <typename T>
  using Fn = void(const AvgPool2dShape& s, const T* gy, T* gx, cudaStream_t stream);
};

}  // namespace cnnext
