// conv2d variants "im2col_nhwc" and "im2col" of the grad weight: the packed GEMM (conv2d_gemm.h)
//   gW[k, crs] = sum_j gY[k, j] * col[crs, j]        M = Kg, N = CRS, Kd = L = N*P*Q
// with col packed transposed ([j][crs] panels), two ways:
//   * im2col_nhwc (Cg a multiple of the vector width): x is copied to channels-last once and the crs
//     axis ordered (r, s, c), so a vector of lanes is VS consecutive channels of one pixel: one load
//     (pack_b_nhwc); gW is mapped back from (r, s, c) to (c, r, s) at the end.
//   * im2col: the crs axis is (c, r, s) and each vector of lanes is a few masked runs or one masked
//     gather from NCHW x (pack_b_rows).
// Threads: over ranges of gW's columns (each element owned by one part) when gW is large next to the
// batch, else over fixed ranges of the batch whose partial gW are added in part order afterwards.
// Also grad_bias, the packed variants' grad bias.
#include "conv2d_im2col.h"
#include "conv2d_variants.h"

namespace cnnext::cpu::conv2d_variants {

template <typename T>
void grad_bias(const Conv2dShape& s, const T* gy, T* gb) {
  const int64_t PQ = s.P * s.Q;
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
}

namespace {

template <typename T, bool kNhwc>
void im2col_gw(const Conv2dShape& s, const T* x, const T* gy, T* gw) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t CRS = Cg * s.R * s.S, L = s.N * PQ, Mpad = round_up(Kg, MR), CRSpad = round_up(CRS, NR<T>);
  const int64_t nthreads = at::get_num_threads();
  constexpr int64_t VS = Vec<T>::size;
  RowTab rt;
  std::vector<T> xt;
  if constexpr (kNhwc) {
    rt = rows_nhwc(s, Cg, VS, CRSpad / VS);
    xt.resize(s.N * s.C * HW);
    at::parallel_for(0, s.N, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t i0 = 0; i0 < HW; i0 += 16)
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t i = i0; i < std::min(HW, i0 + 16); ++i) xt[(n * HW + i) * s.C + c] = x[(n * s.C + c) * HW + i];
    });
  } else {
    rt = rows_im2col(s, Cg, CRSpad);
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
          if constexpr (kNhwc) {
            fill_cols<NR<T>>(ct, s, pc, kc, kc, s.C * HW, true);
            const T* Xg = xt.data() + ct.n0 * s.C * HW + g * Cg;
            for (int64_t j = 0; j < kc; ++j)  // base in NHWC: ((n - n0)*HW + h0*W + w0)*C
              ct.base[j] = int32_t(((pc + j) / PQ - ct.n0) * HW * s.C + (int64_t(ct.h0[j]) * s.W + ct.w0[j]) * s.C);
            for (int64_t jc = c0; jc < c1; jc += NC<T>) {
              const int64_t nc = std::min(NC<T>, c1 - jc);
              gemm_block(Mpad, nc, kc, Abuf.p,
                         [&](int64_t, int64_t kc_, T* Bb) {
                           for (int64_t jr = 0; jr < nc; jr += NR<T>)
                             pack_b_nhwc(Bb + jr * kc_, Xg, ct, kc_, rt, (jc + jr) / VS, s.H, s.W);
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
      if constexpr (kNhwc) {
        for (int64_t rs = 0; rs < RS; ++rs)
          for (int64_t c = 0; c < Cg; ++c) dst[c * RS + rs] = row[rs * Cg + c];
      } else {
        std::memcpy(dst, row.data(), CRS * sizeof(T));
      }
    }
  });
}

}  // namespace

template <typename T>
void im2col_nhwc_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  grad_bias(s, gy, gb);
  im2col_gw<T, true>(s, x, gy, gw);
}

template <typename T>
void im2col_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  grad_bias(s, gy, gb);
  im2col_gw<T, false>(s, x, gy, gw);
}

template void grad_bias<float>(const Conv2dShape&, const float*, float*);
template void grad_bias<double>(const Conv2dShape&, const double*, double*);
CNNEXT_CONV2D_BACKWARD_WEIGHT_VARIANT(im2col_nhwc_backward_weight)
CNNEXT_CONV2D_BACKWARD_WEIGHT_VARIANT(im2col_backward_weight)

}  // namespace cnnext::cpu::conv2d_variants
