// conv2d variants built on the packed GEMM with the im2col folded into the B packing
// (conv2d_gemm.h, conv2d_im2col.h): the forward and the two grad-input variants.
//
// Per group g, Cg = C/groups, Kg = K/groups, CRS = Cg*R*S, and the GEMM columns j = (n, p, q) run
// over every output pixel of the whole batch, L = N*P*Q of them:
//   im2col_forward             Y[k, j] = b[k] + sum_crs W[k, crs] * col[crs, j]   GEMM M = Kg, N = L, Kd = CRS
//   transposed_backward_input  stride 1: the forward conv of gY with the flipped, transposed kernel
//                              (pad' = dh*(R-1) - ph): the same fast path, no col2im.
//   col2im_backward_input      gcol[crs, j] = sum_k W[k, crs] * gY[k, j]          GEMM M = CRS, N = L, Kd = Kg
//                              then col2im gx[n, c, h, w] += gcol[crs, j] (scatter, one thread per image)
// Threads (at::parallel_for): the forward over blocks of columns (independent, as many per thread; the
// bias is the first term of every sum, and each block's columns land in NCHW y straight from the micro-kernel
// or through a C buffer) -- or, when the whole batch is one block of columns (small images) and there are many
// rows, over the rows of that block; col2im over whole images (its scatters stay inside an image).  The
// forward's result is the same, bit for bit, for any thread count.
#include <memory>

#include "conv2d_im2col.h"
#include "conv2d_variants.h"

namespace cnnext::cpu::conv2d_variants {

// =============================================================================================
namespace {

// Packing the weights (gemm_block's A) pays when many blocks of columns reuse them; for a batch of few
// output pixels (small images) the micro-kernel reads them in place, row-major (ResNet 512@3: 12% faster).
template <typename T>
bool pack_weights(const Conv2dShape& s) {
  return s.N * s.P * s.Q > 8 * NC<T>;
}

// The forward of weights W, row-major per group [Kg][CRS]: read from Ap, W packed per group as gemm_block's A
// (Mpad x CRS), when not nullptr, else in place.
template <typename T>
void forward_packed(const Conv2dShape& s, const T* x, const T* W, const T* Ap, const T* b, T* y) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t CRS = Cg * s.R * s.S, L = s.N * PQ, Mpad = round_up(Kg, MR);
  const RowTab rt = rows_im2col(s, Cg, CRS);
  const int64_t nthreads = at::get_num_threads(), npanels = Mpad / MR;
  // Few columns (small images) next to many rows: the threads split each block's rows (A panels) instead
  // of the columns, so that an A panel serves every B panel of the batch and A is read once, not per thread.
  const int64_t msplit = L <= NC<T> && npanels >= 4 * nthreads ? nthreads : 1;
  const int64_t ncb = msplit > 1 ? round_up(L, NR<T>) : column_block<T>(L, nthreads);
  const int64_t nblocks = ceil_div(L, ncb);
  at::parallel_for(0, nblocks * msplit, 1, [&](int64_t t0, int64_t t1) {
    const int64_t ncbpad = round_up(ncb, NR<T>);
    Buf<T> Bbuf(KC * ncbpad), Cbuf(Mpad * ncbpad);
    std::vector<char> direct(ncbpad / NR<T>);
    std::vector<T> bpad(Mpad, T(0));
    ColTab ct;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t blk = task / msplit, part = task % msplit;
      const int64_t m0 = npanels * part / msplit * MR, m1 = npanels * (part + 1) / msplit * MR;
      const int64_t j0 = blk * ncb, nc = std::min(ncb, L - j0), ncpad = round_up(nc, NR<T>);
      fill_cols<NR<T>>(ct, s, j0, nc, ncpad, s.C * HW, true);
      // A panel of NR columns inside one image is written by the micro-kernel straight into y (row stride
      // PQ), its partial A panel of rows >= Kfull and every other panel through Cbuf and the copy below;
      // either way the bias is the first term of the sums (the same bits whichever path, and so for any
      // thread count)
      const int64_t Kfull = Kg / MR * MR;
      for (int64_t jr = 0; jr < ncpad; jr += NR<T>) {
        const int64_t j = j0 + jr;
        direct[jr / NR<T>] = jr + NR<T> <= nc && j / PQ == (j + NR<T> - 1) / PQ;
      }
      for (int64_t g = 0; g < G; ++g) {
        const T* Xg = x + (ct.n0 * s.C + g * Cg) * HW;
        const T* Wg = W + g * Kg * CRS;
        if (b) std::copy(b + g * Kg, b + (g + 1) * Kg, bpad.begin());  // rows past Kg: 0
        for (int64_t pc = 0; pc < CRS; pc += KC) {
          const int64_t kc = std::min(KC, CRS - pc);
          for (int64_t jr = 0; jr < ncpad; jr += NR<T>) pack_b_cols(Bbuf.p + jr * kc, Xg, ct, jr, rt, pc, kc, s.H, s.W);
          for (int64_t ir = m0; ir < m1; ir += MR)
            for (int64_t jr = 0; jr < ncpad; jr += NR<T>) {
              const T* B = Bbuf.p + jr * kc;
              const bool to_y = ir < Kfull && direct[jr / NR<T>];
              const int64_t j = j0 + jr, n = j / PQ;
              T* C = to_y ? y + (n * s.K + g * Kg + ir) * PQ + j % PQ : Cbuf.p + ir * ncpad + jr;
              const int64_t ldc = to_y ? PQ : ncpad;
              const T* bias = b ? bpad.data() + ir : nullptr;
              if (Ap)
                micro_kernel<T>(kc, Ap + (g * Mpad * CRS) + pc * Mpad + ir * kc, B, C, ldc, pc > 0, bias);
              else
                micro_kernel_arows<T>(kc, Wg + ir * CRS + pc, CRS, Kg - ir, B, C, ldc, pc > 0, bias);
            }
        }
        for_each_image_run(s, j0, nc, [&](int64_t n, int64_t pq0, int64_t pq1, int64_t jj) {
          for (int64_t k = m0; k < std::min(m1, Kg); ++k) {
            const T* src = Cbuf.p + k * ncpad + jj;
            T* dst = y + (n * s.K + g * Kg + k) * PQ + pq0;
            for (int64_t i = 0, len = pq1 - pq0; i < len;) {  // panel by panel
              const int64_t pnl = (jj + i) / NR<T>, end = std::min(len, (pnl + 1) * NR<T> - jj);
              if (k >= Kfull || !direct[pnl]) std::copy(src + i, src + end, dst + i);
              i = end;
            }
          }
        });
      }
    }
  });
}

