// batch_norm on the GPU (d2l 8.5).  x: (N, C, S) contiguous, S = prod(spatial);
// channel c's M = N*S values are x[(n*C + c)*S + s]; channels_last arrives as
// (N*H*W, C, 1).  Formulas: see csrc/cpu/batch_norm.cpp.
//
// The reductions are two-stage (reduce.h): each channel's M values are cut into `splits` fixed chunks
// (split_plan: a function of the shape only, so results are bit-identical run to run and on every
// GPU), block (split, c) writes its chunk's partial to the workspace (allocated by csrc/ops: the
// launchers allocate nothing), and a finishing kernel merges a channel's partials in split order.  No
// atomics.  Workspace: the partials (forward, training: 3*C*splits; backward: 2*C*splits), then the
// per-channel coefficients the elementwise kernels read (forward 3*C, backward 6*C).
//
// Kernels ((N, C, S) layout, "planes"; S == 1 -- (N, C) and channels_last, "rows" of C channels -- uses
// the *_rows_ variants of the two stage-1 kernels, described where they are defined):
//   bn_stats_partial_kernel     block (split, c) (grid y strides over channels): thread t walks the
//                               chunk's values V at a time (ChannelWalk: counters, no division per
//                               element; V = 4 floats / 2 doubles when S % V == 0, one 16-byte load
//                               when x is aligned), shifted by K_c = x[c*S], the channel's first value,
//                               so 1e4 + randn keeps its digits; per group of V values one Chan merge
//                               of (V, mean, M2) into the thread's Welford triple (count, mean, M2).
//                               The block merges the triples with warp shuffles and, across warps,
//                               through shared memory, always in the same order; thread 0 writes the
//                               chunk's (count, mean, M2) to the workspace.
//   bn_stats_finish_kernel      one thread per channel: merges the channel's split triples in split
//                               order (in double), writes mean, invstd, the running statistics, and the
//                               channel's coefficients (center, scale, shift) = batch_norm_affine.
//   bn_eval_stats_kernel        one thread per channel: mean = running_mean,
//                               invstd = 1/sqrt(running_var + eps), and the coefficients.
//   bn_normalize_kernel         a 2-D grid over (planes, chunks of a plane): a 2-D block (bx, by) covers
//                               by planes (blockIdx.y, threadIdx.y: plane n*C + c, or a row) and bx
//                               vectors of V values of each (blockIdx.x, threadIdx.x), bx = the plane's
//                               vectors split into at most 256-wide chunks; the channel comes from the
//                               plane by a counter (planes) or is the column (rows): no integer division
//                               per element.  y = bn_pre(x, center, scale, shift) from the precomputed
//                               coefficients, optionally relu (relu keeps NaN, like torch.relu); 16-byte
//                               loads and stores when every pointer is aligned and the plane (S, or C
//                               for rows) is a whole number of vectors.
//   bn_grad_sums_partial_kernel block (split, c), walking the chunk as bn_stats_partial_kernel does:
//                               sums gy' and gy' (x - mean) (gy' = gy masked by y <= 0 ? 0 : gy for relu
//                               -- kept where y is NaN, like torch's threshold_backward -- y recomputed
//                               from x with the forward's very expression, bn_pre), block-reduced in a
//                               fixed order; thread 0 writes the chunk's two sums.
//   bn_grad_sums_finish_kernel  one thread per channel: adds the split sums in split order (double),
//                               writes gb = sum gy', gw = invstd * sum gy' (x - mean), and the grad-input
//                               coefficients (center, scale, shift, mean, gb/M, invstd gw/M).
//   bn_grad_input_kernel        the 2-D grid of bn_normalize_kernel:
//                               gx = scale (gy' - gb/M - (x - mean) invstd gw/M)  (training)
//                               gx = scale gy'                                    (eval)
// T: float, double, __half, __nv_bfloat16 (half.h).  Per-thread accumulation, the workspace, the
// coefficients and the per-channel tensors are in P = Acc<T> (T for float and double, float for the half
// types: torch's mixed-precision batch norm, float32 parameters and statistics); the per-channel finish is
// in double; a half output is rounded once.  The half types are read one value at a time (V = 1).  Offsets are 64-bit.  Passes: training forward = stats (read x) + normalize (read x, write
// y); backward = sums (read x, gy) + grad input (read x, gy, write gx); the relu mask costs no extra
// pass; the finishing kernels touch O(C * splits) values.
#include <algorithm>
#include <stdexcept>

