// The 2x2 variant of average pooling (avg_pool2d_variants.h): every window is [2o, 2o+2) on both
// axes.  Forward: threads over output rows, output row (p, oh) = the pair sums of input rows 2oh and
// 2oh+1 (read in place, even and odd lanes deinterleaved).  Backward: threads over planes, each
// gy[oh, ow] * scale duplicated into the two lanes of input rows 2oh and 2oh+1.
#include <ATen/Parallel.h>

#include "avg_pool2d_lanes.h"
#include "avg_pool2d_variants.h"

namespace cnnext::cpu {
namespace {

// Output rows [r0, r1) of the 2x2 stride-2 case (every window [2oh, 2oh+2) x [2ow, 2ow+2)):
// output row (p, oh) pairs input rows 2oh and 2oh+1 of plane p, read in place.
template <typename T>
void forward_2x2(const T* x, T* y, const AvgPoolPlan<T>& P, int64_t r0, int64_t r1) {
  const int64_t H = P.H, W = P.W, OH = P.OH, OW = P.OW;
  int64_t p = r0 / OH, oh = r0 % OH;
  for (int64_t r = r0; r < r1; ++r) {
    const T* ra = x + (p * H + 2 * oh) * W;
    pair_sums<true>(ra, ra + W, P.scale.data() + oh * OW, y + r * OW, OW);
    if (++oh == OH) oh = 0, ++p;
  }
}

// Planes [p0, p1) of the 2x2 stride-2 case: output row (p, oh) feeds input rows 2oh and 2oh+1;
// rows and columns past the last window (odd H or W in floor mode) get zero.
template <typename T>
void backward_2x2(const T* gy, T* gx, const AvgPoolPlan<T>& P, int64_t p0, int64_t p1) {
  using V = Vec<T>;
  constexpr int N = V::size;
  constexpr auto idx = std::make_index_sequence<N>{};
  const int64_t H = P.H, W = P.W, OH = P.OH, OW = P.OW;
  for (int64_t p = p0; p < p1; ++p) {
    T* gxp = gx + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh) {
      // gx[2oh + {0,1}, 2ow + {0,1}] = gy[oh, ow] * scale[oh, ow], N outputs at a time
      const T *gyr = gy + (p * OH + oh) * OW, *sc = P.scale.data() + oh * OW;
      T *ra = gxp + 2 * oh * W, *rb = ra + W;
      for (int64_t i = 0; i < OW; i += N) {
        const int64_t m = std::min<int64_t>(N, OW - i), nlo = std::min<int64_t>(2 * m, N), nhi = 2 * m - nlo;
        const typename V::type g = load_n(gyr + i, m) * load_n(sc + i, m);
        const typename V::type lo = dup_low(g, idx), hi = dup_high<typename V::type, N>(g, idx);
        store_n(ra + 2 * i, lo, nlo), store_n(ra + 2 * i + N, hi, nhi);
        store_n(rb + 2 * i, lo, nlo), store_n(rb + 2 * i + N, hi, nhi);
      }
      if (W > 2 * OW) ra[W - 1] = rb[W - 1] = T(0);
    }
    std::fill(gxp + 2 * OH * W, gxp + H * W, T(0));
  }
}

}  // namespace

template <typename T>
void avg_pool2d_variants::pairs_forward(const AvgPoolPlan<T>& P, int64_t planes, const T* x, T* y) {
  const int64_t grain = std::max<int64_t>(1, 32768 / (2 * P.W + P.OW));
  at::parallel_for(0, planes * P.OH, grain, [&](int64_t r0, int64_t r1) { forward_2x2(x, y, P, r0, r1); });
}

template <typename T>
void avg_pool2d_variants::pairs_backward(const AvgPoolPlan<T>& P, int64_t planes, const T* gy, T* gx) {
  at::parallel_for(0, planes, std::max<int64_t>(1, 32768 / (P.H * P.W)),
                   [&](int64_t p0, int64_t p1) { backward_2x2(gy, gx, P, p0, p1); });
}

CNNEXT_AVG_POOL2D_VARIANT(avg_pool2d_variants::pairs_forward, avg_pool2d_variants::pairs_backward)

}  // namespace cnnext::cpu
