// corr2d on the GPU: valid 2-D cross-correlation of a batch of planes with one
// kernel,   y[b, i, j] = sum_{u < kh, v < kw} x[b, i+u, j+v] * k[u, v]
// x: (B, H, W), k: (kh, kw), y: (B, OH, OW), OH = H-kh+1, OW = W-kw+1, contiguous.
//
// Three kernels, each a plain read-through of its formula:
//   corr2d_forward_kernel      one thread per output element y[b, i, j] (grid-stride)
//   corr2d_grad_input_kernel   one thread per input element gx[b, h, w]: a gather
//                              over the (u, v) whose window covers it; no atomics
//   gk, two-stage (reduce.h): the B*OH*OW products of each tap are cut into a
//   fixed number of chunks (split_plan: from the shape only, so the result is
//   bit-identical run to run and on every GPU); no atomics:
//   corr2d_grad_kernel_partial_kernel  block (split, tap k[u, v]) [grid y strides
//                              over taps]: its threads sum gy * x over the chunk's
//                              (b, i, j) (counters, no division per element), then
//                              the block reduces with warp shuffles and shared
//                              memory in a fixed order into the workspace
//   sum_splits_kernel          one thread per tap: the partials in split order
// Offsets are 64-bit: B*H*W may exceed 2^31.
#include <stdexcept>

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

// Stage 1 of gk: block (split, tap) [grid y strides over the kh*kw taps] sums gy * x over the split's
// chunk of the B*OH*OW output positions: thread t starts at chunk position t and steps by blockDim
// with mixed-radix counters (j, i) instead of divisions, keeping gy's offset (the position) and x's
// offset (b*H + i + u)*W + j + v; block_sum, thread 0 writes ws[tap*splits + split].
template <typename T>
__global__ void __launch_bounds__(kBlock)
corr2d_grad_kernel_partial_kernel(const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ ws, int64_t B,
                                  int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t chunk) {
  const int64_t OH = H - kh + 1, OW = W - kw + 1, total = B * OH * OW;
  const int64_t splits = gridDim.x, sp = blockIdx.x, lo = sp * chunk, hi = min(total, lo + chunk);
  // this thread's first position and the step, in (b, i, j) digits (once per thread)
  const int64_t p0 = lo + threadIdx.x, b0 = p0 / (OH * OW), i0 = p0 / OW - b0 * OH, j0 = p0 % OW;
  const int64_t step = blockDim.x, db = step / (OH * OW), di = step / OW - db * OH, dj = step % OW;
  const int64_t dx = db * H * W + di * W + dj;  // x offset per step, before the carries
  for (int64_t tap = blockIdx.y; tap < kh * kw; tap += gridDim.y) {
    const int64_t u = tap / kw, v = tap - u * kw;
    T acc = 0;
    int64_t i = i0, j = j0, xo = (b0 * H + i0 + u) * W + j0 + v;
    for (int64_t p = p0; p < hi; p += step) {
      acc += gy[p] * x[xo];
      j += dj, i += di, xo += dx;
      if (j >= OW) j -= OW, ++i, xo += W - OW;       // next output row: x's next row
      if (i >= OH) i -= OH, xo += (H - OH) * W;      // next plane: skip x's last kh-1 rows
    }
    acc = block_sum<kBlock>(acc);
    if (threadIdx.x == 0) ws[tap * splits + sp] = acc;
  }
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

namespace {
// gk's split: kh*kw sums of B*OH*OW products each, chunks of >= 2048 (two-stage, reduce.h).
SplitPlan grad_kernel_plan(const Corr2dShape& s) {
  return split_plan(s.kh * s.kw, s.B * (s.H - s.kh + 1) * (s.W - s.kw + 1), 2048, 1);
}
}  // namespace

// The workspace of corr2d_backward_kernel: kh*kw * splits partial sums (csrc/ops allocates it).
template <typename T>
int64_t corr2d_kernel_workspace(const Corr2dShape& shape, cudaStream_t) {
  return shape.kh * shape.kw * grad_kernel_plan(shape).splits;
}

template <typename T>
void corr2d_backward_kernel(const Corr2dShape& shape, const T* gy, const T* x, T* gk, T* workspace,
                            cudaStream_t stream) {
  const int64_t B = shape.B, H = shape.H, W = shape.W, kh = shape.kh, kw = shape.kw;
  if (workspace == nullptr)
    throw std::runtime_error("corr2d: the grad-kernel launcher needs the workspace of corr2d_kernel_workspace");
  const SplitPlan p = grad_kernel_plan(shape);
  launch(corr2d_grad_kernel_partial_kernel<T>, dim3(unsigned(p.splits), grid_size(kh * kw, 1)), dim3(kBlock), 0,
         stream, gy, x, workspace, B, H, W, kh, kw, p.chunk);
  launch(sum_splits_kernel<T>, dim3(grid_size(kh * kw, kBlock)), dim3(kBlock), 0, stream, (const T*)workspace, gk,
         kh * kw, p.splits, p.splits, int64_t(1));
}

#define CNNEXT_INSTANTIATE(T)                                                                  \
  template void corr2d_forward<T>(const Corr2dShape&, const T*, const T*, T*, cudaStream_t);        \
  template void corr2d_backward_input<T>(const Corr2dShape&, const T*, const T*, T*, cudaStream_t); \
  template void corr2d_backward_kernel<T>(const Corr2dShape&, const T*, const T*, T*, T*, cudaStream_t); \
  template int64_t corr2d_kernel_workspace<T>(const Corr2dShape&, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dForward, corr2d_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dBackwardInput, corr2d_backward_input)
CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dBackwardKernel, corr2d_backward_kernel)
CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dKernelWorkspace, corr2d_kernel_workspace)

}  // namespace cnnext::CNNEXT_DEVICE_NS
