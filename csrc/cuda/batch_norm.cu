// batch_norm on the GPU (d2l 8.5).  x: (N, C, S) contiguous, S = prod(spatial);
// channel c's M = N*S values are x[(n*C + c)*S + s]; channels_last arrives as
// (N*H*W, C, 1).  Formulas: see csrc/cpu/batch_norm.cpp.
//
// Kernels ((N, C, S) layout; S == 1 -- (N, C) and channels_last -- uses the
// *_rows_ variants of the two reductions, described where they are defined):
//   bn_stats_kernel        one block per channel c.  Thread t runs Welford over the
//                          channel's values t, t+blockDim, ... (shifted by K_c, the
//                          channel's first value, so 1e4 + randn keeps its digits),
//                          then the block merges the (count, mean, M2) triples with
//                          warp shuffles and, across warps, through shared memory,
//                          always in the same order: deterministic, no atomics.
//                          Thread 0 writes mean, invstd and the running statistics.
//   bn_eval_stats_kernel   one thread per channel: mean = running_mean,
//                          invstd = 1/sqrt(running_var + eps).
//   bn_normalize_kernel    one thread per element (grid-stride):
//                          y = (x - mean) * invstd * w + b, optionally relu
//                          (relu keeps NaN, like torch.relu).
//   bn_grad_sums_kernel    one block per channel: sum gy' and sum gy' (x - mean)
//                          (gy' = gy masked by y <= 0 ? 0 : gy for relu -- kept where y is
//                          NaN, like torch's threshold_backward -- y recomputed from x the
//                          same way as the forward), block-reduced as above;
//                          thread 0 writes gb = sum gy', gw = invstd * sum gy' (x - mean).
//   bn_grad_input_kernel   one thread per element (grid-stride):
//                          gx = w invstd (gy' - gb/M - (x - mean) invstd gw/M)  (training)
//                          gx = w invstd gy'                                    (eval)
// Per-thread accumulation is in T (float for float, double for double); the
// per-channel finish is in double.  Offsets are 64-bit.  Passes: training forward
// = stats (read x) + normalize (read x, write y); backward = sums (read x, gy) +
// grad input (read x, gy, write gx); the relu mask costs no extra pass.  One block
// per channel keeps the reductions simple and deterministic; with few channels
// and large N*H*W it leaves SMs idle (a split, fixed-order two-stage reduction
// would be the next step).
#include "batch_norm.h"
#include "compat.h"

namespace {

constexpr int kBlock = 256;

// One fused multiply-add, rounded once, whatever the compiler's contraction settings (nvcc's
// --fmad, the host compiler's -ffp-contract): the same bits in every kernel that calls it.
__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }

// The forward's pre-activation; the relu backward recomputes it with the very same
// expression, pinned to one explicit FMA, so its mask is exactly torch's threshold_backward
// of the forward's output: gy' = y <= 0 ? 0 : gy.
template <typename T>
__device__ __forceinline__ T bn_pre(T x, T mean, T scale, T shift) {
  return fma_rn(x - mean, scale, shift);
}

template <typename T>
__device__ __forceinline__ T channel_scale(const T* invstd, const T* w, int64_t c) {
  return cnnext::batch_norm_scale(invstd, w, c);
}

// Channel c's pre-activation terms, y = bn_pre(x, center, scale, shift): batch_norm_affine of
// ../common/batch_norm.h, the CPU kernels' too.
template <typename T>
__device__ __forceinline__ void channel_pre(const T* mean, const T* invstd, const T* w, const T* b, int64_t c, T& ce,
                                            T& sc, T& sh) {
  const cnnext::BatchNormAffine<T> a = cnnext::batch_norm_affine(mean, invstd, w, b, c);
  ce = a.center, sc = a.scale, sh = a.shift;
}

