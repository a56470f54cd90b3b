// common/cat.h -- the pieces of one cat call (filled by csrc/ops/cat.cpp, read by csrc/cpu/cat.cpp and
// csrc/cuda/cat.cu) and the entry points (common/backend.h).  Concatenation viewed as bytes, so any
// dtype: every input i is a (outer, bytes_i) matrix of rows (row o at data_i + o * stride_i), the
// output a dense (outer, sum_i bytes_i) matrix whose row o is the inputs' rows o side by side.
// Pieces with bytes == 0 are skipped.
#pragma once
#include <cstdint>

#include "backend.h"

namespace cnnext {
// One input of a concatenation (or one gradient slice of its backward): its data, the bytes of one
// of its rows and the bytes from one row to the next (stride == bytes: dense; > bytes: a slice of a
// bigger tensor; 0: a row broadcast by expand(), read-only).  It starts at the sum of the previous
// pieces' bytes inside a row of the concatenated tensor.
struct CatPiece {
  void* data;
  int64_t bytes;
  int64_t stride;
};

// Dtype-free: registered and looked up as Kernel<Op, void>.
struct CatForward {  // out[o, off_i : off_i + bytes_i] = pieces[i].data[o, :] for every row o < outer, piece i < n
  template <typename T>
  using Fn = void(const CatPiece* pieces, int64_t n, void* out, int64_t outer, cudaStream_t stream);
};
// pieces[i].data[o, :] = grad_out[o, off_i : off_i + bytes_i] (dense pieces): each input's gradient
// slice; row o of grad_out starts at grad_out + o * grad_stride.
struct CatBackward {
  template <typename T>
  using Fn = void(const void* grad_out, int64_t grad_stride, int64_t outer, const CatPiece* pieces, int64_t n,
                  cudaStream_t stream);
};
}  // namespace cnnext
