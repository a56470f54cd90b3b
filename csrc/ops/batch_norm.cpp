// batch_norm ops: schema, argument checks, output allocation, dispatch.
//
//   cnnext::batch_norm_forward(Tensor input, Tensor? weight, Tensor? bias, Tensor(a!)? running_mean,
//       Tensor(b!)? running_var, bool training, float momentum, float eps, bool relu)
//       -> (Tensor output, Tensor save_mean, Tensor save_invstd)
//     training: normalises with the batch statistics and, when given, updates
//     running_mean / running_var in place; otherwise uses the running statistics.
//     save_mean / save_invstd (C,) are the statistics used (what the backward needs).
//   cnnext::batch_norm_backward(Tensor grad_output, Tensor input, Tensor? weight, Tensor? bias,
//       Tensor save_mean, Tensor save_invstd, bool training, bool relu)
//       -> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)
//     relu: the op is relu(batch_norm(x)) (NaN stays NaN, like torch.relu); grad_output is
//     zeroed where output <= 0 (torch's threshold_backward: it passes where the output is NaN;
//     the output is recomputed from input, so nothing extra is saved).
// input (N, C, *) is seen as (N, C, S), S = prod(*).  A 4-D channels_last input
// is handled natively as (N*H*W, C, 1) and gives a channels_last output; any other
// non-contiguous input is made contiguous first (one extra copy pass).
#include <torch/library.h>

#include "../common/batch_norm.h"
#include "dispatch.h"

