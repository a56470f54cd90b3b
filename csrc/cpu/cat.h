// CPU kernels of cat (see cat.cpp); the pieces and entry points in ../common/cat.h.
#pragma once
#include <cstdint>

#include "../common/cat.h"

namespace cnnext::cpu {
void cat_forward(const CatPiece* pieces, int64_t n, void* out, int64_t outer);
void cat_backward(const void* grad_out, int64_t grad_stride, int64_t outer, const CatPiece* pieces, int64_t n);
}  // namespace cnnext::cpu
