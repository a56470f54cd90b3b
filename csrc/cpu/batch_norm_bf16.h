// CPU batch_norm on bfloat16 activations with float32 parameters and statistics (batch_norm_bf16.cpp):
// the contract of batch_norm.h with BatchNorm{Forward,Backward}Args<bfloat16> (float32 parameters,
// common/batch_norm.h), NCHW only.
#pragma once
#include "../common/batch_norm.h"
#include "../common/bfloat16.h"

namespace cnnext::cpu {

void batch_norm_forward_bf16(const BatchNormShape& s, const BatchNormForwardArgs<bfloat16>& a);
void batch_norm_backward_bf16(const BatchNormShape& s, const BatchNormBackwardArgs<bfloat16>& a);

}  // namespace cnnext::cpu
