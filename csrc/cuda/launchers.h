// launchers.h -- how csrc/ops/ sees the CUDA launchers, without CUDA headers.
//
// Every csrc/cuda/<op>.cu is compiled twice: by nvcc into namespace
// cnnext::cuda (real GPU kernels) and by the host compiler with -DEMU into
// namespace cnnext::emu (the same kernels run by the emulator on the CPU).
// Its header csrc/cuda/<op>.h declares the launchers once, for both, with
//   CNNEXT_DECLARE_LAUNCHERS( template <typename T> void my_op(const T*, ..., cudaStream_t); )
// Launchers take raw pointers, sizes and a stream; they are torch-free.
#pragma once
#include <cstdint>

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

#define CNNEXT_DECLARE_LAUNCHERS(...)  \
  namespace cnnext::cuda { __VA_ARGS__ } \
  namespace cnnext::emu { __VA_ARGS__ }

namespace cnnext::emu {
// The emulator's cap on grid-stride grids (grid_size in compat.h), for the calling thread: 64 by
// default, at most the GPU's 65535; returns the previous cap.  Defined in emulator.cu.
unsigned set_grid_cap(unsigned cap);
}  // namespace cnnext::emu
