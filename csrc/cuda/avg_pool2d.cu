// avg_pool2d on the GPU, Caffe style.  x: (planes, H, W), y: (planes, OH, OW), contiguous, planes = N*C.
// The window of output (oh, ow) is, on each axis, hstart = oh*sH - pH, hend = min(hstart + kH, H + pH)
// (the ceil-mode overhang past H + pH never counts), clipped to the input; its divisor is
// divisor_override if nonzero, else (hend - hstart)*(wend - wstart) with count_include_pad
// (padding counts), else the number of in-bounds elements -- torch's rules, in window_of().
//
//   avg_pool2d_forward_kernel   one thread per output y[p, oh, ow] (grid-stride loop; the flat
//                               index splits into (p = n*C + c, oh, ow)): sum of its window / divisor
//   avg_pool2d_backward_kernel  one thread per input gx[p, h, w]: a gather over the output windows
//                               that hold (h, w), oh in [oh0, oh1), ow in [ow0, ow1), of gy / divisor;
//                               no atomics, a fixed order, deterministic
// Flat indices and plane offsets are 64-bit (planes*H*W may exceed 2^31); within a plane, 32-bit.
// T: float, double, __half, __nv_bfloat16 (half.h): sums in Acc<T> (float for the half types), each output
// rounded once.
#include "compat.h"
#include "half.h"
#include "avg_pool2d.h"

namespace {

constexpr int kBlock = 256;

// In-plane geometry is 32-bit (the ops layer checks that a plane has fewer than 2^31 elements).
struct Geometry {
  int H, W, OH, OW, kH, kW, sH, sW, pH, pW;
  bool count_include_pad;
  int divisor_override;  // 0: none
};

// 1 / d, correctly rounded, without the out-of-line slow path of IEEE division (whose call
// makes ptxas spill inside the backward loop).
__device__ __forceinline__ float reciprocal(float d) {
#if defined(__CUDACC__)
  return __frcp_rn(d);
#else
  return 1.0f / d;
#endif
}
__device__ __forceinline__ double reciprocal(double d) {
#if defined(__CUDACC__)
  return __drcp_rn(d);
#else
  return 1.0 / d;
#endif
}

struct Window {
  int h0, h1, w0, w1;  // clipped to the input
  int divisor;
};

// The window of output (oh, ow): avg_pool2d_window (../common/avg_pool2d.h) per axis, and its divisor.
__device__ __forceinline__ Window window_of(int oh, int ow, const Geometry& g) {
  const cnnext::PoolWindow<int> h = cnnext::avg_pool2d_window<int>(oh, g.H, g.kH, g.sH, g.pH);
  const cnnext::PoolWindow<int> w = cnnext::avg_pool2d_window<int>(ow, g.W, g.kW, g.sW, g.pW);
  const int divisor = g.divisor_override ? g.divisor_override
                      : g.count_include_pad ? h.padded * w.padded
                                            : (h.hi - h.lo) * (w.hi - w.lo);
  return {h.lo, h.hi, w.lo, w.hi, divisor};
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
avg_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t total, Geometry g) {
  const int plane_out = g.OH * g.OW;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = idx / plane_out;
    const int r = int(idx - p * plane_out), oh = r / g.OW, ow = r % g.OW;
    const Window win = window_of(oh, ow, g);
    if (win.h0 >= win.h1 || win.w0 >= win.w1) {  // a window wholly in the padding
      y[idx] = from_acc<T>(0);
      continue;
    }
    const T* xp = x + p * g.H * g.W;
    Acc<T> acc = 0;
    for (int h = win.h0; h < win.h1; ++h)
      for (int w = win.w0; w < win.w1; ++w) acc += to_acc(xp[h * g.W + w]);
    y[idx] = from_acc<T>(acc / Acc<T>(win.divisor));
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
avg_pool2d_backward_kernel(const T* __restrict__ gy, T* __restrict__ gx, int64_t total, Geometry g) {
  const int plane_in = g.H * g.W;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = idx / plane_in;
    const int r = int(idx - p * plane_in), h = r / g.W, w = r % g.W;
    // output rows whose window [oh*sH - pH, oh*sH - pH + kH) holds h, likewise columns
    const int hp = h + g.pH, wp = w + g.pW;
    const int oh0 = hp < g.kH ? 0 : (hp - g.kH) / g.sH + 1, oh1 = min(hp / g.sH + 1, g.OH);
    const int ow0 = wp < g.kW ? 0 : (wp - g.kW) / g.sW + 1, ow1 = min(wp / g.sW + 1, g.OW);
    const T* gyp = gy + p * g.OH * g.OW;
    Acc<T> acc = 0;
    for (int oh = oh0; oh < oh1; ++oh)
      for (int ow = ow0; ow < ow1; ++ow)
        acc += to_acc(gyp[oh * g.OW + ow]) * reciprocal(Acc<T>(window_of(oh, ow, g).divisor));
    gx[idx] = from_acc<T>(acc);
  }
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

static Geometry geometry_of(const AvgPool2dShape& s) {
  return {int(s.H),  int(s.W),  int(s.OH), int(s.OW), int(s.kH),          int(s.kW),
          int(s.sH), int(s.sW), int(s.pH), int(s.pW), s.count_include_pad, int(s.divisor_override)};
}

template <typename T>  // T: float, double, float16, bfloat16 (the kernels run on DeviceT<T>, summing in Acc)
void avg_pool2d_forward(const AvgPool2dShape& s, const T* x, T* y, cudaStream_t stream) {
  const int64_t total = s.planes * s.OH * s.OW;
  launch(avg_pool2d_forward_kernel<DeviceT<T>>, dim3(grid_size(total, kBlock)), dim3(kBlock), 0, stream,
         device_ptr(x), device_ptr(y), total, geometry_of(s));
}

template <typename T>
void avg_pool2d_backward(const AvgPool2dShape& s, const T* gy, T* gx, cudaStream_t stream) {
  const int64_t total = s.planes * s.H * s.W;
  launch(avg_pool2d_backward_kernel<DeviceT<T>>, dim3(grid_size(total, kBlock)), dim3(kBlock), 0, stream,
         device_ptr(gy), device_ptr(gx), total, geometry_of(s));
}

#define CNNEXT_INSTANTIATE(T)                                                                     \
  template void avg_pool2d_forward<T>(const AvgPool2dShape&, const T*, T*, cudaStream_t);        \
  template void avg_pool2d_backward<T>(const AvgPool2dShape&, const T*, T*, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
CNNEXT_INSTANTIATE(float16)
CNNEXT_INSTANTIATE(bfloat16)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(AvgPool2dForward, avg_pool2d_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(AvgPool2dBackward, avg_pool2d_backward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(AvgPool2dForward, avg_pool2d_forward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(AvgPool2dBackward, avg_pool2d_backward)

}  // namespace cnnext::CNNEXT_DEVICE_NS
