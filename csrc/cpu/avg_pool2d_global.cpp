// The global variant of average pooling (avg_pool2d_variants.h): one output per plane, whose
// window is the whole plane (adaptive_avg_pool2d to (1, 1), avg_pool2d with the plane as kernel).
// Global (1, 1), the head of ResNet, GoogLeNet, NiN and DenseNet: each plane is one contiguous
// run of HW values, so
//   forward   y[p] = sum(x[p, :]) / HW   threads over planes; per plane a vector of partial sums
//                                        (masked tail), N planes' vectors folded into one vector
//                                        of N sums with shuffles (a transposing reduction);
//                                        planes of < 4N values (3x3, 5x5, 7x7 heads) take a
//                                        loop-free per-size variant (K vectors + masked tail)
//   backward  gx[p, :] = gy[p] / HW      threads over planes; a fill (for HW < N: N planes are
//                                        HW vectors, each a lane permutation of N gradients)
// Every output is one fixed-order sum by one thread: deterministic.
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "avg_pool2d_variants.h"
#include "simd.h"

namespace cnnext::cpu {
namespace {

using std::size_t;

#if defined(__GNUC__) && !defined(__clang__)
typedef int32_t IndexVec32 __attribute__((vector_size(kVecBytes)));  // lane indices for __builtin_shuffle
typedef int64_t IndexVec64 __attribute__((vector_size(kVecBytes)));
#endif

// fold(a, b) at level L: a and b each hold 2^L planes' partial sums, plane q in lanes
// [q*bs, (q+1)*bs), bs = N / 2^L.  The result holds the 2^(L+1) planes of a then b, each
// block halved by adding its two halves.  log2(N) levels turn N vectors of partial sums
// (one per plane) into one vector of the N planes' sums: N - 1 folds instead of N
// horizontal reductions.
template <int N, int L, bool kSecond>
constexpr int fold_lane(int n) {
  const int half_bs = N >> (L + 1), q = n / half_bs, r = n % half_bs, planes = 1 << L;
  return (q < planes ? q * 2 * half_bs : N + (q - planes) * 2 * half_bs) + r + (kSecond ? half_bs : 0);
}
template <int L, typename V, size_t... I>
inline V fold(V a, V b, std::index_sequence<I...>) {
  constexpr int N = sizeof...(I);
  return __builtin_shufflevector(a, b, fold_lane<N, L, false>(I)...) +
         __builtin_shufflevector(a, b, fold_lane<N, L, true>(I)...);
}
// v[0..count) at level L -> v[0..count/2) at level L+1, until one vector is left.
template <int L, typename V, int N>
inline void fold_all(V* v) {
  if constexpr ((1 << L) < N) {
    constexpr int count = N >> L;
#pragma GCC unroll 16
    for (int i = 0; i < count / 2; ++i) v[i] = fold<L>(v[2 * i], v[2 * i + 1], std::make_index_sequence<N>{});
    fold_all<L + 1, V, N>(v);
  }
}

// Sum of x[0:n] as a vector of partial sums (full vectors, then one masked vector).
template <typename T>
inline typename Vec<T>::type partial_sums(const T* x, int64_t n) {
  using V = Vec<T>;
  typename V::type acc{};
  int64_t k = 0;
  for (; k + V::size <= n; k += V::size) acc += V::load(x + k);
  if (k < n) acc += load_n(x + k, n - k);
  return acc;
}

// The same for n = K * N + tail, K fixed at compile time (the plane sizes of the family's heads:
// 3x3, 5x5, 7x7): no loop control and no mask arithmetic per plane, only K + 1 loads and K adds.
template <int K, typename T>
inline typename Vec<T>::type partial_sums(const T* x, int64_t tail) {
  using V = Vec<T>;
  typename V::type acc{};
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k) acc += V::load(x + k * V::size);
  // the same sum as above: tail 0 is an all-false mask (no access) adding +0 to a sum that
  // cannot be -0 (it starts at +0)
  return acc + load_n(x + K * V::size, tail);
}

// y[p0:p1] = mean of each plane; K >= 0: planes of K * N + tail values, K < 0: any HW.
template <int K, typename T>
void global_forward_planes(const T* x, T* y, int64_t p0, int64_t p1, int64_t HW, T inv) {
  using V = Vec<T>;
  constexpr int N = V::size;
  auto sums = [&](const T* plane) {
    if constexpr (K >= 0)
      return partial_sums<K>(plane, HW - K * N);
    else
      return partial_sums(plane, HW);
  };
  int64_t p = p0;
  for (; p + N <= p1; p += N) {  // N planes: partial-sum vectors, folded into one vector of sums
    typename V::type acc[N];
#pragma GCC unroll 16
    for (int j = 0; j < N; ++j) acc[j] = sums(x + (p + j) * HW);
    fold_all<0, typename V::type, N>(acc);
    V::store(y + p, acc[0] * V::broadcast(inv));
  }
  for (; p < p1; ++p) y[p] = V::sum(sums(x + p * HW)) * inv;
}

}  // namespace

