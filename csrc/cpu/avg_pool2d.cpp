// Average pooling on the CPU (avg_pool2d and adaptive_avg_pool2d share these kernels):
//
//   y[p, oh, ow] = scale[oh, ow] * sum_{h in [h0[oh], h1[oh]), w in [w0[ow], w1[ow])} x[p, h, w]
//
// This file: avg_pool2d's plan (its windows and divisors), and the planner both ops call, which
// picks one variant per call from the plan (the table in avg_pool2d_variants.h, each variant in its
// own file):
//   global   one output whose window is the whole plane (adaptive (1, 1) heads)
//   2x2      every window [2o, 2o+2) on both axes (LeNet, DenseNet's transitions)
//   rows     everything else
// CNNEXT_AVG_POOL2D=<variant> forces one (tests, diagnostics; read per call).
#include "avg_pool2d.h"

#include "avg_pool2d_variants.h"

namespace cnnext::cpu {
namespace {

using namespace avg_pool2d_variants;

template <typename T>
struct Variants {
  static constexpr AvgPoolVariant<AvgPoolForwardFn<T>, T> forward[] = {
      {"rows", any_shape<AvgPoolPlan<T>>, rows_forward<T>},
      {"2x2", pairs_plan<T>, pairs_forward<T>},
      {"global", global_plan<T>, global_forward<T>},
  };
  static constexpr AvgPoolVariant<AvgPoolBackwardFn<T>, T> backward[] = {
      {"rows", any_shape<AvgPoolPlan<T>>, rows_backward<T>},
      {"2x2", pairs_plan<T>, pairs_backward<T>},
      {"global", global_plan<T>, global_backward<T>},
  };
};

// ---- the planner: one choice, the same for both directions ----
template <typename T>
const char* plan_name(const AvgPoolPlan<T>& P) {
  return global_plan(P) ? "global" : pairs_plan(P) ? "2x2" : "rows";
}

}  // namespace

template <typename T>
AvgPoolPlan<T> avg_pool2d_plan(const AvgPool2dShape& s) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const bool count_include_pad = s.count_include_pad;
  const int64_t divisor_override = s.divisor_override;
  AvgPoolPlan<T> P;
  P.H = H, P.W = W, P.OH = OH, P.OW = OW;
  // one axis: clipped window and the padded extent (hend - hstart) that count_include_pad divides by
  auto axis = [](int64_t n, int64_t on, int64_t k, int64_t s, int64_t p, std::vector<int64_t>& lo,
                 std::vector<int64_t>& hi, std::vector<int64_t>& padded) {
    lo.resize(on), hi.resize(on), padded.resize(on);
    for (int64_t o = 0; o < on; ++o) {
      const PoolWindow<int64_t> win = avg_pool2d_window<int64_t>(o, n, k, s, p);
      lo[o] = win.lo, hi[o] = win.hi, padded[o] = win.padded;
    }
  };
  std::vector<int64_t> ph, pw;
  axis(H, OH, s.kH, s.sH, s.pH, P.h0, P.h1, ph);
  axis(W, OW, s.kW, s.sW, s.pW, P.w0, P.w1, pw);
  P.scale.resize(OH * OW);
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t inside = (P.h1[oh] - P.h0[oh]) * (P.w1[ow] - P.w0[ow]);
      const int64_t divisor = divisor_override ? divisor_override : count_include_pad ? ph[oh] * pw[ow] : inside;
      P.scale[oh * OW + ow] = inside == 0 ? T(0) : T(1) / T(divisor);
    }
  return P;
}

template <typename T>
void avg_pool_forward(const T* x, T* y, int64_t planes, const AvgPoolPlan<T>& P) {
  const auto* v = forced(Variants<T>::forward, "avg_pool2d", "CNNEXT_AVG_POOL2D", P);
  (v ? *v : by_name(Variants<T>::forward, plan_name(P))).fn(P, planes, x, y);
}

template <typename T>
void avg_pool_backward(const T* gy, T* gx, int64_t planes, const AvgPoolPlan<T>& P) {
  const auto* v = forced(Variants<T>::backward, "avg_pool2d", "CNNEXT_AVG_POOL2D", P);
  (v ? *v : by_name(Variants<T>::backward, plan_name(P))).fn(P, planes, gy, gx);
}

template <typename T>
void avg_pool2d_forward(const AvgPool2dShape& s, const T* x, T* y) {
  avg_pool_forward(x, y, s.planes, avg_pool2d_plan<T>(s));
}

template <typename T>
void avg_pool2d_backward(const AvgPool2dShape& s, const T* gy, T* gx) {
  avg_pool_backward(gy, gx, s.planes, avg_pool2d_plan<T>(s));
}

#define CNNEXT_INSTANTIATE(T)                                                                  \
  template AvgPoolPlan<T> avg_pool2d_plan<T>(const AvgPool2dShape&);                           \
  template void avg_pool_forward<T>(const T*, T*, int64_t, const AvgPoolPlan<T>&);             \
  template void avg_pool_backward<T>(const T*, T*, int64_t, const AvgPoolPlan<T>&);            \
  template void avg_pool2d_forward<T>(const AvgPool2dShape&, const T*, T*);                    \
  template void avg_pool2d_backward<T>(const AvgPool2dShape&, const T*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
