// common/bfloat16.h -- the bfloat16 element type of the kernels' bfloat16 entry points (torch-free: csrc/ops
// passes c10::BFloat16 data, the same 16 bits, reinterpreted), and its scalar conversions.
//   bfloat16 = the upper 16 bits of an IEEE float32 (sign, 8-bit exponent, 7-bit mantissa)
//   to_float: exact (a shift); from_float: round to nearest even, NaN -> 0x7FC0, as c10::BFloat16.
#pragma once
#include <cstdint>
#include <cstring>

namespace cnnext {

struct bfloat16 {
  uint16_t bits;
};
static_assert(sizeof(bfloat16) == 2, "bfloat16 is 16 bits");

inline float to_float(bfloat16 v) {
  const uint32_t u = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bfloat16 from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return {0x7FC0};
  u += 0x7FFFu + ((u >> 16) & 1u);
  return {uint16_t(u >> 16)};
}

}  // namespace cnnext
