// adaptive_avg_pool2d ops: schema, argument checks, output allocation, dispatch.
//
//   cnnext::adaptive_avg_pool2d_forward(Tensor input, SymInt[] output_size) -> Tensor
//   cnnext::adaptive_avg_pool2d_backward(Tensor grad_output, SymInt[] input_shape) -> Tensor
// input (N, C, H, W) or (C, H, W); output_size (OH, OW), positive (the Python side resolves
// None entries).  The kernels see (N*C, H, W) contiguous; (1, 1) takes the global path.
#include <torch/library.h>

#include <climits>

#include "../common/adaptive_avg_pool2d.h"
#include "dispatch.h"

namespace cnnext {
namespace {

constexpr const char* kOp = "adaptive_avg_pool2d";

void check_shapes(at::IntArrayRef in_shape, at::IntArrayRef output_size, const char* what) {
  const int64_t d = int64_t(in_shape.size());
  TORCH_CHECK(d == 3 || d == 4, kOp, ": ", what, " must be 3-D (C, H, W) or 4-D (N, C, H, W), got ", d, "-D");
  TORCH_CHECK(in_shape[d - 3] > 0 && in_shape[d - 2] > 0 && in_shape[d - 1] > 0, kOp, ": ", what,
              " must have nonzero C, H and W (only the batch may be empty), got shape ", in_shape);
  TORCH_CHECK(output_size.size() == 2, kOp, ": output_size must have 2 elements (OH, OW), got ", output_size);
  TORCH_CHECK(output_size[0] > 0 && output_size[1] > 0, kOp, ": output_size must be positive, got ", output_size);
  // the CUDA kernels compute (i+1)*n in 32 bits
  const int64_t H = in_shape[d - 2], W = in_shape[d - 1], OH = output_size[0], OW = output_size[1];
  // each factor first, so that the products below cannot wrap
  TORCH_CHECK(H < INT_MAX && W < INT_MAX && OH < INT_MAX && OW < INT_MAX, kOp,
              ": output_size and the input's H and W must be below 2^31, got ", what, " of shape ", in_shape,
              " and output_size ", output_size);
  TORCH_CHECK(H * W < INT_MAX && OH * OW < INT_MAX && (H + 1) * (OH + 1) < INT_MAX && (W + 1) * (OW + 1) < INT_MAX,
              kOp, ": planes of 2^31 or more elements are not supported, got ", what, " of shape ", in_shape,
              " and output_size ", output_size);
}

at::Tensor adaptive_avg_pool2d_forward(const at::Tensor& input, c10::SymIntArrayRef output_size_sym) {
  const auto output_size = C10_AS_INTARRAYREF_SLOW(output_size_sym);
  check_float(kOp, "input", input);
  check_shapes(input.sizes(), output_size, "input");
  const int64_t H = input.size(-2), W = input.size(-1), OH = output_size[0], OW = output_size[1];
  auto out_shape = input.sizes().vec();
  out_shape[out_shape.size() - 2] = OH;
  out_shape[out_shape.size() - 1] = OW;
  at::Tensor y = at::empty(out_shape, input.options());
  if (nothing_to_compute(y)) return y;
  const at::DeviceGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  const int64_t planes = x.numel() / (H * W);
  const Backend be = backend_for(x);
  dispatch_floating(x, [&](auto t) {
    using T = decltype(t);
    call_kernel<AdaptiveAvgPool2dForward, T>(be, AdaptiveAvgPool2dShape{planes, H, W, OH, OW}, data_as<T>(x),
                                             data_as<T>(y));
  });
  return y;
}

at::Tensor adaptive_avg_pool2d_backward(const at::Tensor& grad_output, c10::SymIntArrayRef input_shape) {
  const auto shape = C10_AS_INTARRAYREF_SLOW(input_shape);
  check_float(kOp, "grad_output", grad_output);
  TORCH_CHECK(grad_output.dim() == int64_t(shape.size()) && grad_output.dim() >= 2, kOp, ": grad_output has shape ",
              grad_output.sizes(), ", which does not match input_shape ", shape);
  const int64_t OH = grad_output.size(-2), OW = grad_output.size(-1);
  check_shapes(shape, {OH, OW}, "input_shape");
  for (int64_t i = 0; i + 2 < int64_t(shape.size()); ++i)
    TORCH_CHECK(grad_output.size(i) == shape[i], kOp, ": grad_output has shape ", grad_output.sizes(),
                ", which does not match input_shape ", shape);
  at::Tensor gx = at::empty(shape, grad_output.options());
  if (nothing_to_compute(gx)) return gx;
  const at::DeviceGuard guard(gx.device());
  const at::Tensor gy = grad_output.contiguous();
  const int64_t H = shape[shape.size() - 2], W = shape[shape.size() - 1], planes = gx.numel() / (H * W);
  const Backend be = backend_for(gy);
  dispatch_floating(gy, [&](auto t) {
    using T = decltype(t);
    call_kernel<AdaptiveAvgPool2dBackward, T>(be, AdaptiveAvgPool2dShape{planes, H, W, OH, OW}, data_as<T>(gy),
                                              data_as<T>(gx));
  });
  return gx;
}

}  // namespace
}  // namespace cnnext

TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def("adaptive_avg_pool2d_forward(Tensor input, SymInt[] output_size) -> Tensor");
  m.def("adaptive_avg_pool2d_backward(Tensor grad_output, SymInt[] input_shape) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnext, CPU, m) {
  m.impl("adaptive_avg_pool2d_forward", &cnnext::adaptive_avg_pool2d_forward);
  m.impl("adaptive_avg_pool2d_backward", &cnnext::adaptive_avg_pool2d_backward);
}

#ifdef CNNEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(cnnext, CUDA, m) {
  m.impl("adaptive_avg_pool2d_forward", &cnnext::adaptive_avg_pool2d_forward);
  m.impl("adaptive_avg_pool2d_backward", &cnnext::adaptive_avg_pool2d_backward);
}
#endif
