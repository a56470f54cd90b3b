// conv2d ops: schema, argument checks, output allocation, dispatch.
//
//   cnnext::conv2d_forward(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding,
//                          int[2] dilation, int groups) -> Tensor
//   cnnext::conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[] input_shape, int[2] stride,
//                                 int[2] padding, int[2] dilation, int groups) -> Tensor
//   cnnext::conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[] weight_shape, int[2] stride,
//                                  int[2] padding, int[2] dilation, int groups, bool bias) -> (Tensor, Tensor)
// input (N, C, H, W) or unbatched (C, H, W); weight (K, C/groups, R, S); output (N, K, P, Q) with
//   P = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1, Q likewise.
// conv2d_backward_weight returns (grad_weight, grad_bias); grad_bias is (K) when `bias` is true, else (0).
// Padding is symmetric here; padding='same' with an even dilated kernel is handled in Python by
// padding the input's right/bottom edge first, as torch does.
// Inputs of any strides (channels_last included) are made NCHW-contiguous; outputs are NCHW-contiguous.
#include <ATen/Context.h>
#include <torch/library.h>

#include <cstdlib>

#include "../common/conv2d.h"
#include "dispatch.h"

namespace cnnext {
namespace {

constexpr const char* kOp = "conv2d";

// The four conv parameters, checked, as (h, w) pairs.
struct Params {
  int64_t sh, sw, ph, pw, dh, dw, groups;
};

Params check_params(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const auto st = pair_arg(kOp, "stride", stride), pd = pair_arg(kOp, "padding", padding);
  const auto dl = pair_arg(kOp, "dilation", dilation);
  const Params p{st[0], st[1], pd[0], pd[1], dl[0], dl[1], groups};
  TORCH_CHECK(p.sh > 0 && p.sw > 0, kOp, ": stride must be positive, got ", stride);
  TORCH_CHECK(p.ph >= 0 && p.pw >= 0, kOp, ": padding must be non-negative, got ", padding);
  TORCH_CHECK(p.dh > 0 && p.dw > 0, kOp, ": dilation must be positive, got ", dilation);
  TORCH_CHECK(groups > 0, kOp, ": groups must be positive, got ", groups);
  return p;
}

// Checks the input shape (N, C, H, W) (N may be 0) and weight shape against each other and the
// parameters, and returns the full Conv2dShape.
Conv2dShape make_shape(at::IntArrayRef in, at::IntArrayRef wt, const Params& p, const char* in_arg) {
  TORCH_CHECK(in.size() == 3 || in.size() == 4, kOp, ": ", in_arg, " must be 3-D (C, H, W) or 4-D (N, C, H, W), got ",
              in.size(), "-D");
  TORCH_CHECK(wt.size() == 4, kOp, ": weight must be 4-D (out, in/groups, kh, kw), got ", wt.size(), "-D");
  const bool batched = in.size() == 4;
  Conv2dShape s{};
  s.N = batched ? in[0] : 1;
  s.C = in[batched ? 1 : 0];
  s.H = in[batched ? 2 : 1];
  s.W = in[batched ? 3 : 2];
  s.K = wt[0];
  s.R = wt[2];
  s.S = wt[3];
  s.stride_h = p.sh, s.stride_w = p.sw, s.pad_h = p.ph, s.pad_w = p.pw, s.dil_h = p.dh, s.dil_w = p.dw;
  s.groups = p.groups;
  TORCH_CHECK(s.C > 0, kOp, ": ", in_arg, " must have at least one channel, got shape ", in);
  TORCH_CHECK(s.H > 0 && s.W > 0, kOp, ": ", in_arg, " must have non-zero height and width, got shape ", in);
  TORCH_CHECK(s.K > 0, kOp, ": weight must have at least one output channel, got shape ", wt);
  TORCH_CHECK(s.R > 0 && s.S > 0, kOp, ": weight must have a non-empty kernel (kh, kw), got shape ", wt);
  TORCH_CHECK(s.C % s.groups == 0, kOp, ": ", in_arg, " channels (", s.C, ") must be divisible by groups (", s.groups,
              ")");
  TORCH_CHECK(s.K % s.groups == 0, kOp, ": weight out channels (", s.K, ") must be divisible by groups (", s.groups,
              ")");
  TORCH_CHECK(wt[1] == s.C / s.groups, kOp, ": weight must have shape (out, in/groups, kh, kw) with in/groups = ",
              s.C / s.groups, " (", in_arg, " channels ", s.C, ", groups ", s.groups, "), got weight of shape ", wt);
  // In 128 bits: padding and dilation may be anywhere in int64, and a wrapped int64 (the build uses
  // -fwrapv) would let an absurd dilation or padding through as a valid-looking geometry.
  const __int128 eff_r = __int128(s.dil_h) * (s.R - 1) + 1, eff_s = __int128(s.dil_w) * (s.S - 1) + 1;
  const __int128 hp = __int128(s.H) + 2 * __int128(s.pad_h), wp = __int128(s.W) + 2 * __int128(s.pad_w);
  TORCH_CHECK(eff_r <= hp && eff_s <= wp, kOp, ": weight's kernel size (", s.R, ", ", s.S, ") with dilation (",
              s.dil_h, ", ", s.dil_w, ") is larger than the padded ", in_arg, " (", s.H, " + 2 * ", s.pad_h, ", ",
              s.W, " + 2 * ", s.pad_w, ")");
  const __int128 P = (hp - eff_r) / s.stride_h + 1, Q = (wp - eff_s) / s.stride_w + 1;
  // the kernels index the padded plane with int64 offsets: keep every size well inside int64
  constexpr int64_t kBig = int64_t(1) << 40;
  TORCH_CHECK(s.pad_h < kBig && s.pad_w < kBig && P < kBig && Q < kBig && eff_r < kBig && eff_s < kBig &&
                  __int128(s.N) * s.K * P * Q < (__int128(1) << 62),
              kOp, ": padding (", s.pad_h, ", ", s.pad_w, ") or dilation (", s.dil_h, ", ", s.dil_w,
              ") too large: the output or the dilated kernel would have 2^40 or more rows or columns, or the output "
              "2^62 or more elements");
  s.P = int64_t(P);
  s.Q = int64_t(Q);
  // cuDNN's switch for convolutions (torch.backends.cudnn.allow_tf32 / cudnn.conv.fp32_precision)
  s.allow_tf32 = at::globalContext().allowTF32CuDNN(at::Float32Op::CONV);
  // the plan's test overrides, read here once per call: the launchers read no environment
  const char* direct = std::getenv("CNNEXT_CONV2D_DIRECT");
  s.cuda_direct = direct && direct[0] == '1';
  if (const char* tile = std::getenv("CNNEXT_CONV2D_TILE")) s.cuda_tile = std::atoi(tile) == 128 ? 128 : 64;
  return s;
}

std::vector<int64_t> out_shape(const Conv2dShape& s, bool batched) {
  if (batched) return {s.N, s.K, s.P, s.Q};
  return {s.K, s.P, s.Q};
}

void check_grad_output(const at::Tensor& gy, const Conv2dShape& s, bool batched) {
  const auto expect = out_shape(s, batched);
  TORCH_CHECK(gy.sizes() == at::IntArrayRef(expect), kOp, ": grad_output has shape ", gy.sizes(),
              ", expected the output shape ", at::IntArrayRef(expect));
}

at::Tensor conv2d_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_float(kOp, "input", input);
  check_same_dtype(kOp, "weight", weight, "input", input);
  check_same_device(kOp, "weight", weight, "input", input);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    check_same_dtype(kOp, "bias", *bias, "input", input);
    check_same_device(kOp, "bias", *bias, "input", input);
  }
  const Params p = check_params(stride, padding, dilation, groups);
  const Conv2dShape s = make_shape(input.sizes(), weight.sizes(), p, "input");
  if (has_bias)
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == s.K, kOp, ": bias must be 1-D of size out_channels (", s.K,
                "), got shape ", bias->sizes());
  at::Tensor y = at::empty(out_shape(s, input.dim() == 4), input.options());
  if (nothing_to_compute(y)) return y;
  const at::DeviceGuard guard(input.device());
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  const Backend be = backend_for(x);
  dispatch_floating(x, [&](auto t) {
    using T = decltype(t);
    call_kernel<Conv2dForward, T>(be, s, data_as<T>(x), data_as<T>(w), data_as<T>(b), data_as<T>(y));
  });
  return y;
}

