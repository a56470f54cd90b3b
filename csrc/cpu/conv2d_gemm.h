// conv2d_gemm.h -- the packed GEMM the CPU conv2d variants are built on (BLIS style), and the
// blocking of the batch's output pixels into column blocks.  Internal to csrc/cpu/conv2d_*.cpp.
//
// The GEMM C[M, N] = A[M, Kd] * B[Kd, N]:
//   * A is packed into micro-panels of MR = 8 rows (6 without AVX-512: 16 vector registers), [kc][MR];
//     B into micro-panels of NR = 2 SIMD vectors (32 floats with AVX-512), [kc][NR]; both
//     zero-padded, so the micro-kernel only ever sees full tiles.  Kd is cut into blocks of KC = 256
//     (a B micro-panel is 32 KiB, an A micro-panel 8 KiB), columns into blocks of at most NC = 12 panels.
//   * micro-kernel: an MR x 2-vector tile of C in 2 MR accumulators (8 x 32 floats in 16 zmm with
//     AVX-512); per step of the reduction it loads two vectors of B and broadcasts MR scalars of A:
//     2 MR FMAs (AVX-512 intrinsics for float under __AVX512F__; vec.h GCC vectors -- any ISA --
//     otherwise and for double).
//   * loops per block of columns:  for kc block: pack B (conv2d_im2col.h: im2col on the fly) -> for
//     each A panel (L1-resident) -> for each B panel (L2-resident) -> micro-kernel into a C buffer ->
//     the caller's epilogue.
// Everything here has internal linkage (an anonymous namespace): each variant file gets its own
// copy, inlined as in one file.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common/conv2d.h"
#include "simd.h"