// (n, mean, m2) <- merge with (nb, mb, m2b) (Chan et al.); counts are in T.
template <typename T>
__device__ __forceinline__ void welford_merge(T& n, T& mean, T& m2, T nb, T mb, T m2b) {
  const T nn = n + nb;
  if (nn == T(0)) return;
  const T delta = mb - mean, f = nb / nn;
  mean += delta * f;
  m2 += m2b + delta * delta * n * f;
  n = nn;
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

template <typename T, typename I>
__global__ void __launch_bounds__(kBlock)
bn_stats_kernel(const T* __restrict__ x, T* __restrict__ mean_out, T* __restrict__ invstd_out, T* __restrict__ rmean,
                T* __restrict__ rvar, int64_t N, int64_t C, int64_t S, double momentum, double eps) {
  __shared__ T sh_n[kBlock / 32], sh_mean[kBlock / 32], sh_m2[kBlock / 32];
  const int64_t c = blockIdx.x, M = N * S;
  const T k = x[c * S];  // shift
  T n = 0, mean = 0, m2 = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const I n_ = I(i) / I(S), s_ = I(i) - n_ * I(S);  // 32-bit division when it fits
    const T d = x[(int64_t(n_) * C + c) * S + s_] - k;
    n += T(1);
    const T delta = d - mean;
    mean += delta / n;
    m2 += delta * (d - mean);
  }
  warp_welford(n, mean, m2);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) sh_n[warp] = n, sh_mean[warp] = mean, sh_m2[warp] = m2;
  __syncthreads();
  if (warp == 0) {
    const bool have = lane < int(blockDim.x / 32);
    n = have ? sh_n[lane] : T(0);
    mean = have ? sh_mean[lane] : T(0);
    m2 = have ? sh_m2[lane] : T(0);
    warp_welford(n, mean, m2);
    if (lane == 0) {
      const double m = double(k) + double(mean), var_sum = m2 < T(0) ? 0.0 : double(m2);  // NaN stays NaN
      mean_out[c] = T(m);
      invstd_out[c] = T(1.0 / sqrt(var_sum / double(M) + eps));
      if (rmean) rmean[c] = T((1 - momentum) * double(rmean[c]) + momentum * m);
      if (rvar) rvar[c] = T((1 - momentum) * double(rvar[c]) + momentum * var_sum / double(M - 1));
    }
  }
}

// Rows layout (S == 1: (N, C) inputs, channels_last as (N*H*W, C)): a block is a
// tile of 32 channels x kRowsY row lanes.  Thread (tx, ty) runs Welford for channel
// c = 32*blockIdx.x + tx over rows ty, ty+kRowsY, ...: each warp reads 32
// consecutive channels of a row (coalesced).  The kRowsY partial triples of a
// channel are merged through shared memory by the ty == 0 thread in ty order.
constexpr int kRowsY = kBlock / 32;

template <typename T>
__global__ void __launch_bounds__(kBlock)
bn_stats_rows_kernel(const T* __restrict__ x, T* __restrict__ mean_out, T* __restrict__ invstd_out,
                     T* __restrict__ rmean, T* __restrict__ rvar, int64_t R, int64_t C, double momentum,
                     double eps) {
  __shared__ T sh_n[kRowsY][32], sh_mean[kRowsY][32], sh_m2[kRowsY][32];
  const int64_t c = blockIdx.x * int64_t(32) + threadIdx.x;
  T n = 0, mean = 0, m2 = 0;
  if (c < C) {
    const T k = x[c];  // shift: row 0
    for (int64_t r = threadIdx.y; r < R; r += kRowsY) {
      const T d = x[r * C + c] - k;
      n += T(1);
      const T delta = d - mean;
      mean += delta / n;
      m2 += delta * (d - mean);
    }
  }
  sh_n[threadIdx.y][threadIdx.x] = n, sh_mean[threadIdx.y][threadIdx.x] = mean, sh_m2[threadIdx.y][threadIdx.x] = m2;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int j = 1; j < kRowsY; ++j)
      welford_merge(n, mean, m2, sh_n[j][threadIdx.x], sh_mean[j][threadIdx.x], sh_m2[j][threadIdx.x]);
    const double m = double(x[c]) + double(mean), var_sum = m2 < T(0) ? 0.0 : double(m2);  // NaN stays NaN
    mean_out[c] = T(m);
    invstd_out[c] = T(1.0 / sqrt(var_sum / double(R) + eps));
    if (rmean) rmean[c] = T((1 - momentum) * double(rmean[c]) + momentum * m);
    if (rvar) rvar[c] = T((1 - momentum) * double(rvar[c]) + momentum * var_sum / double(R - 1));
  }
}

