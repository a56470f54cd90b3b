// conv2d on the CPU.  Design choice: im2col + packed GEMM (BLIS style) rather than direct
// convolution, with the im2col folded into the packing of the GEMM panels -- no col buffer is built --
// plus two special cases that need no packing transposes at all.
//
// Notation: per group g, Cg = C/groups input channels, Kg = K/groups output channels,
// CRS = Cg*R*S (one row of the unrolled input per (c, r, s)), and the GEMM columns j = (n, p, q)
// run over every output pixel of the whole batch, L = N*P*Q of them.
//   col[(c, r, s), (n, p, q)] = x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]   (0 in the padding)
//
//   forward       Y[k, j]     = b[k] + sum_crs W[k, crs] * col[crs, j]     GEMM M = Kg, N = L, Kd = CRS
//   grad input    stride 1:   the forward conv of gY with the flipped, transposed kernel
//                             (pad' = dh*(R-1) - ph): the same fast path, no col2im.
//                 stride > 1: gcol[crs, j] = sum_k W[k, crs] * gY[k, j]    GEMM M = CRS, N = L, Kd = Kg
//                             then col2im gx[n, c, h, w] += gcol[crs, j] (scatter, one thread per image)
//   grad weight   gW[k, crs]  = sum_j gY[k, j] * col[crs, j]                GEMM M = Kg, N = CRS, Kd = L
//                 1x1 unpadded with few channels (Kg*Cg <= 12288): gW[k, c] = sum_j gY[k, j] x[c, j] as
//                 4 x 4 tiles of dot products in 16 vector accumulators (both rows contiguous: nothing
//                 to pack; a strided 1x1 first gathers its sampled pixels).
//   grad bias     gb[k]       = sum_j gY[k, j]
//
// The GEMM C[M, N] = A[M, Kd] * B[Kd, N]:
//   * A is packed into micro-panels of MR = 8 rows, [kc][MR]; B into micro-panels of NR = 2 SIMD
//     vectors (32 floats with AVX-512), [kc][NR]; both zero-padded, so the micro-kernel only ever
//     sees full tiles.  Kd is cut into blocks of KC = 256 (a B micro-panel is 32 KiB, an A
//     micro-panel 8 KiB), columns into blocks of at most NC = 12 panels.
//   * micro-kernel: an 8 x 32 tile of C in 16 zmm accumulators; per step of the reduction it loads
//     two vectors of B and broadcasts eight scalars of A: 16 FMAs (AVX-512 intrinsics for float
//     under __AVX512F__; vec.h GCC vectors -- any ISA -- otherwise and for double).
//   * loops per block of columns:  for kc block: pack B (im2col on the fly) -> for each A panel
//     (L1-resident) -> for each B panel (L2-resident) -> micro-kernel into a C buffer -> epilogue
//     (bias, scatter of the block's columns to NCHW y).
//   * packing B is the im2col: for each panel of 32 columns the per-column (image, h0, w0) are
//     tabulated once, then each row (c, r, s) is one masked AVX-512 load when the columns are
//     contiguous in x (1x1 convs: always), a few masked loads when they are a few runs (image rows),
//     with stride 2 two masked loads and an even-lane permute per run, else one masked gather; the
//     padding is the mask.
//   * grad weight packs col transposed ([j][crs]).  With Cg a multiple of the vector width x is first
//     copied to channels-last and crs ordered (r, s, c): a vector of lanes is one contiguous load.
//     Otherwise lanes are (c, r, s), loaded as masked runs of consecutive s (or gathered).
// Threads (at::parallel_for): forward over blocks of columns (independent, as many per thread);
// strided grad input over whole images (col2im scatters stay inside an image); grad weight over ranges
// of gW's columns (each element owned by one thread) when gW is large next to the batch, else over
// fixed ranges of the batch whose partial gW are added in part order afterwards.  Every sum is done in
// an order fixed by the shape and the thread count: results are bit-identical across runs.
// Tensors so large that the packing's 32-bit offsets could overflow take plain direct loops.
#include "conv2d.h"
#include "conv2d_grad_weight.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vec.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace cnnext::cpu {
namespace {

constexpr int64_t MR = 8;
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
// micro-kernel: C[MR x NR] (row stride ldc) = (acc ? C : 0) + A[kc][MR] * B[kc][NR]
template <typename T>
inline void micro_kernel(int64_t kc, const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                         int64_t ldc, bool acc) {
  using V = Vec<T>;
  using vt = typename V::type;
  constexpr int VS = V::size;
  vt c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    c0[i] = acc ? V::load(C + i * ldc) : vt{};
    c1[i] = acc ? V::load(C + i * ldc + VS) : vt{};
  }
  for (int64_t k = 0; k < kc; ++k) {
    const vt b0 = V::load(B), b1 = V::load(B + VS);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const vt a = V::broadcast(A[i]);
      c0[i] += a * b0;
      c1[i] += a * b1;
    }
    A += MR;
    B += 2 * VS;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    V::store(C + i * ldc, c0[i]);
    V::store(C + i * ldc + VS, c1[i]);
  }
}

#if defined(__AVX512F__)
template <>
inline void micro_kernel<float>(int64_t kc, const float* __restrict__ A, const float* __restrict__ B,
                                float* __restrict__ C, int64_t ldc, bool acc) {
  __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
  if (acc) {
#define L(i) c##i##0 = _mm512_loadu_ps(C + i * ldc); c##i##1 = _mm512_loadu_ps(C + i * ldc + 16);
    L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7)
#undef L
  } else {
#define Z(i) c##i##0 = _mm512_setzero_ps(); c##i##1 = _mm512_setzero_ps();
    Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7)
#undef Z
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16);
#define F(i)                                         \
  {                                                  \
    const __m512 a = _mm512_set1_ps(A[i]);           \
    c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);       \
    c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);       \
  }
    F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)
#undef F
    A += 8;
    B += 32;
  }
#define S(i) _mm512_storeu_ps(C + i * ldc, c##i##0); _mm512_storeu_ps(C + i * ldc + 16, c##i##1);
  S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7)