#include "batch_norm.h"
#include "compat.h"
#include "half.h"
#include "reduce.h"

namespace {

constexpr int kBlock = 256;
// A stage-1 block's chunk: at least 2048 values (8 per thread) of a plane-layout channel, at least
// 64 rows (8 per row lane) of a rows-layout channel tile.
constexpr int64_t kMinChunk = 2048, kMinRows = 64;
// Values per vector load: 16 bytes of float or double; the half types one at a time.
template <typename T>
constexpr int kBnVec = is_half_v<T> ? 1 : kVec<T>;

// One fused multiply-add, rounded once, whatever the compiler's contraction settings (nvcc's
// --fmad, the host compiler's -ffp-contract): the same bits in every kernel that calls it.
__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }
// The IEEE-rounded reciprocal: Welford's 1/count without the division's slow-path call (the calls made
// ptxas spill in the partial kernels); one rounding more than a division, far below the tolerances.
__device__ __forceinline__ float rcp_rn(float a) { return __frcp_rn(a); }
__device__ __forceinline__ double rcp_rn(double a) { return __drcp_rn(a); }

// The forward's pre-activation; the relu backward recomputes it with the very same
// expression, pinned to one explicit FMA, so its mask is exactly torch's threshold_backward
// of the forward's output: gy' = y <= 0 ? 0 : gy.  The coefficients come from batch_norm_affine
// (../common/batch_norm.h) on the same mean, invstd, w, b in the forward and the backward: the same
// bits, whether they are computed per block or precomputed per channel.
template <typename T>
__device__ __forceinline__ T bn_pre(T x, T mean, T scale, T shift) {
  return fma_rn(x - mean, scale, shift);
}

// (n, mean, m2) <- merge with (nb, mb, m2b) (Chan et al.).
template <typename T>
__device__ __forceinline__ void welford_merge(T& n, T& mean, T& m2, T nb, T mb, T m2b) {
  const T nn = n + nb;
  if (nn == T(0)) return;
  const T delta = mb - mean, f = nb * rcp_rn(nn);
  mean += delta * f;
  m2 += m2b + delta * delta * n * f;
  n = nn;
}

// The V shifted values d into the thread's triple: Welford for V == 1, else the group's own
// (V, mean, M2) merged in (one division per V values).
template <int V, typename T>
__device__ __forceinline__ void welford_add(T& n, T& mean, T& m2, const T (&d)[V]) {
  if constexpr (V == 1) {
    n += T(1);
    const T delta = d[0] - mean;
    mean = fma_rn(delta, rcp_rn(n), mean);
    m2 += delta * (d[0] - mean);
  } else {
    T sum = d[0];
    for (int j = 1; j < V; ++j) sum += d[j];
    const T mb = sum * T(1.0 / V);  // V is a power of two: exact
    T m2b = 0;
    for (int j = 0; j < V; ++j) m2b += (d[j] - mb) * (d[j] - mb);
    welford_merge(n, mean, m2, T(V), mb, m2b);
  }
}

template <typename T>
__device__ __forceinline__ void warp_welford(T& n, T& mean, T& m2) {
  for (int o = 16; o > 0; o >>= 1) {
    const T nb = __shfl_down_sync(EMU_FULL_MASK, n, o);
    const T mb = __shfl_down_sync(EMU_FULL_MASK, mean, o);
    const T m2b = __shfl_down_sync(EMU_FULL_MASK, m2, o);
    welford_merge(n, mean, m2, nb, mb, m2b);
  }
}

// Workspace layout of the partials: quantity q (stats: count, mean, M2; grad sums: sum gy', sum gy' (x -
// mean)) of channel c, split sp at ws[(q*C + c)*splits + sp].
__device__ __forceinline__ int64_t part(int q, int64_t c, int64_t C, int64_t splits, int64_t sp) {
  return (q * C + c) * splits + sp;
}

