// Block-wide reductions shared by the kernels of csrc/cuda/*.cu (included after compat.h).
#pragma once
#include "compat.h"
#include "half.h"

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

// ---- two-stage reductions (batch_norm's statistics and grad sums, conv2d's bias grad, corr2d's kernel
// grad): stage 1 splits each output's reduction into a fixed number of chunks, one block per (chunk,
// output), each writing its partial to a workspace that csrc/ops allocates; stage 2 merges an output's
// partials in chunk order.  No atomics, and the split is a function of the shape alone (not of the
// device), so the results are bit-identical run to run and on every GPU.

// Blocks the splits aim at in all: about what fills a large GPU (132 SMs x 8 resident 256-thread
// blocks), a constant so that no device property enters the result.
constexpr int64_t kSplitTarget = 1024;
constexpr int64_t kMaxSplits = 256;

struct SplitPlan {
  int64_t splits, chunk;  // chunk: elements per split, a multiple of `align`; the last split may be shorter
};

// How `outputs` reductions of `len` elements each are split: enough chunks for kSplitTarget blocks in
// all, each of at least `min_chunk` elements, at most kMaxSplits; every split is non-empty.
inline SplitPlan split_plan(int64_t outputs, int64_t len, int64_t min_chunk, int64_t align) {
  outputs = outputs < 1 ? 1 : outputs;
  len = len < 1 ? 1 : len;
  int64_t splits = (kSplitTarget + outputs - 1) / outputs;
  const int64_t by_len = (len + min_chunk - 1) / min_chunk;
  splits = splits < by_len ? splits : by_len;
  splits = splits < 1 ? 1 : (splits > kMaxSplits ? kMaxSplits : splits);
  int64_t chunk = (len + splits - 1) / splits;
  chunk = (chunk + align - 1) / align * align;
  return {(len + chunk - 1) / chunk, chunk};
}

// The first index of split sp, begin = sp * chunk, as digits (n, s) of radix S, from chunk's digits
// (cn, cs) = (chunk / S, chunk % S) that the host computed: sp * cs < kMaxSplits * S, so the quotient
// is < 256 and a float estimate corrected by compares finds it -- no 64-bit division, which is a
// call, and calls made ptxas spill in these kernels.
__device__ __forceinline__ void split_begin(int64_t sp, int64_t cn, int64_t cs, int64_t S, int64_t& n, int64_t& s) {
  const int64_t a = sp * cs;
  int64_t q = int64_t(float(a) * __frcp_rn(float(S)));
  int64_t r = a - q * S;
  while (r < 0) --q, r += S;
  while (r >= S) ++q, r -= S;
  n = sp * cn + q;
  s = r;
}

// The walk of one thread over a channel's values [begin, end) of an (N, C, S) tensor -- flat index
// i = n*S + s, element offset (n*C + c)*S + s -- V values at a time (S % V == 0 and begin % V == 0, so
// a vector never leaves its plane): it starts at begin + V*threadIdx.x and steps by V*blockDim.x.  The
// constructor takes begin as digits (nb, sb) and finds the thread's start and the step's digits with
// 32-bit divisions (or a compare when S is huge), once per thread; start(c) puts the walk at channel
// c's first value; then the offset is kept by adds and one compare per step: no integer division per
// element.  I: the index type, uint32_t when every offset of the tensor (plus a step) fits in 31 bits
// (fewer registers), else uint64_t.
template <typename I>
struct ChannelWalk {
  I i, off, s;  // the walk's position
  I i0, n0, s0, end, S, C, step, ds, doff, wrap;
  __device__ ChannelWalk(int64_t nb, int64_t sb, int64_t end_, int64_t C_, int64_t S_, int V)
      : end(I(end_)), S(I(S_)), C(I(C_)) {
    const I t = I(V) * I(threadIdx.x);
    step = I(V) * I(blockDim.x);
    I dn = 0;
    ds = step;
    n0 = I(nb);
    s0 = I(sb) + t;  // < S + 1024
    if (S_ < (int64_t(1) << 31) - 2048) {
      const uint32_t q = uint32_t(s0) / uint32_t(S);
      n0 += I(q), s0 -= I(q) * S;
      dn = I(uint32_t(step) / uint32_t(S));
      ds = step - dn * S;
    } else if (s0 >= S) {
      n0 += 1, s0 -= S;
    }
    i0 = n0 * S + s0;
    doff = dn * C * S + ds;
    wrap = (C - 1) * S;  // s ran past the plane's end: on to the next image's plane of the channel
  }
  __device__ void start(int64_t c) {
    i = i0;
    s = s0;
    off = (n0 * C + I(c)) * S + s0;
  }
  __device__ bool ok() const { return i < end; }
  __device__ void next() {
    i += step;
    s += ds;
    off += doff;
    if (s >= S) s -= S, off += wrap;
  }
};