#undef S
}
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
// Tables for the on-the-fly im2col.  A "row" is (c, r, s): offset c*HW + r*dh*W + s*dw and the
// shifts rh = r*dh, rs = s*dw.  A "column" is an output pixel (n, p, q) of a block that starts at
// image n0: base = (n - n0)*img + h0*W + w0 with h0 = p*sh - ph, w0 = q*sw - pw.  Element (row, col)
// is X[base + off] when 0 <= h0 + rh < H and 0 <= w0 + rs < W, else 0.
struct RowTab {
  std::vector<int32_t> off, rh, rs;
  // per group of 16 rows used as lanes (grad weight): runs of consecutive offsets (lane mask,
  // offset - first lane), so a lane vector is a few masked loads instead of a gather
  std::vector<uint16_t> smask;
  std::vector<int32_t> soff;
  std::vector<uint8_t> nseg;
  void segment() {
    const int64_t n = int64_t(off.size());
    smask.assign(n + 16, 0); soff.assign(n + 16, 0); nseg.assign(n / 16 + 1, 0);
    for (int64_t v = 0; v * 16 < n; ++v) {
      int ns = 0;
      for (int64_t l = 0; l < 16 && v * 16 + l < n; ++l) {
        const int64_t i = v * 16 + l;
        if (l == 0 || (rh[i] != kInvalid && off[i] != off[i - 1] + 1)) {
          soff[v * 16 + ns] = off[i] - int32_t(l);
          ++ns;
        }
        smask[v * 16 + ns - 1] |= uint16_t(1u << l);
      }
      nseg[v] = uint8_t(ns);
    }
  }
};

// rows (c, r, s) of the unrolled input; `pad` extra rows that are always out of bounds.
RowTab im2col_rows(const Conv2dShape& s, int64_t Cg, int64_t pad_to) {
  RowTab t;
  const int64_t CRS = Cg * s.R * s.S;
  t.off.assign(pad_to, 0);
  t.rh.assign(pad_to, kInvalid);
  t.rs.assign(pad_to, kInvalid);
  for (int64_t i = 0; i < CRS; ++i) {
    const int64_t c = i / (s.R * s.S), r = (i / s.S) % s.R, q = i % s.S;
    t.off[i] = int32_t(c * s.H * s.W + r * s.dil_h * s.W + q * s.dil_w);
    t.rh[i] = int32_t(r * s.dil_h);
    t.rs[i] = int32_t(q * s.dil_w);
  }
  return t;
}

struct ColTab {
  std::vector<int32_t> base, h0, w0;
  std::vector<char> contig;  // per panel of NR: the valid columns' bases are consecutive
  // per group of 16 columns: the runs of bases in steps of `step` (1, or the stride 2) -- lane mask,
  // base - step*lane -- for the AVX-512 packing: one masked load (step 2: two and a permute) per run
  // instead of a gather
  std::vector<uint16_t> smask;
  std::vector<int32_t> soff;
  std::vector<uint8_t> nseg;
  int64_t step = 1;
  int64_t n0 = 0;            // first image of the block
  void resize(int64_t n) {
    base.resize(n); h0.resize(n); w0.resize(n); contig.resize(n);
    smask.resize(n + 16); soff.resize(n + 16); nseg.resize(n / 16 + 1);
  }
};

// Columns j0 .. j0+nc of the whole batch, padded to ncpad.  img: element stride of one image.
// conv = true: (h0, w0) of the receptive field; false: columns address a (K, P*Q) plane directly
// (base = (n - n0)*img + p*Q + q, always in bounds).
template <int64_t nr>
void fill_cols(ColTab& t, const Conv2dShape& s, int64_t j0, int64_t nc, int64_t ncpad, int64_t img, bool conv) {
  const int64_t PQ = s.P * s.Q;
  t.resize(ncpad);
  t.n0 = j0 / PQ;
  int64_t n = t.n0, pq = j0 - t.n0 * PQ;
  for (int64_t j = 0; j < ncpad; ++j) {
    if (j < nc) {
      const int64_t p = pq / s.Q, q = pq % s.Q;
      if (conv) {
        t.h0[j] = int32_t(p * s.stride_h - s.pad_h);
        t.w0[j] = int32_t(q * s.stride_w - s.pad_w);
        t.base[j] = int32_t((n - t.n0) * img + int64_t(t.h0[j]) * s.W + t.w0[j]);
      } else {
        t.h0[j] = t.w0[j] = 0;
        t.base[j] = int32_t((n - t.n0) * img + pq);
      }
      if (++pq == PQ) pq = 0, ++n;
    } else {
      t.h0[j] = t.w0[j] = kInvalid;
      t.base[j] = 0;
    }
  }
  for (int64_t jr = 0; jr < ncpad; jr += nr) {
    bool c = true;
    for (int64_t l = 1; l < nr && jr + l < nc; ++l) c &= t.base[jr + l] == t.base[jr] + l;
    t.contig[jr / nr] = c;
  }
  t.step = conv && s.stride_w == 2 ? 2 : 1;
  for (int64_t v = 0; v * 16 < ncpad; ++v) {
    int ns = 0;
    for (int64_t l = 0; l < 16 && v * 16 + l < ncpad; ++l) {
      const int64_t j = v * 16 + l;
      if (l == 0 || (j < nc && t.base[j] != t.base[j - 1] + t.step)) {
        t.smask[v * 16 + ns] = 0;
        t.soff[v * 16 + ns] = int32_t(t.base[j] - t.step * l);
        ++ns;
      }
      t.smask[v * 16 + ns - 1] |= uint16_t(1u << l);
    }
    t.nseg[v] = uint8_t(ns);
  }
}

// B panel [kc][NR] of rows r0..r0+kc (RowTab) and columns jr..jr+NR (ColTab) of the unrolled X.
template <typename T>
void pack_b_cols(T* __restrict__ out, const T* X, const ColTab& ct, int64_t jr, const RowTab& rt, int64_t r0,
                 int64_t kc, int64_t H, int64_t W) {
  constexpr int64_t nr = NR<T>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i Hv = _mm512_set1_epi32(int32_t(H)), Wv = _mm512_set1_epi32(int32_t(W));
    const __m512i h0a = _mm512_loadu_si512(ct.h0.data() + jr), h0b = _mm512_loadu_si512(ct.h0.data() + jr + 16);
    const __m512i w0a = _mm512_loadu_si512(ct.w0.data() + jr), w0b = _mm512_loadu_si512(ct.w0.data() + jr + 16);
    if (ct.contig[jr / nr]) {
      const float* xb = X + ct.base[jr];
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __mmask16 ma = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0a, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0a, rs), Wv);
        const __mmask16 mb = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0b, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0b, rs), Wv);
        const float* src = xb + rt.off[r0 + k];
        _mm512_store_ps(out + k * nr, _mm512_maskz_loadu_ps(ma, src));
        _mm512_store_ps(out + k * nr + 16, _mm512_maskz_loadu_ps(mb, src + 16));
      }
