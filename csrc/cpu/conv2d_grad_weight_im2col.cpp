// conv2d variants "im2col_nhwc" and "im2col" of the grad weight: the packed GEMM (conv2d_gemm.h)
//   gW[k, crs] = sum_j gY[k, j] * col[crs, j]        M = Kg, N = CRS, Kd = L = N*P*Q
// with col packed transposed ([j][crs] panels), two ways:
//   * im2col_nhwc (Cg a multiple of the vector width): x is copied once to channels-last with its
//     padding written out (N, H + 2 ph, W + 2 pw, C), and the crs axis ordered (r, s, c), so a vector
//     of lanes is VS consecutive channels of one pixel and every element of col is in bounds: the
//     micro-kernel reads its B rows in place (micro_kernel_rows), nothing is packed; gW is mapped
//     back from (r, s, c) to (c, r, s) at the end.
//   * im2col: the crs axis is (c, r, s) and each vector of lanes is a few masked runs or one masked
//     gather from NCHW x (pack_b_rows).
// Threads: over ranges of gW's columns (each element owned by one part) when gW is large next to the
// batch, else over fixed ranges of the batch whose partial gW are added in part order afterwards.
// Also grad_bias, the packed variants' grad bias.
#include <memory>

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
  // nhwc: the padded channels-last copy, Hp x Wp pixels of C channels per image, and per vector v of
  // lanes its offset there: tap (r, s), channels c .. c + VS (the padding vectors repeat the last one:
  // their columns of P are never read)
  const int64_t Hp = s.H + 2 * s.pad_h, Wp = s.W + 2 * s.pad_w, img = Hp * Wp * s.C;
  std::unique_ptr<T[]> xt;
  std::vector<int64_t> voff;
  if constexpr (kNhwc) {
    xt.reset(new T[s.N * img]);
    at::parallel_for(0, s.N, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        T* xn = xt.get() + n * img;
        std::fill(xn, xn + s.pad_h * Wp * s.C, T(0));
        std::fill(xn + (s.pad_h + s.H) * Wp * s.C, xn + img, T(0));
        for (int64_t h = 0; h < s.H; ++h) {
          T* row = xn + (s.pad_h + h) * Wp * s.C;
          std::fill(row, row + s.pad_w * s.C, T(0));
          std::fill(row + (s.pad_w + s.W) * s.C, row + Wp * s.C, T(0));
          for (int64_t w0 = 0; w0 < s.W; w0 += 16)
            for (int64_t c = 0; c < s.C; ++c)
              for (int64_t w = w0; w < std::min(s.W, w0 + 16); ++w)
                row[(s.pad_w + w) * s.C + c] = x[((n * s.C + c) * s.H + h) * s.W + w];
        }
      }
    });
    voff.resize(CRSpad / VS);
    for (int64_t v = 0; v < CRSpad / VS; ++v) {
      const int64_t vv = std::min(v, CRS / VS - 1), rs = vv * VS / Cg, c = vv * VS % Cg;
      voff[v] = ((rs / s.S) * s.dil_h * Wp + (rs % s.S) * s.dil_w) * s.C + c;
    }
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
    Buf<T> Abuf(Mpad * KC), Bbuf(kNhwc ? 1 : KC * NC<T>);
    ColTab ct;
    std::vector<int64_t> jofs(KC);
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
            // B row j = the receptive field's corner pixel of column j in the padded copy (+ voff per vector)
            const int64_t n0 = pc / PQ;
            for (int64_t j = 0; j < kc; ++j) {
              const int64_t n = (pc + j) / PQ, pq = (pc + j) % PQ;
              jofs[j] = (n - n0) * img + ((pq / s.Q) * s.stride_h * Wp + (pq % s.Q) * s.stride_w) * s.C;
            }
            const T* Xg = xt.get() + n0 * img + g * Cg;
            for (int64_t jc = c0; jc < c1; jc += NC<T>) {
              const int64_t nc = std::min(NC<T>, c1 - jc);
              for (int64_t jr = jc; jr < jc + nc; jr += NR<T>)
                for (int64_t ir = 0; ir < Mpad; ir += MR)
                  micro_kernel_rows<T>(kc, Abuf.p + ir * kc, Xg, jofs.data(), voff[jr / VS], voff[jr / VS + 1],
                                       C + ir * CRSpad + jr, CRSpad, true);
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
