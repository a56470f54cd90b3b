// max_pool2d_variants.h -- the CPU max_pool2d forward variants, each a function with its
// direction's one signature (that of max_pool2d.h's entry points), and the tables that name them.
// The planner (max_pool2d.cpp) picks one per call from the shape; tests and benchmarks run any of
// them by name with CNNEXT_MAX_POOL2D=<variant> (variant.h: one that does not run on the call raises).
//
//   direction        variant          file                       runs on
//   forward          scalar           max_pool2d_scalar.cpp      any shape, float and double: PyTorch's
//   forward_values                                                loop, one output at a time
//                    rows   (*)       max_pool2d_rows.cpp        int32_fits: 16 outputs of a row per
//                                                                vector, a (masked) load per tap
//                    planes (*)       max_pool2d_planes.cpp      small_plane: H*W <= 16 and OH*OW <= 16,
//                                                                a plane per vector, taps as permutes
//   forward_values   columns (*)      max_pool2d_columns.cpp     int32_fits: the window's rows reduced
//                    (values only)                               first, then kw taps per output
//   forward_nhwc     channels         max_pool2d_nhwc.cpp        any shape, float and double: vec.h
//                                                                vectors of channels, the last masked
//   (*) float32 in the avx512 build only.
// forward computes y and ind (ind != nullptr), forward_values y only (ind == nullptr).  Every variant
// writes all of y (and ind) with PyTorch's ties and NaN rule, so all of them give the same values;
// the indices are the same too, except that columns may return either zero where +0 and -0 tie.
#pragma once
#include <cstdint>
#include <limits>

#include "../common/max_pool2d.h"
#include "variant.h"

namespace cnnext::cpu {

template <typename T>
using MaxPool2dForwardFn = void (*)(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind);
template <typename T>
using MaxPool2dForwardNhwcFn = void (*)(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind);
template <typename Fn>
using MaxPool2dVariant = Variant<Fn, MaxPool2dShape>;

// Where the int32 lanes of the AVX-512 variants hold every index and column offset.
inline bool int32_fits(const MaxPool2dShape& s) {
  constexpr int64_t kMax32 = std::numeric_limits<int32_t>::max();
  return s.H * s.W <= kMax32 && 16 * s.stride_w <= kMax32;
}
// A plane and its output fit one 16-lane vector.
inline bool small_plane(const MaxPool2dShape& s) { return s.H * s.W <= 16 && s.OH * s.OW <= 16; }

namespace max_pool2d_variants {
template <typename T>
void scalar_forward(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind);
template <typename T>
void channels_forward_nhwc(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind);
#if defined(__AVX512F__)
void rows_forward(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind);
void planes_forward(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind);
void columns_forward(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind);  // ind: nullptr
#endif
}  // namespace max_pool2d_variants

}  // namespace cnnext::cpu
