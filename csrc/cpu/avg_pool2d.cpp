// Average pooling on the CPU (avg_pool2d and adaptive_avg_pool2d share these kernels):
//
//   y[p, oh, ow] = scale[oh, ow] * sum_{h in [h0[oh], h1[oh]), w in [w0[ow], w1[ow])} x[p, h, w]
//
// Both directions work on whole rows of an NCHW plane, split in two passes:
//   forward   (threads: output rows)  vertical: add the input rows h0..h1-1 with vector adds
//             (one or two rows are read in place); horizontal: sum each column window.
//   backward  (threads: input rows, a gather, no scatter)  vertical: g[ow] = sum over the output
//             rows oh whose window holds input row h of gy[oh, ow] * scale[oh, ow] (vector FMAs);
//             horizontal: gx[h, w] = sum of g over the output columns whose window holds w.
//             An input row with the same output rows as the row above is a copy of it.
// The 2-wide, stride-2 column windows of LeNet and DenseNet ([2ow, 2ow+2)) have a vector path:
// forward deinterleaves even and odd columns and adds them, backward duplicates each value
// into two lanes (vec.h vectors, __builtin_shufflevector).  Every output is one fixed-order sum
// computed by one thread: results do not depend on the thread count.
#include "avg_pool2d.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "vec.h"

namespace cnnext::cpu {
namespace {

using std::size_t;

// (a, b) -> (a[0], a[2], ..., b[0], b[2], ...) and the odd lanes: the even and odd columns of 2N inputs.
template <typename V, size_t... I>
inline V even_lanes(V a, V b, std::index_sequence<I...>) { return __builtin_shufflevector(a, b, (2 * I)...); }
template <typename V, size_t... I>
inline V odd_lanes(V a, V b, std::index_sequence<I...>) { return __builtin_shufflevector(a, b, (2 * I + 1)...); }
// a -> (a[0], a[0], a[1], a[1], ...) over the low half of a, and the same over the high half.
template <typename V, size_t... I>
inline V dup_low(V a, std::index_sequence<I...>) { return __builtin_shufflevector(a, a, (I / 2)...); }
template <typename V, size_t N, size_t... I>
inline V dup_high(V a, std::index_sequence<I...>) { return __builtin_shufflevector(a, a, (N / 2 + I / 2)...); }

// out[i] = scale[i] * (a[2i] + a[2i+1] (+ b[2i] + b[2i+1])) for i < n.
template <bool TWO, typename T>
inline void pair_sums(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ scale,
                      T* __restrict__ out, int64_t n) {
  using V = Vec<T>;
  constexpr int N = V::size;
  constexpr auto idx = std::make_index_sequence<N>{};
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    typename V::type lo = V::load(a + 2 * i), hi = V::load(a + 2 * i + N);
    if constexpr (TWO) {
      lo += V::load(b + 2 * i);
      hi += V::load(b + 2 * i + N);
    }
    V::store(out + i, (even_lanes(lo, hi, idx) + odd_lanes(lo, hi, idx)) * V::load(scale + i));
  }
  for (; i < n; ++i) {
    T s = a[2 * i] + a[2 * i + 1];
    if constexpr (TWO) s += b[2 * i] + b[2 * i + 1];
    out[i] = s * scale[i];
  }
}

// out[2i] = out[2i+1] = g[i] for i < n.
template <typename T>
inline void duplicate_pairs(const T* __restrict__ g, T* __restrict__ out, int64_t n) {
  using V = Vec<T>;
  constexpr int N = V::size;
  constexpr auto idx = std::make_index_sequence<N>{};
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const typename V::type v = V::load(g + i);
    V::store(out + 2 * i, dup_low(v, idx));
    V::store(out + 2 * i + N, dup_high<typename V::type, N>(v, idx));
  }
  for (; i < n; ++i) out[2 * i] = out[2 * i + 1] = g[i];
}