namespace cnnext::cpu {
namespace {

// MR x NR accumulators + two B vectors + one A broadcast must fit the vector registers: 8 x 2 + 3 = 19
// of AVX-512's 32; AVX2 and SSE2 have 16, where 8 rows spilled accumulators to the stack on every
// step of the reduction (the avx2 variant's conv2d ran at 0.3-0.6x torch), so 6 x 2 + 3 = 15 there.
#if defined(__AVX512F__)
constexpr int64_t MR = 8;
#else
constexpr int64_t MR = 6;
#endif
template <typename T>
constexpr int64_t NR = 2 * Vec<T>::size;
constexpr int64_t KC = 256;
template <typename T>
constexpr int64_t NC = 12 * NR<T>;
constexpr int32_t kInvalid = -(1 << 30);  // h0 / w0 of a padding column: every bounds test fails

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
struct Buf {  // 64-byte aligned scratch
  T* p;
  explicit Buf(int64_t n) {
    p = static_cast<T*>(std::aligned_alloc(64, round_up(std::max<int64_t>(n, 1) * int64_t(sizeof(T)), 64)));
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

// ---------------------------------------------------------------------------------------------
// The portable micro-kernel tile (any ISA, float and double): C[MR x NR] (row stride ldc) =
// (acc ? C : bias ? bias[row] : 0) + sum over k < kc of a(k, i) * b(k, half), where a(k, i) is the scalar of
// row i and b(k, h) the vector of half h (0, 1) of step k.  The three micro-kernels below differ only in
// where A and B come from.
template <typename T, typename AAt, typename BAt>
inline void tile_kernel(int64_t kc, AAt&& a, BAt&& b, T* __restrict__ C, int64_t ldc, bool acc, const T* bias) {
  using V = Vec<T>;
  using vt = typename V::type;
  constexpr int VS = V::size;
  vt c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    c0[i] = acc ? V::load(C + i * ldc) : bias ? V::broadcast(bias[i]) : vt{};
    c1[i] = acc ? V::load(C + i * ldc + VS) : c0[i];
  }
  for (int64_t k = 0; k < kc; ++k) {
    const vt b0 = b(k, 0), b1 = b(k, 1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const vt ai = V::broadcast(a(k, i));
      c0[i] += ai * b0;
      c1[i] += ai * b1;
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    V::store(C + i * ldc, c0[i]);
    V::store(C + i * ldc + VS, c1[i]);
  }
}

// micro-kernel: A and B packed, A[kc][MR] * B[kc][NR]
template <typename T>
inline void micro_kernel(int64_t kc, const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                         int64_t ldc, bool acc, const T* bias = nullptr) {
  constexpr int VS = Vec<T>::size;
  tile_kernel<T>(kc, [&](int64_t k, int i) { return A[k * MR + i]; },
                 [&](int64_t k, int h) { return Vec<T>::load(B + k * 2 * VS + h * VS); }, C, ldc, acc, bias);
}

#if defined(__AVX512F__)
// The 8 x 32 float tile C (row stride ldc) of an AVX-512 micro-kernel in 16 named zmm accumulators,
// c<row><half>: OPEN declares them, loaded from C when acc, else zeroed; CLOSE stores them.  (Shared by
// the float kernel here and conv2d_bf16.cpp's vdpbf16ps kernel.)
#define CNNEXT_TILE_8X32_OPEN(C, ldc, acc)                                                                  \
  __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;                  \
  if (acc) {                                                                                              \
    CNNEXT_TILE_ROWS(CNNEXT_TILE_LOAD, C, ldc)                                                            \
  } else {                                                                                                \
    CNNEXT_TILE_ROWS(CNNEXT_TILE_ZERO, C, ldc)                                                            \
  }
// ... or, when not acc, set to bias[row] (bias may be nullptr: zero)
#define CNNEXT_TILE_8X32_OPEN_BIAS(C, ldc, acc, bias)                                                       \
  __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;                  \
  if (acc) {                                                                                              \
    CNNEXT_TILE_ROWS(CNNEXT_TILE_LOAD, C, ldc)                                                            \
  } else if (bias) {                                                                                      \
    CNNEXT_TILE_ROWS(CNNEXT_TILE_BIAS, bias, 0)                                                           \
  } else {                                                                                                \
    CNNEXT_TILE_ROWS(CNNEXT_TILE_ZERO, C, ldc)                                                            \
  }
#define CNNEXT_TILE_8X32_CLOSE(C, ldc) CNNEXT_TILE_ROWS(CNNEXT_TILE_STORE, C, ldc)
#define CNNEXT_TILE_ROWS(op, C, ldc) op(0, C, ldc) op(1, C, ldc) op(2, C, ldc) op(3, C, ldc) op(4, C, ldc) \
  op(5, C, ldc) op(6, C, ldc) op(7, C, ldc)
#define CNNEXT_TILE_LOAD(i, C, ldc) c##i##0 = _mm512_loadu_ps(C + i * ldc), c##i##1 = _mm512_loadu_ps(C + i * ldc + 16);
#define CNNEXT_TILE_ZERO(i, C, ldc) c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define CNNEXT_TILE_BIAS(i, bias, unused) c##i##0 = _mm512_set1_ps(bias[i]), c##i##1 = c##i##0;
#define CNNEXT_TILE_STORE(i, C, ldc) _mm512_storeu_ps(C + i * ldc, c##i##0), _mm512_storeu_ps(C + i * ldc + 16, c##i##1);

// The reduction of the float kernel: kc steps of two B vectors and 8 broadcast A values into the 16
// accumulators (A, B advance past the panels), unrolled by 4 (4-5% faster: the loop's own uops compete with
// the FMAs for ports 0 and 5).  _STEP is one step with the B vectors given.
#define CNNEXT_TILE_8X32_FMA(A, B, kc)                                                                    \
  _Pragma("GCC unroll 4") for (int64_t k = 0; k < kc; ++k) {                                              \
    CNNEXT_TILE_8X32_STEP(A, _mm512_load_ps(B), _mm512_load_ps(B + 16))                                   \
    B += 32;                                                                                              \
  }
#define CNNEXT_TILE_8X32_STEP(A, load_b0, load_b1)                                                        \
  {                                                                                                       \
    const __m512 b0 = load_b0, b1 = load_b1;                                                              \
    CNNEXT_TILE_ROWS(CNNEXT_TILE_FMA, A, 0)                                                               \
    A += 8;                                                                                               \
  }
#define CNNEXT_TILE_FMA(i, A, unused)                                                                       \
  {                                                                                                       \
    const __m512 a = _mm512_set1_ps(A[i]);                                                                \
    c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);                                                            \
    c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);                                                            \
  }

template <>
inline void micro_kernel<float>(int64_t kc, const float* __restrict__ A, const float* __restrict__ B,
                                float* __restrict__ C, int64_t ldc, bool acc, const float* bias) {
  CNNEXT_TILE_8X32_OPEN_BIAS(C, ldc, acc, bias)
  CNNEXT_TILE_8X32_FMA(A, B, kc)
  CNNEXT_TILE_8X32_CLOSE(C, ldc)
}
#endif

// The micro-kernel with B read in place instead of from a packed panel: row k of B is the two vectors at
// X + jofs[k] + off0 and X + jofs[k] + off1 (unaligned).  For operands whose reduction rows are already
// contiguous vectors in memory (the grad weight's channels-last x), it saves the packing.
template <typename T>
inline void micro_kernel_rows(int64_t kc, const T* __restrict__ A, const T* __restrict__ X, const int64_t* jofs,
                              int64_t off0, int64_t off1, T* __restrict__ C, int64_t ldc, bool acc) {
  tile_kernel<T>(kc, [&](int64_t k, int i) { return A[k * MR + i]; },
                 [&](int64_t k, int h) { return Vec<T>::load(X + jofs[k] + (h ? off1 : off0)); }, C, ldc, acc,
                 static_cast<const T*>(nullptr));
}

#if defined(__AVX512F__)
template <>
inline void micro_kernel_rows<float>(int64_t kc, const float* __restrict__ A, const float* __restrict__ X,
                                     const int64_t* jofs, int64_t off0, int64_t off1, float* __restrict__ C,
                                     int64_t ldc, bool acc) {
  CNNEXT_TILE_8X32_OPEN(C, ldc, acc)
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const float* xk = X + jofs[k];
    CNNEXT_TILE_8X32_STEP(A, _mm512_loadu_ps(xk + off0), _mm512_loadu_ps(xk + off1))
  }
  CNNEXT_TILE_8X32_CLOSE(C, ldc)
}
#endif

// The micro-kernel with A read in place, unpacked: row i of the tile is A + min(i, rows - 1) * lda (k
// contiguous), so a row-major weight matrix needs no packing; rows >= `rows` repeat the last row (their
// results are the caller's to drop).  bias, when given, has MR entries.
template <typename T>
inline void micro_kernel_arows(int64_t kc, const T* A, int64_t lda, int64_t rows, const T* __restrict__ B,
                               T* __restrict__ C, int64_t ldc, bool acc, const T* bias) {
  constexpr int VS = Vec<T>::size;
  const T* a[MR];
  for (int i = 0; i < MR; ++i) a[i] = A + std::min<int64_t>(i, rows - 1) * lda;
  tile_kernel<T>(kc, [&](int64_t k, int i) { return a[i][k]; },
                 [&](int64_t k, int h) { return Vec<T>::load(B + k * 2 * VS + h * VS); }, C, ldc, acc, bias);
}

#if defined(__AVX512F__)
#define CNNEXT_TILE_FMA_AROW(i, k, unused)                                                                \
  {                                                                                                       \
    const __m512 a = _mm512_set1_ps(a##i[k]);                                                             \
    c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);                                                            \
    c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);                                                            \
  }
