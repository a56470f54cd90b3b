// common/conv2d.h -- the geometry and plan of one conv2d call: the one struct csrc/ops/conv2d.cpp fills
// (after checking every argument), and the CPU kernels (csrc/cpu/conv2d*.cpp) and the CUDA launchers
// (csrc/cuda/conv2d.cu) read; and the op's entry points, which every backend implements with these
// signatures (common/backend.h).  Torch-free and CUDA-free.
//   x  (N, C, H, W)        contiguous NCHW input
//   w  (K, C/groups, R, S) contiguous weight
//   y  (N, K, P, Q)        contiguous NCHW output
//   P = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1, Q likewise (the ops layer checks P, Q >= 1).
#pragma once
#include <cstdint>

#include "backend.h"

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
  // The plan's overrides, read from the environment by csrc/ops (the launchers read no environment):
  bool cuda_direct = false;  // CNNEXT_CONV2D_DIRECT=1: the CUDA launchers' 64-bit direct kernels (tests)
  int cuda_tile = 0;         // CNNEXT_CONV2D_TILE=64|128: the CUDA float GEMM tile; 0: chosen per shape
};

// The entry points.  x, w, b, y as above (b and gb may be nullptr); outputs fully written.
struct Conv2dForward {
  template <typename T>
  using Fn = void(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, cudaStream_t stream);
};
struct Conv2dBackwardInput {
  template <typename T>
  using Fn = void(const Conv2dShape& s, const T* gy, const T* w, T* gx, cudaStream_t stream);
};
// workspace: Conv2dWeightWorkspace's number of elements (allocated by csrc/ops), nullptr when 0.
struct Conv2dBackwardWeight {
  template <typename T>
  using Fn = void(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb, T* workspace, cudaStream_t stream);
};
// The elements of scratch Conv2dBackwardWeight needs for shape s (a backend without it needs none).
struct Conv2dWeightWorkspace {
  template <typename T>
  using Fn = int64_t(const Conv2dShape& s, cudaStream_t stream);
};
}  // namespace cnnext