#if defined(__BMI2__)
    } else if (ct.step == 2 && ct.nseg[jr / 16] <= 4 && ct.nseg[jr / 16 + 1] <= 4) {
      // stride 2, a few runs: lane l of a run reads p[2l], the even elements of two masked loads
      const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      const int na = ct.nseg[jr / 16], nb = ct.nseg[jr / 16 + 1];
      const uint16_t* sma = ct.smask.data() + jr;
      const int32_t* soa = ct.soff.data() + jr;
      auto runs = [&](const float* src, __mmask16 m, const uint16_t* sm, const int32_t* so, int ns) {
        __m512 v = _mm512_setzero_ps();
        for (int i = 0; i < ns; ++i) {
          const __mmask16 mm = m & sm[i];
          const uint32_t lm = _pdep_u32(mm, 0x55555555u);
          const __m512 lo = _mm512_maskz_loadu_ps(__mmask16(lm), src + so[i]);
          const __m512 hi = _mm512_maskz_loadu_ps(__mmask16(lm >> 16), src + so[i] + 16);
          v = _mm512_mask_mov_ps(v, mm, _mm512_permutex2var_ps(lo, even, hi));
        }
        return v;
      };
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __mmask16 ma = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0a, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0a, rs), Wv);
        const __mmask16 mb = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0b, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0b, rs), Wv);
        const float* src = X + rt.off[r0 + k];
        _mm512_store_ps(out + k * nr, runs(src, ma, sma, soa, na));
        _mm512_store_ps(out + k * nr + 16, runs(src, mb, sma + 16, soa + 16, nb));
      }
#endif
    } else if (ct.step == 1 && ct.nseg[jr / 16] <= 8 && ct.nseg[jr / 16 + 1] <= 8) {  // a few runs: masked loads
      const int na = ct.nseg[jr / 16], nb = ct.nseg[jr / 16 + 1];
      const uint16_t* sma = ct.smask.data() + jr;
      const int32_t* soa = ct.soff.data() + jr;
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __mmask16 ma = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0a, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0a, rs), Wv);
        const __mmask16 mb = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0b, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0b, rs), Wv);
        const float* src = X + rt.off[r0 + k];
        __m512 va = _mm512_setzero_ps(), vb = _mm512_setzero_ps();
        for (int i = 0; i < na; ++i) va = _mm512_mask_loadu_ps(va, ma & sma[i], src + soa[i]);
        for (int i = 0; i < nb; ++i) vb = _mm512_mask_loadu_ps(vb, mb & sma[16 + i], src + soa[16 + i]);
        _mm512_store_ps(out + k * nr, va);
        _mm512_store_ps(out + k * nr + 16, vb);
      }
    } else {
      const __m512i ba = _mm512_loadu_si512(ct.base.data() + jr), bb = _mm512_loadu_si512(ct.base.data() + jr + 16);
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __m512i off = _mm512_set1_epi32(rt.off[r0 + k]);
        const __mmask16 ma = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0a, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0a, rs), Wv);
        const __mmask16 mb = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0b, rh), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0b, rs), Wv);
        _mm512_store_ps(out + k * nr,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ma, _mm512_add_epi32(ba, off), X, 4));
        _mm512_store_ps(out + k * nr + 16,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mb, _mm512_add_epi32(bb, off), X, 4));
      }
    }
    return;
  }
#endif
  for (int64_t k = 0; k < kc; ++k) {
    const int32_t rh = rt.rh[r0 + k], rs = rt.rs[r0 + k];
    const int64_t off = rt.off[r0 + k];
    T* o = out + k * nr;
    for (int64_t l = 0; l < nr; ++l) {
      const int64_t j = jr + l;
      const bool ok = uint32_t(ct.h0[j] + rh) < uint32_t(H) && uint32_t(ct.w0[j] + rs) < uint32_t(W);
      o[l] = ok ? X[ct.base[j] + off] : T(0);
    }
  }
}

// B panel [kc][NR] of the transposed unrolled X: rows are columns j (ColTab, jrow0..jrow0+kc), lanes
// are rows (c, r, s) lane0..lane0+NR of the RowTab.
template <typename T>
void pack_b_rows(T* __restrict__ out, const T* X, const ColTab& ct, int64_t jrow0, int64_t kc, const RowTab& rt,
                 int64_t lane0, int64_t H, int64_t W) {
  constexpr int64_t nr = NR<T>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i Hv = _mm512_set1_epi32(int32_t(H)), Wv = _mm512_set1_epi32(int32_t(W));
    const __m512i rha = _mm512_loadu_si512(rt.rh.data() + lane0), rhb = _mm512_loadu_si512(rt.rh.data() + lane0 + 16);
    const __m512i rsa = _mm512_loadu_si512(rt.rs.data() + lane0), rsb = _mm512_loadu_si512(rt.rs.data() + lane0 + 16);
    const __m512i oa = _mm512_loadu_si512(rt.off.data() + lane0), ob = _mm512_loadu_si512(rt.off.data() + lane0 + 16);
    const int na = rt.nseg[lane0 / 16], nb = rt.nseg[lane0 / 16 + 1];
    if (na <= 6 && nb <= 6) {  // a few runs of consecutive addresses: masked loads
      const uint16_t* sm = rt.smask.data() + lane0;
      const int32_t* so = rt.soff.data() + lane0;
      for (int64_t k = 0; k < kc; ++k) {
        const int64_t j = jrow0 + k;
        const __m512i h0 = _mm512_set1_epi32(ct.h0[j]), w0 = _mm512_set1_epi32(ct.w0[j]);
        const __mmask16 ma = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0, rha), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0, rsa), Wv);
        const __mmask16 mb = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0, rhb), Hv) &
                             _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0, rsb), Wv);
        const float* src = X + ct.base[j];
        __m512 va = _mm512_setzero_ps(), vb = _mm512_setzero_ps();
        for (int i = 0; i < na; ++i) va = _mm512_mask_loadu_ps(va, ma & sm[i], src + so[i]);
        for (int i = 0; i < nb; ++i) vb = _mm512_mask_loadu_ps(vb, mb & sm[16 + i], src + so[16 + i]);
        _mm512_store_ps(out + k * nr, va);
        _mm512_store_ps(out + k * nr + 16, vb);
      }
      return;
    }
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t j = jrow0 + k;
      const __m512i h0 = _mm512_set1_epi32(ct.h0[j]), w0 = _mm512_set1_epi32(ct.w0[j]);
      const __m512i b = _mm512_set1_epi32(ct.base[j]);
      const __mmask16 ma = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0, rha), Hv) &
                           _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0, rsa), Wv);
      const __mmask16 mb = _mm512_cmplt_epu32_mask(_mm512_add_epi32(h0, rhb), Hv) &
                           _mm512_cmplt_epu32_mask(_mm512_add_epi32(w0, rsb), Wv);
      _mm512_store_ps(out + k * nr, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ma, _mm512_add_epi32(b, oa), X, 4));
      _mm512_store_ps(out + k * nr + 16,
                      _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mb, _mm512_add_epi32(b, ob), X, 4));
    }
    return;
  }
