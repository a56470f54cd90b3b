// max_pool2d on the CPU.  x: (NC, H, W) planes; y, ind: (NC, OH, OW); contiguous.
//
//   y[p, oh, ow]   = max over the window rows h = oh*sh - ph + i*dh, columns w = ow*sw - pw + j*dw
//                    (taps outside the input skipped; ind == nullptr: the values only)
//   ind[p, oh, ow] = h*W + w of that max. The window is scanned row by row and a tap replaces the
//                    running max when (v > max || isnan(v)), PyTorch's rule: the first max wins
//                    ties, the last NaN wins over everything.
//
// The planner: the forward variants live in their own files (the table in max_pool2d_variants.h),
// chosen here from the shape:
//   forward (indices)   planes for planes of <= 16 elements, else rows, else (float64, no AVX-512,
//                       indices past int32) scalar
//   forward_values      planes, else columns on rows of 32 or more (24 or more for windows 3 or
//                       more wide), else rows, else scalar
//   forward_nhwc        channels (the only one)
// The float32 AVX-512 variants keep only the running max on the dependency chain, with a NaN mapped
// to +inf; the rare outputs that end at +inf (a NaN or a +inf in the window) are redone by
// PyTorch's loop, so ties, NaN and +inf follow PyTorch exactly.
//
// Backward: threads take whole planes; a plane's gx is zeroed and then gy is added at ind in
// output order. One thread owns a plane, so overlapping windows accumulate in a fixed order
// and the result does not depend on the thread count.
#include "max_pool2d.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "max_pool2d_variants.h"
#include "max_pool2d_window.h"  // kGrain

namespace cnnext::cpu {
namespace {

using namespace max_pool2d_variants;

template <typename T>
struct Variants {  // float64, or no AVX-512: the portable variants
  static constexpr MaxPool2dVariant<MaxPool2dForwardFn<T>> forward[] = {{"scalar", any_shape<MaxPool2dShape>, scalar_forward<T>}};
  static constexpr MaxPool2dVariant<MaxPool2dForwardNhwcFn<T>> forward_nhwc[] = {
      {"channels", any_shape<MaxPool2dShape>, channels_forward_nhwc<T>}};
  static constexpr const auto& forward_values = forward;  // the same variants with or without indices
  static constexpr bool avx512 = false;
};
#if defined(__AVX512F__)
template <>
struct Variants<float> {
  static constexpr MaxPool2dVariant<MaxPool2dForwardFn<float>> forward[] = {
      {"scalar", any_shape<MaxPool2dShape>, scalar_forward<float>},
      {"rows", int32_fits, rows_forward},
      {"planes", small_plane, planes_forward},
  };
  static constexpr MaxPool2dVariant<MaxPool2dForwardFn<float>> forward_values[] = {
      {"scalar", any_shape<MaxPool2dShape>, scalar_forward<float>},
      {"rows", int32_fits, rows_forward},
      {"planes", small_plane, planes_forward},
      {"columns", int32_fits, columns_forward},
  };
  static constexpr MaxPool2dVariant<MaxPool2dForwardNhwcFn<float>> forward_nhwc[] = {
      {"channels", any_shape<MaxPool2dShape>, channels_forward_nhwc<float>},
  };
  static constexpr bool avx512 = true;
};
#endif

constexpr const char* kForce = "CNNEXT_MAX_POOL2D";

// ---- the planner: one readable choice per direction ----
template <typename T>
MaxPool2dForwardFn<T> plan_forward(const MaxPool2dShape& s, bool indices) {
  using V = Variants<T>;
  if constexpr (V::avx512) {
    // columns first on rows of 32 or more, and of 24 or more for windows 3 or more wide (measured,
    // generic and znver3 tunings: LeNet's 2x2 pools on 28-wide rows are faster by rows)
    if (!indices) {
      if (const auto* v = forced(V::forward_values, "max_pool2d", kForce, s, V::forward_nhwc)) return v->fn;
      const char* name = small_plane(s)                           ? "planes"
                         : int32_fits(s) && (s.W >= 32 || (s.W >= 24 && s.kw >= 3)) ? "columns"
                         : int32_fits(s)                          ? "rows"
                                                                  : "scalar";
      return by_name(V::forward_values, name).fn;
    }
    if (const auto* v = forced(V::forward, "max_pool2d", kForce, s, V::forward_values, V::forward_nhwc)) return v->fn;
    return by_name(V::forward, small_plane(s) ? "planes" : int32_fits(s) ? "rows" : "scalar").fn;
  } else {
    if (const auto* v = forced(V::forward, "max_pool2d", kForce, s, V::forward_nhwc)) return v->fn;
    return V::forward[0].fn;
  }
}

}  // namespace

template <typename T>
void max_pool2d_forward(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind) {
  plan_forward<T>(s, ind != nullptr)(s, x, y, ind);
}

template <typename T>
void max_pool2d_forward_nhwc(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind) {
  using V = Variants<T>;
  const auto* v = forced(V::forward_nhwc, "max_pool2d", kForce, s, V::forward_values);
  (v ? v->fn : V::forward_nhwc[0].fn)(s, C, x, y, ind);
}

template <typename T>
bool max_pool2d_backward(const MaxPool2dShape& s, const T* gy, const int64_t* ind, T* gx) {
  const int64_t HW = s.H * s.W, OHW = s.OH * s.OW;
  std::atomic<bool> ok{true};
  at::parallel_for(0, s.NC, std::max<int64_t>(1, kGrain / (HW + OHW)), [&](int64_t p0, int64_t p1) {
    bool good = true;
    for (int64_t p = p0; p < p1; ++p) {
      T* g = gx + p * HW;
      const T* gyp = gy + p * OHW;
      const int64_t* ip = ind + p * OHW;
      std::fill(g, g + HW, T(0));
      for (int64_t o = 0; o < OHW; ++o) {
        const int64_t i = ip[o];
        if (uint64_t(i) < uint64_t(HW)) g[i] += gyp[o];
        else good = false;
      }
    }
    if (!good) ok = false;
  });
  return ok;
}

#define CNNEXT_INSTANTIATE(T)                                                                  \
  template void max_pool2d_forward<T>(const MaxPool2dShape&, const T*, T*, int64_t*);          \
  template void max_pool2d_forward_nhwc<T>(const MaxPool2dShape&, int64_t, const T*, T*, int64_t*); \
  template bool max_pool2d_backward<T>(const MaxPool2dShape&, const T*, const int64_t*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
