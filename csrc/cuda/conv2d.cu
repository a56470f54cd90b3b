// conv2d on the GPU: every pass is an implicit GEMM, per group g (G = groups, Cg = C/G, Kg = K/G):
//
//   forward       Y[k, (n,p,q)]   = sum_{(c,r,s)}  W[k, (c,r,s)]      * Xcol[(c,r,s), (n,p,q)]    (+ b[k])
//                 GEMM  M = Kg,  N = N*P*Q,  red = Cg*R*S
//   grad input    gX[c, (n,h,w)]  = sum_{(k,r,s)}  W[k, c, r, s]      * gYcol[(k,r,s), (n,h,w)]
//                 GEMM  M = Cg,  N = N*H*W,  red = Kg*R*S; gYcol gathers gy[n, k, p, q] with
//                 p*sh = h + ph - r*dh (0 out of range): a gather, no atomics.  Stride 1: one GEMM.
//                 Stride > 1 (kBwdInS), by phase decomposition: sh*sw GEMMs, one per phase (a, b) =
//                 ((h + ph) % sh, (w + pw) % sw), each over that phase's rows and columns of gX
//                 (N = N*Hn*Wn, Hn = ceil((H - h0)/sh) for its first row h0) and only the taps
//                 r*dh % sh == a, s*dw % sw == b
//                 (red = Kg*Rn*Sn): a dense stride-1 sub-problem, p = hh + base - i*dp (phase_dim in
//                 conv2d_igemm.h), instead of a gather through (1 - 1/(sh*sw)) zero taps with a div/mod
//                 per load; a phase without taps writes zeros
//   grad weight   gW[k, (c,r,s)]  = sum_{(n,p,q)}  gY[k, (n,p,q)]     * Xcol[(c,r,s), (n,p,q)]
//                 GEMM  M = Kg,  N = Cg*R*S,  red = N*P*Q, split into `splits` fixed chunks when the
//                 gW tiles alone would not fill the GPU; partial tiles go to a workspace and
//                 sum_splits_kernel (reduce.h) adds them in split order: deterministic, no float atomics
//   grad bias     gb[k] = sum_{n,p,q} gy[n, k, p, q]
//
// Who computes what:
//   conv2d_igemm        one 256-thread block per TxT tile of the GEMM output, T = TILE = 64, or 128 for
//                       large float GEMMs (grid x: column tiles [kBwdInS: of the largest phase; a block
//                       past its phase's tiles skips], y: row tiles, z: group [x split, or x phase: the
//                       block computes its phase's geometry once per z]; grid-stride loops over all
//                       three, so any grid size works). The block walks the
//                       reduction in steps of BK=16: each thread loads T/16 elements of the Tx16 A tile
//                       and T/16 of the 16xT B tile into registers (the im2col index math happens here,
//                       with per-thread mixed-radix counters instead of divisions, and a per-tile column
//                       decode in shared memory), stores them to shared memory, and, while the next step's
//                       loads are in flight, accumulates a (T/16)x(T/16) register tile (4x4 or 8x8):
//                       thread (ty, tx) = (tid/16, tid%16) owns rows 64h + 4ty + (0..3) and columns
//                       64h + 4tx + (0..3), h < T/64, read from shared memory with 16-byte loads.
//                       The 1x1 / stride 1 / no padding case (PW = true) is a plain GEMM: no (r, s) math.
//                       kBwdInS: the column decode also keeps each column's gX offset in shared memory
//                       (the epilogue's scatter to the phase's rows h = first + hh*sh); the float 64
//                       tile runs as conv2d_igemm_strided_f32_tile64, held to 128 registers.
//   conv2d_igemm_wmma   the tensor-core version (conv2d_wmma.cu): float convs that allow TF32 (tf32
//                       m16n16k8), and every float16 / bfloat16 conv (m16n16k16), float accumulators
//   sum_splits_kernel   (reduce.h) one thread per gW element (grid-stride): sums the split partials in order
//   grad bias           two-stage (reduce.h): channel_sum_partial_kernel, block (split, k) [grid y strides
//                       over k], sums a fixed chunk of channel k's N*P*Q values (counters, 16-byte loads
//                       when P*Q is a whole number of vectors) in a fixed order into the workspace;
//                       sum_splits_kernel, one thread per k, adds the partials in split order
//   conv2d_*_direct     fallback for an image (C*H*W or K*P*Q) or a reduction over 2^31 elements: the
//                       plain loops of the formulas, fully 64-bit, one output element per thread
// Offsets: within one image 32-bit (checked by the launchers), across the batch 64-bit.
#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "compat.h"
#include "reduce.h"
#include "conv2d.h"
#include "conv2d_igemm.h"

