// conv2d variant "pointwise" of the grad weight: a 1x1 unpadded conv, where
//   gW[k, c] = sum_j gY[k, j] * x[c, j]
// has both rows contiguous along the pixels j of an image: no packing, no transposition, 4 x 4 tiles
// of dot products in 16 vector accumulators.  A strided 1x1 (ResNet's shortcuts) first gathers its
// sampled pixels, then runs as stride 1.  The planner takes it for few channels (Kg*Cg <= 12288,
// where the GEMM's transposed packing would cost more than its FMAs) on images of >= 16 pixels.
// Threads: fixed ranges of the batch, partial gW added in part order afterwards (deterministic).
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "conv2d_gemm.h"
#include "conv2d_variants.h"

namespace cnnext::cpu::conv2d_variants {
namespace {

#if defined(__AVX512F__)
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
// along the pixels j of an image, so no transposition at all: a 4 x 4 (AVX-512; else 2 x 4) tile of dot products kept in 16
// vector accumulators over a chunk of ~2048 columns (8 loads per 16 FMAs), reduced once per chunk.
// Threads: fixed ranges of the batch's columns, partial gW added in part order (deterministic).
template <typename T>
void pointwise_gw(const Conv2dShape& s, const T* x, const T* gy, T* gw) {
  using V = Vec<T>;
  using vt = typename V::type;
  // a TK x TC tile of accumulators + TK + TC operand vectors: 4 x 4 + 8 of AVX-512's 32 registers,
  // 2 x 4 + 6 of the 16 elsewhere (4 x 4 spilled there); the same sums in the same order either way
#if defined(__AVX512F__)
  constexpr int64_t VS = V::size, TK = 4, TC = 4;
#else
  constexpr int64_t VS = V::size, TK = 2, TC = 4;
#endif
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  const int64_t nparts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), s.N));
  std::vector<T> P(nparts * s.K * Cg, T(0));
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
                  for (int64_t a = 0; a < TK; ++a) yv[a] = load_n(yr[a] + j, PQ - j);
                  for (int64_t b = 0; b < TC; ++b) xv[b] = load_n(xr[b] + j, PQ - j);
                  for (int64_t a = 0; a < TK; ++a)
                    for (int64_t b = 0; b < TC; ++b) acc[a][b] += yv[a] * xv[b];
                }
              }
              for (int64_t a = 0; a < TK && k0 + a < Kg; ++a)
                for (int64_t b = 0; b < TC && c0 + b < Cg; ++b) Pp[(g * Kg + k0 + a) * Cg + c0 + b] += hsum<T>(acc[a][b]);
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

}  // namespace

template <typename T>
void pointwise_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  const int64_t HW = s.H * s.W, PQ = s.P * s.Q;
  grad_bias(s, gy, gb);
  if (s.stride_h == 1 && s.stride_w == 1) return pointwise_gw(s, x, gy, gw);
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
  pointwise_gw(t, xs.data(), gy, gw);
}

CNNEXT_CONV2D_BACKWARD_WEIGHT_VARIANT(pointwise_backward_weight)

}  // namespace cnnext::cpu::conv2d_variants