// W (row-major [G][Kg][CRS]) packed per group as gemm_block's A, when pack_weights(s); else empty.
template <typename T>
std::unique_ptr<Buf<T>> packed_weights(const Conv2dShape& s, const T* W) {
  const int64_t G = s.groups, Kg = s.K / G, CRS = s.C / G * s.R * s.S, Mpad = round_up(Kg, MR);
  if (!pack_weights<T>(s)) return nullptr;
  auto Ap = std::make_unique<Buf<T>>(G * Mpad * CRS);
  for (int64_t g = 0; g < G; ++g) {
    const T* wg = W + g * Kg * CRS;
    pack_a(Ap->p + g * Mpad * CRS, [&](int64_t i, int64_t kd) { return wg[i * CRS + kd]; }, Kg, Mpad, CRS);
  }
  return Ap;
}

}  // namespace

template <typename T>
void im2col_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const auto Ap = packed_weights(s, w);
  forward_packed(s, x, w, Ap ? Ap->p : nullptr, b, y);
}

template <typename T>
void transposed_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G;
  // Stride 1: grad input is the forward conv of gY with the flipped, transposed kernel
  //   gx[n, c, h, w] = sum_{k, r', s'} gy[n, k, h - ph' + r'*dh, w - pw' + s'*dw] * w[k, c, R-1-r', S-1-s']
  // with ph' = dh*(R-1) - ph: the fast forward path, no col2im.
  const Conv2dShape t = transposed_shape(s);
  const int64_t RS = s.R * s.S, KRS = Kg * RS;
  // A(c, (k, r', s')) = w[k, c, R-1-r', S-1-s'] per group: transposed into wt (read w in order)
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
  const auto Ap = packed_weights(t, wt.data());
  forward_packed(t, gy, wt.data(), Ap ? Ap->p : nullptr, (const T*)nullptr, gx);
}

// A run of output columns q0 .. q1 of row p of image n, at column jj of a block (for_each_row_run)
struct RowRun {
  int64_t n, p, q0, q1, jj;
};

