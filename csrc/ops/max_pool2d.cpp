// max_pool2d ops: schema, argument checks, output allocation, dispatch.
//
//   cnnext::max_pool2d_forward(Tensor input, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
//                              int[2] dilation=1, bool ceil_mode=False) -> (Tensor output, Tensor indices)
//   cnnext::max_pool2d(<the same arguments>) -> Tensor          the output only (no grad, no indices)
//   cnnext::max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[] input_shape, int[2] kernel_size,
//                               int[2] stride=[], int[2] padding=0, int[2] dilation=1,
//                               bool ceil_mode=False) -> Tensor
// input (N, C, H, W) or unbatched (C, H, W); output and indices (int64, h*W + w inside each plane)
// (..., OH, OW) with torch's output size: OH = floor_or_ceil((H + 2*pad - dil*(k-1) - 1) / stride) + 1,
// and with ceil_mode the last window must start inside the input or the left padding.
// A channels_last 4-D input gives channels_last output and indices (the CPU has a kernel for that
// layout); everything else works on contiguous NCHW planes. grad_input is contiguous.
#include <algorithm>
#include <vector>

#include <torch/library.h>

#include "../common/max_pool2d.h"
#include "../common/pool2d.h"
#include "dispatch.h"

namespace cnnext {
namespace {

constexpr const char* kOp = "max_pool2d";

// Checks the pooling arguments against an input shape (..., H, W) and returns the sizes.
MaxPool2dShape make_shape(at::IntArrayRef in, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const auto k = pair_arg(kOp, "kernel_size", kernel_size);
  const auto st = stride.empty() ? k : pair_arg(kOp, "stride", stride);
  const auto p = pair_arg(kOp, "padding", padding);
  const auto d = pair_arg(kOp, "dilation", dilation);
  TORCH_CHECK(k[0] > 0 && k[1] > 0, kOp, ": kernel_size must be positive, got (", k[0], ", ", k[1], ")");
  TORCH_CHECK(st[0] > 0 && st[1] > 0, kOp, ": stride must be positive, got (", st[0], ", ", st[1], ")");
  TORCH_CHECK(d[0] > 0 && d[1] > 0, kOp, ": dilation must be positive, got (", d[0], ", ", d[1], ")");
  TORCH_CHECK(p[0] >= 0 && p[1] >= 0, kOp, ": padding must be non-negative, got (", p[0], ", ", p[1], ")");
  // torch takes these as int32 (larger values: "cannot be converted to type int without overflow"); so
  // do we, which also keeps every column product of the kernels (e.g. (ow + 15) * stride_w) far from
  // wrapping: a stride of 2^62 wrapped there into a 2^62-step loop.
  for (const auto& [name, v] : {std::pair{"kernel_size", k}, std::pair{"stride", st}, std::pair{"padding", p},
                                std::pair{"dilation", d}})
    TORCH_CHECK(v[0] <= INT_MAX && v[1] <= INT_MAX, kOp, ": ", name, " must be below 2^31 (as in torch), got (",
                v[0], ", ", v[1], ")");
  // torch checks pad <= effective kernel / 2 and pad <= kernel_size / 2; the second implies the first.
  TORCH_CHECK(p[0] <= k[0] / 2 && p[1] <= k[1] / 2, kOp, ": padding (", p[0], ", ", p[1],
              ") is too large for kernel_size (", k[0], ", ", k[1], "): pad should be at most half of effective "
              "kernel size and of kernel_size");
  TORCH_CHECK(in.size() == 3 || in.size() == 4, kOp, ": input must be 3-D (C, H, W) or 4-D (N, C, H, W), got ",
              in.size(), "-D");
  const int64_t C = in[in.size() - 3], H = in[in.size() - 2], W = in[in.size() - 1];
  TORCH_CHECK(C > 0 && H > 0 && W > 0, kOp, ": input must have non-zero C, H and W (only the batch may be empty), "
              "got shape ", in);
  MaxPool2dShape s{};
  s.NC = (in.size() == 4 ? in[0] : 1) * C;
  s.H = H;
  s.W = W;
  s.kh = k[0], s.kw = k[1], s.stride_h = st[0], s.stride_w = st[1];
  s.pad_h = p[0], s.pad_w = p[1], s.dil_h = d[0], s.dil_w = d[1];
  const __int128 OH = pool2d_out_size(H, s.kh, s.stride_h, s.pad_h, s.dil_h, ceil_mode);
  const __int128 OW = pool2d_out_size(W, s.kw, s.stride_w, s.pad_w, s.dil_w, ceil_mode);
  // a valid output size is at most H + 2 * pad <= H + kernel_size; clamp before narrowing for the message
  s.OH = int64_t(OH < INT64_MIN ? INT64_MIN : OH > INT64_MAX ? INT64_MAX : OH);
  s.OW = int64_t(OW < INT64_MIN ? INT64_MIN : OW > INT64_MAX ? INT64_MAX : OW);
  TORCH_CHECK(s.OH > 0 && s.OW > 0, kOp, ": kernel_size (", s.kh, ", ", s.kw, ") with dilation (", s.dil_h, ", ",
              s.dil_w, ") does not fit the input (H, W) = (", H, ", ", W, ") with padding (", s.pad_h, ", ", s.pad_w,
              "): calculated output size (", s.OH, ", ", s.OW, ") is too small");
  return s;
}

// Which outputs o of an axis (size n) have a window holding no input position at all: with dilation
// the taps o*st - p + i*d (i < k) can all skip over the input and land in the padding, e.g. H = 1,
// k = 2, p = 1, d = 2 gives rows -1 and 1. Such an output is -inf (as in torch), and its index
// (first tap past the padding, as torch writes it) points outside the plane or, on the W axis, at an
// unrelated element of the next row.
std::vector<bool> empty_windows(int64_t n, int64_t out, int64_t k, int64_t st, int64_t p, int64_t d) {
  std::vector<bool> empty(out);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * st - p;
    const int64_t i0 = start >= 0 ? 0 : (-start + d - 1) / d;  // first tap at or past row 0
    empty[o] = i0 >= k || start + i0 * d >= n;
  }
  return empty;
}

std::vector<int64_t> out_shape(at::IntArrayRef in, const MaxPool2dShape& s) {
  std::vector<int64_t> shape = in.vec();
  shape[shape.size() - 2] = s.OH;
  shape[shape.size() - 1] = s.OW;
  return shape;
}

// Output and (with_indices) indices; without indices the kernels compute the values only.
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                           at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode,
                                           bool with_indices) {
  check_float(kOp, "input", input);
  const MaxPool2dShape s = make_shape(input.sizes(), kernel_size, stride, padding, dilation, ceil_mode);
  const auto shape = out_shape(input.sizes(), s);
  // channels_last input -> channels_last output and indices, as torch does
  const bool cl = input.dim() == 4 && !input.is_contiguous() && input.is_contiguous(at::MemoryFormat::ChannelsLast);
  const Backend be = backend_for(input);
  const bool nhwc = cl && has_kernel<MaxPool2dForwardNhwc, float>(be);  // a kernel for (N, H, W, C) memory (the CPU's)
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor y = at::empty(shape, input.options().memory_format(fmt));
  at::Tensor ind = with_indices ? at::empty(shape, input.options().dtype(at::kLong).memory_format(fmt)) : at::Tensor();
  if (nothing_to_compute(y)) return {y, ind};
  const at::DeviceGuard guard(input.device());
  if (nhwc) {
    dispatch_floating(input, [&](auto t) {
      using T = decltype(t);
      call_kernel<MaxPool2dForwardNhwc, T>(be, s, input.size(1), data_as<T>(input), data_as<T>(y),
                                           with_indices ? ind.mutable_data_ptr<int64_t>() : nullptr);
    });
    return {y, ind};
  }
  // NCHW kernels: contiguous planes in, contiguous planes out (copied into channels_last outputs)
  const at::Tensor x = input.contiguous();
  at::Tensor yc = cl ? y.contiguous() : y;
  at::Tensor ic = cl && with_indices ? ind.contiguous() : ind;
  dispatch_floating(x, [&](auto t) {
    using T = decltype(t);
    int64_t* ip = with_indices ? ic.mutable_data_ptr<int64_t>() : nullptr;
    call_kernel<MaxPool2dForward, T>(be, s, data_as<T>(x), data_as<T>(yc), ip);
  });
  if (cl) {
    y.copy_(yc);
    if (with_indices) ind.copy_(ic);
  }
  return {y, ind};
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_forward(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                      at::IntArrayRef stride, at::IntArrayRef padding,
                                                      at::IntArrayRef dilation, bool ceil_mode) {
  return forward(input, kernel_size, stride, padding, dilation, ceil_mode, true);
}

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(forward(input, kernel_size, stride, padding, dilation, ceil_mode, false));
}