namespace {

using cnnext::Conv2dShape;
using namespace cnnext::conv2d_igemm;

// Four consecutive shared-memory values (16-byte aligned) into registers: one or two vector loads.
__device__ __forceinline__ void load4(float* r, const float* p) {
#if defined(__CUDACC__)
  const float4 v = *reinterpret_cast<const float4*>(p);
  r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
#else
  for (int i = 0; i < 4; ++i) r[i] = p[i];
#endif
}
__device__ __forceinline__ void load4(double* r, const double* p) {
#if defined(__CUDACC__)
  const double2 u = *reinterpret_cast<const double2*>(p), v = *reinterpret_cast<const double2*>(p + 2);
  r[0] = u.x, r[1] = u.y, r[2] = v.x, r[3] = v.y;
#else
  for (int i = 0; i < 4; ++i) r[i] = p[i];
#endif
}

// The kernel's body (the kernels below: the same body under two launch bounds).
template <typename T, int KIND, bool PW, int TILE>
__device__ __forceinline__ void conv2d_igemm_body(const Geom& gm, const T* __restrict__ x, const T* __restrict__ w,
                                                  const T* __restrict__ gy, const T* __restrict__ bias,
                                                  T* __restrict__ out) {
  constexpr int TM = TILE / 16;  // rows (and columns) per thread; also loads per thread per operand
  __align__(16) __shared__ T As[BK][TILE + kPad];
  __align__(16) __shared__ T Bs[BK][TILE + kPad];
  __shared__ int64_t s_col_base[TILE];
  __shared__ int s_col_h[TILE], s_col_w[TILE];
  __shared__ int64_t s_col_out[KIND == kBwdInS ? TILE : 1];  // kBwdInS: the column's gx offset

  const int Cg = gm.Cg, Kg = gm.Kg;
  const int H = gm.H, W = gm.W, P = gm.P, Q = gm.Q, R = gm.R, S = gm.S;
  const int sh = gm.sh, sw = gm.sw, ph = gm.ph, pw = gm.pw, dh = gm.dh, dw = gm.dw;
  const int HW = gm.HW, PQ = gm.PQ, RS = gm.RS;
  const int M = gm.M, splits = gm.splits;
  const int64_t Ncols = gm.Ncols, red = gm.red, chunk = gm.chunk;

  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t tiles_n = gm.tiles_n;
  const int tiles_m = gm.tiles_m;
  const int nz = gm.nz;

  for (int z = blockIdx.z; z < nz; z += gridDim.z) {
    const int g = KIND == kBwdW ? z / splits : KIND == kBwdInS ? z / gm.nphase : z;
    const int split = KIND == kBwdW ? z % splits : 0;
    // this z's GEMM: columns, reduction length, column tiles (kBwdInS: its phase's)
    const PhaseDim phh = KIND == kBwdInS ? phase_dim(z % gm.nphase / sw, sh, ph, dh, H, R) : PhaseDim{};
    const PhaseDim phw = KIND == kBwdInS ? phase_dim(z % gm.nphase % sw, sw, pw, dw, W, S) : PhaseDim{};
    const int64_t ncols = KIND == kBwdInS ? gm.N * phh.n * phw.n : Ncols;
    const int64_t nred = KIND == kBwdInS ? int64_t(Kg) * phh.tn * phw.tn : red;
    const int64_t ntn = KIND == kBwdInS ? (ncols + TILE - 1) / TILE : tiles_n;
    const int64_t k_begin = split * chunk, k_end = KIND == kBwdW ? min(red, k_begin + chunk) : nred;
    for (int tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
      const int m0 = tm * TILE;
      for (int64_t tn = blockIdx.x; tn < ntn; tn += gridDim.x) {
        const int64_t n0 = tn * TILE;

        // ---- per-tile setup of this thread's loads ----
        // A tile (T x 16): this thread loads rows am = m0 + tid/16 + 16i, reduction index ak = tid%16.
        // B tile (16 x T): forward / grad input: reduction index tid/16, columns tid%16 + 16j;
        //                   grad weight: reduction index tid%16, columns tid/16 + 16j.
        const int a_k = tid % 16, a_m = tid / 16;
        const int b_k = KIND == kBwdW ? tid % 16 : tid / 16;
        const int b_n = KIND == kBwdW ? tid / 16 : tid % 16;
        // This tile's B columns, decoded once into shared memory by threads 0..T-1 (it keeps registers free):
        //   col_base  64-bit offset of the column's image (and group) in x or gy
        //   col_h/w   forward: p*sh - ph, q*sw - pw;  grad input: h + ph, w + pw;
        //             grad weight (columns are (c, r, s)): r*dh - ph, s*dw - pw
        if (tid < TILE) {
          const int64_t col = n0 + tid, cc = col < ncols ? col : 0;
          int64_t base;
          int ch, cw;
          if constexpr (KIND == kFwd) {  // col = (n, p, q)
            const int64_t n = cc / PQ;
            const int pq = int(cc - n * PQ), p = pq / Q, q = pq - p * Q;
            base = (n * gm.C + int64_t(g) * Cg) * HW + (PW ? pq : 0);
            ch = p * sh - ph;
            cw = q * sw - pw;
          } else if constexpr (KIND == kBwdIn) {  // col = (n, h, w)
            const int64_t n = cc / HW;
            const int hw = int(cc - n * HW), h = hw / W, ww = hw - h * W;
            base = (n * gm.K + int64_t(g) * Kg) * PQ + (PW ? hw : 0);
            ch = h + ph;
            cw = ww + pw;
          } else if constexpr (KIND == kBwdInS) {  // col = (n, hh, ww) of the phase's rows and columns
            const int HWn = phh.n * phw.n;
            const int64_t n = cc / HWn;
            const int hw = int(cc - n * HWn), hh = hw / phw.n, ww = hw - hh * phw.n;
            base = (n * gm.K + int64_t(g) * Kg) * PQ;
            ch = hh + phh.base;
            cw = ww + phw.base;
            s_col_out[tid] = (n * gm.C + int64_t(g) * Cg) * HW + (phh.first + hh * sh) * W + phw.first + ww * sw;
          } else {  // col = (c, r, s)
            const int c = int(cc / RS), rs = int(cc - int64_t(c) * RS), r = rs / S, t = rs - r * S;
            base = int64_t(g * Cg + c) * HW;
            ch = r * dh - ph;
            cw = t * dw - pw;
          }
          s_col_base[tid] = base;
          s_col_h[tid] = ch;
          s_col_w[tid] = cw;
        }
        __syncthreads();
        const T* a_row = w + int64_t(g * Kg + m0 + a_m) * (gm.wrow);  // forward: weight row of i = 0
        // Reduction counters (Digits of the reduction index this thread loads):
        //   forward      B: (c, r, s) of k_begin + b_k
        //   grad input   A: (k, r, s) of k_begin + a_k;  B: (k, r, s) of k_begin + b_k
        //                (kBwdInS: (k, i, j), the phase's taps r = t0 + i*tstep, s likewise)
        //   grad weight  A and B: (n, p, q) of k_begin + a_k (= b_k)
        int64_t ka = k_begin + a_k, kb = k_begin + b_k;
        Digits da, db;
        const int rad_b = KIND == kBwdW ? P : KIND == kBwdInS ? max(1, phh.tn) : R;
        const int rad_c = KIND == kBwdW ? Q : KIND == kBwdInS ? max(1, phw.tn) : S;
        da.set(ka, rad_b, rad_c);
        db.set(kb, rad_b, rad_c);
        const Step st(BK, rad_b, rad_c);

        T ra[TM], rb[TM];
        auto load = [&]() {
          const bool ka_ok = ka < k_end, kb_ok = kb < k_end;
UNROLL
          for (int i = 0; i < TM; ++i) {
            T v = 0;
            const int m = m0 + a_m + 16 * i;
            if (ka_ok && m < M) {
              if constexpr (KIND == kFwd) {
                v = a_row[int64_t(16 * i) * (gm.wrow) + ka];
              } else if constexpr (KIND == kBwdIn) {  // W[g*Kg + k, c = m, r, s]
                v = w[(int64_t(g * Kg) + da.a) * (gm.wrow) + (m * R + da.b) * S + da.c];
              } else if constexpr (KIND == kBwdInS) {  // W[g*Kg + k, m, t0 + i*tstep, t0' + j*tstep']
                v = w[(int64_t(g * Kg) + da.a) * (gm.wrow) + (m * R + phh.t0 + da.b * phh.tstep) * S + phw.t0 +
                      da.c * phw.tstep];
              } else {  // gy[n, g*Kg + m, p, q]
                v = gy[(da.a * gm.K + g * Kg + m) * PQ + da.b * Q + da.c];
              }
            }
            ra[i] = v;
          }
UNROLL
          for (int j = 0; j < TM; ++j) {
            T v = 0;
            const int cj = b_n + 16 * j;
            if (kb_ok && n0 + cj < ncols) {
              const int64_t base = s_col_base[cj];
              if constexpr (KIND == kFwd) {
                const int c = int(db.a);
                if (PW) v = x[base + int64_t(c) * HW];
                else v = x_at(x + base, c, s_col_h[cj] + db.b * dh, s_col_w[cj] + db.c * dw, H, W);
              } else if constexpr (KIND == kBwdIn) {
                const int k = int(db.a);
                if (PW) {
                  v = gy[base + int64_t(k) * PQ];
                } else {
                  int th = s_col_h[cj] - db.b * dh, tw = s_col_w[cj] - db.c * dw;
                  bool ok = th >= 0 && tw >= 0;
                  if (sh != 1) { ok = ok && th % sh == 0; th /= sh; }
                  if (sw != 1) { ok = ok && tw % sw == 0; tw /= sw; }
                  if (ok && th < P && tw < Q) v = gy[base + k * PQ + th * Q + tw];
                }
              } else if constexpr (KIND == kBwdInS) {  // gy[n, g*Kg + k, hh + base - i*dp, ww + base' - j*dp']
                const int th = s_col_h[cj] - db.b * phh.dp, tw = s_col_w[cj] - db.c * phw.dp;
                if (th >= 0 && th < P && tw >= 0 && tw < Q) v = gy[base + int(db.a) * PQ + th * Q + tw];
              } else {  // x[n, g*Cg + c, p*sh + r*dh - ph, q*sw + s*dw - pw]
                const T* xn = x + db.a * gm.C * HW + base;
                if (PW) v = xn[db.b * Q + db.c];
                else v = x_at(xn, 0, db.b * sh + s_col_h[cj], db.c * sw + s_col_w[cj], H, W);
              }
            }
            rb[j] = v;
          }
        };

        T acc[TM][TM];
UNROLL
        for (int i = 0; i < TM; ++i)
UNROLL
          for (int j = 0; j < TM; ++j) acc[i][j] = 0;

        load();
        for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
UNROLL
          for (int i = 0; i < TM; ++i) As[a_k][a_m + 16 * i] = ra[i];
UNROLL
          for (int j = 0; j < TM; ++j) Bs[b_k][b_n + 16 * j] = rb[j];
          __syncthreads();
          if (k0 + BK < k_end) {  // next step's global loads overlap this step's math
            ka += BK;
            kb += BK;
            if (KIND != kFwd) da.step(st.da, st.db, st.dc, rad_b, rad_c);
            if (KIND != kBwdW) db.step(st.da, st.db, st.dc, rad_b, rad_c);
            else db = da;
            load();
          }
UNROLL
          for (int kk = 0; kk < BK; ++kk) {
            T a[TM], b[TM];
UNROLL
            for (int h = 0; h < TM / 4; ++h) {  // rows / columns 64h + 4t .. 64h + 4t + 3
              load4(a + 4 * h, &As[kk][64 * h + ty * 4]);
              load4(b + 4 * h, &Bs[kk][64 * h + tx * 4]);
            }
UNROLL
            for (int i = 0; i < TM; ++i)
UNROLL
              for (int j = 0; j < TM; ++j) acc[i][j] += a[i] * b[j];
          }
          __syncthreads();
        }

        // ---- epilogue: thread (ty, tx) writes rows m0 + 4ty + i, columns n0 + 4tx + j ----
UNROLL
        for (int j = 0; j < TM; ++j) {
          const int64_t col = n0 + 64 * (j / 4) + tx * 4 + j % 4;
          if (col >= ncols) continue;
UNROLL
          for (int i = 0; i < TM; ++i) {
            const int m = m0 + 64 * (i / 4) + ty * 4 + i % 4;
            if (m >= M) continue;
            if constexpr (KIND == kFwd) {
              const int64_t n = col / PQ, pq = col - n * PQ;
              const int k = g * Kg + m;
              out[(n * gm.K + k) * PQ + pq] = bias ? acc[i][j] + bias[k] : acc[i][j];
            } else if constexpr (KIND == kBwdIn) {
              const int64_t n = col / HW, hw = col - n * HW;
              out[(n * gm.C + g * Cg + m) * HW + hw] = acc[i][j];
            } else if constexpr (KIND == kBwdInS) {
              out[s_col_out[col - n0] + int64_t(m) * HW] = acc[i][j];
            } else {  // partial (or whole) gW of this split
              out[(int64_t(split) * gm.K + g * Kg + m) * (gm.wrow) + col] = acc[i][j];
            }
          }
        }
        if constexpr (KIND == kBwdInS) __syncthreads();  // s_col_out is rewritten by the next tile
      }
    }
  }
}

