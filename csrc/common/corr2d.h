// common/corr2d.h -- the geometry of one corr2d call (filled by csrc/ops/corr2d.cpp, read by
// csrc/cpu/corr2d.cpp and csrc/cuda/corr2d.cu) and its entry points (common/backend.h).
//   x (B, H, W), k (kh, kw), y (B, OH, OW), all contiguous; OH = H - kh + 1, OW = W - kw + 1.
#pragma once
#include <cstdint>

#include "backend.h"

namespace cnnext {
struct Corr2dShape {
  int64_t B, H, W;  // planes, input height, width
  int64_t kh, kw;   // kernel height, width (at most H, W)
};

struct Corr2dForward {  // y = x cross-correlated with k
  template <typename T>
  using Fn = void(const Corr2dShape& shape, const T* x, const T* k, T* y, cudaStream_t stream);
};
struct Corr2dBackwardInput {  // gx (B, H, W) from gy and k, fully written
  template <typename T>
  using Fn = void(const Corr2dShape& shape, const T* gy, const T* k, T* gx, cudaStream_t stream);
};
// gk (kh, kw) = sum over the batch of gy * shifted x.  workspace: Corr2dKernelWorkspace's number of
// elements (allocated by csrc/ops), nullptr when the backend has no such tag (the CPU).
struct Corr2dBackwardKernel {
  template <typename T>
  using Fn = void(const Corr2dShape& shape, const T* gy, const T* x, T* gk, T* workspace, cudaStream_t stream);
};
// The elements of scratch Corr2dBackwardKernel needs for shape (the CUDA launcher's split partials).
struct Corr2dKernelWorkspace {
  template <typename T>
  using Fn = int64_t(const Corr2dShape& shape, cudaStream_t stream);
};
}  // namespace cnnext