template <typename T, int V, typename I, typename P = Acc<T>>
__global__ void __launch_bounds__(kBlock)
bn_stats_partial_kernel(const T* __restrict__ x, P* __restrict__ ws, int64_t N, int64_t C, int64_t S,
                        int64_t chunk, int64_t cn, int64_t cs, bool vec) {
  __shared__ P sh_n[kBlock / 32], sh_mean[kBlock / 32], sh_m2[kBlock / 32];
  const int64_t M = N * S, splits = gridDim.x, sp = blockIdx.x, e = min(M, sp * chunk + chunk);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int64_t nb, sb;
  split_begin(sp, cn, cs, S, nb, sb);
  ChannelWalk<I> it(nb, sb, e, C, S, V);
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    const P k = to_acc(x[c * S]);  // shift: the channel's first value, the same for every split
    P n = 0, mean = 0, m2 = 0;
    for (it.start(c); it.ok(); it.next()) {
      T r[V];
      load_v<V>(r, x + it.off, vec);
      P d[V];
      for (int j = 0; j < V; ++j) d[j] = to_acc(r[j]) - k;
      welford_add<V>(n, mean, m2, d);
    }
    warp_welford(n, mean, m2);
    if (lane == 0) sh_n[warp] = n, sh_mean[warp] = mean, sh_m2[warp] = m2;
    __syncthreads();
    if (warp == 0) {
      const bool have = lane < int(blockDim.x / 32);
      n = have ? sh_n[lane] : P(0);
      mean = have ? sh_mean[lane] : P(0);
      m2 = have ? sh_m2[lane] : P(0);
      warp_welford(n, mean, m2);
      if (lane == 0) ws[part(0, c, C, splits, sp)] = n, ws[part(1, c, C, splits, sp)] = mean,
                     ws[part(2, c, C, splits, sp)] = m2;
    }
    __syncthreads();  // the shared triples are rewritten for the next channel
  }
}

// Rows layout (S == 1: (N, C) inputs, channels_last as (N*H*W, C)): a block is a tile of 32 channels x
// kRowsY row lanes, grid (channel tiles [grid-stride], splits).  Thread (tx, ty) runs Welford for
// channel c = 32*tile + tx over the split's rows ty, ty+kRowsY, ... (shifted by row 0's value): each warp
// reads 32 consecutive channels of a row (coalesced).  The kRowsY partial triples of a channel are
// merged through shared memory by the ty == 0 thread in ty order, which writes the split's triple.
constexpr int kRowsY = kBlock / 32;

template <typename T, typename P = Acc<T>>
__global__ void __launch_bounds__(kBlock)
bn_stats_rows_partial_kernel(const T* __restrict__ x, P* __restrict__ ws, int64_t R, int64_t C, int64_t chunk) {
  __shared__ P sh_n[kRowsY][32], sh_mean[kRowsY][32], sh_m2[kRowsY][32];
  const int64_t splits = gridDim.y, sp = blockIdx.y, r0 = sp * chunk, r1 = min(R, r0 + chunk);
  const int64_t tiles = (C + 31) / 32;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * 32 + threadIdx.x;
    P n = 0, mean = 0, m2 = 0;
    if (c < C) {
      const P k = to_acc(x[c]);  // shift: row 0
      for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowsY) {
        const P d[1] = {to_acc(x[r * C + c]) - k};
        welford_add<1>(n, mean, m2, d);
      }
    }
    sh_n[threadIdx.y][threadIdx.x] = n, sh_mean[threadIdx.y][threadIdx.x] = mean;
    sh_m2[threadIdx.y][threadIdx.x] = m2;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
      for (int j = 1; j < kRowsY; ++j)
        welford_merge(n, mean, m2, sh_n[j][threadIdx.x], sh_mean[j][threadIdx.x], sh_m2[j][threadIdx.x]);
      ws[part(0, c, C, splits, sp)] = n, ws[part(1, c, C, splits, sp)] = mean, ws[part(2, c, C, splits, sp)] = m2;
    }
    __syncthreads();
  }
}

// Channel c's forward coefficients: coef[c] = center, coef[C + c] = scale, coef[2C + c] = shift.
template <typename T>
__device__ __forceinline__ void write_affine(T* coef, const T* mean, const T* invstd, const T* w, const T* b,
                                             int64_t c, int64_t C) {
  const cnnext::BatchNormAffine<T> a = cnnext::batch_norm_affine(mean, invstd, w, b, c);
  coef[c] = a.center, coef[C + c] = a.scale, coef[2 * C + c] = a.shift;
}

