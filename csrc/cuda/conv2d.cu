// conv2d on the GPU: every pass is an implicit GEMM, per group g (G = groups, Cg = C/G, Kg = K/G):
//
//   forward       Y[k, (n,p,q)]   = sum_{(c,r,s)}  W[k, (c,r,s)]      * Xcol[(c,r,s), (n,p,q)]    (+ b[k])
//                 GEMM  M = Kg,  N = N*P*Q,  red = Cg*R*S
//   grad input    gX[c, (n,h,w)]  = sum_{(k,r,s)}  W[k, c, r, s]      * gYcol[(k,r,s), (n,h,w)]
//                 GEMM  M = Cg,  N = N*H*W,  red = Kg*R*S; gYcol gathers gy[n, k, p, q] with
//                 p*sh = h + ph - r*dh (0 where that is not a multiple of the stride or out of range):
//                 a gather, no atomics
//   grad weight   gW[k, (c,r,s)]  = sum_{(n,p,q)}  gY[k, (n,p,q)]     * Xcol[(c,r,s), (n,p,q)]
//                 GEMM  M = Kg,  N = Cg*R*S,  red = N*P*Q, split into `splits` fixed chunks when the
//                 gW tiles alone would not fill the GPU; partial tiles go to a workspace and
//                 conv2d_sum_splits adds them in split order: deterministic, no float atomics
//   grad bias     gb[k] = sum_{n,p,q} gy[n, k, p, q]
//
// Who computes what:
//   conv2d_igemm        one 256-thread block per 64x64 tile of the GEMM output (grid x: column tiles,
//                       y: row tiles, z: group [x split]; grid-stride loops over all three, so any grid
//                       size works). The block walks the reduction in steps of BK=16: each thread loads
//                       4 elements of the 64x16 A tile and 4 of the 16x64 B tile into registers (the
//                       im2col index math happens here, with per-thread mixed-radix counters instead of
//                       divisions), stores them to shared memory, and, while the next step's loads are in
//                       flight, accumulates a 4x4 register tile: thread (ty, tx) = (tid/16, tid%16) owns
//                       rows ty + 16i and columns tx + 16j of the block tile.
//                       The 1x1 / stride 1 / no padding case (PW = true) is a plain GEMM: no (r, s) math.
//   conv2d_sum_splits   one thread per gW element (grid-stride): sums the split partials in order
//   conv2d_bias_grad    one block per output channel k (grid-stride): threads stride over (n, p, q),
//                       then warp shuffles + shared memory reduce in a fixed order
//   conv2d_*_direct     fallback for an image (C*H*W or K*P*Q) or a reduction over 2^31 elements: the
//                       plain loops of the formulas, fully 64-bit, one output element per thread
// Offsets: within one image 32-bit (checked by the launchers), across the batch 64-bit.
#include <algorithm>
#include <string>
#include <vector>

#include "compat.h"
#include "conv2d.h"