template <typename T>
__global__ void bn_eval_stats_kernel(const T* __restrict__ rmean, const T* __restrict__ rvar, T* __restrict__ mean,
                                     T* __restrict__ invstd, int64_t C, double eps) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(blockDim.x) * gridDim.x) {
    mean[c] = rmean[c];
    invstd[c] = T(1.0 / sqrt(double(rvar[c]) + eps));
  }
}

template <typename T, typename I>
__global__ void bn_normalize_kernel(const T* __restrict__ x, T* __restrict__ y, const T* __restrict__ w,
                                    const T* __restrict__ b, const T* __restrict__ mean, const T* __restrict__ invstd,
                                    int64_t C, int64_t S, int64_t total, bool relu) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = int64_t(I(i) / I(S) % I(C));
    T ce, sc, sh;
    channel_pre(mean, invstd, w, b, c, ce, sc, sh);
    T v = bn_pre(x[i], ce, sc, sh);
    if (relu && v <= T(0)) v = T(0);  // NaN stays NaN, like torch.relu
    y[i] = v;
  }
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
}

template <typename T, typename I>
__global__ void __launch_bounds__(kBlock)
bn_grad_sums_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                    const T* __restrict__ b, const T* __restrict__ mean, const T* __restrict__ invstd,
                    T* __restrict__ gw, T* __restrict__ gb, int64_t N, int64_t C, int64_t S, bool relu) {
  const int64_t c = blockIdx.x, M = N * S;
  const T m = mean[c];
  T ce, sc, sh;
  channel_pre(mean, invstd, w, b, c, ce, sc, sh);
  T s1 = 0, s2 = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const I n_ = I(i) / I(S), s_ = I(i) - n_ * I(S);
    const int64_t off = (int64_t(n_) * C + c) * S + s_;
    const T xv = x[off];
    T g = gy[off];
    if (relu && bn_pre(xv, ce, sc, sh) <= T(0)) g = T(0);
    s1 += g;
    s2 += g * (xv - m);
  }
  block_sum2(s1, s2);
  if (threadIdx.x == 0) {
    gb[c] = s1;
    gw[c] = s2 * invstd[c];
  }
}

// Rows layout of bn_grad_sums_kernel: tiles of 32 channels x kRowsY row lanes as in
// bn_stats_rows_kernel; the kRowsY partial sums are added in ty order.
template <typename T>
__global__ void __launch_bounds__(kBlock)
bn_grad_sums_rows_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                         const T* __restrict__ b, const T* __restrict__ mean, const T* __restrict__ invstd,
                         T* __restrict__ gw, T* __restrict__ gb, int64_t R, int64_t C, bool relu) {
  __shared__ T sh_a[kRowsY][32], sh_b[kRowsY][32];
  const int64_t c = blockIdx.x * int64_t(32) + threadIdx.x;
  T s1 = 0, s2 = 0;
  if (c < C) {
    const T m = mean[c];
    T ce, sc, sh;
    channel_pre(mean, invstd, w, b, c, ce, sc, sh);
    for (int64_t r = threadIdx.y; r < R; r += kRowsY) {
      const T xv = x[r * C + c];
      T g = gy[r * C + c];
      if (relu && bn_pre(xv, ce, sc, sh) <= T(0)) g = T(0);
      s1 += g;
      s2 += g * (xv - m);
    }
  }
  sh_a[threadIdx.y][threadIdx.x] = s1, sh_b[threadIdx.y][threadIdx.x] = s2;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int j = 1; j < kRowsY; ++j) s1 += sh_a[j][threadIdx.x], s2 += sh_b[j][threadIdx.x];
    gb[c] = s1;
    gw[c] = s2 * invstd[c];
  }
}

