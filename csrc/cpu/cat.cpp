// cat on the CPU: byte copies between the inputs' rows and the rows of the
// concatenated tensor (any dtype).  With off_i = bytes_0 + ... + bytes_{i-1},
// row = off_n, and the row strides s_i of the inputs (= bytes_i when dense):
//   forward    out[o*row + off_i + c]  = in_i[o*s_i + c]
//   backward   g_i[o*bytes_i + c]      = gout[o*s + off_i + c]   (s: grad_output's row stride)
// Threads: the concatenated tensor's outer*row bytes are split into equal
// contiguous ranges (at::parallel_for, one range per thread), so the work is
// balanced whatever the inputs' sizes, and each thread streams through its part
// of the big tensor in order.  A range is walked as (row o, piece i, column c):
// every step is one std::memcpy of the part of piece i's row o inside the range.
#include "cat.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace cnnext::cpu {
namespace {

// Bytes per thread at least: below this one thread copies everything.
constexpr int64_t kGrainBytes = 128 << 10;

// kToPieces: false = forward (pieces -> big), true = backward (big -> pieces).
// Row o of the big tensor at big + o * big_stride, of piece i at pieces[i] + o * strides[i].
template <bool kToPieces>
void cat_copy(char* big, int64_t big_stride, int64_t outer, char* const* pieces, const int64_t* bytes,
              const int64_t* strides, int64_t n) {
  std::vector<int64_t> off(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) off[i + 1] = off[i] + bytes[i];
  const int64_t row = off[n], total = outer * row;
  if (total == 0) return;
  const int64_t first = std::upper_bound(off.begin(), off.end(), int64_t(0)) - off.begin() - 1;
  at::parallel_for(0, total, kGrainBytes, [&](int64_t b0, int64_t b1) {
    int64_t o = b0 / row, c = b0 % row;
    // the piece holding column c: the last i with off[i] <= c (skips zero-width pieces)
    int64_t i = std::upper_bound(off.begin(), off.end(), c) - off.begin() - 1;
    for (int64_t pos = b0; pos < b1;) {
      const int64_t len = std::min(off[i + 1] - c, b1 - pos);
      char* p = pieces[i] + o * strides[i] + (c - off[i]);
      char* b = big + o * big_stride + c;
      if (kToPieces) std::memcpy(p, b, len);
      else std::memcpy(b, p, len);
      pos += len;
      c += len;
      while (i < n && c == off[i + 1]) ++i;  // next non-empty piece
      if (i == n) {  // end of row o
        ++o;
        c = 0;
        i = first;
      }
    }
  });
}

}  // namespace

void cat_forward(const CatPiece* pieces, int64_t n, void* out, int64_t outer) {
  std::vector<char*> ptrs(n);
  std::vector<int64_t> bytes(n), strides(n);
  int64_t row = 0;
  for (int64_t i = 0; i < n; ++i) {
    ptrs[i] = static_cast<char*>(pieces[i].data), bytes[i] = pieces[i].bytes, strides[i] = pieces[i].stride;
    row += bytes[i];
  }
  cat_copy<false>(static_cast<char*>(out), row, outer, ptrs.data(), bytes.data(), strides.data(), n);
}

void cat_backward(const void* grad_out, int64_t grad_stride, int64_t outer, const CatPiece* pieces, int64_t n) {
  std::vector<char*> ptrs(n);
  std::vector<int64_t> bytes(n);
  for (int64_t i = 0; i < n; ++i) ptrs[i] = static_cast<char*>(pieces[i].data), bytes[i] = pieces[i].bytes;
  cat_copy<true>(const_cast<char*>(static_cast<const char*>(grad_out)), grad_stride, outer, ptrs.data(),
                 bytes.data(), bytes.data(), n);
}

}  // namespace cnnext::cpu
