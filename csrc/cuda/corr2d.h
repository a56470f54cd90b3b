// Launchers of csrc/cuda/corr2d.cu; geometry and entry points in ../common/corr2d.h.
#pragma once
#include "../common/corr2d.h"
#include "launchers.h"

CNNEXT_DECLARE_LAUNCHERS(
  template <typename T>
  void corr2d_forward(const Corr2dShape& shape, const T* x, const T* k, T* y, cudaStream_t stream);
  template <typename T>
  void corr2d_backward_input(const Corr2dShape& shape, const T* gy, const T* k, T* gx, cudaStream_t stream);
  // workspace: corr2d_kernel_workspace<T>(shape) elements, allocated by the caller
  template <typename T>
  void corr2d_backward_kernel(const Corr2dShape& shape, const T* gy, const T* x, T* gk, T* workspace,
                              cudaStream_t stream);
  template <typename T>
  int64_t corr2d_kernel_workspace(const Corr2dShape& shape, cudaStream_t stream);
)