template <typename T, typename I>
__global__ void bn_grad_input_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                                     const T* __restrict__ b, const T* __restrict__ mean,
                                     const T* __restrict__ invstd, const T* __restrict__ gw,
                                     const T* __restrict__ gb, T* __restrict__ gx, int64_t C, int64_t S,
                                     int64_t total, int64_t M, bool training, bool relu) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = int64_t(I(i) / I(S) % I(C));
    const T m = mean[c], is = invstd[c];
    T ce, sc, sh;
    channel_pre(mean, invstd, w, b, c, ce, sc, sh);
    const T xv = x[i];
    T g = gy[i];
    if (relu && bn_pre(xv, ce, sc, sh) <= T(0)) g = T(0);
    if (training) g -= gb[c] / T(M) + (xv - m) * is * gw[c] / T(M);
    gx[i] = g * sc;
  }
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

// Index arithmetic in 32 bits when every flat index fits (64-bit division is slow on GPUs).
inline bool fits32(int64_t n) { return n < (int64_t(1) << 31); }

template <typename T>
void batch_norm_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a, cudaStream_t stream) {
  const T *x = a.x, *w = a.w, *b = a.b;
  T *y = a.y, *rmean = a.running_mean, *rvar = a.running_var, *mean = a.mean, *invstd = a.invstd;
  const int64_t N = s.N, C = s.C, S = s.S;
  const bool training = s.training, relu = s.relu;
  const double momentum = s.momentum, eps = s.eps;
  const int64_t total = N * C * S;
  const bool i32 = fits32(total);
  if (training && S == 1)
    launch(bn_stats_rows_kernel<T>, dim3(unsigned((C + 31) / 32)), dim3(32, kRowsY), 0, stream, x, mean, invstd,
           rmean, rvar, N, C, momentum, eps);
  else if (training)
    launch(i32 ? bn_stats_kernel<T, uint32_t> : bn_stats_kernel<T, uint64_t>, dim3(unsigned(C)), dim3(kBlock), 0,
           stream, x, mean, invstd, rmean, rvar, N, C, S, momentum, eps);
  else
    launch(bn_eval_stats_kernel<T>, dim3(grid_size(C, kBlock)), dim3(kBlock), 0, stream, (const T*)rmean,
           (const T*)rvar, mean, invstd, C, eps);
  launch(i32 ? bn_normalize_kernel<T, uint32_t> : bn_normalize_kernel<T, uint64_t>, dim3(grid_size(total, kBlock)),
         dim3(kBlock), 0, stream, x, y, w, b, (const T*)mean, (const T*)invstd, C, S, total, relu);
}

template <typename T>
void batch_norm_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a, cudaStream_t stream) {
  const T *gy = a.gy, *x = a.x, *w = a.w, *b = a.b, *mean = a.mean, *invstd = a.invstd;
  T *gx = a.gx, *gw = a.gw, *gb = a.gb;
  const int64_t N = s.N, C = s.C, S = s.S;
  const bool training = s.training, relu = s.relu;
  const int64_t total = N * C * S;
  const bool i32 = fits32(total);
  if (S == 1)
    launch(bn_grad_sums_rows_kernel<T>, dim3(unsigned((C + 31) / 32)), dim3(32, kRowsY), 0, stream, gy, x, w, b, mean,
           invstd, gw, gb, N, C, relu);
  else
    launch(i32 ? bn_grad_sums_kernel<T, uint32_t> : bn_grad_sums_kernel<T, uint64_t>, dim3(unsigned(C)),
           dim3(kBlock), 0, stream, gy, x, w, b, mean, invstd, gw, gb, N, C, S, relu);
  launch(i32 ? bn_grad_input_kernel<T, uint32_t> : bn_grad_input_kernel<T, uint64_t>, dim3(grid_size(total, kBlock)),
         dim3(kBlock), 0, stream, gy, x, w, b, mean, invstd, (const T*)gw, (const T*)gb, gx, C, S, total, N * S,
         training, relu);
}

#define CNNEXT_INSTANTIATE(T)                                                                        \
  template void batch_norm_forward<T>(const BatchNormShape&, const BatchNormForwardArgs<T>&, cudaStream_t);   \
  template void batch_norm_backward<T>(const BatchNormShape&, const BatchNormBackwardArgs<T>&, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(BatchNormForward, batch_norm_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(BatchNormBackward, batch_norm_backward)

}  // namespace cnnext::CNNEXT_DEVICE_NS