namespace {

using cnnext::Conv2dShape;

constexpr int kBlock = 256;
constexpr int BM = 64, BN = 64, BK = 16, kPad = 4;
constexpr int kFwd = 0, kBwdIn = 1, kBwdW = 2;

// A number in mixed radix (a, b, c) with digits b < B, c < C: stepping it by a fixed amount costs
// two compares instead of two divisions.
struct Digits {
  int64_t a;
  int b, c;
  __device__ void set(int64_t v, int B, int C) {
    a = v / (int64_t(B) * C);
    const int rem = int(v - a * B * C);
    b = rem / C;
    c = rem - b * C;
  }
  // Adds the step (da, db, dc), given in the same radix.
  __device__ void step(int64_t da, int db, int dc, int B, int C) {
    c += dc;
    const int cb = c >= C;
    c -= cb ? C : 0;
    b += db + cb;
    const int ca = b >= B;
    b -= ca ? B : 0;
    a += da + ca;
  }
};

struct Step {
  int64_t da;
  int db, dc;
  __device__ Step(int64_t v, int B, int C) : da(v / (int64_t(B) * C)), db(int(v / C % B)), dc(int(v % C)) {}
};

// The im2col gathers, all in 32-bit within one image.
template <typename T>
__device__ T x_at(const T* xn, int c, int h, int w, int H, int W) {  // xn: this image, this group
  return (h >= 0 && h < H && w >= 0 && w < W) ? xn[(c * H + h) * W + w] : T(0);
}

template <typename T, int KIND, bool PW>
__global__ void __launch_bounds__(kBlock)
conv2d_igemm(Conv2dShape s, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ gy,
             const T* __restrict__ bias, T* __restrict__ out, int splits, int64_t chunk) {
  __shared__ T As[BK][BM + kPad];
  __shared__ T Bs[BK][BN + kPad];

  const int G = int(s.groups), Cg = int(s.C / s.groups), Kg = int(s.K / s.groups);
  const int H = int(s.H), W = int(s.W), P = int(s.P), Q = int(s.Q), R = int(s.R), S = int(s.S);
  const int sh = int(s.stride_h), sw = int(s.stride_w), ph = int(s.pad_h), pw = int(s.pad_w);
  const int dh = int(s.dil_h), dw = int(s.dil_w);
  const int HW = H * W, PQ = P * Q, RS = R * S;
  // GEMM sizes
  const int M = KIND == kBwdIn ? Cg : Kg;
  const int64_t Ncols = KIND == kFwd ? s.N * PQ : KIND == kBwdIn ? s.N * HW : int64_t(Cg) * RS;
  const int64_t red = KIND == kFwd ? int64_t(Cg) * RS : KIND == kBwdIn ? int64_t(Kg) * RS : s.N * PQ;

  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t tiles_n = (Ncols + BN - 1) / BN;
  const int tiles_m = (M + BM - 1) / BM;
  const int nz = G * (KIND == kBwdW ? splits : 1);

  for (int z = blockIdx.z; z < nz; z += gridDim.z) {
    const int g = KIND == kBwdW ? z / splits : z, split = KIND == kBwdW ? z % splits : 0;
    const int64_t k_begin = split * chunk, k_end = KIND == kBwdW ? min(red, k_begin + chunk) : red;
    for (int tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
      const int m0 = tm * BM;
      for (int64_t tn = blockIdx.x; tn < tiles_n; tn += gridDim.x) {
        const int64_t n0 = tn * BN;

        // ---- per-tile setup of this thread's loads ----
        // A tile (64 x 16): this thread loads rows am = m0 + tid/16 + 16i, reduction index ak = tid%16.
        // B tile (16 x 64): forward / grad input: reduction index tid/16, columns tid%16 + 16j;
        //                   grad weight: reduction index tid%16, columns tid/16 + 16j.
        const int a_k = tid % 16, a_m = tid / 16;
        const int b_k = KIND == kBwdW ? tid % 16 : tid / 16;
        const int b_n = KIND == kBwdW ? tid / 16 : tid % 16, b_nstride = 16;
        int64_t col_base[4];  // per B column: 64-bit offset of its image (and group) in the source
        int col_h[4], col_w[4];  // per B column: spatial origin (or channel/tap for grad weight)
        bool col_ok[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t col = n0 + b_n + b_nstride * j;
          col_ok[j] = col < Ncols;
          const int64_t cc = col_ok[j] ? col : 0;
          if constexpr (KIND == kFwd) {  // col = (n, p, q) -> x[n, g*Cg + ., p*sh - ph + ., q*sw - pw + .]
            const int64_t n = cc / PQ;
            const int pq = int(cc - n * PQ), p = pq / Q, q = pq - p * Q;
            col_base[j] = (n * s.C + int64_t(g) * Cg) * HW;
            if (PW) col_base[j] += pq;
            col_h[j] = p * sh - ph;
            col_w[j] = q * sw - pw;
          } else if constexpr (KIND == kBwdIn) {  // col = (n, h, w) -> gy[n, g*Kg + ., (h + ph - .)/sh, ...]
            const int64_t n = cc / HW;
            const int hw = int(cc - n * HW), h = hw / W, ww = hw - h * W;
            col_base[j] = (n * s.K + int64_t(g) * Kg) * PQ;
            if (PW) col_base[j] += hw;
            col_h[j] = h + ph;
            col_w[j] = ww + pw;
          } else {  // grad weight: col = (c, r, s) -> x[., g*Cg + c, . + r*dh - ph, . + s*dw - pw]
            const int c = int(cc / RS), rs = int(cc % RS), r = rs / S, t = rs - r * S;
            col_base[j] = int64_t(g * Cg + c) * HW;
            col_h[j] = r * dh - ph;
            col_w[j] = t * dw - pw;
          }
        }
        const T* a_row = w + int64_t(g * Kg + m0 + a_m) * (int64_t(Cg) * RS);  // forward: weight row of i = 0
        // Reduction counters (Digits of the reduction index this thread loads):
        //   forward      B: (c, r, s) of k_begin + b_k
        //   grad input   A: (k, r, s) of k_begin + a_k;  B: (k, r, s) of k_begin + b_k
        //   grad weight  A and B: (n, p, q) of k_begin + a_k (= b_k)
        int64_t ka = k_begin + a_k, kb = k_begin + b_k;
        Digits da, db;
        const int rad_b = KIND == kBwdW ? P : R, rad_c = KIND == kBwdW ? Q : S;
        da.set(ka, rad_b, rad_c);
        db.set(kb, rad_b, rad_c);
        const Step st(BK, rad_b, rad_c);

        T ra[4], rb[4];
        auto load = [&]() {
          const bool ka_ok = ka < k_end, kb_ok = kb < k_end;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            T v = 0;
            const int m = m0 + a_m + 16 * i;
            if (ka_ok && m < M) {
              if constexpr (KIND == kFwd) {
                v = a_row[int64_t(16 * i) * (int64_t(Cg) * RS) + ka];
              } else if constexpr (KIND == kBwdIn) {  // W[g*Kg + k, c = m, r, s]
                v = w[(int64_t(g * Kg) + da.a) * (int64_t(Cg) * RS) + (m * R + da.b) * S + da.c];
              } else {  // gy[n, g*Kg + m, p, q]
                v = gy[(da.a * s.K + g * Kg + m) * PQ + da.b * Q + da.c];
              }
            }
            ra[i] = v;
          }
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            T v = 0;
            if (kb_ok && col_ok[j]) {
              if constexpr (KIND == kFwd) {
                const int c = int(db.a);
                if (PW) v = x[col_base[j] + int64_t(c) * HW];
                else v = x_at(x + col_base[j], c, col_h[j] + db.b * dh, col_w[j] + db.c * dw, H, W);
              } else if constexpr (KIND == kBwdIn) {
                const int k = int(db.a);
                if (PW) {
                  v = gy[col_base[j] + int64_t(k) * PQ];
                } else {
                  int th = col_h[j] - db.b * dh, tw = col_w[j] - db.c * dw;
                  bool ok = th >= 0 && tw >= 0;
                  if (sh != 1) { ok = ok && th % sh == 0; th /= sh; }
                  if (sw != 1) { ok = ok && tw % sw == 0; tw /= sw; }
                  if (ok && th < P && tw < Q) v = gy[col_base[j] + k * PQ + th * Q + tw];
                }
              } else {  // x[n, g*Cg + c, p*sh + r*dh - ph, q*sw + s*dw - pw]
                const T* xn = x + db.a * s.C * HW + col_base[j];
                if (PW) v = xn[db.b * Q + db.c];
                else v = x_at(xn, 0, db.b * sh + col_h[j], db.c * sw + col_w[j], H, W);
              }
            }
            rb[j] = v;
          }
        };

        T acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = 0;

        load();
        for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
#pragma unroll
          for (int i = 0; i < 4; ++i) As[a_k][a_m + 16 * i] = ra[i];
#pragma unroll
          for (int j = 0; j < 4; ++j) Bs[b_k][b_n + b_nstride * j] = rb[j];
          __syncthreads();
          if (k0 + BK < k_end) {  // next step's global loads overlap this step's math
            ka += BK;
            kb += BK;
            if (KIND != kFwd) da.step(st.da, st.db, st.dc, rad_b, rad_c);
            if (KIND != kBwdW) db.step(st.da, st.db, st.dc, rad_b, rad_c);
            else db = da;
            load();
          }
#pragma unroll
          for (int kk = 0; kk < BK; ++kk) {
            T a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
              for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
          }
          __syncthreads();
        }

        // ---- epilogue: thread (ty, tx) writes rows m0 + ty + 16i, columns n0 + tx + 16j ----
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t col = n0 + tx + 16 * j;
          if (col >= Ncols) continue;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int m = m0 + ty + 16 * i;
            if (m >= M) continue;
            if constexpr (KIND == kFwd) {
              const int64_t n = col / PQ, pq = col - n * PQ;
              const int k = g * Kg + m;
              out[(n * s.K + k) * PQ + pq] = bias ? acc[i][j] + bias[k] : acc[i][j];
            } else if constexpr (KIND == kBwdIn) {
              const int64_t n = col / HW, hw = col - n * HW;
              out[(n * s.C + g * Cg + m) * HW + hw] = acc[i][j];
            } else {  // partial (or whole) gW of this split
              out[(int64_t(split) * s.K + g * Kg + m) * (int64_t(Cg) * RS) + col] = acc[i][j];
            }
          }
        }
      }
    }
  }
}

