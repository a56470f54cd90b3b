// common/max_pool2d.h -- the geometry of one max_pool2d call: filled by csrc/ops/max_pool2d.cpp, read
// by the CPU kernels (csrc/cpu/max_pool2d.cpp) and the CUDA launchers (csrc/cuda/max_pool2d.cu).
//   x   (NC, H, W)   contiguous input planes (N*C of them)
//   y   (NC, OH, OW) contiguous output
//   ind (NC, OH, OW) int64, the flat index h*W + w of each output's max inside its plane; the forward
//                    takes nullptr for the values only
// OH = floor_or_ceil((H + 2*pad_h - dil_h*(kh-1) - 1) / stride_h) + 1 (torch's formula, checked >= 1
// by the caller), OW likewise; pad_h <= kh/2, pad_w <= kw/2.
#pragma once
#include <cstdint>

#include "backend.h"

namespace cnnext {
struct MaxPool2dShape {
  int64_t NC, H, W;    // planes, input height, width
  int64_t OH, OW;      // output height, width
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

// The entry points.  Ties and NaN as PyTorch: scan the window row by row, replace when (v > max || isnan(v)).
struct MaxPool2dForward {  // x (NC, H, W) -> y, ind (NC, OH, OW); ind may be nullptr (the values only)
  template <typename T>
  using Fn = void(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind, cudaStream_t stream);
};
// channels_last: x (N, H, W, C) physically, y and ind (N, OH, OW, C); NC = N*C planes as above.
// A capability: only backends with a kernel for this layout register it (the CPU).
struct MaxPool2dForwardNhwc {
  template <typename T>
  using Fn = void(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind, cudaStream_t stream);
};
// gx (NC, H, W) = scatter-add of gy into ind, fully written.  Returns false if the backend found an
// index outside [0, H*W) (the CPU's scatter checks; the GPU's gather never matches one: true).
struct MaxPool2dBackward {
  template <typename T>
  using Fn = bool(const MaxPool2dShape& s, const T* gy, const int64_t* ind, T* gx, cudaStream_t stream);
};
}  // namespace cnnext
