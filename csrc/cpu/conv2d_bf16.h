// CPU conv2d on bfloat16 tensors (conv2d_bf16.cpp): the forward, the grad input and the grad weight, float32 sums and one
// rounding per output, by one of three variants (CNNEXT_CONV2D_BF16=amx|dot|float forces one):
//   amx    AMX tiles (TDPBF16PS) where the CPU has them (Intel Sapphire Rapids): the default there for
//          GEMMs of 16 rows or more (output channels per group; input channels for the grad input)
//   dot    AVX512_BF16's vdpbf16ps (forced only: slower than float on Sapphire Rapids)
//   float  the float32 variants on widened copies: every other CPU, and shapes the packed paths do not
//          take (32-bit offsets overflow; grad input with a stride > 1)
// float16 tensors (conv2d_*_fp16) run the float variant alone: copies widened with F16C (half_copy.h).
// Same contract as conv2d.h.
#pragma once
#include "../common/bfloat16.h"
#include "../common/conv2d.h"
#include "../common/float16.h"

namespace cnnext::cpu {

bool conv2d_bf16_amx();  // this variant's build and this CPU run the amx variant
bool conv2d_bf16_dot();  // ... the dot variant
void conv2d_forward_bf16(const Conv2dShape& s, const bfloat16* x, const bfloat16* w, const bfloat16* b, bfloat16* y);
void conv2d_backward_input_bf16(const Conv2dShape& s, const bfloat16* gy, const bfloat16* w, bfloat16* gx);
// grad weight (and grad bias when gb != nullptr): amx or float (dot has none)
void conv2d_backward_weight_bf16(const Conv2dShape& s, const bfloat16* x, const bfloat16* gy, bfloat16* gw,
                                 bfloat16* gb);
void conv2d_forward_fp16(const Conv2dShape& s, const float16* x, const float16* w, const float16* b, float16* y);
void conv2d_backward_input_fp16(const Conv2dShape& s, const float16* gy, const float16* w, float16* gx);
void conv2d_backward_weight_fp16(const Conv2dShape& s, const float16* x, const float16* gy, float16* gw,
                                 float16* gb);

}  // namespace cnnext::cpu