// out[0:n] = a[0:n] + b[0:n]  /  out[0:n] += a[0:n]
template <typename T>
inline void add_rows(int64_t n, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) V::store(out + i, V::load(a + i) + V::load(b + i));
  for (; i < n; ++i) out[i] = a[i] + b[i];
}
template <typename T>
inline void add_row(int64_t n, const T* __restrict__ a, T* __restrict__ out) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) V::store(out + i, V::load(out + i) + V::load(a + i));
  for (; i < n; ++i) out[i] += a[i];
}
// out[0:n] = a*b  /  out[0:n] += a*b
template <typename T>
inline void mul_row(int64_t n, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) V::store(out + i, V::load(a + i) * V::load(b + i));
  for (; i < n; ++i) out[i] = a[i] * b[i];
}
template <typename T>
inline void fma_row(int64_t n, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) V::store(out + i, V::load(out + i) + V::load(a + i) * V::load(b + i));
  for (; i < n; ++i) out[i] += a[i] * b[i];
}

// Number of leading windows that are exactly [2i, 2i+2).
int64_t leading_pairs(const std::vector<int64_t>& lo, const std::vector<int64_t>& hi) {
  int64_t i = 0;
  while (i < int64_t(lo.size()) && lo[i] == 2 * i && hi[i] == 2 * i + 2) ++i;
  return i;
}

// Inverse of monotone windows [lo[o], hi[o]) over n inputs: input i lies in the windows
// [first[i], last[i]) (first = #windows ending at or before i, last = #windows starting at or before i).
void invert_windows(const std::vector<int64_t>& lo, const std::vector<int64_t>& hi, int64_t n,
                    std::vector<int64_t>& first, std::vector<int64_t>& last) {
  const int64_t m = int64_t(lo.size());
  first.assign(n, 0);
  last.assign(n, 0);
  int64_t f = 0, l = 0;
  for (int64_t i = 0; i < n; ++i) {
    while (f < m && hi[f] <= i) ++f;
    while (l < m && lo[l] <= i) ++l;
    first[i] = f;
    last[i] = std::max(f, l);
  }
}

}  // namespace

template <typename T>
AvgPoolPlan<T> avg_pool2d_plan(int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t kH, int64_t kW, int64_t sH,
                               int64_t sW, int64_t pH, int64_t pW, bool count_include_pad, int64_t divisor_override) {
  AvgPoolPlan<T> P;
  P.H = H, P.W = W, P.OH = OH, P.OW = OW;
  // one axis: clipped window and the padded extent (hend - hstart) that count_include_pad divides by
  auto axis = [](int64_t n, int64_t on, int64_t k, int64_t s, int64_t p, std::vector<int64_t>& lo,
                 std::vector<int64_t>& hi, std::vector<int64_t>& padded) {
    lo.resize(on), hi.resize(on), padded.resize(on);
    for (int64_t o = 0; o < on; ++o) {
      const int64_t start = o * s - p, end = std::min(start + k, n + p);
      padded[o] = end - start;
      lo[o] = std::max<int64_t>(start, 0);
      hi[o] = std::max(lo[o], std::min(end, n));
    }
  };
  std::vector<int64_t> ph, pw;
  axis(H, OH, kH, sH, pH, P.h0, P.h1, ph);
  axis(W, OW, kW, sW, pW, P.w0, P.w1, pw);
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
void avg_pool2d_forward(const T* x, T* y, int64_t planes, const AvgPoolPlan<T>& P) {
  const int64_t H = P.H, W = P.W, OH = P.OH, OW = P.OW;
  const int64_t npair = std::min(leading_pairs(P.w0, P.w1), OW);
  int64_t kmax = 1;
  for (int64_t oh = 0; oh < OH; ++oh) kmax = std::max(kmax, P.h1[oh] - P.h0[oh]);
  const int64_t grain = std::max<int64_t>(1, 32768 / (kmax * W + OW));
  at::parallel_for(0, planes * OH, grain, [&](int64_t r0, int64_t r1) {
    std::vector<T> buf(W);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / OH, oh = r % OH, a = P.h0[oh], b = P.h1[oh];
      const T* sc = P.scale.data() + oh * OW;
      T* yr = y + r * OW;
      if (a == b) {
        std::fill(yr, yr + OW, T(0));
        continue;
      }
      // vertical: rows a (and a+1) in place, or their sum in buf
      const T* ra = x + (p * H + a) * W;
      const T* rb = b - a == 2 ? ra + W : nullptr;
      if (b - a > 2) {
        add_rows(W, ra, ra + W, buf.data());
        for (int64_t h = a + 2; h < b; ++h) add_row(W, ra + (h - a) * W, buf.data());
        ra = buf.data();
      }
      // horizontal
      if (rb) pair_sums<true>(ra, rb, sc, yr, npair);
      else pair_sums<false>(ra, rb, sc, yr, npair);
      for (int64_t ow = npair; ow < OW; ++ow) {
        T s = 0;
        for (int64_t w = P.w0[ow]; w < P.w1[ow]; ++w) s += rb ? ra[w] + rb[w] : ra[w];
        yr[ow] = s * sc[ow];
      }
    }
  });
}

