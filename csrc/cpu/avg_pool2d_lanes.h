// avg_pool2d_lanes.h -- the vector pieces of the [2o, 2o+2) windows that the rows and 2x2 average
// pooling variants share: even/odd lane deinterleaving (forward) and lane duplication (backward)
// with __builtin_shufflevector on vec.h vectors (anonymous namespace, like conv2d_gemm.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

#include "simd.h"  // load_n, store_n

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
  if (i < n) {  // m < N outputs from 2m inputs
    const int64_t m = n - i, nlo = std::min<int64_t>(2 * m, N), nhi = 2 * m - nlo;
    typename V::type lo = load_n(a + 2 * i, nlo), hi = load_n(a + 2 * i + N, nhi);
    if constexpr (TWO) {
      lo += load_n(b + 2 * i, nlo);
      hi += load_n(b + 2 * i + N, nhi);
    }
    store_n(out + i, (even_lanes(lo, hi, idx) + odd_lanes(lo, hi, idx)) * load_n(scale + i, m), m);
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
  if (i < n) {
    const int64_t m = n - i, nlo = std::min<int64_t>(2 * m, N);
    const typename V::type v = load_n(g + i, m);
    store_n(out + 2 * i, dup_low(v, idx), nlo);
    store_n(out + 2 * i + N, dup_high<typename V::type, N>(v, idx), 2 * m - nlo);
  }
}

}  // namespace
}  // namespace cnnext::cpu
