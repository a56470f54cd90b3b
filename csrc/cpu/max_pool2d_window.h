// max_pool2d_window.h -- the window geometry and PyTorch's scan of one window, shared by every
// max_pool2d CPU variant (anonymous namespace, like conv2d_gemm.h: each variant file gets its own
// inlined copy).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../common/max_pool2d.h"

namespace cnnext::cpu {
namespace {

// Work per task of at::parallel_for, in window taps (or elements): enough that small tensors run on
// one thread, where waking the others would cost more than it saves.
constexpr int64_t kGrain = 65536;

// The in-input taps of one window along one axis, for output position o: the first tap past the
// padding (the start stepped forward by the dilation) and the end (exclusive).
struct Span {
  int64_t lo, hi;
};
inline Span window_span(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t dil, int64_t size) {
  int64_t lo = o * stride - pad;
  const int64_t hi = std::min(lo + (k - 1) * dil + 1, size);
  while (lo < 0) lo += dil;
  return {lo, hi};
}
inline Span rows_of(const MaxPool2dShape& s, int64_t oh) {
  return window_span(oh, s.stride_h, s.pad_h, s.kh, s.dil_h, s.H);
}
inline Span cols_of(const MaxPool2dShape& s, int64_t ow) {
  return window_span(ow, s.stride_w, s.pad_w, s.kw, s.dil_w, s.W);
}

// One output's window scan: PyTorch's loop (the first valid tap is the initial index).  Element
// (h, w) of the plane is xp[(h*W + w) * step]: step 1 for NCHW planes, C for one channel of a
// channels_last image.
template <typename T>
inline void pool_one(const MaxPool2dShape& s, const T* xp, int64_t h0, int64_t h1, int64_t ow, T* y,
                     int64_t* ind, int64_t step = 1) {
  const auto [w0, w1] = cols_of(s, ow);
  T best = -std::numeric_limits<T>::infinity();
  int64_t best_i = h0 * s.W + w0;
  for (int64_t h = h0; h < h1; h += s.dil_h)
    for (int64_t w = w0; w < w1; w += s.dil_w) {
      const T v = xp[(h * s.W + w) * step];
      if (v > best || std::isnan(v)) {
        best = v;
        best_i = h * s.W + w;
      }
    }
  *y = best;
  if (ind) *ind = best_i;
}

}  // namespace
}  // namespace cnnext::cpu