template <typename T, int KIND, bool PW, int TILE>
__global__ void __launch_bounds__(kBlock)
conv2d_igemm(const Geom gm, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ gy,
             const T* __restrict__ bias, T* __restrict__ out) {
  conv2d_igemm_body<T, KIND, PW, TILE>(gm, x, w, gy, bias, out);
}

// The float strided grad input (kBwdInS) with 64 tiles, held to 128 registers: two blocks per SM, as
// kBwdIn's 64 tile has (its phase terms took it to 158 unbounded on sm_80: one block per SM).  Double
// stays unbounded (128 would spill).
__global__ void __launch_bounds__(kBlock, 2)
conv2d_igemm_strided_f32_tile64(const Geom gm, const float* __restrict__ x, const float* __restrict__ w,
                             const float* __restrict__ gy, const float* __restrict__ bias, float* __restrict__ out) {
  conv2d_igemm_body<float, kBwdInS, false, 64>(gm, x, w, gy, bias, out);
}

// ---- 64-bit fallbacks (direct loops) for sizes the tiled kernels do not index in 32 bits ----
// (T: float, double, __half, __nv_bfloat16; the half types summed in float, rounded once)
template <typename T>
__global__ void conv2d_forward_direct(Conv2dShape s, const T* __restrict__ x, const T* __restrict__ w,
                                      const T* __restrict__ b, T* __restrict__ y) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, total = s.N * s.K * s.P * s.Q;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t q = idx % s.Q, p = idx / s.Q % s.P, k = idx / (s.Q * s.P) % s.K, n = idx / (s.Q * s.P * s.K);
    const int64_t g = k / Kg;
    Acc<T> acc = b ? to_acc(b[k]) : Acc<T>(0);
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
        if (h < 0 || h >= s.H) continue;
        for (int64_t t = 0; t < s.S; ++t) {
          const int64_t ww = q * s.stride_w - s.pad_w + t * s.dil_w;
          if (ww < 0 || ww >= s.W) continue;
          acc += to_acc(x[((n * s.C + g * Cg + c) * s.H + h) * s.W + ww]) * to_acc(w[((k * Cg + c) * s.R + r) * s.S + t]);
        }
      }
    y[idx] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void conv2d_backward_input_direct(Conv2dShape s, const T* __restrict__ gy, const T* __restrict__ w,
                                             T* __restrict__ gx) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, total = s.N * s.C * s.H * s.W;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t wi = idx % s.W, h = idx / s.W % s.H, c = idx / (s.W * s.H) % s.C, n = idx / (s.W * s.H * s.C);
    const int64_t g = c / Cg, cl = c % Cg;
    Acc<T> acc = 0;
    for (int64_t kl = 0; kl < Kg; ++kl) {
      const int64_t k = g * Kg + kl;
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t ph = h + s.pad_h - r * s.dil_h;
        if (ph < 0 || ph % s.stride_h) continue;
        const int64_t p = ph / s.stride_h;
        if (p >= s.P) continue;
        for (int64_t t = 0; t < s.S; ++t) {
          const int64_t qw = wi + s.pad_w - t * s.dil_w;
          if (qw < 0 || qw % s.stride_w) continue;
          const int64_t q = qw / s.stride_w;
          if (q >= s.Q) continue;
          acc += to_acc(gy[((n * s.K + k) * s.P + p) * s.Q + q]) * to_acc(w[((k * Cg + cl) * s.R + r) * s.S + t]);
        }
      }
    }
    gx[idx] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
