// CPU kernels of corr2d (see corr2d.cpp).  x: (B, H, W), k: (kh, kw), y: (B, OH, OW),
// all contiguous; OH = H - kh + 1, OW = W - kw + 1.
#pragma once
#include <cstdint>

namespace cnnext::cpu {
template <typename T>
void corr2d_forward(const T* x, const T* k, T* y, int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw);
template <typename T>
void corr2d_backward_input(const T* gy, const T* k, T* gx, int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw);
template <typename T>
void corr2d_backward_kernel(const T* gy, const T* x, T* gk, int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw);
}  // namespace cnnext::cpu
