// CPU kernels of cat (see cat.cpp).  Byte copies, so any dtype: every input i
// is a (outer, bytes[i]) matrix of rows, the output a (outer, sum_i bytes[i])
// matrix whose row o is the inputs' rows o side by side.  All contiguous.
#pragma once
#include <cstdint>

namespace cnnext::cpu {
// out[o, off_i : off_i + bytes[i]] = inputs[i][o, :]
void cat_forward(const void* const* inputs, const int64_t* bytes, int64_t n, void* out, int64_t outer);
// grads[i][o, :] = grad_out[o, off_i : off_i + bytes[i]]
void cat_backward(const void* grad_out, int64_t outer, void* const* grads, const int64_t* bytes, int64_t n);
}  // namespace cnnext::cpu
