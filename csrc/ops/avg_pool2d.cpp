// avg_pool2d ops: schema, argument checks, output allocation, dispatch.
//
//   cnnext::avg_pool2d_forward(Tensor input, int[] kernel_size, int[] stride, int[] padding, bool ceil_mode,
//                              bool count_include_pad, int? divisor_override) -> Tensor
//   cnnext::avg_pool2d_backward(Tensor grad_output, SymInt[] input_shape, int[] kernel_size, int[] stride,
//                               int[] padding, bool ceil_mode, bool count_include_pad,
//                               int? divisor_override) -> Tensor
// input (N, C, H, W) or (C, H, W); kernel_size, stride, padding: one or two ints (stride: empty ->
// kernel_size), torch.nn.functional.avg_pool2d's semantics.  The kernels see (N*C, H, W) contiguous.
#include <torch/library.h>

#include <climits>

#include "../common/avg_pool2d.h"
#include "../common/pool2d.h"
#include "dispatch.h"

namespace cnnext {
namespace {

constexpr const char* kOp = "avg_pool2d";

struct Pool2d {
  int64_t kH, kW, sH, sW, pH, pW;
  bool ceil_mode, count_include_pad;
  int64_t divisor;  // 0: no override
  int64_t H, W, OH, OW;
};

// Checks every argument against the input's shape; returns the pooling geometry.
Pool2d check_pool(at::IntArrayRef in_shape, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                  at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                  std::optional<int64_t> divisor_override, const char* what) {
  const int64_t d = int64_t(in_shape.size());
  TORCH_CHECK(d == 3 || d == 4, kOp, ": ", what, " must be 3-D (C, H, W) or 4-D (N, C, H, W), got ", d, "-D");
  TORCH_CHECK(in_shape[d - 3] > 0 && in_shape[d - 2] > 0 && in_shape[d - 1] > 0, kOp, ": ", what,
              " must have nonzero C, H and W (only the batch may be empty), got shape ", in_shape);
  const auto k = pair_arg(kOp, "kernel_size", kernel_size);
  const auto s = stride.empty() ? k : pair_arg(kOp, "stride", stride);
  const auto p = pair_arg(kOp, "padding", padding);
  TORCH_CHECK(k[0] > 0 && k[1] > 0, kOp, ": kernel_size must be positive, got ", kernel_size);
  TORCH_CHECK(s[0] > 0 && s[1] > 0, kOp, ": stride must be positive, got ", stride);
  TORCH_CHECK(p[0] >= 0 && p[1] >= 0, kOp, ": padding must be non-negative, got ", padding);
  TORCH_CHECK(p[0] <= k[0] / 2 && p[1] <= k[1] / 2, kOp, ": padding ", padding,
              " should be at most half of kernel_size ", kernel_size, " (pad should be at most half of effective kernel size)");
  TORCH_CHECK(!divisor_override || *divisor_override != 0, kOp, ": divisor_override must not be zero");
  const int64_t H = in_shape[d - 2], W = in_shape[d - 1];
  const __int128 OH_ = pool2d_out_size(H, k[0], s[0], p[0], 1, ceil_mode),
                 OW_ = pool2d_out_size(W, k[1], s[1], p[1], 1, ceil_mode);
  TORCH_CHECK(OH_ > 0 && OW_ > 0, kOp, ": kernel_size ", kernel_size, " is larger than the padded input (",
              H, " + 2 * ", p[0], ", ", W, " + 2 * ", p[1], ")");
  // each factor below INT_MAX first, so that the products cannot wrap
  TORCH_CHECK(H < INT_MAX && W < INT_MAX && p[0] < INT_MAX / 4 && p[1] < INT_MAX / 4 && OH_ < INT_MAX &&
                  OW_ < INT_MAX,
              kOp, ": sizes of 2^31 or more are not supported, got ", what, " of shape ", in_shape,
              " with padding ", padding, " (output size would be (", int64_t(OH_), ", ", int64_t(OW_), "))");
  const int64_t OH = int64_t(OH_), OW = int64_t(OW_);
  TORCH_CHECK(H * W < INT_MAX && (H + 2 * p[0]) * (W + 2 * p[1]) < INT_MAX && OH * OW < INT_MAX &&
                  (!divisor_override || (*divisor_override >= INT_MIN && *divisor_override <= INT_MAX)),
              kOp, ": planes of 2^31 or more elements (or a divisor_override out of int32 range) are not supported, got ",
              what, " of shape ", in_shape);
  return {k[0], k[1], s[0], s[1], p[0], p[1], ceil_mode, count_include_pad, divisor_override.value_or(0),
          H, W, OH, OW};
}

AvgPool2dShape shape_of(const Pool2d& g, int64_t planes) {
  return {planes, g.H, g.W, g.OH, g.OW, g.kH, g.kW, g.sH, g.sW, g.pH, g.pW, g.count_include_pad, g.divisor};
}

at::Tensor avg_pool2d_forward(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                              at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                              std::optional<int64_t> divisor_override) {
  check_float(kOp, "input", input);
  const Pool2d g = check_pool(input.sizes(), kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override, "input");
  auto out_shape = input.sizes().vec();
  out_shape[out_shape.size() - 2] = g.OH;
  out_shape[out_shape.size() - 1] = g.OW;
  at::Tensor y = at::empty(out_shape, input.options());
  if (nothing_to_compute(y)) return y;
  const at::DeviceGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  const int64_t planes = x.numel() / (g.H * g.W);
  const Backend be = backend_for(x);
  dispatch_floating(x, [&](auto t) {
    using T = decltype(t);
    call_kernel<AvgPool2dForward, T>(be, shape_of(g, planes), data_as<T>(x), data_as<T>(y));
  });
  return y;
}

at::Tensor avg_pool2d_backward(const at::Tensor& grad_output, c10::SymIntArrayRef input_shape,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
  const auto shape = C10_AS_INTARRAYREF_SLOW(input_shape);
  check_float(kOp, "grad_output", grad_output);
  const Pool2d g = check_pool(shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                              "input_shape");
  auto out_shape = shape.vec();
  out_shape[out_shape.size() - 2] = g.OH;
  out_shape[out_shape.size() - 1] = g.OW;
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(out_shape), kOp, ": grad_output has shape ",
              grad_output.sizes(), " but the output for input_shape ", shape, " has shape ", out_shape);
  at::Tensor gx = at::empty(shape, grad_output.options());
  if (nothing_to_compute(gx)) return gx;
  const at::DeviceGuard guard(gx.device());
  const at::Tensor gy = grad_output.contiguous();
  const int64_t planes = gx.numel() / (g.H * g.W);
  const Backend be = backend_for(gy);
  dispatch_floating(gy, [&](auto t) {
    using T = decltype(t);
    call_kernel<AvgPool2dBackward, T>(be, shape_of(g, planes), data_as<T>(gy), data_as<T>(gx));
  });
  return gx;
}

}  // namespace
}  // namespace cnnext

TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def(
      "avg_pool2d_forward(Tensor input, int[] kernel_size, int[] stride, int[] padding, bool ceil_mode, "
      "bool count_include_pad, int? divisor_override) -> Tensor");
  m.def(
      "avg_pool2d_backward(Tensor grad_output, SymInt[] input_shape, int[] kernel_size, int[] stride, "
      "int[] padding, bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnext, CPU, m) {
  m.impl("avg_pool2d_forward", &cnnext::avg_pool2d_forward);
  m.impl("avg_pool2d_backward", &cnnext::avg_pool2d_backward);
}

#ifdef CNNEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(cnnext, CUDA, m) {
  m.impl("avg_pool2d_forward", &cnnext::avg_pool2d_forward);
  m.impl("avg_pool2d_backward", &cnnext::avg_pool2d_backward);
}
#endif
