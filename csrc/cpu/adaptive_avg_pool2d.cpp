// Adaptive average pooling on the CPU.
//
// Any output size: output i of a length-n axis averages the input [floor(i*n/on), ceil((i+1)*n/on));
// the window tables go to the shared kernels of avg_pool2d.cpp (threads over rows, vector adds).
// (1, 1) takes the global variant (avg_pool2d_global.cpp), through the same planner.
// Every output is one fixed-order sum by one thread: deterministic.
#include "adaptive_avg_pool2d.h"

#include <vector>

namespace cnnext::cpu {

template <typename T>
AvgPoolPlan<T> adaptive_avg_pool2d_plan(int64_t H, int64_t W, int64_t OH, int64_t OW) {
  AvgPoolPlan<T> P;
  P.H = H, P.W = W, P.OH = OH, P.OW = OW;
  auto axis = [](int64_t n, int64_t on, std::vector<int64_t>& lo, std::vector<int64_t>& hi) {
    lo.resize(on), hi.resize(on);
    for (int64_t o = 0; o < on; ++o) {
      lo[o] = o * n / on;                     // floor
      hi[o] = ((o + 1) * n + on - 1) / on;  // ceil
    }
  };
  axis(H, OH, P.h0, P.h1);
  axis(W, OW, P.w0, P.w1);
  P.scale.resize(OH * OW);
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow)
      P.scale[oh * OW + ow] = T(1) / T((P.h1[oh] - P.h0[oh]) * (P.w1[ow] - P.w0[ow]));
  return P;
}

template <typename T>
void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dShape& s, const T* x, T* y) {
  avg_pool_forward<T>(x, y, s.planes, adaptive_avg_pool2d_plan<T>(s.H, s.W, s.OH, s.OW));
}

template <typename T>
void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dShape& s, const T* gy, T* gx) {
  avg_pool_backward<T>(gy, gx, s.planes, adaptive_avg_pool2d_plan<T>(s.H, s.W, s.OH, s.OW));
}

#define CNNEXT_INSTANTIATE(T)                                                                        \
  template AvgPoolPlan<T> adaptive_avg_pool2d_plan<T>(int64_t, int64_t, int64_t, int64_t);          \
  template void adaptive_avg_pool2d_forward<T>(const AdaptiveAvgPool2dShape&, const T*, T*);       \
  template void adaptive_avg_pool2d_backward<T>(const AdaptiveAvgPool2dShape&, const T*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
