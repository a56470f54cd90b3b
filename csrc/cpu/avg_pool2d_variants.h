// avg_pool2d_variants.h -- the CPU average-pooling variants (avg_pool2d and adaptive_avg_pool2d
// share them: both ops are an AvgPoolPlan, avg_pool2d.h), each a function with its direction's one
// signature, and the tables that name them.  The planner (avg_pool2d.cpp) picks one per call from
// the plan; tests and benchmarks run any of them by name with CNNEXT_AVG_POOL2D=<variant> (variant.h:
// one that does not run on the call raises).
//
//   direction   variant  file                    runs on
//   forward     rows     avg_pool2d_rows.cpp     any plan: threads over output rows; the window's
//   backward                                     input rows added with vector adds (forward), or
//                                                the gradient rows that hold an input row
//                                                (backward: a gather), then the column windows
//                                                (WindowSums: one masked vector add per column; a
//                                                deinterleaving vector path for leading [2o, 2o+2)
//                                                windows)
//               2x2      avg_pool2d_2x2.cpp      pairs_plan: every window [2o, 2o+2) on both axes
//                                                (LeNet, DenseNet's transitions): one output row <->
//                                                two input rows, nothing else
//               global   avg_pool2d_global.cpp   global_plan: one output per plane, the whole plane
//                                                its window (adaptive (1, 1) heads)
// Every output is one fixed-order sum computed by one thread: results do not depend on the thread
// count; the variants sum in different orders (equal within rounding).
#pragma once
#include <cstdint>
#include <vector>

#include "avg_pool2d.h"
#include "variant.h"

namespace cnnext::cpu {

template <typename T>
using AvgPoolForwardFn = void (*)(const AvgPoolPlan<T>& P, int64_t planes, const T* x, T* y);
template <typename T>
using AvgPoolBackwardFn = void (*)(const AvgPoolPlan<T>& P, int64_t planes, const T* gy, T* gx);
template <typename Fn, typename T>
using AvgPoolVariant = Variant<Fn, AvgPoolPlan<T>>;

// Number of leading windows that are exactly [2i, 2i+2).
inline int64_t leading_pairs(const std::vector<int64_t>& lo, const std::vector<int64_t>& hi) {
  int64_t i = 0;
  while (i < int64_t(lo.size()) && lo[i] == 2 * i && hi[i] == 2 * i + 2) ++i;
  return i;
}
template <typename T>
bool pairs_plan(const AvgPoolPlan<T>& P) {
  return leading_pairs(P.w0, P.w1) == P.OW && leading_pairs(P.h0, P.h1) == P.OH;
}
template <typename T>
bool global_plan(const AvgPoolPlan<T>& P) {
  return P.OH == 1 && P.OW == 1 && P.h0[0] == 0 && P.h1[0] == P.H && P.w0[0] == 0 && P.w1[0] == P.W &&
         P.H * P.W > 0 && P.scale[0] == T(1) / T(P.H * P.W);
}

namespace avg_pool2d_variants {
template <typename T>
void rows_forward(const AvgPoolPlan<T>& P, int64_t planes, const T* x, T* y);
template <typename T>
void rows_backward(const AvgPoolPlan<T>& P, int64_t planes, const T* gy, T* gx);
template <typename T>
void pairs_forward(const AvgPoolPlan<T>& P, int64_t planes, const T* x, T* y);
template <typename T>
void pairs_backward(const AvgPoolPlan<T>& P, int64_t planes, const T* gy, T* gx);
template <typename T>
void global_forward(const AvgPoolPlan<T>& P, int64_t planes, const T* x, T* y);
template <typename T>
void global_backward(const AvgPoolPlan<T>& P, int64_t planes, const T* gy, T* gx);
}  // namespace avg_pool2d_variants

}  // namespace cnnext::cpu

// Explicit instantiations of a variant file's two functions, for float and double.
#define CNNEXT_AVG_POOL2D_VARIANT(fwd, bwd)                                                       \
  template void fwd<float>(const AvgPoolPlan<float>&, int64_t, const float*, float*);             \
  template void fwd<double>(const AvgPoolPlan<double>&, int64_t, const double*, double*);         \
  template void bwd<float>(const AvgPoolPlan<float>&, int64_t, const float*, float*);             \
  template void bwd<double>(const AvgPoolPlan<double>&, int64_t, const double*, double*);
