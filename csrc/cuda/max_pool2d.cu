// max_pool2d on the GPU, Caffe style.  x: (NC, H, W) planes, y and ind: (NC, OH, OW), contiguous.
//
//   y[p, oh, ow]   = max of x[p, h, w] over the window h = oh*stride_h - pad_h + i*dil_h (i < kh),
//                    w = ow*stride_w - pad_w + j*dil_w (j < kw), taps outside the input skipped
//   ind[p, oh, ow] = h*W + w of the max: the window is scanned row by row and a value replaces the
//                    running max when (v > max || isnan(v)), exactly as PyTorch does, so the first
//                    max wins ties and the last NaN wins over everything
//
// Two kernels, each a grid-stride loop whose flat index is split into (plane, row, column):
//   max_pool2d_forward_kernel   one thread per output element: scans its window
//   max_pool2d_backward_kernel  one thread per input element gx[p, h, w]: a gather over the
//                               outputs whose window span covers (h, w), summing gy where
//                               ind == h*W + w, in (oh, ow) order; no atomics, deterministic
// Index arithmetic runs in int32 when every flat index (and index + grid stride) fits, else in
// int64 (I); plane offsets are always 64-bit.  T: float, double, __half, __nv_bfloat16 (compared in
// float: exact; the gradient sums in float, rounded once).
#include "compat.h"
#include "half.h"
#include "max_pool2d.h"


namespace {

using ::cnnext::MaxPool2dShape;
constexpr int kBlock = 256;

template <typename T>
__device__ __forceinline__ bool is_nan(T v) { return v != v; }  // (the build has no fast-math)

template <typename T, typename I>
__global__ void __launch_bounds__(kBlock)
max_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ ind,
                          const MaxPool2dShape s, const I total) {
  const I H = I(s.H), W = I(s.W), OH = I(s.OH), OW = I(s.OW);
  const I kh = I(s.kh), kw = I(s.kw), sh = I(s.stride_h), sw = I(s.stride_w);
  const I ph = I(s.pad_h), pw = I(s.pad_w), dh = I(s.dil_h), dw = I(s.dil_w);
  for (I idx = blockIdx.x * I(blockDim.x) + threadIdx.x; idx < total; idx += I(blockDim.x) * gridDim.x) {
    const I ow = idx % OW, oh = idx / OW % OH;
    const I p = idx / (OW * OH);
    // the window's rows [h0, h1) and columns [w0, w1), stepping by the dilation, clipped to the input
    I h0 = oh * sh - ph, w0 = ow * sw - pw;
    const I h1 = min(h0 + (kh - 1) * dh + 1, H), w1 = min(w0 + (kw - 1) * dw + 1, W);
    while (h0 < 0) h0 += dh;
    while (w0 < 0) w0 += dw;
    const T* xp = x + int64_t(p) * s.H * s.W;
    Acc<T> best = -INFINITY;
    I best_i = h0 * W + w0;
    for (I h = h0; h < h1; h += dh)
      for (I w = w0; w < w1; w += dw) {
        const Acc<T> v = to_acc(__ldg(xp + h * W + w));
        if (v > best || is_nan(v)) {
          best = v;
          best_i = h * W + w;
        }
      }
    y[idx] = from_acc<T>(best);  // a value of x: exact
    if (ind) ind[idx] = int64_t(best_i);
  }
}

