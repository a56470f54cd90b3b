// CPU kernels of batch_norm (see batch_norm.cpp).
//
// x, y, gy, gx: (N, C, S) contiguous, S = prod(spatial dims).  S == 1 also covers
// the channels-last layout (N*H*W, C, 1) and (N, C) inputs: rows of C channels.
// w, b: (C,) or nullptr (affine=False: w = 1, b = 0).  rmean, rvar: (C,) running
// statistics or nullptr.  mean, invstd: (C,) outputs of the forward (the batch's
// statistics in training, the running ones otherwise) that the backward reads.
// relu: y = max(BN(x), 0), and the backward masks grad_output with BN(x) > 0.
#pragma once
#include <cstdint>

namespace cnnext::cpu {
template <typename T>
void batch_norm_forward(const T* x, T* y, const T* w, const T* b, T* rmean, T* rvar, T* mean, T* invstd, int64_t N,
                        int64_t C, int64_t S, bool training, double momentum, double eps, bool relu);
template <typename T>
void batch_norm_backward(const T* gy, const T* x, const T* w, const T* b, const T* mean, const T* invstd, T* gx,
                         T* gw, T* gb, int64_t N, int64_t C, int64_t S, bool training, bool relu);
}  // namespace cnnext::cpu