at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 c10::SymIntArrayRef input_shape, at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, int64_t groups) {
  const auto shape = C10_AS_INTARRAYREF_SLOW(input_shape);
  check_float(kOp, "grad_output", grad_output);
  check_same_dtype(kOp, "weight", weight, "grad_output", grad_output);
  check_same_device(kOp, "weight", weight, "grad_output", grad_output);
  const Params p = check_params(stride, padding, dilation, groups);
  const Conv2dShape s = make_shape(shape, weight.sizes(), p, "input");
  const bool batched = shape.size() == 4;
  check_grad_output(grad_output, s, batched);
  at::Tensor gx = at::empty(shape, grad_output.options());
  if (nothing_to_compute(gx)) return gx;
  const at::DeviceGuard guard(gx.device());
  const at::Tensor gy = grad_output.contiguous(), w = weight.contiguous();
  const Backend be = backend_for(gy);
  dispatch_floating(gy, [&](auto t) {
    using T = decltype(t);
    call_kernel<Conv2dBackwardInput, T>(be, s, data_as<T>(gy), data_as<T>(w), data_as<T>(gx));
  });
  return gx;
}

std::tuple<at::Tensor, at::Tensor> conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                          c10::SymIntArrayRef weight_shape, at::IntArrayRef stride,
                                                          at::IntArrayRef padding, at::IntArrayRef dilation,
                                                          int64_t groups, bool bias) {
  const auto wshape = C10_AS_INTARRAYREF_SLOW(weight_shape);
  check_float(kOp, "input", input);
  check_float(kOp, "grad_output", grad_output);
  check_same_dtype(kOp, "grad_output", grad_output, "input", input);
  check_same_device(kOp, "grad_output", grad_output, "input", input);
  const Params p = check_params(stride, padding, dilation, groups);
  const Conv2dShape s = make_shape(input.sizes(), wshape, p, "input");
  check_grad_output(grad_output, s, input.dim() == 4);
  at::Tensor gw = at::empty(wshape, input.options());
  at::Tensor gb = at::empty({bias ? s.K : 0}, input.options());
  if (nothing_to_compute(gw)) return {gw, gb};  // meta: shapes only (gw is never empty)
  if (s.N == 0) {  // empty batch: the sums are empty
    gw.zero_();
    gb.zero_();
    return {gw, gb};
  }
  const at::DeviceGuard guard(input.device());
  const at::Tensor gy = grad_output.contiguous(), x = input.contiguous();
  const Backend be = backend_for(x);
  dispatch_floating(x, [&](auto t) {
    using T = decltype(t);
    // scratch of the backend's plan (the CUDA split-K and bias-grad partial sums; float partials for the
    // half types, counted in T), allocated here: kernels allocate nothing
    const at::Tensor ws = workspace<Conv2dWeightWorkspace, T>(be, s, x);
    call_kernel<Conv2dBackwardWeight, T>(be, s, data_as<T>(x), data_as<T>(gy), data_as<T>(gw),
                                         bias ? data_as<T>(gb) : nullptr, workspace_ptr<T>(ws));
  });
  return {gw, gb};
}

}  // namespace
}  // namespace cnnext

TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def(
      "conv2d_forward(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups) -> Tensor");
  m.def(
      "conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[] input_shape, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> Tensor");
  m.def(
      "conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[] weight_shape, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups, bool bias) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(cnnext, CPU, m) {
  m.impl("conv2d_forward", &cnnext::conv2d_forward);
  m.impl("conv2d_backward_input", &cnnext::conv2d_backward_input);
  m.impl("conv2d_backward_weight", &cnnext::conv2d_backward_weight);
}

#ifdef CNNEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(cnnext, CUDA, m) {
  m.impl("conv2d_forward", &cnnext::conv2d_forward);
  m.impl("conv2d_backward_input", &cnnext::conv2d_backward_input);
  m.impl("conv2d_backward_weight", &cnnext::conv2d_backward_weight);
}
#endif