// gw[i] = sum over splits, in split order.
template <typename T>
__global__ void conv2d_sum_splits(const T* __restrict__ ws, T* __restrict__ gw, int64_t total, int splits) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    T v = 0;
    for (int sp = 0; sp < splits; ++sp) v += ws[sp * total + i];
    gw[i] = v;
  }
}

// Sum of v over the block, valid in thread 0: shuffles within warps, then warp 0 over the warp sums.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[kBlock / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(EMU_FULL_MASK, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / 32) ? warp_sums[lane] : T(0);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(EMU_FULL_MASK, v, o);
  }
  __syncthreads();  // warp_sums is reused by the next call
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
conv2d_bias_grad(Conv2dShape s, const T* __restrict__ gy, T* __restrict__ gb) {
  const int64_t PQ = s.P * s.Q, total = s.N * PQ;
  for (int64_t k = blockIdx.x; k < s.K; k += gridDim.x) {
    T acc = 0;
    for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) {
      const int64_t n = idx / PQ;
      acc += gy[(n * s.K + k) * PQ + (idx - n * PQ)];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) gb[k] = acc;
  }
}

// ---- 64-bit fallbacks (direct loops) for sizes the tiled kernels do not index in 32 bits ----
template <typename T>
__global__ void conv2d_forward_direct(Conv2dShape s, const T* __restrict__ x, const T* __restrict__ w,
                                      const T* __restrict__ b, T* __restrict__ y) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, total = s.N * s.K * s.P * s.Q;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t q = idx % s.Q, p = idx / s.Q % s.P, k = idx / (s.Q * s.P) % s.K, n = idx / (s.Q * s.P * s.K);
    const int64_t g = k / Kg;
    T acc = b ? b[k] : T(0);
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
        if (h < 0 || h >= s.H) continue;
        for (int64_t t = 0; t < s.S; ++t) {
          const int64_t ww = q * s.stride_w - s.pad_w + t * s.dil_w;
          if (ww < 0 || ww >= s.W) continue;
          acc += x[((n * s.C + g * Cg + c) * s.H + h) * s.W + ww] * w[((k * Cg + c) * s.R + r) * s.S + t];
        }
      }
    y[idx] = acc;
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
    T acc = 0;
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
          acc += gy[((n * s.K + k) * s.P + p) * s.Q + q] * w[((k * Cg + cl) * s.R + r) * s.S + t];
        }
      }
    }
    gx[idx] = acc;
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
conv2d_backward_weight_direct(Conv2dShape s, const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ gw) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, total = s.N * s.P * s.Q, nw = s.K * Cg * s.R * s.S;
  for (int64_t e = blockIdx.x; e < nw; e += gridDim.x) {
    const int64_t t = e % s.S, r = e / s.S % s.R, c = e / (s.S * s.R) % Cg, k = e / (s.S * s.R * Cg);
    const int64_t ci = k / Kg * Cg + c;
    T acc = 0;
    for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) {
      const int64_t q = idx % s.Q, p = idx / s.Q % s.P, n = idx / (s.Q * s.P);
      const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h, ww = q * s.stride_w - s.pad_w + t * s.dil_w;
      if (h >= 0 && h < s.H && ww >= 0 && ww < s.W)
        acc += gy[((n * s.K + k) * s.P + p) * s.Q + q] * x[((n * s.C + ci) * s.H + h) * s.W + ww];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) gw[e] = acc;
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