template <typename T>
void avg_pool2d_variants::global_forward(const AvgPoolPlan<T>& P, int64_t planes, const T* x, T* y) {
  const int64_t HW = P.H * P.W;
  using V = Vec<T>;
  constexpr int N = V::size;
  const T inv = T(1) / T(HW);
  const int64_t grain = std::max<int64_t>(N, 32768 / HW);
  at::parallel_for(0, planes, grain, [&](int64_t p0, int64_t p1) {
    switch (HW / N) {
      case 0: return global_forward_planes<0>(x, y, p0, p1, HW, inv);
      case 1: return global_forward_planes<1>(x, y, p0, p1, HW, inv);
      case 2: return global_forward_planes<2>(x, y, p0, p1, HW, inv);
      case 3: return global_forward_planes<3>(x, y, p0, p1, HW, inv);
      default: return global_forward_planes<-1>(x, y, p0, p1, HW, inv);
    }
  });
}

template <typename T>
void avg_pool2d_variants::global_backward(const AvgPoolPlan<T>& P, int64_t planes, const T* gy, T* gx) {
  const int64_t HW = P.H * P.W;
  using V = Vec<T>;
  constexpr int N = V::size;
  const T inv = T(1) / T(HW);
  const int64_t grain = std::max<int64_t>(N, 32768 / HW);
#if defined(__GNUC__) && !defined(__clang__)
  // N planes of HW < N values are HW whole vectors; vector q, lane l holds plane (q*N + l) / HW:
  // a lane permutation of the N gradients (GCC's __builtin_shuffle with a runtime index vector).
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  using Index = std::conditional_t<sizeof(T) == 4, IndexVec32, IndexVec64>;
  std::vector<Index> lanes(HW < N ? HW : 0);
  for (int64_t q = 0; q < int64_t(lanes.size()); ++q)
    for (int l = 0; l < N; ++l) lanes[q][l] = I((q * N + l) / HW);
#endif
  at::parallel_for(0, planes, grain, [&](int64_t p0, int64_t p1) {
    int64_t p = p0;
#if defined(__GNUC__) && !defined(__clang__)
    if (HW < N)
      for (; p + N <= p1; p += N) {
        const typename V::type g = V::load(gy + p) * V::broadcast(inv);
        for (int64_t q = 0; q < HW; ++q) V::store(gx + p * HW + q * N, __builtin_shuffle(g, lanes[q]));
      }
#endif
    for (; p < p1; ++p) std::fill(gx + p * HW, gx + (p + 1) * HW, gy[p] * inv);
  });
}

CNNEXT_AVG_POOL2D_VARIANT(avg_pool2d_variants::global_forward, avg_pool2d_variants::global_backward)

}  // namespace cnnext::cpu
