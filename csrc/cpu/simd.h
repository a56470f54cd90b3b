// simd.h -- the SIMD helpers the CPU kernels share on top of vec.h: the tail of a row in one vector
// operation (load_part / store_part, load_n / store_n: masked or partial moves on every ISA, never
// a copy through the stack), a horizontal sum in a fixed order (hsum), lane-mask ranges (bit_range), and the in-bounds test of
// an (h, w) position against an (H, W) plane, for one element (in_bounds) and for 16 lanes at once
// (in_bounds16, AVX-512; in_bounds8, AVX2).  Every function is a few instructions, inlined where it is used.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "vec.h"

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace cnnext::cpu {

// ---- tails: the first n lanes (0 <= n <= Vec<T>::size) of a vector ----
// load_part: lanes >= n get `fill`; store_part writes p[0:n] only.  No memory past p[n-1] is
// touched, and no copy through the stack (a narrower store reloaded as a vector fails
// store-to-load forwarding: .ci/check_libs.py rejects it): AVX-512 masked moves, AVX2 maskload /
// maskstore, SSE2 half- and single-lane moves.
template <typename T>
inline typename Vec<T>::type load_part(const T* p, int64_t n, typename Vec<T>::type fill) {
  using V = typename Vec<T>::type;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    return (V)_mm512_mask_loadu_ps((__m512)fill, (__mmask16)((1u << n) - 1), p);
  else
    return (V)_mm512_mask_loadu_pd((__m512d)fill, (__mmask8)((1u << n) - 1), p);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return (V)_mm256_blendv_ps((__m256)fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  } else {
    const __m256i m = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
    return (V)_mm256_blendv_pd((__m256d)fill, _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
#elif defined(__SSE2__)
  if (n >= Vec<T>::size) return Vec<T>::load(p);
  if constexpr (std::is_same_v<T, float>) {
    const __m128 f = (__m128)fill;
    if (n == 0) return fill;
    if (n == 1) return (V)_mm_move_ss(f, _mm_load_ss(p));
    const __m128 lo = _mm_loadl_pi(f, reinterpret_cast<const __m64*>(p));  // p0 p1 f2 f3
    if (n == 2) return (V)lo;
    const __m128 hi = _mm_move_ss(_mm_shuffle_ps(f, f, _MM_SHUFFLE(3, 3, 3, 3)), _mm_load_ss(p + 2));  // p2 f3 ..
    return (V)_mm_movelh_ps(lo, hi);
  } else {
    return n == 0 ? fill : (V)_mm_loadl_pd((__m128d)fill, p);
  }
#else
  V v = fill;
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
#endif
}

template <typename T>
inline void store_part(T* p, typename Vec<T>::type v, int64_t n) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
  else
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), (__m512d)v);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>)
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                        (__m256)v);
  else
    _mm256_maskstore_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)), (__m256d)v);
#elif defined(__SSE2__)
  if (n >= Vec<T>::size) return Vec<T>::store(p, v);
  if constexpr (std::is_same_v<T, float>) {
    const __m128 x = (__m128)v;
    if (n == 1) _mm_store_ss(p, x);
    if (n >= 2) _mm_storel_pi(reinterpret_cast<__m64*>(p), x);
    if (n == 3) _mm_store_ss(p + 2, _mm_movehl_ps(x, x));
  } else {
    if (n == 1) _mm_storel_pd(p, (__m128d)v);
  }
#else
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
#endif
}


// The first n lanes (0 <= n <= N) of a vector at p, the others zero / stored back only to p[0:n].
template <typename T>
inline typename Vec<T>::type load_n(const T* p, int64_t n) {
  return load_part<T>(p, n, typename Vec<T>::type{});
}
template <typename T>
inline void store_n(T* p, typename Vec<T>::type v, int64_t n) {
  store_part<T>(p, v, n);
}

#if defined(__AVX512F__)
inline float hsum16(__m512 x) {  // fixed order: halves, quarters, pairs, neighbours
  typedef float v16 __attribute__((vector_size(64)));
  v16 v = (v16)x;
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  return v[0];
}
#endif

// The sum of a vector's lanes in a fixed order: a tree for 16 floats under AVX-512, else lane by lane.
template <typename T>
inline T hsum(typename Vec<T>::type v) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && Vec<T>::size == 16) return hsum16((__m512)v);
#endif
  return Vec<T>::sum(v);
}

// Bits [lo, hi) of a lane mask of up to 32 lanes (empty when hi <= lo; lo, hi clamped to [0, 32]).
inline uint32_t bit_range(int64_t lo, int64_t hi) {
  lo = lo < 0 ? 0 : lo, hi = hi > 32 ? 32 : hi;
  return hi <= lo ? 0u : uint32_t(((uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1));
}

// Whether any lane of a vector comparison's result (lanes all ones or all zeros) is set.
template <typename M>
inline bool any_lane(M m) {
#if defined(__AVX512F__)
  if constexpr (sizeof(M) == 64) return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0;
#endif
#if defined(__AVX__)
  if constexpr (sizeof(M) == 32) return !_mm256_testz_si256((__m256i)m, (__m256i)m);
#endif
#if defined(__SSE2__)
  if constexpr (sizeof(M) == 16) return _mm_movemask_epi8((__m128i)m) != 0;
#endif
  bool any = false;
  for (std::size_t l = 0; l < sizeof(M) / sizeof(m[0]); ++l) any |= m[l] != 0;
  return any;
}

// 0 <= h < H and 0 <= w < W, as two unsigned compares (a negative h or w wraps to a huge value).
inline bool in_bounds(int32_t h, int64_t H, int32_t w, int64_t W) {
  return uint32_t(h) < uint32_t(H) && uint32_t(w) < uint32_t(W);
}

#if defined(__AVX512F__)
// in_bounds for 16 lanes: lane l is set when 0 <= h[l] + dh[l] < H and 0 <= w[l] + dw[l] < W
// (H, W broadcast; any operand may be a broadcast).
inline __mmask16 in_bounds16(__m512i h, __m512i dh, __m512i H, __m512i w, __m512i dw, __m512i W) {
  return _mm512_cmplt_epu32_mask(_mm512_add_epi32(h, dh), H) & _mm512_cmplt_epu32_mask(_mm512_add_epi32(w, dw), W);
}
#elif defined(__AVX2__)
// in_bounds for 8 lanes, as a lane mask (all ones where in bounds): AVX2 compares signed only, so
// 0 <= v < N is v > -1 and N > v.
inline __m256i in_bounds8(__m256i h, __m256i dh, __m256i H, __m256i w, __m256i dw, __m256i W) {
  const __m256i m1 = _mm256_set1_epi32(-1), hh = _mm256_add_epi32(h, dh), ww = _mm256_add_epi32(w, dw);
  return _mm256_and_si256(_mm256_and_si256(_mm256_cmpgt_epi32(hh, m1), _mm256_cmpgt_epi32(H, hh)),
                          _mm256_and_si256(_mm256_cmpgt_epi32(ww, m1), _mm256_cmpgt_epi32(W, ww)));
}
#endif

}  // namespace cnnext::cpu
