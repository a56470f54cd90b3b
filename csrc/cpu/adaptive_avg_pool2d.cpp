// Adaptive average pooling on the CPU.
//
// Any output size: output i of a length-n axis averages the input [floor(i*n/on), ceil((i+1)*n/on));
// the window tables go to the shared kernels of avg_pool2d.cpp (threads over rows, vector adds).
// Global (1, 1), the head of ResNet, GoogLeNet, NiN and DenseNet: each plane is one contiguous
// run of HW values, so
//   forward   y[p] = sum(x[p, :]) / HW   threads over planes; a vector sum when HW fills a vector,
//                                        else a block of V planes at a time, one plane per lane
//   backward  gx[p, :] = gy[p] / HW      threads over planes; a fill
// Every output is one fixed-order sum by one thread: deterministic.
#include "adaptive_avg_pool2d.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "vec.h"

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
void global_avg_pool2d_forward(const T* x, T* y, int64_t planes, int64_t HW) {
  using V = Vec<T>;
  constexpr int N = V::size;
  const T inv = T(1) / T(HW);
  const int64_t grain = std::max<int64_t>(N, 32768 / HW);
  at::parallel_for(0, planes, grain, [&](int64_t p0, int64_t p1) {
    int64_t p = p0;
    if (HW < N) {
      // N planes at a time, plane j in lane j: lane sums stride through memory by HW
      for (; p + N <= p1; p += N) {
        const T* xp = x + p * HW;
        typename V::type acc{};
        for (int64_t k = 0; k < HW; ++k) {
          typename V::type v;
          for (int j = 0; j < N; ++j) v[j] = xp[j * HW + k];
          acc += v;
        }
        V::store(y + p, acc * V::broadcast(inv));
      }
    }
    for (; p < p1; ++p) {
      const T* xp = x + p * HW;
      typename V::type acc{};
      int64_t k = 0;
      for (; k + N <= HW; k += N) acc += V::load(xp + k);
      T s = V::sum(acc);
      for (; k < HW; ++k) s += xp[k];
      y[p] = s * inv;
    }
  });
}

template <typename T>
void global_avg_pool2d_backward(const T* gy, T* gx, int64_t planes, int64_t HW) {
  const T inv = T(1) / T(HW);
  const int64_t grain = std::max<int64_t>(1, 32768 / HW);
  at::parallel_for(0, planes, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) std::fill(gx + p * HW, gx + (p + 1) * HW, gy[p] * inv);
  });
}

#define CNNEXT_INSTANTIATE(T)                                                                        \
  template AvgPoolPlan<T> adaptive_avg_pool2d_plan<T>(int64_t, int64_t, int64_t, int64_t);          \
  template void global_avg_pool2d_forward<T>(const T*, T*, int64_t, int64_t);                      \
  template void global_avg_pool2d_backward<T>(const T*, T*, int64_t, int64_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
