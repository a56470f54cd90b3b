// CPU kernels of cat (see cat.cpp).  Byte copies, so any dtype: every input i
// is a (outer, bytes[i]) matrix of rows, row o at inputs[i] + o * strides[i] bytes
// (strides[i] == bytes[i]: dense; larger: a slice of a bigger tensor; 0: a row
// broadcast by expand()), the concatenated tensor an (outer, sum_i bytes[i])
// matrix whose row o is the inputs' rows o side by side.
#pragma once
#include <cstdint>

namespace cnnext::cpu {
// out[o, off_i : off_i + bytes[i]] = inputs[i][o, :]  (out dense)
void cat_forward(const void* const* inputs, const int64_t* bytes, const int64_t* strides, int64_t n, void* out,
                 int64_t outer);
// grads[i][o, :] = grad_out[o, off_i : off_i + bytes[i]]  (grads dense; row o of grad_out at
// grad_out + o * grad_stride bytes)
void cat_backward(const void* grad_out, int64_t grad_stride, int64_t outer, void* const* grads,
                  const int64_t* bytes, int64_t n);
}  // namespace cnnext::cpu