bool pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
}

dim3 tile_grid(int64_t tiles_n, int64_t tiles_m, int64_t nz) {
  return dim3(grid_size(tiles_n, 1), grid_size(tiles_m, 1), grid_size(nz, 1));
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

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, cudaStream_t stream) {
  if (!fits_int32(s)) {
    launch(conv2d_forward_direct<T>, dim3(grid_size(s.N * s.K * s.P * s.Q, kBlock)), dim3(kBlock), 0, stream, s, x,
           w, b, y);
    return;
  }
  const int64_t Kg = s.K / s.groups;
  const dim3 grid = tile_grid((s.N * s.P * s.Q + BN - 1) / BN, (Kg + BM - 1) / BM, s.groups);
  const int64_t red = (s.C / s.groups) * s.R * s.S;
  if (pointwise(s))
    launch(conv2d_igemm<T, kFwd, true>, grid, dim3(kBlock), 0, stream, s, x, w, (const T*)nullptr, b, y, 1, red);
  else
    launch(conv2d_igemm<T, kFwd, false>, grid, dim3(kBlock), 0, stream, s, x, w, (const T*)nullptr, b, y, 1, red);
}

template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx, cudaStream_t stream) {
  if (!fits_int32(s)) {
    launch(conv2d_backward_input_direct<T>, dim3(grid_size(s.N * s.C * s.H * s.W, kBlock)), dim3(kBlock), 0, stream,
           s, gy, w, gx);
    return;
  }
  const int64_t Cg = s.C / s.groups;
  const dim3 grid = tile_grid((s.N * s.H * s.W + BN - 1) / BN, (Cg + BM - 1) / BM, s.groups);
  const int64_t red = (s.K / s.groups) * s.R * s.S;
  if (pointwise(s))
    launch(conv2d_igemm<T, kBwdIn, true>, grid, dim3(kBlock), 0, stream, s, (const T*)nullptr, w, gy,
           (const T*)nullptr, gx, 1, red);
  else
    launch(conv2d_igemm<T, kBwdIn, false>, grid, dim3(kBlock), 0, stream, s, (const T*)nullptr, w, gy,
           (const T*)nullptr, gx, 1, red);
}

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb, cudaStream_t stream) {
  if (gb) launch(conv2d_bias_grad<T>, dim3(grid_size(s.K, 1)), dim3(kBlock), 0, stream, s, gy, gb);
  if (!fits_int32(s)) {
    launch(conv2d_backward_weight_direct<T>, dim3(grid_size(s.K * (s.C / s.groups) * s.R * s.S, 1)), dim3(kBlock), 0,
           stream, s, x, gy, gw);
    return;
  }
  const int64_t Kg = s.K / s.groups, CRS = (s.C / s.groups) * s.R * s.S;
  const int64_t tiles_n = (CRS + BN - 1) / BN, tiles_m = (Kg + BM - 1) / BM;
  int64_t chunk = 0;
  const int splits = weight_splits(s, tiles_n * tiles_m * s.groups, &chunk);
  const dim3 grid = tile_grid(tiles_n, tiles_m, s.groups * splits);
  const int64_t total = s.K * CRS;
  T* ws = gw;
#if defined(__CUDACC__)
  if (splits > 1) {
    void* p = nullptr;
    const cudaError_t err = cudaMallocAsync(&p, sizeof(T) * total * splits, stream);
    if (err != cudaSuccess)
      throw std::runtime_error(std::string("conv2d: workspace allocation failed: ") + cudaGetErrorString(err));
    ws = static_cast<T*>(p);
  }
#else
  std::vector<T> ws_host(splits > 1 ? size_t(total * splits) : 0);
  if (splits > 1) ws = ws_host.data();
#endif
  if (pointwise(s))
    launch(conv2d_igemm<T, kBwdW, true>, grid, dim3(kBlock), 0, stream, s, x, (const T*)nullptr, gy,
           (const T*)nullptr, ws, splits, chunk);
  else
    launch(conv2d_igemm<T, kBwdW, false>, grid, dim3(kBlock), 0, stream, s, x, (const T*)nullptr, gy,
           (const T*)nullptr, ws, splits, chunk);
  if (splits > 1) {
    launch(conv2d_sum_splits<T>, dim3(grid_size(total, kBlock)), dim3(kBlock), 0, stream, (const T*)ws, gw, total,
           splits);
#if defined(__CUDACC__)
    cudaFreeAsync(ws, stream);
#endif
  }
}

#define CNNEXT_INSTANTIATE(T)                                                                               \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*, cudaStream_t);       \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*, cudaStream_t);         \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::CNNEXT_DEVICE_NS