conv2d_backward_weight_direct(Conv2dShape s, const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ gw) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, total = s.N * s.P * s.Q, nw = s.K * Cg * s.R * s.S;
  for (int64_t e = blockIdx.x; e < nw; e += gridDim.x) {
    const int64_t t = e % s.S, r = e / s.S % s.R, c = e / (s.S * s.R) % Cg, k = e / (s.S * s.R * Cg);
    const int64_t ci = k / Kg * Cg + c;
    Acc<T> acc = 0;
    for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) {
      const int64_t q = idx % s.Q, p = idx / s.Q % s.P, n = idx / (s.Q * s.P);
      const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h, ww = q * s.stride_w - s.pad_w + t * s.dil_w;
      if (h >= 0 && h < s.H && ww >= 0 && ww < s.W)
        acc += to_acc(gy[((n * s.K + k) * s.P + p) * s.Q + q]) * to_acc(x[((n * s.C + ci) * s.H + h) * s.W + ww]);
    }
    acc = block_sum<kBlock>(acc);
    if (threadIdx.x == 0) gw[e] = from_acc<T>(acc);
  }
}

constexpr int64_t kInt32Max = 2147483647;

// The tiled kernels index one image, one gW and one reduction range in 32 bits.
bool fits_int32(const Conv2dShape& s) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  return s.C * s.H * s.W < kInt32Max && s.K * s.P * s.Q < kInt32Max && s.K * Cg * s.R * s.S < kInt32Max &&
         Cg * s.R * s.S < kInt32Max && Kg * s.R * s.S < kInt32Max && s.H + 2 * s.pad_h < kInt32Max / 2 &&
         s.W + 2 * s.pad_w < kInt32Max / 2;
}

