// launchers.h -- how the CUDA launchers are declared, without CUDA headers.
//
// Every csrc/cuda/<op>.cu is compiled twice: by nvcc into namespace cnnext::cuda (real GPU
// kernels) and by the host compiler with -DEMU into namespace cnnext::emulated (the same kernels
// run by the emulator on the CPU).  Its header csrc/cuda/<op>.h declares the launchers once, for
// both, with
//   CNNEXT_DECLARE_LAUNCHERS( template <typename T> void my_op(const MyOpShape&, const T*, ..., cudaStream_t); )
// Launchers take the op's geometry struct (csrc/common/<op>.h), raw pointers and a stream; they
// are torch-free, neither allocate nor read the environment, and each .cu registers its launchers
// as its backend's kernels (CNNEXT_REGISTER_DEVICE_KERNEL, csrc/common/backend.h).  csrc/ops
// reaches them only through that registry.
#pragma once
#include <cstdint>

#include "../common/backend.h"

#define CNNEXT_DECLARE_LAUNCHERS(...)  \
  namespace cnnext::cuda { __VA_ARGS__ } \
  namespace cnnext::emulated { __VA_ARGS__ }
