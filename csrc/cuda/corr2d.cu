// corr2d on the GPU: valid 2-D cross-correlation of a batch of planes with one
// kernel,   y[b, i, j] = sum_{u < kh, v < kw} x[b, i+u, j+v] * k[u, v]
// x: (B, H, W), k: (kh, kw), y: (B, OH, OW), OH = H-kh+1, OW = W-kw+1, contiguous.
//
// Three kernels, each a plain read-through of its formula:
//   corr2d_forward_kernel      one thread per output element y[b, i, j] (grid-stride)
//   corr2d_grad_input_kernel   one thread per input element gx[b, h, w]: a gather
//                              over the (u, v) whose window covers it; no atomics
//   corr2d_grad_kernel_kernel  one block per kernel tap k[u, v]: its threads sum
//                              gy * x over all (b, i, j) in a fixed order, then
//                              the block reduces with warp shuffles and shared
//                              memory, so the result is deterministic
// Offsets are 64-bit: B*H*W may exceed 2^31.
#include "compat.h"
#include "reduce.h"
#include "corr2d.h"

namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void corr2d_forward_kernel(const T* __restrict__ x, const T* __restrict__ k, T* __restrict__ y,
                                      int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw) {
  const int64_t OH = H - kh + 1, OW = W - kw + 1, total = B * OH * OW;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t j = idx % OW, i = idx / OW % OH;
    const int64_t b = idx / (OW * OH);
    const T* xp = x + (b * H + i) * W + j;
    T acc = 0;
    for (int64_t u = 0; u < kh; ++u)
      for (int64_t v = 0; v < kw; ++v) acc += xp[u * W + v] * k[u * kw + v];
    y[idx] = acc;
  }
}

template <typename T>
__global__ void corr2d_grad_input_kernel(const T* __restrict__ gy, const T* __restrict__ k, T* __restrict__ gx,
                                         int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw) {
  const int64_t OH = H - kh + 1, OW = W - kw + 1, total = B * H * W;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t w = idx % W, h = idx / W % H;
    const int64_t b = idx / (W * H);
    T acc = 0;
    // gx[b, h, w] = sum over taps (u, v) with 0 <= h-u < OH and 0 <= w-v < OW
    for (int64_t u = 0; u < kh; ++u) {
      const int64_t i = h - u;
      if (i < 0 || i >= OH) continue;
      for (int64_t v = 0; v < kw; ++v) {
        const int64_t j = w - v;
        if (j >= 0 && j < OW) acc += gy[(b * OH + i) * OW + j] * k[u * kw + v];
      }
    }
    gx[idx] = acc;
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
corr2d_grad_kernel_kernel(const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gk, int64_t B,
                          int64_t H, int64_t W, int64_t kh, int64_t kw) {
  const int64_t OH = H - kh + 1, OW = W - kw + 1, total = B * OH * OW;
  const int64_t u = blockIdx.x / kw, v = blockIdx.x % kw;  // this block's tap
  T acc = 0;
  for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int64_t j = idx % OW, i = idx / OW % OH;
    const int64_t b = idx / (OW * OH);
    acc += gy[idx] * x[(b * H + i + u) * W + j + v];
  }
  acc = block_sum<kBlock>(acc);
  if (threadIdx.x == 0) gk[blockIdx.x] = acc;
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

template <typename T>
void corr2d_forward(const Corr2dShape& shape, const T* x, const T* k, T* y, cudaStream_t stream) {
  const int64_t B = shape.B, H = shape.H, W = shape.W, kh = shape.kh, kw = shape.kw;
  const int64_t n = B * (H - kh + 1) * (W - kw + 1);
  launch(corr2d_forward_kernel<T>, dim3(grid_size(n, kBlock)), dim3(kBlock), 0, stream, x, k, y, B, H, W, kh, kw);
}

template <typename T>
void corr2d_backward_input(const Corr2dShape& shape, const T* gy, const T* k, T* gx, cudaStream_t stream) {
  const int64_t B = shape.B, H = shape.H, W = shape.W, kh = shape.kh, kw = shape.kw;
  launch(corr2d_grad_input_kernel<T>, dim3(grid_size(B * H * W, kBlock)), dim3(kBlock), 0, stream, gy, k, gx, B, H,
         W, kh, kw);
}

template <typename T>
void corr2d_backward_kernel(const Corr2dShape& shape, const T* gy, const T* x, T* gk, cudaStream_t stream) {
  const int64_t B = shape.B, H = shape.H, W = shape.W, kh = shape.kh, kw = shape.kw;
  launch(corr2d_grad_kernel_kernel<T>, dim3(unsigned(kh * kw)), dim3(kBlock), 0, stream, gy, x, gk, B, H, W, kh, kw);
}

#define CNNEXT_INSTANTIATE(T)                                                                  \
  template void corr2d_forward<T>(const Corr2dShape&, const T*, const T*, T*, cudaStream_t);        \
  template void corr2d_backward_input<T>(const Corr2dShape&, const T*, const T*, T*, cudaStream_t); \
  template void corr2d_backward_kernel<T>(const Corr2dShape&, const T*, const T*, T*, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dForward, corr2d_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dBackwardInput, corr2d_backward_input)
CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dBackwardKernel, corr2d_backward_kernel)

}  // namespace cnnext::CNNEXT_DEVICE_NS
