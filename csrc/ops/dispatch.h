// dispatch.h -- shared by every csrc/ops/<op>.cpp: which backend runs an op (CPU kernels, real
// CUDA kernels, or the CUDA kernels under the emulator), the one call into its registered kernel,
// and the argument checks every op repeats.
#pragma once
// The slim ATen headers (not <ATen/ATen.h>): the ops only need Tensor and the allocating factories,
// and parsing all of ATen per ops file took 40% of the build.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <array>
#include <optional>
#include <utility>

#include "../common/backend.h"
#include "../common/bfloat16.h"
#include "../common/float16.h"

namespace cnnext {

// Thread-local switch behind `with cnnext.emulate_cuda():` (ops _set_emulate_cuda).
bool emulating_cuda();
bool set_emulating_cuda(bool on);  // returns the previous value

// CUDA for CUDA tensors; for CPU tensors Emulator inside emulate_cuda(), else CPU.
// Whether an op is done once its checks have passed and its outputs are allocated: an empty output,
// or meta tensors -- the fake kernels (cnnext/ops/_checks.py, cpp_checks) run the op on meta
// stand-ins so that its checks here are the only ones, and a meta tensor has no data to compute on.
inline bool nothing_to_compute(const at::Tensor& out) { return out.numel() == 0 || out.is_meta(); }

inline Backend backend_for(const at::Tensor& t) {
  if (t.is_cuda()) return Backend::CUDA;
  return emulating_cuda() ? Backend::Emulator : Backend::CPU;
}

// The stream a kernel gets: the current CUDA stream on the tensor's device, nullptr for the CPU
// and the emulator.  (Defined in dispatch.cpp, the only ops file that includes CUDA headers.)
cudaStream_t stream_for(Backend be);
const char* missing_kernel_message(Backend be);

// Whether backend `be` registered a kernel for op tag Op (e.g. a CPU-only layout).
template <typename Op, typename T>
bool has_kernel(Backend be) {
  return Kernel<Op, T>::table[int(be)] != nullptr;
}

// The one call an op makes: backend be's kernel for Op and dtype T (csrc/common/backend.h), with the
// stream appended to the arguments.
template <typename Op, typename T, typename... A>
decltype(auto) call_kernel(Backend be, A&&... args) {
  auto* fn = Kernel<Op, T>::table[int(be)];
  TORCH_CHECK(fn != nullptr, missing_kernel_message(be));
  return fn(std::forward<A>(args)..., stream_for(be));
}

// The scratch backend `be`'s kernel needs, from the op's workspace-size tag WsOp (e.g.
// Conv2dWeightWorkspace: the CUDA launchers' split partials), allocated here with at::empty like `like`
// (the launchers allocate nothing); undefined when the backend has no such tag (the CPU) or needs none.
// (dtype: the workspace's element type where it is not like's, e.g. float32 for half activations' batch norm)
template <typename WsOp, typename T, typename S>
at::Tensor workspace(Backend be, const S& s, const at::Tensor& like,
                     std::optional<at::ScalarType> dtype = std::nullopt) {
  const int64_t n = has_kernel<WsOp, T>(be) ? call_kernel<WsOp, T>(be, s) : 0;
  return n > 0 ? at::empty({n}, like.options().dtype(dtype.value_or(like.scalar_type()))) : at::Tensor();
}
template <typename T>
T* workspace_ptr(const at::Tensor& ws) {
  return ws.defined() ? static_cast<T*>(ws.mutable_data_ptr()) : nullptr;
}

// ---- bfloat16 and float16 ----
// Every op's backends have kernels for bfloat16 and float16 (cnnext.info()["half_kernels"]; csrc/common's
// storage types, the same 16 bits as c10's): float32 accumulation and one rounding per output, the
// arithmetic of torch's own kernels for these dtypes.
// f(H{}) for H, the kernel element type of half tensor t: bfloat16 or float16.
template <typename F>
decltype(auto) dispatch_half(const at::Tensor& t, F&& f) {
  return t.scalar_type() == at::kHalf ? f(float16{}) : f(bfloat16{});
}
// t's data as the kernel element type T (csrc/common's bfloat16 / float16 for the half dtypes); nullptr
// for an undefined t (both overloads).
template <typename T>
const T* data_as(const at::Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.const_data_ptr()) : nullptr;
}
template <typename T>
T* data_as(at::Tensor& t) {
  return t.defined() ? static_cast<T*>(t.mutable_data_ptr()) : nullptr;
}
inline bool is_half(const at::Tensor& t) {
  return t.defined() && (t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf);
}
// f(T{}) for T, the kernel element type of t: float, double, bfloat16 or float16.
template <typename F>
decltype(auto) dispatch_floating(const at::Tensor& t, F&& f) {
  if (is_half(t)) return dispatch_half(t, f);
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "cnnext: no kernel for dtype ",
              t.scalar_type());
  return t.scalar_type() == at::kDouble ? f(double{}) : f(float{});
}

// ---- argument checks: every message starts with the op's name ----
// float32, float64, bfloat16 or float16.
// An (h, w) argument (schema int[2]): one value is both, two are (h, w); any other count is refused,
// naming the op and the argument. (cnnext/ops/_checks.py's `pair` is the Python side's normaliser.)
std::array<int64_t, 2> pair_arg(const char* op, const char* arg, at::IntArrayRef v);
void check_float(const char* op, const char* arg, const at::Tensor& t);
// same device as `ref` (named ref_arg).
void check_same_device(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                       const at::Tensor& ref);
// same dtype as `ref`.
void check_same_dtype(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                      const at::Tensor& ref);
// t.dim() == d; `shape` describes the expected layout, e.g. "(out, in/groups, kh, kw)".
void check_dim(const char* op, const char* arg, const at::Tensor& t, int64_t d, const char* shape);

}  // namespace cnnext