at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                               c10::SymIntArrayRef input_shape, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const auto in = C10_AS_INTARRAYREF_SLOW(input_shape);
  check_float(kOp, "grad_output", grad_output);
  TORCH_CHECK_TYPE(indices.scalar_type() == at::kLong, kOp, ": indices must be int64, got ", indices.scalar_type());
  check_same_device(kOp, "indices", indices, "grad_output", grad_output);
  const MaxPool2dShape s = make_shape(in, kernel_size, stride, padding, dilation, ceil_mode);
  const auto shape = out_shape(in, s);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(shape), kOp, ": grad_output has shape ", grad_output.sizes(),
              " but the output for input shape ", in, " is ", at::IntArrayRef(shape));
  TORCH_CHECK(indices.sizes() == grad_output.sizes(), kOp, ": indices has shape ", indices.sizes(),
              " but grad_output has shape ", grad_output.sizes());
  at::Tensor gx = at::empty(in, grad_output.options());
  if (nothing_to_compute(gx)) return gx;
  const at::DeviceGuard guard(gx.device());
  at::Tensor gy = grad_output.contiguous(), ix = indices.contiguous();
  // Windows entirely in the padding (see empty_windows): their output depends on no input, so their
  // gradient goes nowhere -- on every backend alike. Their junk indices would otherwise make the CPU
  // scatter reject them and could make the CUDA gather credit an unrelated element; torch's own
  // backward writes into the next plane there. Rare (dilation > 1 with padding), so it is done here,
  // with a (OH, OW) mask broadcast over the planes, instead of a test in every kernel's inner loop.
  {
    const auto rows = empty_windows(s.H, s.OH, s.kh, s.stride_h, s.pad_h, s.dil_h);
    const auto cols = empty_windows(s.W, s.OW, s.kw, s.stride_w, s.pad_w, s.dil_w);
    const bool any_row = std::find(rows.begin(), rows.end(), true) != rows.end();
    const bool any_col = std::find(cols.begin(), cols.end(), true) != cols.end();
    if (any_row || any_col) {
      at::Tensor mask = at::empty({s.OH, s.OW}, at::TensorOptions().dtype(at::kBool));
      bool* m = mask.mutable_data_ptr<bool>();
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) m[oh * s.OW + ow] = rows[oh] || cols[ow];
      mask = mask.to(gy.device());
      gy = gy.masked_fill(mask, 0).contiguous();
      ix = ix.masked_fill(mask, 0).contiguous();  // any in-plane index: it carries a zero gradient
    }
  }
  const Backend be = backend_for(gy);
  dispatch_floating(gy, [&](auto t) {
    using T = decltype(t);
    const int64_t* ip = ix.const_data_ptr<int64_t>();
    TORCH_CHECK((call_kernel<MaxPool2dBackward, T>(be, s, data_as<T>(gy), ip, data_as<T>(gx))), kOp,
                ": indices must lie in [0, H*W) of each input plane, H*W = ", s.H * s.W);
  });
  return gx;
}

}  // namespace
}  // namespace cnnext

TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def("max_pool2d_forward(Tensor input, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
        "int[2] dilation=1, bool ceil_mode=False) -> (Tensor output, Tensor indices)");
  m.def("max_pool2d(Tensor input, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, "
        "bool ceil_mode=False) -> Tensor");
  m.def("max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[] input_shape, int[2] kernel_size, "
        "int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnext, CPU, m) {
  m.impl("max_pool2d_forward", &cnnext::max_pool2d_forward);
  m.impl("max_pool2d", &cnnext::max_pool2d);
  m.impl("max_pool2d_backward", &cnnext::max_pool2d_backward);
}

#ifdef CNNEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(cnnext, CUDA, m) {
  m.impl("max_pool2d_forward", &cnnext::max_pool2d_forward);
  m.impl("max_pool2d", &cnnext::max_pool2d);
  m.impl("max_pool2d_backward", &cnnext::max_pool2d_backward);
}
#endif