#endif
  for (int64_t k = 0; k < kc; ++k) {
    const int64_t j = jrow0 + k;
    T* o = out + k * nr;
    for (int64_t l = 0; l < nr; ++l) {
      const int64_t i = lane0 + l;
      const bool ok = uint32_t(ct.h0[j] + rt.rh[i]) < uint32_t(H) && uint32_t(ct.w0[j] + rt.rs[i]) < uint32_t(W);
      o[l] = ok ? X[int64_t(ct.base[j]) + rt.off[i]] : T(0);
    }
  }
}

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


// ---------------------------------------------------------------------------------------------
// Direct loops, used only for tensors so large that the packing's 32-bit offsets could overflow
// (an image of more than ~5M elements next to tiny outputs): correct and parallel, not fast.

// Calls f(input offset h*W + w, output offset p*Q + q) for every output position (p, q) whose
// kernel tap (r, t) lands inside the input (not in the padding), in (p, q) order.
template <typename F>
inline void for_each_tap(const Conv2dShape& s, int64_t r, int64_t t, F&& f) {
  for (int64_t p = 0; p < s.P; ++p) {
    const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
    if (h < 0 || h >= s.H) continue;
    for (int64_t q = 0; q < s.Q; ++q) {
      const int64_t w = q * s.stride_w - s.pad_w + t * s.dil_w;
      if (w >= 0 && w < s.W) f(h * s.W + w, p * s.Q + q);
    }
  }
}

template <typename T>
void direct_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  at::parallel_for(0, s.N * s.K, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / s.K, k = i % s.K, g = k / Kg;
      T* yp = y + i * PQ;
      std::fill(yp, yp + PQ, b ? b[k] : T(0));
      for (int64_t c = 0; c < Cg; ++c) {
        const T* xp = x + (n * s.C + g * Cg + c) * s.H * s.W;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t) {
            const T wv = w[((k * Cg + c) * s.R + r) * s.S + t];
            for_each_tap(s, r, t, [&](int64_t xi, int64_t yi) { yp[yi] += wv * xp[xi]; });
          }
      }
    }
  });
}

template <typename T>
void direct_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  at::parallel_for(0, s.N * s.C, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / s.C, c = i % s.C, g = c / Cg, cl = c % Cg;
      T* gxp = gx + i * s.H * s.W;
      std::fill(gxp, gxp + s.H * s.W, T(0));
      for (int64_t kl = 0; kl < Kg; ++kl) {
        const int64_t k = g * Kg + kl;
        const T* gyp = gy + (n * s.K + k) * PQ;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t) {
            const T wv = w[((k * Cg + cl) * s.R + r) * s.S + t];
            for_each_tap(s, r, t, [&](int64_t xi, int64_t yi) { gxp[xi] += wv * gyp[yi]; });
          }
      }
    }
  });
}

template <typename T>
void direct_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  at::parallel_for(0, s.K * Cg, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t k = i / Cg, c = i % Cg, g = k / Kg;
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t) {
          T acc = 0;
          for (int64_t n = 0; n < s.N; ++n) {
            const T* xp = x + (n * s.C + g * Cg + c) * s.H * s.W;
            const T* gyp = gy + (n * s.K + k) * PQ;
            for_each_tap(s, r, t, [&](int64_t xi, int64_t yi) { acc += gyp[yi] * xp[xi]; });
          }
          gw[(i * s.R + r) * s.S + t] = acc;
        }
    }
  });
  if (gb) {
    at::parallel_for(0, s.K, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        T acc = 0;
        for (int64_t n = 0; n < s.N; ++n) {
          const T* gyp = gy + (n * s.K + k) * PQ;
          for (int64_t j = 0; j < PQ; ++j) acc += gyp[j];
        }
        gb[k] = acc;
      }
    });
  }
}


// The packed paths address a block of columns with 32-bit offsets relative to its first image: a block
// spans at most NC columns, so at most NC / min(PQ, HW) + 2 images of x, gy or gx.
inline bool offsets_fit(const Conv2dShape& s) {
  const int64_t img = std::max(s.C * s.H * s.W, s.K * s.P * s.Q);
  const int64_t span = 384 / std::max<int64_t>(1, std::min(s.P * s.Q, s.H * s.W)) + 2;
  return img * span < (int64_t(1) << 31) - 1;
}

}  // namespace

// =============================================================================================
// The forward with the weights already packed: Ap holds, per group, the Mpad x CRS A of gemm_block.
template <typename T>
void forward_impl(const Conv2dShape& s, const T* x, const T* Ap, const T* b, T* y) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t CRS = Cg * s.R * s.S, L = s.N * PQ, Mpad = round_up(Kg, MR);
  const RowTab rt = im2col_rows(s, Cg, CRS);
  const int64_t ncb = column_block<T>(L, at::get_num_threads());
  const int64_t nblocks = ceil_div(L, ncb);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    const int64_t ncbpad = round_up(ncb, NR<T>);
    Buf<T> Bbuf(KC * ncbpad), Cbuf(Mpad * ncbpad);
    ColTab ct;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * ncb, nc = std::min(ncb, L - j0), ncpad = round_up(nc, NR<T>);
      fill_cols<NR<T>>(ct, s, j0, nc, ncpad, s.C * HW, true);
      for (int64_t g = 0; g < G; ++g) {
        const T* Xg = x + (ct.n0 * s.C + g * Cg) * HW;
        gemm_block(Mpad, ncpad, CRS, Ap + g * Mpad * CRS,
                   [&](int64_t pc, int64_t kc, T* Bb) {
                     for (int64_t jr = 0; jr < ncpad; jr += NR<T>)
                       pack_b_cols(Bb + jr * kc, Xg, ct, jr, rt, pc, kc, s.H, s.W);
                   },
                   Bbuf.p, Cbuf.p, ncpad, false);
        for_each_image_run(s, j0, nc, [&](int64_t n, int64_t pq0, int64_t pq1, int64_t jj) {
          for (int64_t k = 0; k < Kg; ++k) {
            const T bias = b ? b[g * Kg + k] : T(0);
            const T* src = Cbuf.p + k * ncpad + jj;
            T* dst = y + (n * s.K + g * Kg + k) * PQ + pq0;
            for (int64_t i = 0; i < pq1 - pq0; ++i) dst[i] = src[i] + bias;
          }
        });
      }
    }
  });
}

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t G = s.groups, Kg = s.K / G, CRS = s.C / G * s.R * s.S, Mpad = round_up(Kg, MR);
  if (s.N * s.P * s.Q == 0 || s.K == 0) return;
  if (!offsets_fit(s)) return direct_forward(s, x, w, b, y);
  Buf<T> Ap(G * Mpad * CRS);
  for (int64_t g = 0; g < G; ++g) {
    const T* wg = w + g * Kg * CRS;
    pack_a(Ap.p + g * Mpad * CRS, [&](int64_t i, int64_t kd) { return wg[i * CRS + kd]; }, Kg, Mpad, CRS);
  }
  forward_impl(s, x, Ap.p, b, y);
}

