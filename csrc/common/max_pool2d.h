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

namespace cnnext {
struct MaxPool2dShape {
  int64_t NC, H, W;    // planes, input height, width
  int64_t OH, OW;      // output height, width
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};
}  // namespace cnnext