// The launchers take the direct kernels when the tiled ones cannot index the sizes in 32 bits, or when
// the plan says so (s.cuda_direct: CNNEXT_CONV2D_DIRECT=1, read by csrc/ops, so that the tests exercise
// the fallbacks on small shapes).
bool use_direct(const Conv2dShape& s) { return !fits_int32(s) || s.cuda_direct; }

bool pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
}

// How many chunks the grad-weight reduction over N*P*Q is split into: enough blocks to fill a large GPU
// (a fixed target, so results do not depend on the device), chunks of at least 4 BK steps.
int weight_splits(const Conv2dShape& s, int64_t tiles, int64_t* chunk) {
  const int64_t red = s.N * s.P * s.Q, target = 512;
  int64_t splits = (target + tiles - 1) / tiles;
  splits = std::min<int64_t>(splits, (red + 4 * BK - 1) / (4 * BK));
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 64));
  int64_t c = (red + splits - 1) / splits;
  c = (c + BK - 1) / BK * BK;
  *chunk = c;
  return int((red + c - 1) / c);
}

// The GEMM of pass `kind` (see the top comment), its tile size and its grid. float GEMMs with at least
// 128 rows take 128x128 tiles (8x8 per thread) when there are enough of them to fill a large GPU twice
// (the grad-weight pass always: its reduction splits fill the GPU); the rest 64x64 (4x4 per thread).
// The plan's s.cuda_tile (CNNEXT_CONV2D_TILE=64|128, read by csrc/ops) forces a size for float (tests).
Geom make_geom(const Conv2dShape& s, int kind, bool is_float, bool tensor_cores, dim3* grid) {
  Geom g{};
  g.H = int(s.H), g.W = int(s.W), g.P = int(s.P), g.Q = int(s.Q), g.R = int(s.R), g.S = int(s.S);
  g.sh = int(s.stride_h), g.sw = int(s.stride_w), g.ph = int(s.pad_h), g.pw = int(s.pad_w);
  g.dh = int(s.dil_h), g.dw = int(s.dil_w);
  g.Cg = int(s.C / s.groups), g.Kg = int(s.K / s.groups);
  g.HW = g.H * g.W, g.PQ = g.P * g.Q, g.RS = g.R * g.S;
  g.N = s.N, g.C = s.C, g.K = s.K, g.wrow = int64_t(g.Cg) * g.RS;
  g.splits = 1;
  g.nphase = 1;
  if (kind == kFwd) {
    g.M = g.Kg, g.Ncols = s.N * g.PQ, g.red = g.wrow;
  } else if (kind == kBwdIn) {
    g.M = g.Cg, g.Ncols = s.N * g.HW, g.red = int64_t(g.Kg) * g.RS;
  } else if (kind == kBwdInS) {  // the largest phase: ceil(H/sh) x ceil(W/sw) rows, ceil(R/...) taps at most
    g.nphase = g.sh * g.sw;
    g.M = g.Cg, g.Ncols = s.N * ((g.H + g.sh - 1) / g.sh) * ((g.W + g.sw - 1) / g.sw);
    g.red = int64_t(g.Kg) * g.RS;
  } else {
    g.M = g.Kg, g.Ncols = g.wrow, g.red = s.N * g.PQ;
  }
  g.tile = 64;
  if (is_float && g.M >= 128 && g.Ncols >= 128) {
    const int64_t tiles128 = (g.M + 127) / 128 * ((g.Ncols + 127) / 128) * s.groups * g.nphase;
    if (kind == kBwdW || tiles128 >= 264) g.tile = 128;
  }
  if (s.cuda_tile && is_float) g.tile = s.cuda_tile == 128 ? 128 : 64;
  if (tensor_cores) g.tile = 0;  // the tensor-core kernel: TC_BM x TC_BN tiles
  const int bm = tensor_cores ? TC_BM : g.tile, bn = tensor_cores ? TC_BN : g.tile;
  g.tiles_m = (g.M + bm - 1) / bm;
  g.tiles_n = (g.Ncols + bn - 1) / bn;
  g.chunk = g.red;
  if (kind == kBwdW) g.splits = weight_splits(s, g.tiles_n * g.tiles_m * s.groups, &g.chunk);
  g.nz = int(s.groups) * g.splits * g.nphase;
  *grid = dim3(grid_size(g.tiles_n, 1), grid_size(g.tiles_m, 1), grid_size(g.nz, 1));
  return g;
}

