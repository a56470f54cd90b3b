// CPU kernels of avg_pool2d and adaptive_avg_pool2d (see avg_pool2d.cpp).
//
// Both ops are one computation: every output y[p, oh, ow] of a plane p (p = n*C + c,
// NCHW contiguous) is the sum of the input rectangle [h0[oh], h1[oh]) x [w0[ow], w1[ow])
// times scale[oh*OW + ow] (1 / divisor).  An AvgPoolPlan holds these tables; the ops
// differ only in how they build them (avg_pool2d_plan here, adaptive_avg_pool2d_plan in
// adaptive_avg_pool2d.h, which also has the global (1, 1) kernels).
#pragma once
#include <cstdint>
#include <vector>

#include "simd.h"  // load_n, store_n (also used by adaptive_avg_pool2d.cpp)

namespace cnnext::cpu {

template <typename T>
struct AvgPoolPlan {
  int64_t H = 0, W = 0, OH = 0, OW = 0;
  std::vector<int64_t> h0, h1, w0, w1;  // clipped windows (OH, OW entries); h0 <= h1, both nondecreasing
  std::vector<T> scale;                 // (OH*OW) 1 / divisor; 0 for an empty window
};

// torch.nn.functional.avg_pool2d's windows: hstart = oh*sH - pH, hend = min(hstart + kH, H + pH),
// divisor = divisor_override if nonzero, else (hend - hstart) * (wend - wstart) if
// count_include_pad, else the number of in-bounds elements.  OH, OW from the ops layer.
template <typename T>
AvgPoolPlan<T> avg_pool2d_plan(int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t kH, int64_t kW, int64_t sH,
                               int64_t sW, int64_t pH, int64_t pW, bool count_include_pad, int64_t divisor_override);

// x: (planes, H, W) -> y: (planes, OH, OW), contiguous.
template <typename T>
void avg_pool2d_forward(const T* x, T* y, int64_t planes, const AvgPoolPlan<T>& plan);
// gy: (planes, OH, OW) -> gx: (planes, H, W), contiguous; every gx element written.
template <typename T>
void avg_pool2d_backward(const T* gy, T* gx, int64_t planes, const AvgPoolPlan<T>& plan);

}  // namespace cnnext::cpu