#define CNNEXT_AROW(i) const float* a##i = A + std::min<int64_t>(i, rows - 1) * lda;
template <>
inline void micro_kernel_arows<float>(int64_t kc, const float* A, int64_t lda, int64_t rows,
                                      const float* __restrict__ B, float* __restrict__ C, int64_t ldc, bool acc,
                                      const float* bias) {
  CNNEXT_AROW(0) CNNEXT_AROW(1) CNNEXT_AROW(2) CNNEXT_AROW(3) CNNEXT_AROW(4) CNNEXT_AROW(5) CNNEXT_AROW(6) CNNEXT_AROW(7)
  CNNEXT_TILE_8X32_OPEN_BIAS(C, ldc, acc, bias)
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16);
    CNNEXT_TILE_ROWS(CNNEXT_TILE_FMA_AROW, k, 0)
    B += 32;
  }
  CNNEXT_TILE_8X32_CLOSE(C, ldc)
}
#undef CNNEXT_AROW
#endif

// C[Mpad x ncpad] (+)= A * B for one block of columns.  Apack: the A blocks of Kd, block pc at
// Apack + pc*Mpad, its panel ir at + ir*kc, each [kc][MR].  pack_b(pc, kc, Bbuf) writes the
// ncpad/NR panels of rows pc..pc+kc, panel jr at Bbuf + jr*kc.
template <typename T, typename PackB>
void gemm_block(int64_t Mpad, int64_t ncpad, int64_t Kd, const T* Apack, PackB&& pack_b, T* Bbuf, T* C,
                int64_t ldc, bool acc) {
  for (int64_t pc = 0; pc < Kd; pc += KC) {
    const int64_t kc = std::min(KC, Kd - pc);
    pack_b(pc, kc, Bbuf);
    const T* Ablk = Apack + pc * Mpad;
    for (int64_t ir = 0; ir < Mpad; ir += MR)
      for (int64_t jr = 0; jr < ncpad; jr += NR<T>)
        micro_kernel<T>(kc, Ablk + ir * kc, Bbuf + jr * kc, C + ir * ldc + jr, ldc, acc || pc > 0);
  }
}