// kstride: where channel c's shift value is (x[c * kstride]: S for planes, 1 for rows).
template <typename T, typename P = Acc<T>>
__global__ void bn_stats_finish_kernel(const T* __restrict__ x, const P* __restrict__ ws, int64_t splits, int64_t C,
                                       int64_t kstride, int64_t M, P* __restrict__ mean_out,
                                       P* __restrict__ invstd_out, P* __restrict__ rmean, P* __restrict__ rvar,
                                       const P* __restrict__ w, const P* __restrict__ b, P* __restrict__ coef,
                                       double momentum, double eps) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(blockDim.x) * gridDim.x) {
    double n = 0, mean = 0, m2 = 0;
    for (int64_t sp = 0; sp < splits; ++sp)
      welford_merge(n, mean, m2, double(ws[part(0, c, C, splits, sp)]), double(ws[part(1, c, C, splits, sp)]),
                    double(ws[part(2, c, C, splits, sp)]));
    const double m = double(to_acc(x[c * kstride])) + mean, var_sum = m2 < 0 ? 0.0 : m2;  // NaN stays NaN
    mean_out[c] = P(m);
    invstd_out[c] = P(1.0 / sqrt(var_sum / double(M) + eps));
    if (rmean) rmean[c] = P((1 - momentum) * double(rmean[c]) + momentum * m);
    if (rvar) rvar[c] = P((1 - momentum) * double(rvar[c]) + momentum * var_sum / double(M - 1));
    write_affine(coef, (const P*)mean_out, (const P*)invstd_out, w, b, c, C);
  }
}

template <typename T>
__global__ void bn_eval_stats_kernel(const T* __restrict__ rmean, const T* __restrict__ rvar, T* __restrict__ mean,
                                     T* __restrict__ invstd, const T* __restrict__ w, const T* __restrict__ b,
                                     T* __restrict__ coef, int64_t C, double eps) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(blockDim.x) * gridDim.x) {
    mean[c] = rmean[c];
    invstd[c] = T(1.0 / sqrt(double(rvar[c]) + eps));
    write_affine(coef, (const T*)mean, (const T*)invstd, w, b, c, C);
  }
}

// The elementwise kernels' 2-D walk: planes p = blockIdx.y*blockDim.y + threadIdx.y (grid-stride),
// vectors v = blockIdx.x*blockDim.x + threadIdx.x of V values (grid-stride) of a plane of L values
// (L % V == 0).  ROWS: a plane is a row of C channels and the channel is the column, so the
// coefficients of the thread's V channels are loaded once per column; planes: the channel of plane
// p = n*C + c is kept by a counter.  f(off, k) handles the V values at element offset off, whose
// channels are k .. k+V-1 (rows) or k (planes).
template <bool ROWS, int V, typename F>
__device__ __forceinline__ void plane_walk(int64_t planes, int64_t L, int64_t C, F f) {
  const int64_t Lv = L / V, xstep = int64_t(gridDim.x) * blockDim.x, ystep = int64_t(gridDim.y) * blockDim.y;
  const int64_t v0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t p0 = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  if constexpr (ROWS) {
    for (int64_t v = v0; v < Lv; v += xstep)
      for (int64_t p = p0; p < planes; p += ystep) f(p * L + v * V, v * V);
  } else {
    int64_t c = p0 % C;  // once per thread
    const int64_t dc = ystep % C;
    for (int64_t p = p0; p < planes; p += ystep) {
      for (int64_t v = v0; v < Lv; v += xstep) f(p * L + v * V, c);
      c += dc;
      if (c >= C) c -= C;
    }
  }
}

template <typename T, int V, bool ROWS, typename P = Acc<T>>
__global__ void __launch_bounds__(kBlock)
bn_normalize_kernel(const T* __restrict__ x, T* __restrict__ y, const P* __restrict__ coef, int64_t planes,
                    int64_t L, int64_t C, bool relu, bool vec) {
  plane_walk<ROWS, V>(planes, L, C, [&](int64_t off, int64_t k) {
    T a[V];
    load_v<V>(a, x + off, vec);
    for (int j = 0; j < V; ++j) {
      const int64_t c = ROWS ? k + j : k;
      P v = bn_pre(to_acc(a[j]), coef[c], coef[C + c], coef[2 * C + c]);
      if (relu && v <= P(0)) v = P(0);  // NaN stays NaN, like torch.relu
      a[j] = from_acc<T>(v);
    }
    store_v<V>(y + off, a, vec);
  });
}

