// dispatch.cpp -- the emulate-CUDA switch, the CUDA stream lookup, shared checks,
// and the library's utility ops (_set_emulate_cuda, build_info).
#include "dispatch.h"

#include "../common/adaptive_avg_pool2d.h"
#include "../common/avg_pool2d.h"
#include "../common/batch_norm.h"
#include "../common/conv2d.h"
#include "../common/max_pool2d.h"

#include <torch/library.h>
#include <torch/version.h>

#include <sstream>
#include <thread>

#ifdef CNNEXT_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace cnnext {

namespace {
thread_local bool t_emulating = false;
}

bool emulating_cuda() { return t_emulating; }

bool set_emulating_cuda(bool on) {
  const bool prev = t_emulating;
  t_emulating = on;
  return prev;
}

const char* missing_kernel_message(Backend be) {
  return be == Backend::CUDA ? "cnnext was built without CUDA kernels (CNNEXT_CUDA=0 or no nvcc)"
                             : "cnnext: no kernel registered for this backend";
}

cudaStream_t stream_for(Backend be) {
#ifdef CNNEXT_WITH_CUDA
  if (be == Backend::CUDA) return c10::cuda::getCurrentCUDAStream().stream();
#endif
  (void)be;
  return nullptr;
}

void check_float(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble || is_half(t), op, ": ", arg,
                   " must be float32, float64, bfloat16 or float16, got ", t.scalar_type());
}

void check_same_device(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                       const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", arg, " is on ", t.device(), " but ", ref_arg, " is on ",
              ref.device(), "; they must be on the same device");
}

void check_same_dtype(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                      const at::Tensor& ref) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", arg, " has dtype ", t.scalar_type(), " but ",
                   ref_arg, " has dtype ", ref.scalar_type(), "; they must match");
}

std::array<int64_t, 2> pair_arg(const char* op, const char* arg, at::IntArrayRef v) {
  TORCH_CHECK(v.size() == 1 || v.size() == 2, op, ": ", arg, " must be an int or a pair of ints, got ", v);
  return {v[0], v[v.size() - 1]};
}

void check_dim(const char* op, const char* arg, const at::Tensor& t, int64_t d, const char* shape) {
  TORCH_CHECK(t.dim() == d, op, ": ", arg, " must be ", d, "-D ", shape, ", got ", t.dim(), "-D");
}

namespace {

// The ops with kernels of their own for a half dtype, per backend, as a JSON object of lists of
// "op/dtype" (every other half call is widened to float32: dispatch.h).
template <typename Op>
void list_half(std::ostringstream& o, const char* op, Backend be, bool& first) {
  for (const auto& [dtype, has] : {std::pair{"bfloat16", has_kernel<Op, bfloat16>(be)},
                                   std::pair{"float16", has_kernel<Op, float16>(be)}}) {
    if (!has) continue;
    o << (first ? "" : ", ") << "\"" << op << "/" << dtype << "\"";
    first = false;
  }
}
std::string half_kernels() {
  std::ostringstream o;
  o << "{";
  const std::pair<const char*, Backend> backends[] = {{"cpu", Backend::CPU}, {"emulator", Backend::Emulator},
                                                      {"cuda", Backend::CUDA}};
  for (const auto& [name, be] : backends) {
    o << (be == Backend::CPU ? "" : ", ") << "\"" << name << "\": [";
    bool first = true;
    list_half<AdaptiveAvgPool2dForward>(o, "adaptive_avg_pool2d", be, first);
    list_half<AvgPool2dForward>(o, "avg_pool2d", be, first);
    list_half<BatchNormForward>(o, "batch_norm", be, first);
    list_half<Conv2dForward>(o, "conv2d", be, first);
    list_half<Conv2dForward>(o, "corr2d", be, first);  // (conv2d's kernels, one channel)
    list_half<MaxPool2dForward>(o, "max_pool2d", be, first);
    o << "]";
  }
  return o.str() + "}";
}

// A JSON object; cnnext/info.py adds what Python knows (versions, archs, GPU).
std::string build_info() {
  std::ostringstream o;
  o << "{\"compiler\": \"" <<
#if defined(__clang__)
      "clang "
#elif defined(__GNUC__)
      "gcc "
#endif
    << __VERSION__ << "\", \"cuda_compiled\": "
#ifdef CNNEXT_WITH_CUDA
    << "true"
#else
    << "false"
#endif
    << ", \"torch_version_compiled\": \"" << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR << "."
    << TORCH_VERSION_PATCH << "\", \"emulator\": true, \"half_kernels\": " << half_kernels() << "}";
  return o.str();
}

}  // namespace
}  // namespace cnnext

// The one TORCH_LIBRARY block of the library; every op file adds its schemas
// with TORCH_LIBRARY_FRAGMENT(cnnext, m) and its kernels with TORCH_LIBRARY_IMPL.
TORCH_LIBRARY(cnnext, m) {
  m.def("_set_emulate_cuda(bool enable) -> bool", [](bool on) { return cnnext::set_emulating_cuda(on); });
  m.def("_emulating_cuda() -> bool", []() { return cnnext::emulating_cuda(); });
  m.def("_set_emu_grid_cap(int cap) -> int", [](int64_t cap) {
    TORCH_CHECK(cap >= 1 && cap <= 65535, "_set_emu_grid_cap: cap must be in [1, 65535], got ", cap);
    return int64_t(cnnext::emulated::set_grid_cap(unsigned(cap)));
  });
  m.def("build_info() -> str", []() { return cnnext::build_info(); });
}