template <typename T>
void avg_pool2d_backward(const T* gy, T* gx, int64_t planes, const AvgPoolPlan<T>& P) {
  const int64_t H = P.H, W = P.W, OH = P.OH, OW = P.OW;
  std::vector<int64_t> oh_lo, oh_hi, ow_lo, ow_hi;
  invert_windows(P.h0, P.h1, H, oh_lo, oh_hi);
  invert_windows(P.w0, P.w1, W, ow_lo, ow_hi);
  // leading columns 2i, 2i+1 that lie in output column i only
  int64_t npair = 0;
  while (npair < OW && 2 * npair + 1 < W && ow_lo[2 * npair] == npair && ow_hi[2 * npair] == npair + 1 &&
         ow_lo[2 * npair + 1] == npair && ow_hi[2 * npair + 1] == npair + 1)
    ++npair;
  int64_t kmax = 1;
  for (int64_t h = 0; h < H; ++h) kmax = std::max(kmax, oh_hi[h] - oh_lo[h]);
  const int64_t grain = std::max<int64_t>(1, 32768 / (kmax * OW + W));
  at::parallel_for(0, planes * H, grain, [&](int64_t r0, int64_t r1) {
    std::vector<T> g(OW);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / H, h = r % H, a = oh_lo[h], b = oh_hi[h];
      T* gxr = gx + r * W;
      if (a == b) {
        std::fill(gxr, gxr + W, T(0));
        continue;
      }
      if (r > r0 && h > 0 && oh_lo[h - 1] == a && oh_hi[h - 1] == b) {  // same windows as the row above
        std::memcpy(gxr, gxr - W, W * sizeof(T));
        continue;
      }
      // vertical: g = sum_{oh in [a, b)} gy[p, oh, :] * scale[oh, :]
      const T* gyp = gy + p * OH * OW;
      mul_row(OW, gyp + a * OW, P.scale.data() + a * OW, g.data());
      for (int64_t oh = a + 1; oh < b; ++oh) fma_row(OW, gyp + oh * OW, P.scale.data() + oh * OW, g.data());
      // horizontal
      duplicate_pairs(g.data(), gxr, npair);
      for (int64_t w = 2 * npair; w < W; ++w) {
        T s = 0;
        for (int64_t ow = ow_lo[w]; ow < ow_hi[w]; ++ow) s += g[ow];
        gxr[w] = s;
      }
    }
  });
}

#define CNNEXT_INSTANTIATE(T)                                                                                       \
  template AvgPoolPlan<T> avg_pool2d_plan<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                             int64_t, int64_t, bool, int64_t);                                      \
  template void avg_pool2d_forward<T>(const T*, T*, int64_t, const AvgPoolPlan<T>&);                                \
  template void avg_pool2d_backward<T>(const T*, T*, int64_t, const AvgPoolPlan<T>&);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