// Sums of the pair (a, b) over the block, valid in thread 0 (fixed order).
template <typename T>
__device__ __forceinline__ void block_sum2(T& a, T& b) {
  __shared__ T sh_a[kBlock / 32], sh_b[kBlock / 32];
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_down_sync(EMU_FULL_MASK, a, o);
    b += __shfl_down_sync(EMU_FULL_MASK, b, o);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) sh_a[warp] = a, sh_b[warp] = b;
  __syncthreads();
  if (warp == 0) {
    const bool have = lane < int(blockDim.x / 32);
    a = have ? sh_a[lane] : T(0);
    b = have ? sh_b[lane] : T(0);
    for (int o = 16; o > 0; o >>= 1) {
      a += __shfl_down_sync(EMU_FULL_MASK, a, o);
      b += __shfl_down_sync(EMU_FULL_MASK, b, o);
    }
  }
  __syncthreads();  // sh_a, sh_b may be rewritten by the next call
}

template <typename T, int V, typename I, typename P = Acc<T>>
__global__ void __launch_bounds__(kBlock)
bn_grad_sums_partial_kernel(const T* __restrict__ gy, const T* __restrict__ x, const P* __restrict__ w,
                            const P* __restrict__ b, const P* __restrict__ mean, const P* __restrict__ invstd,
                            P* __restrict__ ws, int64_t N, int64_t C, int64_t S, int64_t chunk, int64_t cn,
                            int64_t cs, bool relu, bool vec) {
  const int64_t M = N * S, splits = gridDim.x, sp = blockIdx.x, hi = min(M, sp * chunk + chunk);
  int64_t nb, sb;
  split_begin(sp, cn, cs, S, nb, sb);
  ChannelWalk<I> it(nb, sb, hi, C, S, V);
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    const P m = mean[c];
    const cnnext::BatchNormAffine<P> a = cnnext::batch_norm_affine(mean, invstd, w, b, c);
    P s1 = 0, s2 = 0;
    for (it.start(c); it.ok(); it.next()) {
      T xr[V], g[V];
      load_v<V>(xr, x + it.off, vec);
      load_v<V>(g, gy + it.off, vec);
      for (int j = 0; j < V; ++j) {
        const P xv = to_acc(xr[j]);
        const P gj = relu && bn_pre(xv, a.center, a.scale, a.shift) <= P(0) ? P(0) : to_acc(g[j]);
        s1 += gj;
        s2 += gj * (xv - m);
      }
    }
    block_sum2(s1, s2);
    if (threadIdx.x == 0) ws[part(0, c, C, splits, sp)] = s1, ws[part(1, c, C, splits, sp)] = s2;
  }
}

// Rows layout of bn_grad_sums_partial_kernel: tiles of 32 channels x kRowsY row lanes as in
// bn_stats_rows_partial_kernel; the kRowsY partial sums are added in ty order.
template <typename T, typename P = Acc<T>>
__global__ void __launch_bounds__(kBlock)
bn_grad_sums_rows_partial_kernel(const T* __restrict__ gy, const T* __restrict__ x, const P* __restrict__ w,
                                 const P* __restrict__ b, const P* __restrict__ mean, const P* __restrict__ invstd,
                                 P* __restrict__ ws, int64_t R, int64_t C, int64_t chunk, bool relu) {
  __shared__ P sh_a[kRowsY][32], sh_b[kRowsY][32];
  const int64_t splits = gridDim.y, sp = blockIdx.y, r0 = sp * chunk, r1 = min(R, r0 + chunk);
  const int64_t tiles = (C + 31) / 32;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * 32 + threadIdx.x;
    P s1 = 0, s2 = 0;
    if (c < C) {
      const P m = mean[c];
      const cnnext::BatchNormAffine<P> a = cnnext::batch_norm_affine(mean, invstd, w, b, c);
      for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowsY) {
        const P xv = to_acc(x[r * C + c]);
        const P g = relu && bn_pre(xv, a.center, a.scale, a.shift) <= P(0) ? P(0) : to_acc(gy[r * C + c]);
        s1 += g;
        s2 += g * (xv - m);
      }
    }
    sh_a[threadIdx.y][threadIdx.x] = s1, sh_b[threadIdx.y][threadIdx.x] = s2;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
      for (int j = 1; j < kRowsY; ++j) s1 += sh_a[j][threadIdx.x], s2 += sh_b[j][threadIdx.x];
      ws[part(0, c, C, splits, sp)] = s1, ws[part(1, c, C, splits, sp)] = s2;
    }
    __syncthreads();
  }
}