template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t CRS = Cg * s.R * s.S, L = s.N * PQ, Mpad = round_up(CRS, MR);
  if (s.N * s.C * HW == 0) return;
  if (L == 0 || s.K == 0) {
    std::fill(gx, gx + s.N * s.C * HW, T(0));
    return;
  }
  if (!offsets_fit(s)) return direct_backward_input(s, gy, w, gx);
  if (s.stride_h == 1 && s.stride_w == 1) {
    // Stride 1: grad input is the forward conv of gY with the flipped, transposed kernel
    //   gx[n, c, h, w] = sum_{k, r', s'} gy[n, k, h - ph' + r'*dh, w - pw' + s'*dw] * w[k, c, R-1-r', S-1-s']
    // with ph' = dh*(R-1) - ph: the fast forward path, no col2im.
    Conv2dShape t = s;
    t.C = s.K, t.H = s.P, t.W = s.Q, t.K = s.C, t.P = s.H, t.Q = s.W;
    t.pad_h = s.dil_h * (s.R - 1) - s.pad_h, t.pad_w = s.dil_w * (s.S - 1) - s.pad_w;
    const int64_t RS = s.R * s.S, KRS = Kg * RS, Mp = round_up(Cg, MR);
    // A(c, (k, r', s')) = w[k, c, R-1-r', S-1-s'] per group: transposed into wt (read w in order), then packed
    std::vector<T> wt(s.C * KRS);
    at::parallel_for(0, s.C, 16, [&](int64_t c0, int64_t c1) {
      for (int64_t k = 0; k < s.K; ++k) {
        const int64_t g = k / Kg, kl = k % Kg;
        for (int64_t c = std::max(c0, g * Cg); c < std::min(c1, (g + 1) * Cg); ++c) {
          const T* src = w + (k * Cg + c - g * Cg) * RS;
          T* dst = wt.data() + c * KRS + kl * RS;
          for (int64_t i = 0; i < RS; ++i) dst[i] = src[RS - 1 - i];
        }
      }
    });
    Buf<T> Ap(G * Mp * KRS);
    for (int64_t g = 0; g < G; ++g) {
      const T* wg = wt.data() + g * Cg * KRS;
      pack_a(Ap.p + g * Mp * KRS, [&](int64_t c, int64_t kd) { return wg[c * KRS + kd]; }, Cg, Mp, KRS);
    }
    forward_impl(t, gy, Ap.p, (const T*)nullptr, gx);
    return;
  }
  // A = W^T per group: A(crs, k) = w[(g*Kg + k)*CRS + crs]
  Buf<T> Ap(G * Mpad * Kg);
  for (int64_t g = 0; g < G; ++g) {
    const T* wg = w + g * Kg * CRS;
    pack_a(Ap.p + g * Mpad * Kg, [&](int64_t i, int64_t kd) { return wg[kd * CRS + i]; }, CRS, Mpad, Kg);
  }
  // B rows are gY's channels k: offset k*PQ, always in bounds
  RowTab rt;
  rt.off.resize(Kg);
  rt.rh.assign(Kg, 0);
  rt.rs.assign(Kg, 0);
  for (int64_t k = 0; k < Kg; ++k) rt.off[k] = int32_t(k * PQ);
  const int64_t nthreads = at::get_num_threads();

  // one block of columns j0..j0+nc: gcol (Mpad x ncpad) into Cbuf, then written or scattered to gx
  auto block = [&](int64_t j0, int64_t nc, ColTab& ct, T* Bbuf, T* Cbuf) {
    const int64_t ncpad = round_up(nc, NR<T>);
    fill_cols<NR<T>>(ct, s, j0, nc, ncpad, s.K * PQ, false);
    for (int64_t g = 0; g < G; ++g) {
      const T* Yg = gy + (ct.n0 * s.K + g * Kg) * PQ;
      gemm_block(Mpad, ncpad, Kg, Ap.p + g * Mpad * Kg,
                 [&](int64_t pc, int64_t kc, T* Bb) {
                   for (int64_t jr = 0; jr < ncpad; jr += NR<T>) pack_b_cols(Bb + jr * kc, Yg, ct, jr, rt, pc, kc, 1, 1);
                 },
                 Bbuf, Cbuf, ncpad, false);
      {
        for_each_row_run(s, j0, nc, [&](int64_t n, int64_t p, int64_t q0, int64_t q1, int64_t jj) {
          for (int64_t crs = 0; crs < CRS; ++crs) {
            const int64_t c = crs / (s.R * s.S), r = (crs / s.S) % s.R, t = crs % s.S;
            const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
            if (h < 0 || h >= s.H) continue;
            const int64_t wofs = -s.pad_w + t * s.dil_w;  // w = q*sw + wofs
            // valid q: 0 <= q*sw + wofs < W
            const int64_t qa = std::max(q0, wofs >= 0 ? int64_t(0) : ceil_div(-wofs, s.stride_w));
            const int64_t qb = std::min(q1, s.W - 1 - wofs < 0 ? int64_t(0) : (s.W - 1 - wofs) / s.stride_w + 1);
            if (qa >= qb) continue;
            T* dst = gx + ((n * s.C + g * Cg + c) * s.H + h) * s.W + wofs;
            const T* src = Cbuf + crs * ncpad + jj - q0;
            if (s.stride_w == 1) {
              for (int64_t q = qa; q < qb; ++q) dst[q] += src[q];
            } else {
              for (int64_t q = qa; q < qb; ++q) dst[q * s.stride_w] += src[q];
            }
          }
        });
      }
    }
  };

  // col2im scatters inside an image: a thread owns whole images (several when images are small)
  const int64_t ipc = std::max<int64_t>(1, std::min(ceil_div(NC<T>, PQ), ceil_div(s.N, 2 * nthreads)));
  const int64_t nchunks = ceil_div(s.N, ipc);
  const int64_t ncb = std::min<int64_t>(NC<T>, round_up(ipc * PQ, NR<T>));
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    Buf<T> Bbuf(KC * ncb), Cbuf(Mpad * ncb);
    ColTab ct;
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t n0 = ch * ipc, n1 = std::min(s.N, n0 + ipc);
      std::fill(gx + n0 * s.C * HW, gx + n1 * s.C * HW, T(0));
      for (int64_t j0 = n0 * PQ; j0 < n1 * PQ; j0 += ncb) block(j0, std::min(ncb, n1 * PQ - j0), ct, Bbuf.p, Cbuf.p);
    }
  });
}

