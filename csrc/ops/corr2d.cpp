// corr2d ops: schema, argument checks, output allocation, dispatch.
//
//   cnnext::corr2d_forward(Tensor input, Tensor kernel) -> Tensor
//   cnnext::corr2d_backward_input(Tensor grad_output, Tensor kernel, SymInt[] input_shape) -> Tensor
//   cnnext::corr2d_backward_kernel(Tensor grad_output, Tensor input, SymInt[] kernel_size) -> Tensor
// input (..., H, W) is flattened to (B, H, W); kernel is (kh, kw).
// bfloat16 / float16: corr2d is conv2d with one input and one output channel, so a half call runs the
// backend's half conv2d kernels (the CUDA tensor cores, the CPU's bfloat16 / float16 variants) on the same
// memory, viewed as (B, 1, H, W) and (1, 1, kh, kw): float32 sums, one rounding per output.
#include <torch/library.h>

#include "../common/conv2d.h"
#include "../common/corr2d.h"
#include "dispatch.h"

namespace cnnext {
namespace {

constexpr const char* kOp = "corr2d";

// The one-channel conv2d of a corr2d call.
Conv2dShape as_conv(int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw) {
  Conv2dShape s{};
  s.N = B, s.C = 1, s.H = H, s.W = W, s.K = 1, s.R = kh, s.S = kw;
  s.stride_h = s.stride_w = s.dil_h = s.dil_w = s.groups = 1;
  s.P = H - kh + 1, s.Q = W - kw + 1;
  return s;
}

void check_input_kernel(const at::Tensor& input, const at::Tensor& kernel) {
  check_float(kOp, "input", input);
  check_same_dtype(kOp, "kernel", kernel, "input", input);
  check_same_device(kOp, "kernel", kernel, "input", input);
  TORCH_CHECK(input.dim() >= 2, kOp, ": input must have at least 2 dims (..., H, W), got ", input.dim(), "-D");
  check_dim(kOp, "kernel", kernel, 2, "(kh, kw)");
  TORCH_CHECK(kernel.size(0) > 0 && kernel.size(1) > 0, kOp, ": kernel must not be empty, got shape ",
              kernel.sizes());
  TORCH_CHECK(kernel.size(0) <= input.size(-2) && kernel.size(1) <= input.size(-1), kOp, ": kernel of size ",
              kernel.sizes(), " is larger than the input's (H, W) = (", input.size(-2), ", ", input.size(-1), ")");
}

at::Tensor corr2d_forward(const at::Tensor& input, const at::Tensor& kernel) {
  check_input_kernel(input, kernel);
  const int64_t H = input.size(-2), W = input.size(-1), kh = kernel.size(0), kw = kernel.size(1);
  auto out_shape = input.sizes().vec();
  out_shape[out_shape.size() - 2] = H - kh + 1;
  out_shape[out_shape.size() - 1] = W - kw + 1;
  at::Tensor y = at::empty(out_shape, input.options());
  if (nothing_to_compute(y)) return y;
  const at::DeviceGuard guard(input.device());
  const at::Tensor x = input.contiguous(), k = kernel.contiguous();
  const int64_t B = x.numel() / (H * W);
  const Backend be = backend_for(x);
  if (is_half(x)) {
    dispatch_half(x, [&](auto h) {
      using T = decltype(h);
      call_kernel<Conv2dForward, T>(be, as_conv(B, H, W, kh, kw), data_as<T>(x), data_as<T>(k), nullptr, data_as<T>(y));
    });
    return y;
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "corr2d_forward", [&] {
    const scalar_t *xp = x.const_data_ptr<scalar_t>(), *kp = k.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    call_kernel<Corr2dForward, scalar_t>(be, Corr2dShape{B, H, W, kh, kw}, xp, kp, yp);
  });
  return y;
}

at::Tensor corr2d_backward_input(const at::Tensor& grad_output, const at::Tensor& kernel,
                                 c10::SymIntArrayRef input_shape) {
  const auto shape = C10_AS_INTARRAYREF_SLOW(input_shape);
  at::Tensor gx = at::empty(shape, grad_output.options());
  check_float(kOp, "grad_output", grad_output);
  check_same_dtype(kOp, "kernel", kernel, "grad_output", grad_output);
  check_same_device(kOp, "kernel", kernel, "grad_output", grad_output);
  check_input_kernel(gx, kernel);
  const int64_t H = shape[shape.size() - 2], W = shape[shape.size() - 1], kh = kernel.size(0), kw = kernel.size(1);
  TORCH_CHECK(grad_output.dim() == gx.dim() && grad_output.size(-2) == H - kh + 1 &&
                  grad_output.size(-1) == W - kw + 1,
              kOp, ": grad_output has shape ", grad_output.sizes(), ", which is not the output shape for input ",
              shape, " and kernel ", kernel.sizes());
  if (nothing_to_compute(gx)) return gx;
  const at::DeviceGuard guard(gx.device());
  const at::Tensor gy = grad_output.contiguous(), k = kernel.contiguous();
  const int64_t B = gx.numel() / (H * W);
  const Backend be = backend_for(gy);
  if (is_half(gy)) {
    dispatch_half(gy, [&](auto h) {
      using T = decltype(h);
      call_kernel<Conv2dBackwardInput, T>(be, as_conv(B, H, W, kh, kw), data_as<T>(gy), data_as<T>(k), data_as<T>(gx));
    });
    return gx;
  }
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "corr2d_backward_input", [&] {
    const scalar_t *gyp = gy.const_data_ptr<scalar_t>(), *kp = k.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    call_kernel<Corr2dBackwardInput, scalar_t>(be, Corr2dShape{B, H, W, kh, kw}, gyp, kp, gxp);
  });
  return gx;
}

at::Tensor corr2d_backward_kernel(const at::Tensor& grad_output, const at::Tensor& input,
                                  c10::SymIntArrayRef kernel_size) {
  const auto ks = C10_AS_INTARRAYREF_SLOW(kernel_size);
  TORCH_CHECK(ks.size() == 2, kOp, ": kernel_size must have 2 elements (kh, kw), got ", ks.size());
  at::Tensor gk = at::zeros(ks, input.options());
  check_input_kernel(input, gk);
  check_float(kOp, "grad_output", grad_output);
  check_same_dtype(kOp, "grad_output", grad_output, "input", input);
  check_same_device(kOp, "grad_output", grad_output, "input", input);
  const int64_t H = input.size(-2), W = input.size(-1), kh = ks[0], kw = ks[1];
  TORCH_CHECK(grad_output.dim() == input.dim() && grad_output.size(-2) == H - kh + 1 &&
                  grad_output.size(-1) == W - kw + 1,
              kOp, ": grad_output has shape ", grad_output.sizes(), ", which is not the output shape for input ",
              input.sizes(), " and kernel ", ks);
  if (nothing_to_compute(input)) return gk;
  const at::DeviceGuard guard(input.device());
  const at::Tensor gy = grad_output.contiguous(), x = input.contiguous();
  const int64_t B = x.numel() / (H * W);
  const Backend be = backend_for(x);
  if (is_half(x)) {
    dispatch_half(x, [&](auto h) {
      using T = decltype(h);
      const Conv2dShape cs = as_conv(B, H, W, kh, kw);
      const at::Tensor ws = workspace<Conv2dWeightWorkspace, T>(be, cs, x);
      call_kernel<Conv2dBackwardWeight, T>(be, cs, data_as<T>(x), data_as<T>(gy), data_as<T>(gk), nullptr,
                                           workspace_ptr<T>(ws));
    });
    return gk;
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "corr2d_backward_kernel", [&] {
    const scalar_t *gyp = gy.const_data_ptr<scalar_t>(), *xp = x.const_data_ptr<scalar_t>();
    scalar_t* gkp = gk.mutable_data_ptr<scalar_t>();
    const Corr2dShape cs{B, H, W, kh, kw};
    // scratch of the backend's plan (the CUDA split partials), allocated here: kernels allocate nothing
    const at::Tensor ws = workspace<Corr2dKernelWorkspace, scalar_t>(be, cs, x);
    call_kernel<Corr2dBackwardKernel, scalar_t>(be, cs, gyp, xp, gkp, workspace_ptr<scalar_t>(ws));
  });
  return gk;
}

}  // namespace
}  // namespace cnnext

TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def("corr2d_forward(Tensor input, Tensor kernel) -> Tensor");
  m.def("corr2d_backward_input(Tensor grad_output, Tensor kernel, SymInt[] input_shape) -> Tensor");
  m.def("corr2d_backward_kernel(Tensor grad_output, Tensor input, SymInt[] kernel_size) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnext, CPU, m) {
  m.impl("corr2d_forward", &cnnext::corr2d_forward);
  m.impl("corr2d_backward_input", &cnnext::corr2d_backward_input);
  m.impl("corr2d_backward_kernel", &cnnext::corr2d_backward_kernel);
}

#ifdef CNNEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(cnnext, CUDA, m) {
  m.impl("corr2d_forward", &cnnext::corr2d_forward);
  m.impl("corr2d_backward_input", &cnnext::corr2d_backward_input);
  m.impl("corr2d_backward_kernel", &cnnext::corr2d_backward_kernel);
}
#endif