// Launches the tiled kernel of pass KIND for g.tile and the 1x1 case.
template <typename T, int KIND, int TILE>
void run_igemm_tile(const Geom& g, dim3 grid, bool pw, const T* x, const T* w, const T* gy, const T* b, T* out,
                    cudaStream_t stream) {
  if constexpr (KIND == kBwdInS && std::is_same_v<T, float> && TILE == 64) {
    launch(conv2d_igemm_strided_f32_tile64, grid, dim3(kBlock), 0, stream, g, x, w, gy, b, out);
  } else {
    if constexpr (KIND != kBwdInS) {  // strided: never the 1x1 plain GEMM
      if (pw) return launch(conv2d_igemm<T, KIND, true, TILE>, grid, dim3(kBlock), 0, stream, g, x, w, gy, b, out);
    }
    launch(conv2d_igemm<T, KIND, false, TILE>, grid, dim3(kBlock), 0, stream, g, x, w, gy, b, out);
  }
}

// The GEMM of pass KIND: the tensor-core kernel when g.tile == 0 (the half types always), else the SIMT
// kernel of g.tile.  O: what the kernel writes (TcOut for the tensor-core kernel).
template <typename T, int KIND, typename O>
void run_igemm(const Geom& g, dim3 grid, bool pw, const T* x, const T* w, const T* gy, const T* b, O* out,
               cudaStream_t stream) {
  if constexpr (std::is_same_v<O, TcOut<T, KIND>> && (std::is_same_v<T, float> || is_half_v<T>)) {
    if (g.tile == 0) return cnnext::CNNEXT_DEVICE_NS::conv2d_wmma_launch<T, KIND, O>(g, grid, pw, x, w, gy, b, out, stream);
  }
  if constexpr (!is_half_v<T> && std::is_same_v<O, T>) {
    if constexpr (std::is_same_v<T, float>) {  // (double has 64 tiles only)
      if (g.tile == 128) return run_igemm_tile<T, KIND, 128>(g, grid, pw, x, w, gy, b, out, stream);
    }
    run_igemm_tile<T, KIND, 64>(g, grid, pw, x, w, gy, b, out, stream);
  }
}