#if defined(__AVX512F__)
inline float hsum16(__m512 x) {  // fixed order: halves, quarters, pairs, neighbours
  typedef float v16 __attribute__((vector_size(64)));
  v16 v = (v16)x;
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  return v[0];
}

// out[a*4 + b] = sum over images n < nimg, pixels j < PQ of y_a[n*img_y + j] * x_b[n*img_x + j]
// (y_a = y + oy[a], x_b = x + ox[b]): 16 zmm accumulators, named so they stay in registers.
inline void dot_tile_4x4(const float* y, const int64_t* oy, int64_t img_y, const float* x, const int64_t* ox,
                         int64_t img_x, int64_t nimg, int64_t PQ, float* out) {
#define ACC(a) __m512 c##a##0 = _mm512_setzero_ps(), c##a##1 = c##a##0, c##a##2 = c##a##0, c##a##3 = c##a##0;
  ACC(0) ACC(1) ACC(2) ACC(3)
#undef ACC
  const __mmask16 tail = __mmask16((1u << (PQ % 16)) - 1);
  for (int64_t n = 0; n < nimg; ++n) {
    const float *y0 = y + n * img_y + oy[0], *y1 = y + n * img_y + oy[1], *y2 = y + n * img_y + oy[2],
                *y3 = y + n * img_y + oy[3];
    const float *x0 = x + n * img_x + ox[0], *x1 = x + n * img_x + ox[1], *x2 = x + n * img_x + ox[2],
                *x3 = x + n * img_x + ox[3];
#define STEP(LOAD)                                                                              \
  {                                                                                             \
    const __m512 a0 = LOAD(y0), a1 = LOAD(y1), a2 = LOAD(y2), a3 = LOAD(y3);                    \
    const __m512 b0 = LOAD(x0), b1 = LOAD(x1), b2 = LOAD(x2), b3 = LOAD(x3);                    \
    c00 = _mm512_fmadd_ps(a0, b0, c00); c01 = _mm512_fmadd_ps(a0, b1, c01);                      \
    c02 = _mm512_fmadd_ps(a0, b2, c02); c03 = _mm512_fmadd_ps(a0, b3, c03);                      \
    c10 = _mm512_fmadd_ps(a1, b0, c10); c11 = _mm512_fmadd_ps(a1, b1, c11);                      \
    c12 = _mm512_fmadd_ps(a1, b2, c12); c13 = _mm512_fmadd_ps(a1, b3, c13);                      \
    c20 = _mm512_fmadd_ps(a2, b0, c20); c21 = _mm512_fmadd_ps(a2, b1, c21);                      \
    c22 = _mm512_fmadd_ps(a2, b2, c22); c23 = _mm512_fmadd_ps(a2, b3, c23);                      \
    c30 = _mm512_fmadd_ps(a3, b0, c30); c31 = _mm512_fmadd_ps(a3, b1, c31);                      \
    c32 = _mm512_fmadd_ps(a3, b2, c32); c33 = _mm512_fmadd_ps(a3, b3, c33);                      \
  }
    int64_t j = 0;
    for (; j + 16 <= PQ; j += 16) {
#define LD(p) _mm512_loadu_ps(p + j)
      STEP(LD)
#undef LD
    }
    if (j < PQ) {
#define LD(p) _mm512_maskz_loadu_ps(tail, p + j)
      STEP(LD)
#undef LD
    }
#undef STEP
  }
#define RED(a)                                                                                  \
  out[a * 4 + 0] = hsum16(c##a##0); out[a * 4 + 1] = hsum16(c##a##1); \
  out[a * 4 + 2] = hsum16(c##a##2); out[a * 4 + 3] = hsum16(c##a##3);
  RED(0) RED(1) RED(2) RED(3)
#undef RED
}
#endif

// grad weight of a 1x1, stride 1, unpadded conv: gW[k, c] = sum_j gY[k, j] * x[c, j], both rows contiguous
// along the pixels j of an image, so no transposition at all: a 4 x 4 tile of dot products kept in 16
// vector accumulators over a chunk of ~2048 columns (8 loads per 16 FMAs), reduced once per chunk.
// Threads: fixed ranges of the batch's columns, partial gW added in part order (deterministic).
template <typename T>
void pointwise_grad_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw) {
  using V = Vec<T>;
  using vt = typename V::type;
  constexpr int64_t VS = V::size, TK = 4, TC = 4;
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  const int64_t nparts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), s.N));
  std::vector<T> P(nparts * s.K * Cg, T(0));
  auto loadn = [](const T* p, int64_t n) {  // n < VS elements, zero-filled
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && VS == 16) return (vt)_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
    if constexpr (std::is_same_v<T, double> && VS == 8) return (vt)_mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p);
#endif
    vt v{};
    std::memcpy(&v, p, n * sizeof(T));
    return v;
  };
  auto hsum = [](vt v) -> T {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && VS == 16) return hsum16((__m512)v);
