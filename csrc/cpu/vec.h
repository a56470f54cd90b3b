// vec.h -- the SIMD vector the CPU kernels are written with.
//
// GCC/Clang vector extensions: Vec<T>::type is the widest vector the CPU
// variant being compiled targets: 64 bytes with AVX-512 (avx512 = x86-64-v4),
// 32 with AVX/AVX2 (avx2 = x86-64-v3), 16 otherwise (baseline x86-64 = SSE2,
// NEON, or plain scalar code the compiler splits).  setup.py compiles every
// csrc/cpu file once per variant; the import picks the variant from cpuid and
// `cnnext.info()["cpu_isa"]` reports it.
// Arithmetic on these types is element-wise; with -ffp-contract=fast a*b+c
// becomes an FMA.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace cnnext::cpu {

#if defined(__AVX512F__)
inline constexpr int kVecBytes = 64;
#elif defined(__AVX__)
inline constexpr int kVecBytes = 32;
#else
inline constexpr int kVecBytes = 16;
#endif

template <typename T>
struct Vec {
  static constexpr int size = kVecBytes / int(sizeof(T));
  typedef T type __attribute__((vector_size(kVecBytes), aligned(sizeof(T))));  // unaligned-safe
  // Loads and stores go through an element-aligned, may_alias view of the vector: one unaligned
  // vector move under every -mtune.  (A std::memcpy of the vector is split into 32-byte pieces by
  // GCC's Intel tunings and reassembled through the stack: a store-forwarding stall per vector.)
  typedef T unaligned __attribute__((vector_size(kVecBytes), aligned(alignof(T)), may_alias));
  static type load(const T* p) { return *reinterpret_cast<const unaligned*>(p); }
  static void store(T* p, type v) { *reinterpret_cast<unaligned*>(p) = v; }
  static type broadcast(T x) { return type{} + x; }
  static T sum(type v) { T s = 0; for (int i = 0; i < size; ++i) s += v[i]; return s; }
};

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

// y[0:n] += a * x[0:n]
template <typename T>
inline void axpy(int64_t n, T a, const T* __restrict__ x, T* __restrict__ y) {
  using V = Vec<T>;
  const typename V::type va = V::broadcast(a);
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) V::store(y + i, V::load(y + i) + va * V::load(x + i));
  for (; i < n; ++i) y[i] += a * x[i];
}

// sum_i x[i] * y[i], vector lanes first, then the tail: a fixed order.
template <typename T>
inline T dot(int64_t n, const T* __restrict__ x, const T* __restrict__ y) {
  using V = Vec<T>;
  typename V::type acc{};
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) acc += V::load(x + i) * V::load(y + i);
  T s = V::sum(acc);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

}  // namespace cnnext::cpu