// Whether this GPU has sm_80's tensor cores (tf32, bf16; the emulator emulates them).
bool sm80_tensor_cores() {
#if defined(__CUDACC__)
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    (void)cudaGetLastError();  // not this call's to report; the SIMT kernels run (and launch() reports)
    return false;
  }
  return major >= 8;
#else
  return true;
#endif
}

// The tensor-core kernel runs for float16 and bfloat16 convs, and for float convs whose plan allows TF32
// (torch.backends.cudnn.allow_tf32, as cuDNN), on sm_80+. Otherwise, and for double, the exact FP32 / FP64
// SIMT kernels. (The build's GPU targets are all sm_80+; a half conv on an older GPU is refused.)
template <typename T>
bool use_tensor_cores(const Conv2dShape& s) {
  if constexpr (is_half_v<T>) {
    if (!sm80_tensor_cores())
      throw std::runtime_error("conv2d: float16 and bfloat16 convolutions on CUDA need tensor cores (sm_80 or newer)");
    return true;
  } else {
    return std::is_same_v<T, float> && s.allow_tf32 && sm80_tensor_cores();
  }
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

// The launchers take T = float, double, float16 or bfloat16 (csrc/common's storage types; the kernels run on
// DeviceT<T>: __half, __nv_bfloat16).
template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x_, const T* w_, const T* b_, T* y_, cudaStream_t stream) {
  using D = DeviceT<T>;
  const D *x = device_ptr(x_), *w = device_ptr(w_), *b = device_ptr(b_);
  D* const y = device_ptr(y_);
  if (use_direct(s)) {
    launch(conv2d_forward_direct<D>, dim3(grid_size(s.N * s.K * s.P * s.Q, kBlock)), dim3(kBlock), 0, stream, s, x,
           w, b, y);
    return;
  }
  dim3 grid;
  const Geom g = make_geom(s, kFwd, std::is_same_v<D, float>, use_tensor_cores<D>(s), &grid);
  run_igemm<D, kFwd>(g, grid, pointwise(s), x, w, nullptr, b, y, stream);
}

template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy_, const T* w_, T* gx_, cudaStream_t stream) {
  using D = DeviceT<T>;
  const D *gy = device_ptr(gy_), *w = device_ptr(w_);
  D* const gx = device_ptr(gx_);
  if (use_direct(s)) {
    launch(conv2d_backward_input_direct<D>, dim3(grid_size(s.N * s.C * s.H * s.W, kBlock)), dim3(kBlock), 0, stream,
           s, gy, w, gx);
    return;
  }
  dim3 grid;
  if (s.stride_h > 1 || s.stride_w > 1) {  // sh*sw dense phases instead of a gather through zero taps
    const Geom g = make_geom(s, kBwdInS, std::is_same_v<D, float>, use_tensor_cores<D>(s), &grid);
    run_igemm<D, kBwdInS>(g, grid, false, nullptr, w, gy, nullptr, gx, stream);
    return;
  }
  const Geom g = make_geom(s, kBwdIn, std::is_same_v<D, float>, use_tensor_cores<D>(s), &grid);
  run_igemm<D, kBwdIn>(g, grid, pointwise(s), nullptr, w, gy, nullptr, gx, stream);
}

namespace {
// The grad-weight GEMM's partials, in Acc<D> elements: (splits, K, Cg*R*S) when the reduction is split,
// else none (the GEMM writes gw itself) -- except for the half types, whose GEMM always writes float
// partials (one split or more), added and rounded once by sum_splits_kernel.
template <typename D>
int64_t split_k_workspace(const Conv2dShape& s) {
  if (use_direct(s)) return 0;
  dim3 grid;
  const Geom g = make_geom(s, kBwdW, std::is_same_v<D, float>, use_tensor_cores<D>(s), &grid);
  return g.splits > 1 || is_half_v<D> ? s.K * g.wrow * g.splits : 0;
}
// The bias grad's split (two-stage, reduce.h): K sums of N*P*Q values each, chunks of >= 2048 values.
SplitPlan bias_plan(const Conv2dShape& s) { return split_plan(s.K, s.N * s.P * s.Q, 2048, 4); }
}  // namespace

