// common/conv2d.h -- the geometry of one conv2d call: the one struct csrc/ops/conv2d.cpp fills (after
// checking every argument), and the CPU kernels (csrc/cpu/conv2d*.cpp) and the CUDA launchers
// (csrc/cuda/conv2d.cu) read.  Torch-free and CUDA-free.
//   x  (N, C, H, W)        contiguous NCHW input
//   w  (K, C/groups, R, S) contiguous weight
//   y  (N, K, P, Q)        contiguous NCHW output
//   P = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1, Q likewise (the ops layer checks P, Q >= 1).
#pragma once
#include <cstdint>

namespace cnnext {
struct Conv2dShape {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // output channels, kernel height, kernel width
  int64_t P, Q;        // output height, width
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  // The plan's precision: float convs may use TF32 tensor cores (torch.backends.cudnn.allow_tf32, read by
  // csrc/ops/conv2d.cpp as cuDNN reads it). The CUDA launchers (and the emulator) follow it; the CPU
  // kernels and float64 are always exact.
  bool allow_tf32 = false;
};
}  // namespace cnnext