template <typename T>
void col2im_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t CRS = Cg * s.R * s.S, Mpad = round_up(CRS, MR);
  // A = W^T per group: A(crs, k) = w[(g*Kg + k)*CRS + crs]
  Buf<T> Ap(G * Mpad * Kg);
  for (int64_t g = 0; g < G; ++g) {
    const T* wg = w + g * Kg * CRS;
    pack_a(Ap.p + g * Mpad * Kg, [&](int64_t i, int64_t kd) { return wg[kd * CRS + i]; }, CRS, Mpad, Kg);
  }
  // B rows are gY's channels k: offset k*PQ, always in bounds
  const RowTab rt = rows_planes(Kg, PQ);
  const int64_t nthreads = at::get_num_threads();

  // one block of columns j0..j0+nc: gcol (Mpad x ncpad) into Cbuf, then written or scattered to gx
  auto block = [&](int64_t j0, int64_t nc, ColTab& ct, T* Bbuf, T* Cbuf, std::vector<RowRun>& runs) {
    const int64_t ncpad = round_up(nc, NR<T>);
    fill_cols<NR<T>>(ct, s, j0, nc, ncpad, s.K * PQ, false);
    for (int64_t g = 0; g < G; ++g) {
      const T* Yg = gy + (ct.n0 * s.K + g * Kg) * PQ;
      gemm_block(Mpad, ncpad, Kg, Ap.p + g * Mpad * Kg,
                 [&](int64_t pc, int64_t kc, T* Bb) {
                   for (int64_t jr = 0; jr < ncpad; jr += NR<T>) pack_b_cols(Bb + jr * kc, Yg, ct, jr, rt, pc, kc, 1, 1);
                 },
                 Bbuf, Cbuf, ncpad, false);
      // the block's runs of columns inside one output row, then per row crs of gcol its runs: the adds move
      // along one plane of gx at a time (row runs outside, crs inside, jumped between C planes per run)
      runs.clear();
      for_each_row_run(s, j0, nc, [&](int64_t n, int64_t p, int64_t q0, int64_t q1, int64_t jj) {
        runs.push_back({n, p, q0, q1, jj});
      });
      for (int64_t crs = 0; crs < CRS; ++crs) {
        const int64_t c = crs / (s.R * s.S), r = (crs / s.S) % s.R, t = crs % s.S;
        const int64_t wofs = -s.pad_w + t * s.dil_w;  // w = q*sw + wofs
        // valid q: 0 <= q*sw + wofs < W
        const int64_t qlo = wofs >= 0 ? int64_t(0) : ceil_div(-wofs, s.stride_w);
        const int64_t qhi = s.W - 1 - wofs < 0 ? int64_t(0) : (s.W - 1 - wofs) / s.stride_w + 1;
        for (const RowRun& u : runs) {
          const int64_t h = u.p * s.stride_h - s.pad_h + r * s.dil_h;
          const int64_t qa = std::max(u.q0, qlo), qb = std::min(u.q1, qhi);
          if (h < 0 || h >= s.H || qa >= qb) continue;
          T* dst = gx + ((u.n * s.C + g * Cg + c) * s.H + h) * s.W + wofs;
          const T* src = Cbuf + crs * ncpad + u.jj - u.q0;
          if (s.stride_w == 1) {
            for (int64_t q = qa; q < qb; ++q) dst[q] += src[q];
          } else {
            for (int64_t q = qa; q < qb; ++q) dst[q * s.stride_w] += src[q];
          }
        }
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
    std::vector<RowRun> runs;
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t n0 = ch * ipc, n1 = std::min(s.N, n0 + ipc);
      std::fill(gx + n0 * s.C * HW, gx + n1 * s.C * HW, T(0));
      for (int64_t j0 = n0 * PQ; j0 < n1 * PQ; j0 += ncb) block(j0, std::min(ncb, n1 * PQ - j0), ct, Bbuf.p, Cbuf.p, runs);
    }
  });
}

CNNEXT_CONV2D_FORWARD_VARIANT(im2col_forward)
CNNEXT_CONV2D_BACKWARD_INPUT_VARIANT(transposed_backward_input)
CNNEXT_CONV2D_BACKWARD_INPUT_VARIANT(col2im_backward_input)

}  // namespace cnnext::cpu::conv2d_variants