// Channel c's grad-input coefficients: coef[q*C + c], q = 0..5: center, scale, shift (the forward's),
// mean, gb/M, invstd*gw/M.
template <typename T>
__global__ void bn_grad_sums_finish_kernel(const T* __restrict__ ws, int64_t splits, int64_t C, int64_t M,
                                           const T* __restrict__ w, const T* __restrict__ b,
                                           const T* __restrict__ mean, const T* __restrict__ invstd,
                                           T* __restrict__ gw, T* __restrict__ gb, T* __restrict__ coef) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(blockDim.x) * gridDim.x) {
    double s1 = 0, s2 = 0;
    for (int64_t sp = 0; sp < splits; ++sp) s1 += double(ws[part(0, c, C, splits, sp)]), s2 += double(ws[part(1, c, C, splits, sp)]);
    const T gbc = T(s1), gwc = T(s2 * double(invstd[c]));
    gb[c] = gbc;
    gw[c] = gwc;
    write_affine(coef, mean, invstd, w, b, c, C);
    coef[3 * C + c] = mean[c];
    coef[4 * C + c] = T(double(gbc) / double(M));
    coef[5 * C + c] = T(double(invstd[c]) * double(gwc) / double(M));
  }
}

template <typename T, int V, bool ROWS, typename P = Acc<T>>
__global__ void __launch_bounds__(kBlock)
bn_grad_input_kernel(const T* __restrict__ gy, const T* __restrict__ x, const P* __restrict__ coef,
                     T* __restrict__ gx, int64_t planes, int64_t L, int64_t C, bool training, bool relu, bool vec) {
  plane_walk<ROWS, V>(planes, L, C, [&](int64_t off, int64_t k) {
    T xr[V], g[V];
    load_v<V>(xr, x + off, vec);
    load_v<V>(g, gy + off, vec);
    for (int j = 0; j < V; ++j) {
      const int64_t c = ROWS ? k + j : k;
      const P sc = coef[C + c], xv = to_acc(xr[j]);
      P gj = relu && bn_pre(xv, coef[c], sc, coef[2 * C + c]) <= P(0) ? P(0) : to_acc(g[j]);
      if (training) gj -= coef[4 * C + c] + (xv - coef[3 * C + c]) * coef[5 * C + c];
      g[j] = from_acc<T>(gj * sc);
    }
    store_v<V>(gx + off, g, vec);
  });
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {
namespace {

// The launch plan of one call, a function of the shape only (the workspace size and the launchers
// compute the same one): layout, the reductions' split, the vector width.
struct BnPlan {
  bool rows;              // S == 1: rows of C channels
  int64_t planes, L;      // the elementwise kernels' planes (N*C, or the N rows) of L values (S, or C)
  int64_t splits, chunk;  // the reductions' split (values per chunk, or rows per chunk)
  int V;                  // values per vector: kBnVec<T> when L is a whole number of vectors, else 1
};

template <typename T>
BnPlan bn_plan(const BatchNormShape& s) {
  BnPlan p{};
  p.rows = s.S == 1;
  p.planes = p.rows ? s.N : s.N * s.C;
  p.L = p.rows ? s.C : s.S;
  p.V = p.L % kBnVec<T> == 0 ? kBnVec<T> : 1;
  const SplitPlan sp = p.rows ? split_plan((s.C + 31) / 32, s.N, kMinRows, 1) : split_plan(s.C, s.N * s.S, kMinChunk, 4);
  p.splits = sp.splits;
  p.chunk = sp.chunk;
  return p;
}

// The elementwise kernels' 2-D block and grid: a plane's Lv vectors in nx <= 256-wide chunks of bx,
// by = 256 / bx planes per block.
void plane_grid(int64_t planes, int64_t Lv, dim3* grid, dim3* block) {
  const int64_t nx = (Lv + kBlock - 1) / kBlock, bx = (Lv + nx - 1) / nx, by = std::max<int64_t>(1, kBlock / bx);
  *block = dim3(unsigned(bx), unsigned(by));
  *grid = dim3(grid_size(nx, 1), grid_size((planes + by - 1) / by, 1));
}

template <typename T>
void need_workspace(const T* ws) {
  if (ws == nullptr)
    throw std::runtime_error("batch_norm: the CUDA launchers need the workspace of batch_norm_*_workspace");
}

}  // namespace

// The workspaces, in elements of the per-channel type P (float for the half types).
template <typename T>
int64_t batch_norm_forward_workspace(const BatchNormShape& s, cudaStream_t) {
  const BnPlan p = bn_plan<DeviceT<T>>(s);
  return (s.training ? 3 * s.C * p.splits : 0) + 3 * s.C;
}

template <typename T>
int64_t batch_norm_backward_workspace(const BatchNormShape& s, cudaStream_t) {
  const BnPlan p = bn_plan<DeviceT<T>>(s);
  return 2 * s.C * p.splits + 6 * s.C;
}

// T: float, double, float16, bfloat16 (csrc/common's storage types; the kernels run on D = DeviceT<T>, the
// per-channel tensors and the workspace are P: float for the half types).
template <typename T_>
void batch_norm_forward(const BatchNormShape& s, const BatchNormForwardArgs<T_>& a, cudaStream_t stream) {
  using T = DeviceT<T_>;
  using P = Acc<T>;
  static_assert(std::is_same_v<P, typename cnnext::BatchNormParam<T_>::type>, "batch_norm: P is the parameters' type");
  const T* x = device_ptr(a.x);
  T* y = device_ptr(a.y);
  const P *w = a.w, *b = a.b;
  P *rmean = a.running_mean, *rvar = a.running_var, *mean = a.mean, *invstd = a.invstd;
  const int64_t N = s.N, C = s.C, S = s.S;
  const BnPlan p = bn_plan<T>(s);
  need_workspace(a.workspace);
  P* const part_ws = a.workspace;
  P* const coef = a.workspace + (s.training ? 3 * C * p.splits : 0);
  const unsigned sp = unsigned(p.splits);
  if (s.training) {
    if (p.rows)
      launch(bn_stats_rows_partial_kernel<T>, dim3(grid_size((C + 31) / 32, 1), sp), dim3(32, kRowsY), 0, stream, x,
             part_ws, N, C, p.chunk);
    else
      launch(walk_fits32(N * C * S) ? (p.V > 1 ? bn_stats_partial_kernel<T, kBnVec<T>, uint32_t>
                                               : bn_stats_partial_kernel<T, 1, uint32_t>)
                                    : (p.V > 1 ? bn_stats_partial_kernel<T, kBnVec<T>, uint64_t>
                                               : bn_stats_partial_kernel<T, 1, uint64_t>),
             dim3(sp, grid_size(C, 1)), dim3(kBlock), 0, stream, x, part_ws, N, C, S, p.chunk, p.chunk / S,
             p.chunk % S, aligned16(x));
    launch(bn_stats_finish_kernel<T>, dim3(grid_size(C, kBlock)), dim3(kBlock), 0, stream, x, (const P*)part_ws,
           p.splits, C, p.rows ? int64_t(1) : S, N * S, mean, invstd, rmean, rvar, w, b, coef, s.momentum, s.eps);
  } else {
    launch(bn_eval_stats_kernel<P>, dim3(grid_size(C, kBlock)), dim3(kBlock), 0, stream, (const P*)rmean,
           (const P*)rvar, mean, invstd, w, b, coef, C, s.eps);
  }
  dim3 grid, block;
  plane_grid(p.planes, p.L / p.V, &grid, &block);
  const bool vec = aligned16(x) && aligned16(y);
  auto* k = p.rows ? (p.V > 1 ? bn_normalize_kernel<T, kBnVec<T>, true> : bn_normalize_kernel<T, 1, true>)
                   : (p.V > 1 ? bn_normalize_kernel<T, kBnVec<T>, false> : bn_normalize_kernel<T, 1, false>);
  launch(k, grid, block, 0, stream, x, y, (const P*)coef, p.planes, p.L, C, s.relu, vec);
}

template <typename T_>
void batch_norm_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T_>& a, cudaStream_t stream) {
  using T = DeviceT<T_>;
  using P = Acc<T>;
  const T *gy = device_ptr(a.gy), *x = device_ptr(a.x);
  T* gx = device_ptr(a.gx);
  const P *w = a.w, *b = a.b, *mean = a.mean, *invstd = a.invstd;
  P *gw = a.gw, *gb = a.gb;
  const int64_t N = s.N, C = s.C, S = s.S;
  const BnPlan p = bn_plan<T>(s);
  need_workspace(a.workspace);
  P* const part_ws = a.workspace;
  P* const coef = a.workspace + 2 * C * p.splits;
  const unsigned sp = unsigned(p.splits);
  if (p.rows)
    launch(bn_grad_sums_rows_partial_kernel<T>, dim3(grid_size((C + 31) / 32, 1), sp), dim3(32, kRowsY), 0, stream,
           gy, x, w, b, mean, invstd, part_ws, N, C, p.chunk, s.relu);
  else
    launch(walk_fits32(N * C * S) ? (p.V > 1 ? bn_grad_sums_partial_kernel<T, kBnVec<T>, uint32_t>
                                             : bn_grad_sums_partial_kernel<T, 1, uint32_t>)
                                  : (p.V > 1 ? bn_grad_sums_partial_kernel<T, kBnVec<T>, uint64_t>
                                             : bn_grad_sums_partial_kernel<T, 1, uint64_t>),
           dim3(sp, grid_size(C, 1)), dim3(kBlock), 0, stream, gy, x, w, b, mean, invstd, part_ws, N, C, S, p.chunk,
           p.chunk / S, p.chunk % S, s.relu, aligned16(x) && aligned16(gy));
  launch(bn_grad_sums_finish_kernel<P>, dim3(grid_size(C, kBlock)), dim3(kBlock), 0, stream, (const P*)part_ws,
         p.splits, C, N * S, w, b, mean, invstd, gw, gb, coef);
  dim3 grid, block;
  plane_grid(p.planes, p.L / p.V, &grid, &block);
  const bool vec = aligned16(x) && aligned16(gy) && aligned16(gx);
  auto* k = p.rows ? (p.V > 1 ? bn_grad_input_kernel<T, kBnVec<T>, true> : bn_grad_input_kernel<T, 1, true>)
                   : (p.V > 1 ? bn_grad_input_kernel<T, kBnVec<T>, false> : bn_grad_input_kernel<T, 1, false>);
  launch(k, grid, block, 0, stream, gy, x, (const P*)coef, gx, p.planes, p.L, C, s.training, s.relu, vec);
}

#define CNNEXT_INSTANTIATE(T)                                                                                \
  template void batch_norm_forward<T>(const BatchNormShape&, const BatchNormForwardArgs<T>&, cudaStream_t);   \
  template void batch_norm_backward<T>(const BatchNormShape&, const BatchNormBackwardArgs<T>&, cudaStream_t); \
  template int64_t batch_norm_forward_workspace<T>(const BatchNormShape&, cudaStream_t);                      \
  template int64_t batch_norm_backward_workspace<T>(const BatchNormShape&, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
CNNEXT_INSTANTIATE(float16)
CNNEXT_INSTANTIATE(bfloat16)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(BatchNormForward, batch_norm_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(BatchNormBackward, batch_norm_backward)
CNNEXT_REGISTER_DEVICE_KERNEL(BatchNormForwardWorkspace, batch_norm_forward_workspace)
CNNEXT_REGISTER_DEVICE_KERNEL(BatchNormBackwardWorkspace, batch_norm_backward_workspace)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(BatchNormForward, batch_norm_forward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(BatchNormBackward, batch_norm_backward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(BatchNormForwardWorkspace, batch_norm_forward_workspace)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(BatchNormBackwardWorkspace, batch_norm_backward_workspace)

}  // namespace cnnext::CNNEXT_DEVICE_NS
