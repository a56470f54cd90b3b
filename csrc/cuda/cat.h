// Launchers of csrc/cuda/cat.cu (torch-free); the pieces and entry points in ../common/cat.h.
#pragma once
#include "../common/cat.h"
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  // out[o, off_i : off_i + bytes_i] = pieces[i].data[o, :] for every row o < outer and piece i < n
  void cat_forward(const ::cnnext::CatPiece* pieces, int64_t n, void* out, int64_t outer, cudaStream_t stream);
  // pieces[i].data[o, :] = grad_out[o, off_i : off_i + bytes_i]: each input's gradient slice;
  // row o of grad_out starts at grad_out + o * grad_stride
  void cat_backward(const void* grad_out, int64_t grad_stride, int64_t outer, const ::cnnext::CatPiece* pieces,
                    int64_t n, cudaStream_t stream);
)