#endif
    return V::sum(v);
  };
  at::parallel_for(0, nparts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t part = t0; part < t1; ++part) {
      const int64_t n0 = s.N * part / nparts, n1 = s.N * (part + 1) / nparts;
      const int64_t LB = std::max<int64_t>(512, std::min<int64_t>(4096, (128 << 10) / Kg));  // columns per chunk
      const int64_t ipc = std::max<int64_t>(1, LB / PQ);  // images per chunk
      T* Pp = P.data() + part * s.K * Cg;
      for (int64_t na = n0; na < n1; na += ipc) {
        const int64_t nb = std::min(n1, na + ipc);
        for (int64_t g = 0; g < G; ++g)
          for (int64_t c0 = 0; c0 < Cg; c0 += TC)    // x's 4 rows of the chunk stay in L1,
            for (int64_t k0 = 0; k0 < Kg; k0 += TK) {  // gY's rows of the chunk in L2
#if defined(__AVX512F__)
              if constexpr (std::is_same_v<T, float>) {
                int64_t oy[TK], ox[TC];
                float out[TK * TC];
                for (int64_t a = 0; a < TK; ++a) oy[a] = (g * Kg + std::min(k0 + a, Kg - 1)) * PQ;
                for (int64_t b = 0; b < TC; ++b) ox[b] = (g * Cg + std::min(c0 + b, Cg - 1)) * PQ;
                dot_tile_4x4(gy + na * s.K * PQ, oy, s.K * PQ, x + na * s.C * PQ, ox, s.C * PQ, nb - na, PQ, out);
                for (int64_t a = 0; a < TK && k0 + a < Kg; ++a)
                  for (int64_t b = 0; b < TC && c0 + b < Cg; ++b) Pp[(g * Kg + k0 + a) * Cg + c0 + b] += out[a * TC + b];
                continue;
              }
#endif
              vt acc[TK][TC];
              for (int64_t a = 0; a < TK; ++a)
                for (int64_t b = 0; b < TC; ++b) acc[a][b] = vt{};
              for (int64_t n = na; n < nb; ++n) {
                const T* yr[TK];
                const T* xr[TC];
                for (int64_t a = 0; a < TK; ++a) yr[a] = gy + (n * s.K + g * Kg + std::min(k0 + a, Kg - 1)) * PQ;
                for (int64_t b = 0; b < TC; ++b) xr[b] = x + (n * s.C + g * Cg + std::min(c0 + b, Cg - 1)) * PQ;
                int64_t j = 0;
                for (; j + VS <= PQ; j += VS) {
                  vt yv[TK], xv[TC];
                  for (int64_t a = 0; a < TK; ++a) yv[a] = V::load(yr[a] + j);
                  for (int64_t b = 0; b < TC; ++b) xv[b] = V::load(xr[b] + j);
                  for (int64_t a = 0; a < TK; ++a)
                    for (int64_t b = 0; b < TC; ++b) acc[a][b] += yv[a] * xv[b];
                }
                if (j < PQ) {
                  vt yv[TK], xv[TC];
                  for (int64_t a = 0; a < TK; ++a) yv[a] = loadn(yr[a] + j, PQ - j);
                  for (int64_t b = 0; b < TC; ++b) xv[b] = loadn(xr[b] + j, PQ - j);
                  for (int64_t a = 0; a < TK; ++a)
                    for (int64_t b = 0; b < TC; ++b) acc[a][b] += yv[a] * xv[b];
                }
              }
              for (int64_t a = 0; a < TK && k0 + a < Kg; ++a)
                for (int64_t b = 0; b < TC && c0 + b < Cg; ++b) Pp[(g * Kg + k0 + a) * Cg + c0 + b] += hsum(acc[a][b]);
            }
      }
    }
  });
  at::parallel_for(0, s.K * Cg, 1024, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T v = P[i];
      for (int64_t part = 1; part < nparts; ++part) v += P[part * s.K * Cg + i];
      gw[i] = v;
    }
  });
}

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t CRS = Cg * s.R * s.S, L = s.N * PQ, Mpad = round_up(Kg, MR), CRSpad = round_up(CRS, NR<T>);
  const int64_t nthreads = at::get_num_threads();
  if (!offsets_fit(s)) return direct_backward_weight(s, x, gy, gw, gb);
  if (gb) {
    at::parallel_for(0, s.K, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        T acc = 0;
        for (int64_t n = 0; n < s.N; ++n) {
          const T* r = gy + (n * s.K + k) * PQ;
          using V = Vec<T>;
          typename V::type v{};
          int64_t i = 0;
          for (; i + V::size <= PQ; i += V::size) v += V::load(r + i);
          T t = V::sum(v);
          for (; i < PQ; ++i) t += r[i];
          acc += t;
        }
        gb[k] = acc;
      }
    });
  }
  if (s.K * CRS == 0) return;
  // dilation 1: dot products over padded phase planes (conv2d_grad_weight.cpp)
  if (conv2d_backward_weight_planes(s, x, gy, gw)) return;
  // 1x1 with few channels: dot-product tiles (the GEMM's transposed packing would cost more than its
  // FMAs); many channels or tiny images: the GEMM below, whose 8x32 tile reuses registers better.
  if (s.R == 1 && s.S == 1 && s.pad_h == 0 && s.pad_w == 0 && PQ >= 16 && Kg * Cg <= 12288) {
    if (s.stride_h == 1 && s.stride_w == 1) return pointwise_grad_weight(s, x, gy, gw);
    // strided 1x1 (ResNet's shortcuts): only the sampled pixels matter; gather them, then as stride 1
    Conv2dShape t = s;
    t.H = s.P, t.W = s.Q, t.stride_h = t.stride_w = 1;
    std::vector<T> xs(s.N * s.C * PQ);
    at::parallel_for(0, s.N * s.C, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t p = 0; p < s.P; ++p) {
          const T* src = x + i * HW + p * s.stride_h * s.W;
          T* dst = xs.data() + i * PQ + p * s.Q;
          for (int64_t q = 0; q < s.Q; ++q) dst[q] = src[q * s.stride_w];
        }
    });
    return pointwise_grad_weight(t, xs.data(), gy, gw);
  }
  // Two ways to pack B = col^T ([j][crs] panels):
  //  * channels-last (Cg a multiple of the vector width): x is copied to NHWC once and the crs axis is
  //    ordered (r, s, c), so a vector of lanes is VS consecutive channels of one pixel: one load.
  //  * otherwise the crs axis is (c, r, s) and each vector of lanes is one masked gather from NCHW x.
  constexpr int64_t VS = Vec<T>::size;
  const bool nhwc = Cg % VS == 0;
  RowTab rt;
  std::vector<T> xt;
  if (nhwc) {
    rt.off.assign(CRSpad / VS, 0);
    rt.rh.assign(CRSpad / VS, kInvalid);
    rt.rs.assign(CRSpad / VS, kInvalid);
    for (int64_t v = 0; v < CRS / VS; ++v) {
      const int64_t rs = v * VS / Cg, c = v * VS % Cg, r = rs / s.S, t = rs % s.S;
      rt.off[v] = int32_t((r * s.dil_h * s.W + t * s.dil_w) * s.C + c);
      rt.rh[v] = int32_t(r * s.dil_h);
      rt.rs[v] = int32_t(t * s.dil_w);
    }
    xt.resize(s.N * s.C * HW);
    at::parallel_for(0, s.N, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t i0 = 0; i0 < HW; i0 += 16)
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t i = i0; i < std::min(HW, i0 + 16); ++i) xt[(n * HW + i) * s.C + c] = x[(n * s.C + c) * HW + i];
    });
  } else {
    rt = im2col_rows(s, Cg, CRSpad);
    rt.segment();
  }
  // Split the work into parts: over gW's columns when gW is large next to the batch (each element owned
  // by one part), else over ranges of the batch's columns whose partial sums are added in part order.
  const bool split_cols = CRSpad >= 2 * nthreads * NR<T> && L <= 8 * CRS;
  const int64_t nparts = split_cols ? std::min(nthreads, CRSpad / NR<T>) : std::max<int64_t>(1, std::min(nthreads, L));
  const int64_t nbuf = split_cols ? 1 : nparts;
  std::vector<T> P(nbuf * G * Mpad * CRSpad, T(0));
  at::parallel_for(0, nparts, 1, [&](int64_t t0, int64_t t1) {
    Buf<T> Abuf(Mpad * KC), Bbuf(KC * NC<T>);
    ColTab ct;
    for (int64_t part = t0; part < t1; ++part) {
      int64_t l0 = 0, l1 = L, c0 = 0, c1 = CRSpad;
      if (split_cols) {
        const int64_t np = CRSpad / NR<T>;
        c0 = np * part / nparts * NR<T>, c1 = np * (part + 1) / nparts * NR<T>;
      } else {
        l0 = L * part / nparts, l1 = L * (part + 1) / nparts;
      }
      for (int64_t g = 0; g < G; ++g) {
        T* C = P.data() + ((split_cols ? 0 : part) * G + g) * Mpad * CRSpad;
        for (int64_t pc = l0; pc < l1; pc += KC) {
          const int64_t kc = std::min(KC, l1 - pc);
          // A = gY (Kg x kc) of these columns, packed [kc][MR] per panel of MR channels
          for (int64_t ir = 0; ir < Mpad; ir += MR) {
            T* d = Abuf.p + ir * kc;
            for_each_image_run(s, pc, kc, [&](int64_t n, int64_t pq0, int64_t pq1, int64_t jj) {
              for (int64_t i = 0; i < MR; ++i) {
                T* di = d + jj * MR + i;
                if (ir + i < Kg) {
                  const T* src = gy + (n * s.K + g * Kg + ir + i) * PQ + pq0;
                  for (int64_t t = 0; t < pq1 - pq0; ++t) di[t * MR] = src[t];
                } else {
                  for (int64_t t = 0; t < pq1 - pq0; ++t) di[t * MR] = T(0);
                }
              }
            });
          }
          // B = col^T (kc x CRS), built from x's receptive fields of the same columns
          if (nhwc) {
            fill_cols<NR<T>>(ct, s, pc, kc, kc, s.C * HW, true);
            const T* Xg = xt.data() + ct.n0 * s.C * HW + g * Cg;
            for (int64_t j = 0; j < kc; ++j)  // base in NHWC: ((n - n0)*HW + h0*W + w0)*C
              ct.base[j] = int32_t(((pc + j) / PQ - ct.n0) * HW * s.C + (int64_t(ct.h0[j]) * s.W + ct.w0[j]) * s.C);
            for (int64_t jc = c0; jc < c1; jc += NC<T>) {
              const int64_t nc = std::min(NC<T>, c1 - jc);
              gemm_block(Mpad, nc, kc, Abuf.p,
                         [&](int64_t, int64_t kc_, T* Bb) {
                           using V = Vec<T>;
                           for (int64_t jr = 0; jr < nc; jr += NR<T>) {
                             T* out = Bb + jr * kc_;
                             const int64_t v0 = (jc + jr) / VS;
                             for (int64_t j = 0; j < kc_; ++j)
                               for (int64_t v = 0; v < 2; ++v) {
                                 const bool ok = uint32_t(ct.h0[j] + rt.rh[v0 + v]) < uint32_t(s.H) &&
                                                 uint32_t(ct.w0[j] + rt.rs[v0 + v]) < uint32_t(s.W);
                                 V::store(out + j * NR<T> + v * VS,
                                          ok ? V::load(Xg + int64_t(ct.base[j]) + rt.off[v0 + v]) : typename V::type{});
                               }
                           }
                         },
                         Bbuf.p, C + jc, CRSpad, true);
            }
          } else {
            fill_cols<NR<T>>(ct, s, pc, kc, kc, s.C * HW, true);
            const T* Xg = x + (ct.n0 * s.C + g * Cg) * HW;
            for (int64_t jc = c0; jc < c1; jc += NC<T>) {
              const int64_t nc = std::min(NC<T>, c1 - jc);
              gemm_block(Mpad, nc, kc, Abuf.p,
                         [&](int64_t, int64_t kc_, T* Bb) {
                           for (int64_t jr = 0; jr < nc; jr += NR<T>)
                             pack_b_rows(Bb + jr * kc_, Xg, ct, 0, kc_, rt, jc + jr, s.H, s.W);
                         },
                         Bbuf.p, C + jc, CRSpad, true);
            }
          }
        }
      }
    }
  });
  // gw = sum of the parts, in part order; the nhwc layout maps (r, s, c) back to (c, r, s)
  const int64_t RS = s.R * s.S;
  at::parallel_for(0, s.K, 1, [&](int64_t k0, int64_t k1) {
    std::vector<T> row(CRS);
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t g = k / Kg, kl = k % Kg;
      const T* src0 = P.data() + (g * Mpad + kl) * CRSpad;
      std::memcpy(row.data(), src0, CRS * sizeof(T));
      for (int64_t part = 1; part < nbuf; ++part) {
        const T* src = P.data() + ((part * G + g) * Mpad + kl) * CRSpad;
        for (int64_t i = 0; i < CRS; ++i) row[i] += src[i];
      }
      T* dst = gw + k * CRS;
      if (nhwc) {
        for (int64_t rs = 0; rs < RS; ++rs)
          for (int64_t c = 0; c < Cg; ++c) dst[c * RS + rs] = row[rs * Cg + c];
      } else {
        std::memcpy(dst, row.data(), CRS * sizeof(T));
      }
    }
  });
}

#define CNNEXT_INSTANTIATE(T)                                                            \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*); \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);    \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
