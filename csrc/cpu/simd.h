// simd.h -- the SIMD helpers the CPU kernels share on top of vec.h: the tail of a row in one vector
// operation (load_n / store_n), a horizontal sum in a fixed order (hsum), and the in-bounds test of
// an (h, w) position against an (H, W) plane, for one element (in_bounds) and for 16 lanes at once
// (in_bounds16, AVX-512).  Every function is a few instructions, inlined where it is used.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "vec.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace cnnext::cpu {

// The first n lanes (0 <= n <= N) of a vector at p, the others zero / stored back only to p[0:n]:
// the tail of a row in one vector operation.  AVX-512 masked loads and stores never touch memory
// past p[n-1]; elsewhere a copy through a zeroed vector does the same.
template <typename T>
inline typename Vec<T>::type load_n(const T* p, int64_t n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4)
    return (typename Vec<T>::type)_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
  else
    return (typename Vec<T>::type)_mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p);
#else
  typename Vec<T>::type v{};
  std::memcpy(&v, p, n * sizeof(T));
  return v;
#endif
}
template <typename T>
inline void store_n(T* p, typename Vec<T>::type v, int64_t n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4)
    _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), (__m512)v);
  else
    _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), (__m512d)v);
#else
  std::memcpy(p, &v, n * sizeof(T));
#endif
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
#endif

}  // namespace cnnext::cpu
