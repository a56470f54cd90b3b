// Launchers of csrc/cuda/batch_norm.cu; dimensions, tensors and entry points in ../common/batch_norm.h.
#pragma once
#include "../common/batch_norm.h"
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void batch_norm_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a, cudaStream_t stream);
  template <typename T>
  void batch_norm_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a, cudaStream_t stream);
  // the workspace elements a.workspace must hold (allocated by the caller)
  template <typename T>
  int64_t batch_norm_forward_workspace(const BatchNormShape& s, cudaStream_t stream);
  template <typename T>
  int64_t batch_norm_backward_workspace(const BatchNormShape& s, cudaStream_t stream);
)