// The workspace: the grad-weight split partials, then the bias grad's K * splits partial sums, all in
// Acc<D> (float for the half types); counted in elements of T, which csrc/ops allocates (the launcher
// allocates nothing).
template <typename T>
int64_t conv2d_weight_workspace(const Conv2dShape& s, cudaStream_t) {
  using D = DeviceT<T>;
  return (split_k_workspace<D>(s) + s.K * bias_plan(s).splits) * int64_t(sizeof(Acc<D>) / sizeof(D));
}

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x_, const T* gy_, T* gw_, T* gb_, T* workspace,
                            cudaStream_t stream) {
  using D = DeviceT<T>;
  using A = Acc<D>;
  const D *x = device_ptr(x_), *gy = device_ptr(gy_);
  D *const gw = device_ptr(gw_), *const gb = device_ptr(gb_);
  if (workspace == nullptr)
    throw std::runtime_error("conv2d: the grad-weight launcher needs the workspace of conv2d_weight_workspace");
  A* const ws = reinterpret_cast<A*>(workspace);
  if (gb) {  // gb[k] = sum over (n, p, q) of gy[n, k, p, q]: split partials, then summed in split order
    const SplitPlan bp = bias_plan(s);
    const int64_t PQ = s.P * s.Q;
    A* const bws = ws + split_k_workspace<D>(s);
    const dim3 grid(unsigned(bp.splits), grid_size(s.K, 1));
    const bool vec = aligned16(gy), i32 = walk_fits32(s.N * s.K * PQ);
    constexpr int V = is_half_v<D> ? 1 : kVec<D>;  // 16-byte vectors of float and double
    if (PQ % V == 0)
      launch(i32 ? channel_sum_partial_kernel<D, V, uint32_t> : channel_sum_partial_kernel<D, V, uint64_t>,
             grid, dim3(kBlock), 0, stream, gy, bws, s.N, s.K, PQ, bp.chunk, bp.chunk / PQ, bp.chunk % PQ, vec);
    else
      launch(i32 ? channel_sum_partial_kernel<D, 1, uint32_t> : channel_sum_partial_kernel<D, 1, uint64_t>, grid,
             dim3(kBlock), 0, stream, gy, bws, s.N, s.K, PQ, bp.chunk, bp.chunk / PQ, bp.chunk % PQ, vec);
    launch(sum_splits_kernel<D, A>, dim3(grid_size(s.K, kBlock)), dim3(kBlock), 0, stream, (const A*)bws, gb, s.K,
           bp.splits, bp.splits, int64_t(1));
  }
  if (use_direct(s)) {
    launch(conv2d_backward_weight_direct<D>, dim3(grid_size(s.K * (s.C / s.groups) * s.R * s.S, 1)), dim3(kBlock), 0,
           stream, s, x, gy, gw);
    return;
  }
  dim3 grid;
  const Geom g = make_geom(s, kBwdW, std::is_same_v<D, float>, use_tensor_cores<D>(s), &grid);
  const int64_t total = s.K * g.wrow;
  const bool partials = g.splits > 1 || is_half_v<D>;
  if constexpr (is_half_v<D>) {
    run_igemm<D, kBwdW>(g, grid, pointwise(s), x, nullptr, gy, nullptr, ws, stream);
  } else {
    D* out = partials ? ws : gw;  // the split partials, or gw itself when there is one split
    run_igemm<D, kBwdW>(g, grid, pointwise(s), x, nullptr, gy, nullptr, out, stream);
  }
  if (partials)
    launch(sum_splits_kernel<D, A>, dim3(grid_size(total, kBlock)), dim3(kBlock), 0, stream, (const A*)ws, gw, total,
           int64_t(g.splits), int64_t(1), total);
}

#define CNNEXT_INSTANTIATE(T)                                                                               \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*, cudaStream_t);       \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*, cudaStream_t);         \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*, T*, cudaStream_t); \
  template int64_t conv2d_weight_workspace<T>(const Conv2dShape&, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
CNNEXT_INSTANTIATE(float16)
CNNEXT_INSTANTIATE(bfloat16)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(Conv2dForward, conv2d_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(Conv2dBackwardInput, conv2d_backward_input)
CNNEXT_REGISTER_DEVICE_KERNEL(Conv2dBackwardWeight, conv2d_backward_weight)
CNNEXT_REGISTER_DEVICE_KERNEL(Conv2dWeightWorkspace, conv2d_weight_workspace)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(Conv2dForward, conv2d_forward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(Conv2dBackwardInput, conv2d_backward_input)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(Conv2dBackwardWeight, conv2d_backward_weight)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(Conv2dWeightWorkspace, conv2d_weight_workspace)

}  // namespace cnnext::CNNEXT_DEVICE_NS