namespace cnnext {
namespace {

constexpr const char* kOp = "batch_norm";

void check_input(const at::Tensor& input) {
  check_float(kOp, "input", input);
  TORCH_CHECK(input.dim() >= 2, kOp, ": input must have at least 2 dims (N, C, *), got ", input.dim(), "-D");
}

// A per-channel (C,) tensor: same device as input, shape (C,), input's dtype -- or float32 with a bfloat16 or
// float16 input (torch's mixed-precision batch norm: half activations, float32 parameters and statistics).
void check_channel_arg(const char* arg, const at::Tensor& t, const at::Tensor& input) {
  check_same_device(kOp, arg, t, "input", input);
  if (!(is_half(input) && t.scalar_type() == at::kFloat)) check_same_dtype(kOp, arg, t, "input", input);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == input.size(1), kOp, ": ", arg, " must have shape (C,) = (", input.size(1),
              ",) for input of shape ", input.sizes(), ", got ", t.sizes());
}

// The per-channel tensors given share one dtype (as torch requires: all float32, or all input's dtype).
void check_same_parameter_dtype(std::initializer_list<std::pair<const char*, const at::Tensor*>> args) {
  const std::pair<const char*, const at::Tensor*>* first = nullptr;
  for (const auto& a : args) {
    if (!a.second) continue;
    if (first) check_same_dtype(kOp, a.first, *a.second, first->first, *first->second);
    else first = &a;
  }
}

// How the kernels see a tensor: channels_last native, or (made) contiguous.
struct Layout {
  bool channels_last;
  int64_t N, C, S;
};

Layout layout_of(const at::Tensor& input) {
  const int64_t N = input.size(0), C = input.size(1), S = input.numel() / std::max<int64_t>(1, N * C);
  const bool cl = input.dim() == 4 && !input.is_contiguous() &&
                  input.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (cl) return {true, N * S, C, 1};
  return {false, N, C, S};
}

at::MemoryFormat format_of(const Layout& l) {
  return l.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

const at::Tensor* opt(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined() ? &*t : nullptr; }

// The kernels' parameter and statistics dtype (BatchNormParam): float32 for bfloat16 / float16 activations
// (torch's mixed-precision batch norm), the input's otherwise; as_param: t in it, contiguous (t itself when it
// already is).
at::ScalarType param_dtype(const at::Tensor& input) { return is_half(input) ? at::kFloat : input.scalar_type(); }
at::Tensor as_param(const at::Tensor& t, at::ScalarType pd) { return t.to(pd).contiguous(); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_forward(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var, bool training,
    double momentum, double eps, bool relu) {
  // the kernels' shape, its sizes filled in below: momentum and eps go straight from the argument
  // registers into it (built later, GCC copied the two spilled doubles with one 16-byte load of two
  // 8-byte stores, a split vector move: .ci/check_libs.py)
  BatchNormShape s{0, 0, 0, training, momentum, eps, relu};
  check_input(input);
  const at::Tensor *w = opt(weight), *b = opt(bias), *rm = opt(running_mean), *rv = opt(running_var);
  if (w) check_channel_arg("weight", *w, input);
  if (b) check_channel_arg("bias", *b, input);
  if (rm) check_channel_arg("running_mean", *rm, input);
  if (rv) check_channel_arg("running_var", *rv, input);
  check_same_parameter_dtype({{"weight", w}, {"bias", b}, {"running_mean", rm}, {"running_var", rv}});
  TORCH_CHECK((rm == nullptr) == (rv == nullptr), kOp,
              ": running_mean and running_var must both be given or both be None");
  TORCH_CHECK(training || rm, kOp, ": running_mean and running_var must be given in evaluation mode (training=False)");
  // F.batch_norm's checks: a NaN eps passes them, as in torch (the output is NaN)
  TORCH_CHECK(!(training && eps <= 0), kOp, ": eps must be positive during training, but got ", eps);
  TORCH_CHECK(!(eps < 0), kOp, ": eps must be non-negative, but got ", eps);
  const Layout l = layout_of(input);
  const at::ScalarType pd = param_dtype(input);
  const at::Tensor x = input.contiguous(format_of(l));
  at::Tensor y = at::empty_like(x, format_of(l));
  at::Tensor mean = at::empty({l.C}, input.options().dtype(pd)), invstd = at::empty({l.C}, mean.options());  // all written
  if (nothing_to_compute(x)) return {y, mean.zero_(), invstd.zero_()};
  const at::DeviceGuard guard(input.device());
  const at::Tensor wc = w ? as_param(*w, pd) : at::Tensor(), bc = b ? as_param(*b, pd) : at::Tensor();
  // running statistics are written in place; one in another dtype, or not contiguous, goes through a copy
  at::Tensor rmc = rm ? as_param(*rm, pd) : at::Tensor(), rvc = rv ? as_param(*rv, pd) : at::Tensor();
  const Backend be = backend_for(x);
  s.N = l.N, s.C = l.C, s.S = l.S;
  dispatch_floating(x, [&](auto t) {
    using T = decltype(t);
    using P = typename BatchNormParam<T>::type;
    // scratch of the backend's plan (the CUDA split partials and coefficients), allocated here
    const at::Tensor ws = workspace<BatchNormForwardWorkspace, T>(be, s, x, pd);
    call_kernel<BatchNormForward, T>(
        be, s,
        BatchNormForwardArgs<T>{data_as<T>(x), data_as<T>(y), data_as<P>(wc), data_as<P>(bc), data_as<P>(rmc),
                                data_as<P>(rvc), data_as<P>(mean), data_as<P>(invstd), workspace_ptr<P>(ws)});
  });
  if (training && rm && !rmc.is_same(*rm)) rm->copy_(rmc);
  if (training && rv && !rvc.is_same(*rv)) rv->copy_(rvc);
  return {y, mean, invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean, const at::Tensor& save_invstd, bool training,
    bool relu) {
  check_input(input);
  check_float(kOp, "grad_output", grad_output);
  check_same_dtype(kOp, "grad_output", grad_output, "input", input);
  check_same_device(kOp, "grad_output", grad_output, "input", input);
  TORCH_CHECK(grad_output.sizes() == input.sizes(), kOp, ": grad_output has shape ", grad_output.sizes(),
              " but input has shape ", input.sizes(), "; they must match");
  const at::Tensor *w = opt(weight), *b = opt(bias);
  if (w) check_channel_arg("weight", *w, input);
  if (b) check_channel_arg("bias", *b, input);
  check_same_parameter_dtype({{"weight", w}, {"bias", b}});
  check_channel_arg("save_mean", save_mean, input);
  check_channel_arg("save_invstd", save_invstd, input);
  const Layout l = layout_of(input);
  const at::ScalarType pd = param_dtype(input);
  const at::Tensor x = input.contiguous(format_of(l)), gy = grad_output.contiguous(format_of(l));
  at::Tensor gx = at::empty_like(x, format_of(l));
  at::Tensor gw = at::zeros({l.C}, input.options().dtype(pd)), gb = at::zeros({l.C}, gw.options());
  if (!nothing_to_compute(x)) {
    const at::DeviceGuard guard(input.device());
    const at::Tensor wc = w ? as_param(*w, pd) : at::Tensor(), bc = b ? as_param(*b, pd) : at::Tensor();
    const at::Tensor mc = as_param(save_mean, pd), ic = as_param(save_invstd, pd);
    const Backend be = backend_for(x);
    const BatchNormShape s{l.N, l.C, l.S, training, 0.0, 0.0, relu};
    dispatch_floating(x, [&](auto t) {
      using T = decltype(t);
      using P = typename BatchNormParam<T>::type;
      const at::Tensor ws = workspace<BatchNormBackwardWorkspace, T>(be, s, x, pd);
      call_kernel<BatchNormBackward, T>(
          be, s,
          BatchNormBackwardArgs<T>{data_as<T>(gy), data_as<T>(x), data_as<P>(wc), data_as<P>(bc), data_as<P>(mc),
                                   data_as<P>(ic), data_as<T>(gx), data_as<P>(gw), data_as<P>(gb),
                                   workspace_ptr<P>(ws)});
    });
  }
  // gw and gb in the dtypes of weight and bias (input's without them: float32 kernels' sums narrowed for half)
  return {gx, gw.to((w ? *w : input).scalar_type()), gb.to((b ? *b : input).scalar_type())};
}

}  // namespace
}  // namespace cnnext

TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def(
      "batch_norm_forward(Tensor input, Tensor? weight, Tensor? bias, Tensor(a!)? running_mean, "
      "Tensor(b!)? running_var, bool training, float momentum, float eps, bool relu) -> (Tensor, Tensor, Tensor)");
  m.def(
      "batch_norm_backward(Tensor grad_output, Tensor input, Tensor? weight, Tensor? bias, Tensor save_mean, "
      "Tensor save_invstd, bool training, bool relu) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(cnnext, CPU, m) {
  m.impl("batch_norm_forward", &cnnext::batch_norm_forward);
  m.impl("batch_norm_backward", &cnnext::batch_norm_backward);
}

#ifdef CNNEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(cnnext, CUDA, m) {
  m.impl("batch_norm_forward", &cnnext::batch_norm_forward);
  m.impl("batch_norm_backward", &cnnext::batch_norm_backward);
}
#endif
