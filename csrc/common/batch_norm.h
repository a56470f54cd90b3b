// common/batch_norm.h -- the dimensions and settings of one batch_norm call (filled by
// csrc/ops/batch_norm.cpp, read by csrc/cpu/batch_norm.cpp and csrc/cuda/batch_norm.cu), its tensors,
// and the entry points (common/backend.h).
//   x, y, gy, gx: (N, C, S) contiguous, S = prod(spatial dims).  S == 1 also covers the channels-last
//   layout (N*H*W, C, 1) and (N, C) inputs: rows of C channels.
//   w, b: (C,) or nullptr (affine=False: w = 1, b = 0).  running_mean, running_var: (C,) or nullptr.
//   mean, invstd: (C,) outputs of the forward (the batch's statistics in training, the running ones
//   otherwise) that the backward reads.  relu: y = max(BN(x), 0), and the backward masks grad_output
//   with BN(x) > 0.
#pragma once
#include <cstdint>

#include "backend.h"
#include "bfloat16.h"
#include "float16.h"

namespace cnnext {

struct BatchNormShape {
  int64_t N, C, S;
  bool training;
  double momentum, eps;  // the forward's
  bool relu;
};

// The dtype P of the per-channel tensors (w, b, running stats, mean, invstd, gw, gb) for activations of
// dtype T: T, and float32 for bfloat16 and float16 activations (torch's mixed-precision batch norm; csrc/ops
// converts half parameters to float32 around the call).
template <typename T>
struct BatchNormParam {
  using type = T;
};
template <>
struct BatchNormParam<bfloat16> {
  using type = float;
};
template <>
struct BatchNormParam<float16> {  // (the CPU kernels)
  using type = float;
};

template <typename T, typename P = typename BatchNormParam<T>::type>
struct BatchNormForwardArgs {
  const T* x;
  T* y;
  const P *w, *b;
  P *running_mean, *running_var;
  P *mean, *invstd;
  P* workspace = nullptr;  // BatchNormForwardWorkspace's elements (allocated by csrc/ops); nullptr when 0
};

template <typename T, typename P = typename BatchNormParam<T>::type>
struct BatchNormBackwardArgs {
  const T *gy, *x;
  const P *w, *b;
  const P *mean, *invstd;
  T* gx;
  P *gw, *gb;  // gw, gb: (C,) always written (the sums of gy * xhat and of gy)
  P* workspace = nullptr;  // BatchNormBackwardWorkspace's elements (allocated by csrc/ops); nullptr when 0
};

// Channel c's pre-activation terms, y = (x - center) * scale + shift: scale = invstd * w (invstd when
// w is nullptr), center = mean, shift = b (0 when b is nullptr); a non-finite scale (w = +-inf,
// invstd = inf) takes torch's form x * scale + (b - mean * scale) (center 0), so inf - inf is NaN as
// in torch.  The one definition the CPU and CUDA kernels use.
template <typename T>
struct BatchNormAffine {
  T center, scale, shift;
};
template <typename T>
CNNEXT_HOST_DEVICE inline T batch_norm_scale(const T* invstd, const T* w, int64_t c) {
  return w ? invstd[c] * w[c] : invstd[c];
}
template <typename T>
CNNEXT_HOST_DEVICE inline BatchNormAffine<T> batch_norm_affine(const T* mean, const T* invstd, const T* w, const T* b,
                                                              int64_t c) {
  const T sc = batch_norm_scale(invstd, w, c), m = mean[c], b0 = b ? b[c] : T(0);
  const bool finite = sc - sc == T(0);
  return {finite ? m : T(0), sc, finite ? b0 : b0 - m * sc};
}

struct BatchNormForward {
  template <typename T>
  using Fn = void(const BatchNormShape& s, const BatchNormForwardArgs<T>& a, cudaStream_t stream);
};
struct BatchNormBackward {
  template <typename T>
  using Fn = void(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a, cudaStream_t stream);
};
// The elements of scratch a backend's forward / backward needs for shape s (the CUDA launchers' split
// partials and per-channel coefficients); a backend without the tag (the CPU) needs none.
struct BatchNormForwardWorkspace {
  template <typename T>
  using Fn = int64_t(const BatchNormShape& s, cudaStream_t stream);
};
struct BatchNormBackwardWorkspace {
  template <typename T>
  using Fn = int64_t(const BatchNormShape& s, cudaStream_t stream);
};

}  // namespace cnnext
