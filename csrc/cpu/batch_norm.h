// CPU kernels of batch_norm (see batch_norm.cpp); dimensions, tensors and entry points in
// ../common/batch_norm.h.
#pragma once
#include <cstdint>

#include "../common/batch_norm.h"

namespace cnnext::cpu {
template <typename T>
void batch_norm_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a);
template <typename T>
void batch_norm_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a);
}  // namespace cnnext::cpu
