// pool2d_half.cpp -- max, average and adaptive average pooling on bfloat16 and float16 planes.
//
// Each thread takes whole planes (at::parallel_for over the planes -- whole images for channels_last --,
// in blocks of about 64K float values of the larger side, input or output), and per block: widens the block's input planes into a float32
// scratch of its own (half_copy.h: to_float, F16C for float16), runs the op's float32 kernel on the block
// (its own planner, with NC = the block's planes; its at::parallel_for runs inline inside this one), and
// rounds the block's output planes once into the output. The scratch stays in the cache and is reused
// block after block, where widening the whole tensor at the op (the first half-precision version) made two extra passes
// over memory and touched fresh pages for a float32 copy of every input and output. The values are the
// float32 kernels' on the widened inputs: the max exactly, the sums in float32, one rounding per output.
#include "pool2d_half.h"

// GCC 12 warns that intrinsics' internal _mm512_undefined_* operands "may be used uninitialized" wherever
// half_copy.h's conversions are inlined (a false positive; as in conv2d_bf16.cpp and batch_norm_half.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "adaptive_avg_pool2d.h"
#include "avg_pool2d.h"
#include "half_copy.h"
#include "max_pool2d.h"

namespace cnnext::cpu {
namespace {

// run(p0, n, in_f, out_f): the float32 op on planes [p0, p0 + n), in_f the n input planes widened
// (in_len values each), out_f for its n output planes (out_len each), which are then rounded into out.
template <typename H, typename Run>
void by_plane_blocks(int64_t planes, int64_t in_len, int64_t out_len, const H* in, H* out, const Run& run) {
  if (planes == 0 || out_len == 0) return;
  const int64_t block = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, std::max(in_len, out_len)));
  at::parallel_for(0, planes, block, [&](int64_t p0, int64_t p1) {
    const int64_t n = std::min(block, p1 - p0);
    std::unique_ptr<float[]> fin(new float[n * in_len]), fout(new float[n * out_len]);
    for (int64_t b0 = p0; b0 < p1; b0 += block) {
      const int64_t m = std::min(block, p1 - b0);
      widen_into(fin.get(), in + b0 * in_len, m * in_len);
      run(b0, m, fin.get(), fout.get());
      round_into(out + b0 * out_len, fout.get(), m * out_len);
    }
  });
}

}  // namespace

template <typename H>
void max_pool2d_forward_half(const MaxPool2dShape& s, const H* x, H* y, int64_t* ind) {
  const int64_t in_len = s.H * s.W, out_len = s.OH * s.OW;
  by_plane_blocks(s.NC, in_len, out_len, x, y, [&](int64_t p0, int64_t n, const float* xf, float* yf) {
    MaxPool2dShape b = s;
    b.NC = n;
    max_pool2d_forward<float>(b, xf, yf, ind ? ind + p0 * out_len : nullptr);
  });
}

template <typename H>
void max_pool2d_forward_nhwc_half(const MaxPool2dShape& s, int64_t C, const H* x, H* y, int64_t* ind) {
  const int64_t in_len = s.H * s.W * C, out_len = s.OH * s.OW * C;  // one image
  by_plane_blocks(s.NC / C, in_len, out_len, x, y, [&](int64_t n0, int64_t n, const float* xf, float* yf) {
    MaxPool2dShape b = s;
    b.NC = n * C;
    max_pool2d_forward_nhwc<float>(b, C, xf, yf, ind ? ind + n0 * out_len : nullptr);
  });
}

template <typename H>
bool max_pool2d_backward_half(const MaxPool2dShape& s, const H* gy, const int64_t* ind, H* gx) {
  const int64_t in_len = s.H * s.W, out_len = s.OH * s.OW;
  std::atomic<bool> ok{true};  // any block with an index outside its plane makes it false
  by_plane_blocks(s.NC, out_len, in_len, gy, gx, [&](int64_t p0, int64_t n, const float* gyf, float* gxf) {
    MaxPool2dShape b = s;
    b.NC = n;
    if (!max_pool2d_backward<float>(b, gyf, ind + p0 * out_len, gxf)) ok = false;
  });
  return ok.load();
}

template <typename H>
void avg_pool2d_forward_half(const AvgPool2dShape& s, const H* x, H* y) {
  by_plane_blocks(s.planes, s.H * s.W, s.OH * s.OW, x, y, [&](int64_t, int64_t n, const float* xf, float* yf) {
    AvgPool2dShape b = s;
    b.planes = n;
    avg_pool2d_forward<float>(b, xf, yf);
  });
}

template <typename H>
void avg_pool2d_backward_half(const AvgPool2dShape& s, const H* gy, H* gx) {
  by_plane_blocks(s.planes, s.OH * s.OW, s.H * s.W, gy, gx, [&](int64_t, int64_t n, const float* gyf, float* gxf) {
    AvgPool2dShape b = s;
    b.planes = n;
    avg_pool2d_backward<float>(b, gyf, gxf);
  });
}

template <typename H>
void adaptive_avg_pool2d_forward_half(const AdaptiveAvgPool2dShape& s, const H* x, H* y) {
  by_plane_blocks(s.planes, s.H * s.W, s.OH * s.OW, x, y, [&](int64_t, int64_t n, const float* xf, float* yf) {
    adaptive_avg_pool2d_forward<float>(AdaptiveAvgPool2dShape{n, s.H, s.W, s.OH, s.OW}, xf, yf);
  });
}

template <typename H>
void adaptive_avg_pool2d_backward_half(const AdaptiveAvgPool2dShape& s, const H* gy, H* gx) {
  by_plane_blocks(s.planes, s.OH * s.OW, s.H * s.W, gy, gx, [&](int64_t, int64_t n, const float* gyf, float* gxf) {
    adaptive_avg_pool2d_backward<float>(AdaptiveAvgPool2dShape{n, s.H, s.W, s.OH, s.OW}, gyf, gxf);
  });
}

#define CNNEXT_INSTANTIATE(H)                                                                                   \
  template void max_pool2d_forward_half<H>(const MaxPool2dShape&, const H*, H*, int64_t*);                    \
  template void max_pool2d_forward_nhwc_half<H>(const MaxPool2dShape&, int64_t, const H*, H*, int64_t*);     \
  template bool max_pool2d_backward_half<H>(const MaxPool2dShape&, const H*, const int64_t*, H*);             \
  template void avg_pool2d_forward_half<H>(const AvgPool2dShape&, const H*, H*);                              \
  template void avg_pool2d_backward_half<H>(const AvgPool2dShape&, const H*, H*);                             \
  template void adaptive_avg_pool2d_forward_half<H>(const AdaptiveAvgPool2dShape&, const H*, H*);             \
  template void adaptive_avg_pool2d_backward_half<H>(const AdaptiveAvgPool2dShape&, const H*, H*);
CNNEXT_INSTANTIATE(bfloat16)
CNNEXT_INSTANTIATE(float16)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