// A(i, kd) = src(i, kd) for i < M (0 for M <= i < Mpad), packed as gemm_block wants; threads over panels.
template <typename T, typename Src>
void pack_a(T* dst, Src&& src, int64_t M, int64_t Mpad, int64_t Kd) {
  at::parallel_for(0, Mpad / MR, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t pc = 0; pc < Kd; pc += KC) {
      const int64_t kc = std::min(KC, Kd - pc);
      for (int64_t ir = p0 * MR; ir < p1 * MR; ir += MR) {
        T* d = dst + pc * Mpad + ir * kc;
        for (int64_t i = 0; i < MR; ++i) {
          if (ir + i < M) {
            for (int64_t k = 0; k < kc; ++k) d[k * MR + i] = src(ir + i, pc + k);
          } else {
            for (int64_t k = 0; k < kc; ++k) d[k * MR + i] = T(0);
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Visit the columns j0 .. j0+nc as runs inside one image row: f(n, p, q0, q1, jj) with jj = j - j0 of q0.
template <typename F>
void for_each_row_run(const Conv2dShape& s, int64_t j0, int64_t nc, F&& f) {
  const int64_t PQ = s.P * s.Q;
  int64_t j = j0;
  while (j < j0 + nc) {
    const int64_t n = j / PQ, pq = j % PQ, p = pq / s.Q, q0 = pq % s.Q;
    const int64_t q1 = std::min(s.Q, q0 + (j0 + nc - j));
    f(n, p, q0, q1, j - j0);
    j += q1 - q0;
  }
}

// Columns j0 .. j0+nc as runs inside one image: f(n, pq0, pq1, jj).
template <typename F>
void for_each_image_run(const Conv2dShape& s, int64_t j0, int64_t nc, F&& f) {
  const int64_t PQ = s.P * s.Q;
  int64_t j = j0;
  while (j < j0 + nc) {
    const int64_t n = j / PQ, pq0 = j % PQ, pq1 = std::min(PQ, pq0 + (j0 + nc - j));
    f(n, pq0, pq1, j - j0);
    j += pq1 - pq0;
  }
}

// Split L columns into blocks of a multiple of NR columns, at most NC, their count a multiple of the
// thread count (so the threads get equal shares); returns the block width.
template <typename T>
int64_t column_block(int64_t L, int64_t threads) {
  const int64_t nb = threads * ceil_div(L, threads * NC<T>);
  return std::max<int64_t>(NR<T>, std::min<int64_t>(NC<T>, round_up(ceil_div(L, nb), NR<T>)));
}

// The packed paths address a block of columns with 32-bit offsets relative to its first image: a block
// spans at most NC columns, so at most NC / min(PQ, HW) + 2 images of x, gy or gx.
inline bool offsets_fit(const Conv2dShape& s) {
  const int64_t img = std::max(s.C * s.H * s.W, s.K * s.P * s.Q);
  const int64_t span = 384 / std::max<int64_t>(1, std::min(s.P * s.Q, s.H * s.W)) + 2;
  return img * span < (int64_t(1) << 31) - 1;
}

}  // namespace
}  // namespace cnnext::cpu
