// CPU kernels of corr2d (see corr2d.cpp); geometry and entry points in ../common/corr2d.h.
#pragma once
#include <cstdint>

#include "../common/corr2d.h"

namespace cnnext::cpu {
template <typename T>
void corr2d_forward(const Corr2dShape& shape, const T* x, const T* k, T* y);
template <typename T>
void corr2d_backward_input(const Corr2dShape& shape, const T* gy, const T* k, T* gx);
template <typename T>
void corr2d_backward_kernel(const Corr2dShape& shape, const T* gy, const T* x, T* gk);
}  // namespace cnnext::cpu