template <typename T, typename I>
__global__ void __launch_bounds__(kBlock)
max_pool2d_backward_kernel(const T* __restrict__ gy, const int64_t* __restrict__ ind, T* __restrict__ gx,
                           const MaxPool2dShape s, const I total) {
  const I H = I(s.H), W = I(s.W), OH = I(s.OH), OW = I(s.OW);
  const I sh = I(s.stride_h), sw = I(s.stride_w), ph = I(s.pad_h), pw = I(s.pad_w);
  const I span_h = (I(s.kh) - 1) * I(s.dil_h) + 1, span_w = (I(s.kw) - 1) * I(s.dil_w) + 1;
  for (I idx = blockIdx.x * I(blockDim.x) + threadIdx.x; idx < total; idx += I(blockDim.x) * gridDim.x) {
    const I w = idx % W, h = idx / W % H;
    const I p = idx / (W * H);
    // outputs (oh, ow) whose window span covers (h, w): oh*sh - ph <= h <= oh*sh - ph + span_h - 1
    const I oh0 = h + ph < span_h ? 0 : (h + ph - span_h) / sh + 1, oh1 = min((h + ph) / sh + 1, OH);
    const I ow0 = w + pw < span_w ? 0 : (w + pw - span_w) / sw + 1, ow1 = min((w + pw) / sw + 1, OW);
    const int64_t plane = int64_t(p) * s.OH * s.OW, me = int64_t(h) * W + w;
    Acc<T> acc = 0;
    for (I oh = oh0; oh < oh1; ++oh)
      for (I ow = ow0; ow < ow1; ++ow) {
        const int64_t o = plane + oh * OW + ow;
        if (__ldg(ind + o) == me) acc += to_acc(__ldg(gy + o));
      }
    gx[idx] = from_acc<T>(acc);
  }
}

// int32 index arithmetic is safe when n and n + the largest grid stride stay below 2^31.
inline bool fits_int32(int64_t n) { return n + int64_t(kGridCapMax) * kBlock < (int64_t(1) << 31); }

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

template <typename T>  // T: float, double, float16, bfloat16 (the kernels run on DeviceT<T>)
void max_pool2d_forward(const MaxPool2dShape& s, const T* x_, T* y_, int64_t* ind, cudaStream_t stream) {
  using D = DeviceT<T>;
  const D* x = device_ptr(x_);
  D* y = device_ptr(y_);
  const int64_t n = s.NC * s.OH * s.OW;
  const dim3 grid(grid_size(n, kBlock)), block(kBlock);
  if (fits_int32(n) && fits_int32(s.NC * s.H * s.W))
    launch(max_pool2d_forward_kernel<D, int32_t>, grid, block, 0, stream, x, y, ind, s, int32_t(n));
  else
    launch(max_pool2d_forward_kernel<D, int64_t>, grid, block, 0, stream, x, y, ind, s, n);
}

// Returns true: the gather never writes through an index, so out-of-range ones are simply never matched.
template <typename T>
bool max_pool2d_backward(const MaxPool2dShape& s, const T* gy_, const int64_t* ind, T* gx_, cudaStream_t stream) {
  using D = DeviceT<T>;
  const D* gy = device_ptr(gy_);
  D* gx = device_ptr(gx_);
  const int64_t n = s.NC * s.H * s.W;
  const dim3 grid(grid_size(n, kBlock)), block(kBlock);
  if (fits_int32(n) && fits_int32(s.NC * s.OH * s.OW))
    launch(max_pool2d_backward_kernel<D, int32_t>, grid, block, 0, stream, gy, ind, gx, s, int32_t(n));
  else
    launch(max_pool2d_backward_kernel<D, int64_t>, grid, block, 0, stream, gy, ind, gx, s, n);
  return true;
}

#define CNNEXT_INSTANTIATE(T)                                                                              \
  template void max_pool2d_forward<T>(const MaxPool2dShape&, const T*, T*, int64_t*, cudaStream_t);        \
  template bool max_pool2d_backward<T>(const MaxPool2dShape&, const T*, const int64_t*, T*, cudaStream_t);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
CNNEXT_INSTANTIATE(float16)
CNNEXT_INSTANTIATE(bfloat16)
#undef CNNEXT_INSTANTIATE

CNNEXT_REGISTER_DEVICE_KERNEL(MaxPool2dForward, max_pool2d_forward)
CNNEXT_REGISTER_DEVICE_KERNEL(MaxPool2dBackward, max_pool2d_backward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(MaxPool2dForward, max_pool2d_forward)
CNNEXT_REGISTER_DEVICE_HALF_KERNEL(MaxPool2dBackward, max_pool2d_backward)

}  // namespace cnnext::CNNEXT_DEVICE_NS
