// CPU conv2d on bfloat16 tensors (conv2d_bf16.cpp): the forward, the grad input and the grad weight, float32 sums and one
// rounding per output, by one of three variants (CNNEXT_CONV2D_BF16=amx|dot|float forces one):
//   amx    AMX tiles (TDPBF16PS) where the CPU has them (Intel Sapphire Rapids): the default there for
//          GEMMs of 16 rows or more (output channels per group; input channels for the grad input)
//   dot    AVX512_BF16's vdpbf16ps (forced only: slower than float on Sapphire Rapids)
//   float  the float32 variants on widened copies: every other CPU, and shapes the packed paths do not
//          take (32-bit offsets overflow; grad input with a stride > 1)
// float16 tensors run the float variant alone: copies widened with F16C (half_copy.h).
// Same contract as conv2d.h.
#pragma once
#include "../common/bfloat16.h"
#include "../common/conv2d.h"
#include "../common/float16.h"

namespace cnnext::cpu {

bool conv2d_bf16_amx();  // this variant's build and this CPU run the amx variant
bool conv2d_bf16_dot();  // ... the dot variant
// H = bfloat16 (the planner's variant) or float16 (the float variant)
template <typename H>
void conv2d_forward_half(const Conv2dShape& s, const H* x, const H* w, const H* b, H* y);
template <typename H>
void conv2d_backward_input_half(const Conv2dShape& s, const H* gy, const H* w, H* gx);
// grad weight (and grad bias when gb != nullptr): amx or float (dot has none)
template <typename H>
void conv2d_backward_weight_half(const Conv2dShape& s, const H* x, const H* gy, H* gw, H* gb);

}  // namespace cnnext::cpu
