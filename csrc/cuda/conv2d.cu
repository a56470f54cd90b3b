// conv2d on the GPU (first version: direct, one output element per thread).
//   forward       one thread per y[n, k, p, q] (grid-stride)
//   grad input    one thread per gx[n, c, h, w]: gather over (k, r, s); no atomics
//   grad weight   one block per gw[k, c, r, s]: fixed-order sum over (n, p, q), block reduction
//   grad bias     one block per gb[k]
#include "compat.h"
#include "conv2d.h"

namespace {

constexpr int kBlock = 256;

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
  __syncthreads();
  return v;
}

template <typename T>
__global__ void fwd_direct(cnnext::Conv2dShape s, const T* __restrict__ x, const T* __restrict__ w,
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
__global__ void bwd_input_direct(cnnext::Conv2dShape s, const T* __restrict__ gy, const T* __restrict__ w,
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
bwd_weight_direct(cnnext::Conv2dShape s, const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ gw) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, total = s.N * s.P * s.Q;
  const int64_t t = blockIdx.x % s.S, r = blockIdx.x / s.S % s.R, c = blockIdx.x / (s.S * s.R) % Cg,
                k = blockIdx.x / (s.S * s.R * Cg);
  const int64_t ci = k / Kg * Cg + c;
  T acc = 0;
  for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int64_t q = idx % s.Q, p = idx / s.Q % s.P, n = idx / (s.Q * s.P);
    const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h, ww = q * s.stride_w - s.pad_w + t * s.dil_w;
    if (h >= 0 && h < s.H && ww >= 0 && ww < s.W)
      acc += gy[((n * s.K + k) * s.P + p) * s.Q + q] * x[((n * s.C + ci) * s.H + h) * s.W + ww];
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) gw[blockIdx.x] = acc;
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
bwd_bias(cnnext::Conv2dShape s, const T* __restrict__ gy, T* __restrict__ gb) {
  const int64_t PQ = s.P * s.Q, total = s.N * PQ, k = blockIdx.x;
  T acc = 0;
  for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) acc += gy[((idx / PQ) * s.K + k) * PQ + idx % PQ];
  acc = block_sum(acc);
  if (threadIdx.x == 0) gb[k] = acc;
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, cudaStream_t stream) {
  launch(fwd_direct<T>, dim3(grid_size(s.N * s.K * s.P * s.Q, kBlock)), dim3(kBlock), 0, stream, s, x, w, b, y);
}

template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx, cudaStream_t stream) {
  launch(bwd_input_direct<T>, dim3(grid_size(s.N * s.C * s.H * s.W, kBlock)), dim3(kBlock), 0, stream, s, gy, w,
         gx);
}

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb, cudaStream_t stream) {
  launch(bwd_weight_direct<T>, dim3(unsigned(s.K * (s.C / s.groups) * s.R * s.S)), dim3(kBlock), 0, stream, s, x, gy,
         gw);
  if (gb) launch(bwd_bias<T>, dim3(unsigned(s.K)), dim3(kBlock), 0, stream, s, gy, gb);
}

#define CNNEXT_INSTANTIATE(T)                                                                               \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*, cudaStream_t);       \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*, cudaStream_t);         \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::CNNEXT_DEVICE_NS
