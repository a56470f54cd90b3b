// dispatch.h -- shared by every csrc/ops/<op>.cpp: which backend runs an op
// (CPU kernels, real CUDA kernels, or the CUDA kernels under the emulator),
// and the argument checks every op repeats.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "../cuda/launchers.h"

namespace cnnext {

enum class Backend { CPU, EMU, CUDA };

// Thread-local switch behind `with cnnext.emulate_cuda():` (ops _set_emulate_cuda).
bool emulating_cuda();
bool set_emulating_cuda(bool on);  // returns the previous value

// CUDA for CUDA tensors; for CPU tensors EMU inside emulate_cuda(), else CPU.
inline Backend backend_for(const at::Tensor& t) {
  if (t.is_cuda()) return Backend::CUDA;
  return emulating_cuda() ? Backend::EMU : Backend::CPU;
}

// The stream a launcher gets: the current CUDA stream on the tensor's device,
// nullptr for the emulator.  (Defined in dispatch.cpp, the only ops file that
// includes CUDA headers.)
cudaStream_t stream_for(Backend be);

// Call the device launcher `fn` (e.g. corr2d_forward<scalar_t>) of backend `be`
// (CUDA or EMU) with the stream appended to its arguments.
#ifdef CNNEXT_WITH_CUDA
#define CNNEXT_DEVICE_CALL(be, fn, ...)                                          \
  do {                                                                           \
    if ((be) == ::cnnext::Backend::CUDA)                                          \
      ::cnnext::cuda::fn(__VA_ARGS__, ::cnnext::stream_for(be));                 \
    else                                                                         \
      ::cnnext::emu::fn(__VA_ARGS__, nullptr);                                   \
  } while (0)
#else
#define CNNEXT_DEVICE_CALL(be, fn, ...)                                          \
  do {                                                                           \
    TORCH_CHECK((be) != ::cnnext::Backend::CUDA,                                  \
                "cnnext was built without CUDA kernels (CNNEXT_CUDA=0 or no nvcc)"); \
    ::cnnext::emu::fn(__VA_ARGS__, nullptr);                                     \
  } while (0)
#endif

// ---- argument checks: every message starts with the op's name ----
// float32 / float64 only.
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
