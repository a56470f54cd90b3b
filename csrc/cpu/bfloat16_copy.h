// bfloat16_copy.h -- whole-array conversions between bfloat16 and float32 for the bfloat16 kernels that
// run the float32 variants on widened copies (conv2d_bf16.cpp's "float" variant, batch_norm_bf16.cpp
// without AVX-512): to_float / from_float (../common/bfloat16.h) per element, threads over blocks of 16384.
// Internal linkage, like the other kernel headers: each CPU variant gets its own copy.
#pragma once
#include <ATen/Parallel.h>

#include <cstdint>

#include "../common/bfloat16.h"

namespace cnnext::cpu {
namespace {

// dst[0:n] = src[0:n] widened (exact)
inline void widen_into(float* dst, const bfloat16* src, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = to_float(src[i]);
  });
}
// dst[0:n] = src[0:n] rounded to nearest even
inline void round_into(bfloat16* dst, const float* src, int64_t n) {
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = from_float(src[i]);
  });
}

}  // namespace
}  // namespace cnnext::cpu
