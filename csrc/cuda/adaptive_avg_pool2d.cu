// adaptive_avg_pool2d on the GPU.  x: (planes, H, W), y: (planes, OH, OW), contiguous, planes = N*C.
// Output i of a length-n axis averages the input [floor(i*n/on), ceil((i+1)*n/on)); conversely
// input j lies in the windows of the outputs [floor(j*on/n), ceil((j+1)*on/n)).
//
//   adaptive_avg_pool2d_forward_kernel   one thread per output y[p, oh, ow] (grid-stride loop,
//                                        flat index split into (p = n*C + c, oh, ow)): window sum / area
//   adaptive_avg_pool2d_backward_kernel  one thread per input gx[p, h, w]: a gather of gy / area
//                                        over the windows that hold it; no atomics, deterministic
//   global_avg_pool2d_forward_kernel     (1, 1) output: one warp per plane (grid-stride over planes);
//                                        lane l sums x[p, l], x[p, l+32], ..., then a shuffle
//                                        reduction; lane 0 writes sum / HW
// The (1, 1) backward is the general backward kernel (each input gets gy[p] / HW).
// Flat indices and plane offsets are 64-bit (planes*H*W may exceed 2^31); within a plane, 32-bit.
// T: float, double, __half, __nv_bfloat16 (half.h): sums in Acc<T> (float for the half types), each output
// rounded once.
#include "compat.h"
#include "half.h"
#include "adaptive_avg_pool2d.h"

namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;

// Window [floor(i*n/on), ceil((i+1)*n/on)) of output i; the products stay 32-bit when n*on < 2^31
// (checked by the ops layer).
__device__ __forceinline__ int window_start(int i, int n, int on) { return i * n / on; }
__device__ __forceinline__ int window_end(int i, int n, int on) { return ((i + 1) * n + on - 1) / on; }

template <typename T>
__global__ void __launch_bounds__(kBlock)
adaptive_avg_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t total, int H, int W, int OH,
                                   int OW) {
  const int plane_out = OH * OW;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = idx / plane_out;
    const int r = int(idx - p * plane_out), oh = r / OW, ow = r % OW;
    const int h0 = window_start(oh, H, OH), h1 = window_end(oh, H, OH);
    const int w0 = window_start(ow, W, OW), w1 = window_end(ow, W, OW);
    const T* xp = x + p * H * W;
    Acc<T> acc = 0;
    for (int h = h0; h < h1; ++h)
      for (int w = w0; w < w1; ++w) acc += to_acc(xp[h * W + w]);
    y[idx] = from_acc<T>(acc / Acc<T>((h1 - h0) * (w1 - w0)));
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
adaptive_avg_pool2d_backward_kernel(const T* __restrict__ gy, T* __restrict__ gx, int64_t total, int H, int W,
                                    int OH, int OW) {
  const int plane_in = H * W;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = idx / plane_in;
    const int r = int(idx - p * plane_in), h = r / W, w = r % W;
    // the outputs whose windows hold (h, w): the same formula with the axes' roles swapped
    const int oh0 = window_start(h, OH, H), oh1 = window_end(h, OH, H);
    const int ow0 = window_start(w, OW, W), ow1 = window_end(w, OW, W);
    const T* gyp = gy + p * OH * OW;
    Acc<T> acc = 0;
    for (int oh = oh0; oh < oh1; ++oh) {
      const int rows = window_end(oh, H, OH) - window_start(oh, H, OH);
      for (int ow = ow0; ow < ow1; ++ow) {
        const int cols = window_end(ow, W, OW) - window_start(ow, W, OW);
        acc += to_acc(gyp[oh * OW + ow]) / Acc<T>(rows * cols);
      }
    }
    gx[idx] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
global_avg_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int64_t HW) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // the loop bound is the same for the 32 lanes of a warp, so every shuffle has all of them
  for (int64_t p = blockIdx.x * int64_t(kWarps) + warp; p < planes; p += int64_t(gridDim.x) * kWarps) {
    const T* xp = x + p * HW;
    Acc<T> acc = 0;
    for (int64_t k = lane; k < HW; k += 32) acc += to_acc(xp[k]);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(EMU_FULL_MASK, acc, o);
    if (lane == 0) y[p] = from_acc<T>(acc / Acc<T>(HW));
  }
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

template <typename T>  // T: float, double, float16, bfloat16 (the kernels run on DeviceT<T>, summing in Acc)
void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dShape& s, const T* x_, T* y_, cudaStream_t stream) {
  using D = DeviceT<T>;
  const D* x = device_ptr(x_);
  D* y = device_ptr(y_);
  if (s.OH == 1 && s.OW == 1) {
    launch(global_avg_pool2d_forward_kernel<D>, dim3(grid_size(s.planes, kWarps)), dim3(kBlock), 0, stream, x, y,
           s.planes, s.H * s.W);
    return;
  }
  const int64_t total = s.planes * s.OH * s.OW;
  launch(adaptive_avg_pool2d_forward_kernel<D>, dim3(grid_size(total, kBlock)), dim3(kBlock), 0, stream, x, y,
         total, int(s.H), int(s.W), int(s.OH), int(s.OW));
}

template <typename T>
void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dShape& s, const T* gy, T* gx, cudaStream_t stream) {
  const int64_t total = s.planes * s.H * s.W;
  launch(adaptive_avg_pool2d_backward_kernel<DeviceT<T>>, dim3(grid_size(total, kBlock)), dim3(kBlock), 0, stream,
         device_ptr(gy), device_ptr(gx), total, int(s.H), int(s.W), int(s.OH), int(s.OW));
}

#define CNNEXT_INSTANTIATE(T)                                                                                 \
  template void adaptive_avg_pool2d_forward<T>(const AdaptiveAvgPool2dShape&, const T*, T*, cudaStream_t);   \
  template void adaptive_avg_pool2d_backward<T>(const AdaptiveAvgPool2dShape&, const T*, T*, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
CNNEXT_INSTANTIATE(float16)
CNNEXT_INSTANTIATE(bfloat16)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(AdaptiveAvgPool2dForward, adaptive_avg_pool2d_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(AdaptiveAvgPool2dBackward, adaptive_avg_pool2d_backward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(AdaptiveAvgPool2dForward, adaptive_avg_pool2d_forward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(AdaptiveAvgPool2dBackward, adaptive_avg_pool2d_backward)

}  // namespace cnnext::CNNEXT_DEVICE_NS
