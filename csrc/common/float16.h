// common/float16.h -- the float16 element type of the kernels' float16 entry points (torch-free: csrc/ops
// passes c10::Half data, the same 16 bits, reinterpreted), and its scalar conversions.
//   float16 = IEEE binary16 (sign, 5-bit exponent, 10-bit mantissa; subnormals below 2^-14, max 65504)
//   to_float: exact; float16_from_float: round to nearest even, overflow to Inf, NaN -> 0x7E00 -- the bit tricks of
//   c10::Half (from Maratyszcza's FP16 library), so a kernel rounds exactly as torch does.
#pragma once
#include <cstdint>
#include <cstring>

namespace cnnext {

struct float16 {
  uint16_t bits;
};
static_assert(sizeof(float16) == 2, "float16 is 16 bits");

namespace detail {
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
}  // namespace detail

inline float to_float(float16 v) {
  const uint32_t w = uint32_t(v.bits) << 16, sign = w & 0x80000000u, two_w = w + w;
  // normal: the exponent rebased by a shift and one multiply; subnormal: the mantissa as a float minus 0.5
  const float normal = detail::f32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float subnormal = detail::f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  return detail::f32_from_bits(sign | detail::f32_bits(two_w < (1u << 27) ? subnormal : normal));
}

inline float16 float16_from_float(float f) {
  // the scaling by 2^112 * 2^-110 rounds to binary16's precision in float arithmetic (nearest even)
  float base = (f < 0 ? -f : f) * 0x1.0p+112f * 0x1.0p-110f;
  const uint32_t w = detail::f32_bits(f), shl1_w = w + w, sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = detail::f32_from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = detail::f32_bits(base);
  const uint32_t nonsign = ((bits >> 13) & 0x7C00u) + (bits & 0x0FFFu);
  return {uint16_t((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign))};
}

}  // namespace cnnext