// 16-byte vectors: V consecutive values of T at p (V = 4 floats or 2 doubles, or 1) into r; with
// `vec` one vector load (p 16-byte aligned), else V scalar loads.  The values are the same either way.
template <int V, typename T>
__device__ __forceinline__ void load_v(T (&r)[V], const T* p, bool vec) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    if (vec) {
      const float4 v = *reinterpret_cast<const float4*>(p);
      r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
      return;
    }
  } else if constexpr (V == 2 && sizeof(T) == 8) {
    if (vec) {
      const double2 v = *reinterpret_cast<const double2*>(p);
      r[0] = v.x, r[1] = v.y;
      return;
    }
  } else {
    static_assert(V == 1, "load_v: V is 1, 4 (float) or 2 (double)");
  }
  for (int j = 0; j < V; ++j) r[j] = p[j];
}
template <int V, typename T>
__device__ __forceinline__ void store_v(T* p, const T (&r)[V], bool vec) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    if (vec) {
      *reinterpret_cast<float4*>(p) = make_float4(r[0], r[1], r[2], r[3]);
      return;
    }
  } else if constexpr (V == 2 && sizeof(T) == 8) {
    if (vec) {
      *reinterpret_cast<double2*>(p) = make_double2(r[0], r[1]);
      return;
    }
  } else {
    static_assert(V == 1, "store_v: V is 1, 4 (float) or 2 (double)");
  }
  for (int j = 0; j < V; ++j) p[j] = r[j];
}
// The vector width of T (16 bytes) and whether p is aligned for it.
template <typename T>
constexpr int kVec = 16 / int(sizeof(T));
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
// Whether a walk over n elements may index in 32 bits (ChannelWalk<uint32_t>): n plus a step < 2^31.
inline bool walk_fits32(int64_t n) { return n < (int64_t(1) << 31) - 4096; }

// Stage 1 of a per-channel sum over an (N, C, S) tensor (conv2d's bias grad): block (split, c) sums
// channel c's values [split*chunk, ...) in Acc<T> (float for the half types) and thread 0 writes
// ws[c*splits + split].  (cn, cs): chunk's digits, chunk / S and chunk % S (split_begin).
template <typename T, int V, typename I>
__global__ void __launch_bounds__(256)
channel_sum_partial_kernel(const T* __restrict__ x, Acc<T>* __restrict__ ws, int64_t N, int64_t C, int64_t S,
                           int64_t chunk, int64_t cn, int64_t cs, bool vec) {
  const int64_t M = N * S, splits = gridDim.x, sp = blockIdx.x, e = min(M, sp * chunk + chunk);
  int64_t nb, sb;
  split_begin(sp, cn, cs, S, nb, sb);
  ChannelWalk<I> it(nb, sb, e, C, S, V);
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    Acc<T> acc = 0;
    for (it.start(c); it.ok(); it.next()) {
      T v[V];
      load_v<V>(v, x + it.off, vec);
      for (int j = 0; j < V; ++j) acc += to_acc(v[j]);
    }
    acc = block_sum<256>(acc);
    if (threadIdx.x == 0) ws[c * splits + sp] = acc;
  }
}

// Stage 2: out[c] = the sum over sp of ws[c * c_stride + sp * split_stride] in split order, one
// thread per output (grid-stride).  Partials per output side by side (the reductions above:
// c_stride = splits, split_stride = 1) or one whole output array per split (conv2d's split-K grad
// weight: 1, C).  A: the partials' type, Acc<T> (the half types: float partials, rounded once here).
template <typename T, typename A = T>
__global__ void sum_splits_kernel(const A* __restrict__ ws, T* __restrict__ out, int64_t C, int64_t splits,
                                  int64_t c_stride, int64_t split_stride) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(blockDim.x) * gridDim.x) {
    A v = 0;
    for (int64_t sp = 0; sp < splits; ++sp) v += ws[c * c_stride + sp * split_stride];
    out[c] = from_acc<T>(v);
  }
}

}  // namespace
