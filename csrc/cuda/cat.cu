// cat on the GPU: byte copies between the inputs' rows and the rows of the
// concatenated tensor (any dtype).  Every input i is a (outer, bytes_i) matrix
// with row stride s_i bytes (= bytes_i when dense), the concatenated tensor a
// (outer, row) matrix with row stride S (= row when dense), row = sum_i bytes_i,
// input i at byte offset off_i = bytes_0 + ... + bytes_{i-1} of each row:
//   forward    big[o*S + off_i + c] = piece_i[o*s_i + c]
//   backward   piece_i[o*s_i + c]   = big[o*S + off_i + c]   (each input's gradient slice)
//
// One launch copies up to kMaxPieces inputs; their table of (pointer, bytes,
// stride, offset, unit) is passed by value as a kernel argument (no device allocation,
// no extra copy); more inputs take more launches.  Grid: blockIdx.y = the
// input, blockIdx.x and threadIdx.x a grid-stride loop over that input's
// outer * bytes_i / unit copy units: thread idx copies unit (o, c) =
// (idx / w, idx % w), w = bytes_i / unit, in both directions the same way (the
// row and column advance by the grid stride with a carry: no division per unit), so
// consecutive threads touch consecutive units of the input and of the big row.
// The unit is the widest of 16, 8, 4, 2, 1 bytes that divides both pointers,
// bytes_i, s_i, off_i and S: 16-byte loads and stores (uint4) whenever the layout
// allows, e.g. float32 with channel counts that are multiples of 4 / H*W % 4 == 0.
// Offsets are 64-bit.
#include "compat.h"
#include "cat.h"

#include <algorithm>

namespace {

constexpr int kBlock = 256;
constexpr int kMaxPieces = 64;  // inputs per launch: 64 * 40 B = 2.5 KiB of kernel arguments (limit 4 KiB)

struct Entry {
  char* data;
  int64_t bytes;   // bytes of one row of this input
  int64_t stride;  // bytes from one of its rows to the next
  int64_t offset;  // where it starts inside a row of the big tensor
  int64_t unit;    // bytes per copy: 16, 8, 4, 2 or 1
};
struct Table {
  Entry e[kMaxPieces];
};

#if defined(__CUDACC__)
using Bytes16 = uint4;
#else
struct alignas(16) Bytes16 {
  uint32_t x, y, z, w;
};
#endif

template <typename U, bool kToPieces>
__device__ __forceinline__ void copy_piece(char* big, const Entry& e, int64_t outer, int64_t big_stride) {
  const int64_t w = e.bytes / int64_t(sizeof(U)), total = outer * w;
  const int64_t bs = big_stride / int64_t(sizeof(U)), ps = e.stride / int64_t(sizeof(U));
  U* __restrict__ b = reinterpret_cast<U*>(big + e.offset);
  U* __restrict__ p = reinterpret_cast<U*>(e.data);
  // unit idx = (o, c) = (idx / w, idx % w); the grid stride advances (o, c) by
  // (step / w, step % w) with a carry, so a thread divides twice, not once per unit.
  const int64_t step = int64_t(blockDim.x) * gridDim.x, step_o = step / w, step_c = step - step_o * w;
  int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t o = idx / w, c = idx - o * w;
  for (; idx < total; idx += step) {
    if (kToPieces) p[o * ps + c] = b[o * bs + c];
    else b[o * bs + c] = p[o * ps + c];
    o += step_o;
    c += step_c;
    if (c >= w) c -= w, ++o;
  }
}

template <bool kToPieces>
__global__ void __launch_bounds__(kBlock) cat_copy_kernel(const Table t, char* big, int64_t outer, int64_t big_stride) {
  const Entry& e = t.e[blockIdx.y];
  switch (e.unit) {
    case 16: copy_piece<Bytes16, kToPieces>(big, e, outer, big_stride); break;
    case 8: copy_piece<uint64_t, kToPieces>(big, e, outer, big_stride); break;
    case 4: copy_piece<uint32_t, kToPieces>(big, e, outer, big_stride); break;
    case 2: copy_piece<uint16_t, kToPieces>(big, e, outer, big_stride); break;
    default: copy_piece<uint8_t, kToPieces>(big, e, outer, big_stride); break;
  }
}

// Tables of up to kMaxPieces non-empty pieces, one launch each.
template <bool kToPieces>
void cat_copy(char* big, int64_t big_stride, int64_t outer, const cnnext::CatPiece* pieces, int64_t n,
              cudaStream_t stream) {
  int64_t row = 0;
  for (int64_t i = 0; i < n; ++i) row += pieces[i].bytes;
  if (outer == 0 || row == 0) return;
  Table t{};
  unsigned count = 0;
  int64_t most_units = 0;  // of the largest piece in the table: sizes the grid's x
  auto flush = [&] {
    if (count == 0) return;
    const unsigned bx = grid_size(most_units, kBlock, std::max(1u, grid_cap() / count));
    launch(cat_copy_kernel<kToPieces>, dim3(bx, count), dim3(kBlock), 0, stream, t, big, outer, big_stride);
    count = 0;
    most_units = 0;
  };
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    const cnnext::CatPiece& pc = pieces[i];
    if (pc.bytes > 0) {
      const uint64_t bits = uint64_t(pc.bytes) | uint64_t(pc.stride) | uint64_t(off) | uint64_t(big_stride) |
                            reinterpret_cast<uintptr_t>(big) | reinterpret_cast<uintptr_t>(pc.data) | 16u;
      const int64_t unit = int64_t(bits & (~bits + 1));  // lowest set bit, at most 16
      t.e[count++] = Entry{static_cast<char*>(pc.data), pc.bytes, pc.stride, off, unit};
      most_units = std::max(most_units, outer * (pc.bytes / unit));
      if (count == kMaxPieces) flush();
    }
    off += pc.bytes;
  }
  flush();
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

void cat_forward(const ::cnnext::CatPiece* pieces, int64_t n, void* out, int64_t outer, cudaStream_t stream) {
  int64_t row = 0;
  for (int64_t i = 0; i < n; ++i) row += pieces[i].bytes;
  cat_copy<false>(static_cast<char*>(out), row, outer, pieces, n, stream);
}

void cat_backward(const void* grad_out, int64_t grad_stride, int64_t outer, const ::cnnext::CatPiece* pieces,
                  int64_t n, cudaStream_t stream) {
  cat_copy<true>(const_cast<char*>(static_cast<const char*>(grad_out)), grad_stride, outer, pieces, n, stream);
}

CNNEXT_REGISTER_KERNEL_T(CatForward, void, CNNEXT_THIS_DEVICE, &cat_forward)
CNNEXT_REGISTER_KERNEL_T(CatBackward, void, CNNEXT_THIS_DEVICE, &cat_backward)

}  // namespace cnnext::CNNEXT_DEVICE_NS
