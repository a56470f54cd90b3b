// half_copy.h -- whole-array conversions between the 16-bit floats and float32 for the half kernels that
// run the float32 variants on widened copies (conv2d_bf16.cpp's "float" variant and its float16 kernels,
// batch_norm_half.cpp's widened variant), threads over blocks of 16384:
//   bfloat16  to_float / from_float (../common/bfloat16.h) per element
//   float16   F16C's vcvtph2ps / vcvtps2ph (round to nearest even) where the variant has it (avx2, avx512:
//             x86-64-v3 and up), else ../common/float16.h's scalar conversions (the same bits)
// round_to<H>(v): one float rounded to H. Internal linkage, like the other kernel headers: each CPU variant
// gets its own copy.
#pragma once
#include <ATen/Parallel.h>

#include <cstdint>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "../common/bfloat16.h"
#include "../common/float16.h"

namespace cnnext::cpu {
namespace {

template <typename H>
inline H round_to(float v) {
  if constexpr (std::is_same_v<H, bfloat16>) return from_float(v);
  else return float16_from_float(v);
}

// dst[0:n] = src[0:n] widened (exact)
inline void widen_into(float* dst, const bfloat16* src, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = to_float(src[i]);
  });
}
inline void widen_into(float* dst, const float16* src, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
#if defined(__AVX512F__)
    for (; i + 16 <= i1; i += 16)
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
#elif defined(__F16C__)
    for (; i + 8 <= i1; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
    for (; i < i1; ++i) dst[i] = to_float(src[i]);
  });
}
// dst[0:n] = src[0:n] rounded to nearest even
inline void round_into(bfloat16* dst, const float* src, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = from_float(src[i]);
  });
}
inline void round_into(float16* dst, const float* src, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
#if defined(__AVX512F__)
    for (; i + 16 <= i1; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                          _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
    for (; i + 8 <= i1; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i < i1; ++i) dst[i] = float16_from_float(src[i]);
  });
}

}  // namespace
}  // namespace cnnext::cpu
