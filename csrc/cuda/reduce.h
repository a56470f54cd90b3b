// Block-wide reductions shared by the kernels of csrc/cuda/*.cu (included after compat.h).
#pragma once
#include "compat.h"

namespace {  // internal linkage: the emulator's static __shared__ arrays stay visible to ASan

// Sum of v over a block of kBlock threads (a multiple of 32), valid in thread 0: shuffles within
// each warp, then warp 0 adds the per-warp sums from shared memory. A fixed order, so the result
// is deterministic. Every thread of the block must call it; it may be called again right after.
template <int kBlock, typename T>
__device__ T block_sum(T v) {
  static_assert(kBlock % 32 == 0 && kBlock <= 1024, "block_sum: kBlock must be a multiple of 32, at most 1024");
  __shared__ T warp_sums[kBlock / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(EMU_FULL_MASK, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / 32) ? warp_sums[lane] : T(0);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(EMU_FULL_MASK, v, o);
  }
  __syncthreads();  // warp_sums may be reused by the next call
  return v;
}

}  // namespace
