// The sizes of one conv2d call, shared by the CPU kernels, the CUDA launchers and csrc/ops.
#pragma once
#include <cstdint>

namespace cnnext {
struct Conv2dShape {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // output channels, kernel height, kernel width
  int64_t P, Q;        // output height, width
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  // The conv plan's precision: float convs may use TF32 tensor cores (torch.backends.cudnn.allow_tf32,
  // read by csrc/ops, as cuDNN reads it). The CUDA launchers (and the emulator) follow it; the CPU
  // kernels and double are always exact FP32 / FP64.
  bool allow_tf32 = false;
};
}  // namespace cnnext
