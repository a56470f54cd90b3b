// cpu_kernels.cpp -- the CPU backend's kernels, registered for csrc/ops (common/backend.h): one line
// per entry point.  The CUDA backend registers its launchers at the end of each csrc/cuda/<op>.cu;
// the CPU kernels are compiled once per ISA into cnnext/_cpu_<isa>.so (csrc/isa/variant.cpp), which
// export only their cnnext::cpu:: entry points, so their registration lives here, in the ops
// library: these references resolve to the variant the loader loaded first.
#include "../cpu/adaptive_avg_pool2d.h"
#include "../cpu/avg_pool2d.h"
#include "../cpu/batch_norm.h"
#include "../cpu/cat.h"
#include "../cpu/conv2d.h"
#include "../cpu/conv2d_bf16.h"
#include "../cpu/corr2d.h"
#include "../cpu/max_pool2d.h"
#include "../cpu/pool2d_half.h"

#include <torch/library.h>

#include <type_traits>

namespace cnnext::cpu {
namespace {
template <typename T>  // the CPU conv2d variants keep their own scratch: no workspace
void conv2d_backward_weight_ws(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb, T*) {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) conv2d_backward_weight_half<T>(s, x, gy, gw, gb);
  else conv2d_backward_weight<T>(s, x, gy, gw, gb);
}
template <typename T>  // likewise corr2d's grad kernel: no workspace
void corr2d_backward_kernel_ws(const Corr2dShape& s, const T* gy, const T* x, T* gk, T*) {
  corr2d_backward_kernel<T>(s, gy, x, gk);
}
}  // namespace

CNNEXT_REGISTER_CPU_KERNEL(Conv2dForward, conv2d_forward)
CNNEXT_REGISTER_CPU_KERNEL(Conv2dBackwardInput, conv2d_backward_input)
CNNEXT_REGISTER_CPU_KERNEL(Conv2dBackwardWeight, conv2d_backward_weight_ws)
// bfloat16: AMX / vdpbf16ps where the CPU has them, else the float32 variants on widened copies; float16: the
// float32 variants on copies widened with F16C (conv2d_bf16.cpp)
CNNEXT_REGISTER_CPU_HALF_KERNEL(Conv2dForward, conv2d_forward_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(Conv2dBackwardInput, conv2d_backward_input_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(Conv2dBackwardWeight, conv2d_backward_weight_ws)

CNNEXT_REGISTER_CPU_KERNEL(Corr2dForward, corr2d_forward)
CNNEXT_REGISTER_CPU_KERNEL(Corr2dBackwardInput, corr2d_backward_input)
CNNEXT_REGISTER_CPU_KERNEL(Corr2dBackwardKernel, corr2d_backward_kernel_ws)

CNNEXT_REGISTER_CPU_KERNEL(MaxPool2dForward, max_pool2d_forward)
CNNEXT_REGISTER_CPU_KERNEL(MaxPool2dForwardNhwc, max_pool2d_forward_nhwc)  // a layout only the CPU has
CNNEXT_REGISTER_CPU_KERNEL(MaxPool2dBackward, max_pool2d_backward)

CNNEXT_REGISTER_CPU_KERNEL(AvgPool2dForward, avg_pool2d_forward)
CNNEXT_REGISTER_CPU_KERNEL(AvgPool2dBackward, avg_pool2d_backward)

CNNEXT_REGISTER_CPU_KERNEL(AdaptiveAvgPool2dForward, adaptive_avg_pool2d_forward)
CNNEXT_REGISTER_CPU_KERNEL(AdaptiveAvgPool2dBackward, adaptive_avg_pool2d_backward)

// bfloat16 and float16 pooling: the float32 kernels on per-thread widened blocks of planes (pool2d_half.cpp)
CNNEXT_REGISTER_CPU_HALF_KERNEL(MaxPool2dForward, max_pool2d_forward_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(MaxPool2dForwardNhwc, max_pool2d_forward_nhwc_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(MaxPool2dBackward, max_pool2d_backward_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(AvgPool2dForward, avg_pool2d_forward_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(AvgPool2dBackward, avg_pool2d_backward_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(AdaptiveAvgPool2dForward, adaptive_avg_pool2d_forward_half)
CNNEXT_REGISTER_CPU_HALF_KERNEL(AdaptiveAvgPool2dBackward, adaptive_avg_pool2d_backward_half)

CNNEXT_REGISTER_CPU_KERNEL(BatchNormForward, batch_norm_forward)
CNNEXT_REGISTER_CPU_KERNEL(BatchNormBackward, batch_norm_backward)
// bfloat16 / float16 activations, float32 parameters: batch_norm's half variants (lanes16, widened)
CNNEXT_REGISTER_CPU_HALF_KERNEL(BatchNormForward, batch_norm_forward)
CNNEXT_REGISTER_CPU_HALF_KERNEL(BatchNormBackward, batch_norm_backward)

CNNEXT_REGISTER_KERNEL_T(CatForward, void, ::cnnext::Backend::CPU, &::cnnext::WithoutStream<&cat_forward>::call)
CNNEXT_REGISTER_KERNEL_T(CatBackward, void, ::cnnext::Backend::CPU, &::cnnext::WithoutStream<&cat_backward>::call)
}  // namespace cnnext::cpu

// The bfloat16 conv2d variants the loaded CPU variant runs on this CPU (cnnext.info()["conv2d_bf16"]).
TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def("_conv2d_bf16_variants() -> str", []() -> std::string {
    std::string v = "float";
    if (cnnext::cpu::conv2d_bf16_amx()) v += ",amx";
    if (cnnext::cpu::conv2d_bf16_dot()) v += ",dot";
    return v;
  });
}
