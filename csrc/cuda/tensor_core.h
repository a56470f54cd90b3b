// tensor_core.h -- tensor cores (nvcuda::wmma) and asynchronous global->shared copies (cp.async),
// written once for nvcc and for the CPU emulator.  Include after compat.h.
//
// What a kernel uses:
//   * nvcuda::wmma as documented by CUDA: fragment, load_matrix_sync, mma_sync, store_matrix_sync,
//     fill_fragment, __float_to_tf32.  Emulated: tf32 m16n16k8, and __half / __nv_bfloat16 m16n16k16
//     (half.h's types), with float accumulators (another precision is one more Traits specialization).
//   * cp_async<B>(smem_dst, gmem_src, pred): copy B = 4, 8 or 16 bytes (pred false: zero-fill, read
//     nothing); cp_async_commit(): close the thread's current group; cp_async_wait<N>(): wait until
//     at most N of the thread's committed groups are in flight.  A copy is visible to the issuing
//     thread after its wait, to the block after every issuing thread's wait and a __syncthreads().
//     sm_80+: cp.async.ca (4, 8 bytes) / cp.async.cg (16 bytes); older GPUs copy synchronously.
//   CNNEXT_TENSOR_CORES is 1 where tf32 and bf16 WMMA exist (sm_80+, the host pass, the emulator): a
//   tensor-core kernel body is compiled under it (and traps elsewhere); the host launches it only on sm_80+.
//
// The emulator is faithful in what a kernel may rely on and hostile to what it may not:
//   * The fragment layout (which element of the 16x8 / 8x16 / 16x16 tile sits in lane l's x[i]) is
//     its own: a scrambled bijection that differs between matrix_a, matrix_b and accumulator and
//     changes from launch to launch.  A kernel that touches x[i] other than uniformly (the same
//     operation on every element, e.g. __float_to_tf32 or a scale) gets wrong, varying results.
//   * load_matrix_sync, store_matrix_sync and mma_sync are warp-collective: all 32 lanes of a full
//     warp call the same function with the same pointer, ldm and layout; otherwise it aborts naming
//     the call.  Preconditions are asserted: pointer 256-bit (32-byte) aligned, ldm a multiple of 16
//     bytes.  (fill_fragment and element access are per thread, as on the GPU.)
//   * mma_sync reads tf32 operands as the tensor core does, ignoring the 13 low mantissa bits
//     (truncation), so operands not rounded with __float_to_tf32 lose precision as on hardware.
//     Products of tf32, __half or __nv_bfloat16 values are exact in float; the sum is accumulated in
//     float in k order.  a and b must have the same element type (as mma.sync requires).
//   * __float_to_tf32 is cvt.rna.tf32.f32: round to nearest on the 10-bit mantissa, ties away from
//     zero: 0x1000 added to the bits of a finite value, the 13 low bits cleared (CUTLASS's
//     round_half_ulp_truncate followed by the tensor core's truncation is the same); overflow gives
//     Inf, Inf stays Inf, NaN stays NaN.
//   * cp.async: the size (4/8/16) and both pointers' alignment to it are asserted; the destination
//     is poisoned (0xff bytes: NaN) when the copy is issued and written at the wait that completes
//     its group, so reading it early (before the wait, or before the barrier that follows every
//     thread's wait) reads NaN; a thread that exits with copies it never waited for aborts.
#pragma once
#include "compat.h"
#include "half.h"

#if defined(__CUDACC__)
// ================================ real CUDA ==================================
#include <mma.h>

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define CNNEXT_TENSOR_CORES 1
#else
#define CNNEXT_TENSOR_CORES 0
#endif

template <int B>
__device__ __forceinline__ void cp_async(void* smem_dst, const void* gmem_src, bool pred) {
  static_assert(B == 4 || B == 8 || B == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  const int src_bytes = pred ? B : 0;  // fewer source bytes than B: the rest is zero-filled
  if constexpr (B == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes)
                 : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(gmem_src), "n"(B),
                 "r"(src_bytes)
                 : "memory");
#else
  struct alignas(B) Bytes { unsigned char b[B]; };
  *static_cast<Bytes*>(smem_dst) = pred ? *static_cast<const Bytes*>(gmem_src) : Bytes{};
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

#elif defined(EMU)
// ============================== CPU emulation ================================
#define CNNEXT_TENSOR_CORES 1

namespace emu::detail {
// A warp-collective call: every lane posts (its call count, key, p, q) and the warp syncs; then
// each lane checks that all 32 lanes posted the same call (same key; same p too when `same_p`).
// Returns the buffer the posts are in (valid until the caller's next warp sync).
inline int warp_collective(const char* what, uint64_t key, const void* p, const void* q, bool same_p) {
  Launch& l = *g_launch;
  const unsigned lin = tl_lin, w = lin / 32, lane = lin % 32;
  if (l.lanes(w) != 32) fail(what, "is warp-collective and needs a full warp (this block's last warp is partial)");
  const uint32_t g = l.cgen[lin]++;
  const int b = int(g & 1);
  Launch::Coll& c = l.coll[w];
  c.seq[b][lane] = g, c.key[b][lane] = key, c.p[b][lane] = p, c.q[b][lane] = q;
  syncwarp();
  for (unsigned i = 0; i < 32; ++i) {
    if (c.seq[b][i] != g || c.key[b][i] != key)
      fail(what, "is warp-collective: all 32 lanes must call it together with the same ldm and layout "
                 "(a lane diverged, exited, or made another call)");
    if (same_p && c.p[b][i] != p) fail(what, "is warp-collective: all 32 lanes must pass the same pointer");
  }
  return b;
}

// The emulator's fragment layout: element j = lane * E + i of a fragment (E elements per lane) holds
// the tile's element (a * j + c) mod n, row-major, n = rows * cols (a power of two), a odd (so the
// map is a bijection) and never 1.  `kind` (0 matrix_a, 1 matrix_b, 2 accumulator) and the launch's
// serial number pick a and c.
struct FragMap {
  uint32_t a, ainv, c, mask;
  FragMap(int kind, uint32_t n) {
    const uint32_t s = g_launch->serial;
    a = 2 * ((s * 7u + uint32_t(kind) * 5u) % 29u) + 3u;
    c = (s * 97u + uint32_t(kind) * 41u) & (n - 1);
    mask = n - 1;
    ainv = a;  // Newton: a^-1 mod 2^32
    for (int k = 0; k < 5; ++k) ainv *= 2u - a * ainv;
  }
  uint32_t elem(uint32_t j) const { return (a * j + c) & mask; }     // slot -> tile element
  uint32_t slot(uint32_t e) const { return (ainv * (e - c)) & mask; }  // tile element -> slot
};

inline void check_tile_pointer(const char* what, const void* p, unsigned ldm, unsigned elem_bytes) {
  if (reinterpret_cast<uintptr_t>(p) % 32)
    fail(what, "needs a 256-bit (32-byte) aligned pointer");
  if ((uint64_t(ldm) * elem_bytes) % 16 || ldm == 0)
    fail(what, "needs ldm to be a multiple of 16 bytes");
}

inline float tf32_truncate(float v) {  // what the tensor core reads of a .tf32 operand
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u &= 0xffffe000u;
  std::memcpy(&v, &u, 4);
  return v;
}
}  // namespace emu::detail

namespace nvcuda::wmma {
struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <class Use, int M, int N, int K>
struct Shape;  // the operand tile: rows x cols
template <int M, int N, int K> struct Shape<matrix_a, M, N, K> { static constexpr int rows = M, cols = K, kind = 0; };
template <int M, int N, int K> struct Shape<matrix_b, M, N, K> { static constexpr int rows = K, cols = N, kind = 1; };
template <int M, int N, int K> struct Shape<accumulator, M, N, K> { static constexpr int rows = M, cols = N, kind = 2; };

// Element type T of a fragment: what x[] stores, and what the tensor core multiplies.
template <class T> struct Traits;
template <> struct Traits<precision::tf32> {
  using storage = float;
  static float operand(float v) { return ::emu::detail::tf32_truncate(v); }
};
template <> struct Traits<__half> {
  using storage = __half;
  static float operand(__half v) { return __half2float(v); }
};
template <> struct Traits<__nv_bfloat16> {
  using storage = __nv_bfloat16;
  static float operand(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <> struct Traits<float> {  // accumulators
  using storage = float;
};

// tf32 m16n16k8; __half and __nv_bfloat16 m16n16k16; float accumulators of either shape.
template <class Use, int M, int N, int K, class T, class Layout>
constexpr bool supported() {
  constexpr bool k8 = M == 16 && N == 16 && K == 8, k16 = M == 16 && N == 16 && K == 16;
  if constexpr (std::is_same_v<Use, accumulator>) return (k8 || k16) && std::is_same_v<T, float> && std::is_void_v<Layout>;
  else return ((k8 && std::is_same_v<T, precision::tf32>) ||
               (k16 && (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>))) &&
              (std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>);
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
  static_assert(detail::supported<Use, M, N, K, T, Layout>(),
                "emulated WMMA: only tf32 m16n16k8 and __half / __nv_bfloat16 m16n16k16 operands (row_major / "
                "col_major) and float accumulators");
  using S = detail::Shape<Use, M, N, K>;

 public:
  using element_type = T;
  using storage_element_type = typename detail::Traits<T>::storage;
  enum { num_elements = S::rows * S::cols / 32, num_storage_elements = num_elements };
  storage_element_type x[num_elements];
};

namespace detail {
template <class Frag> struct FragInfo;
template <class Use, int M, int N, int K, class T, class Layout>
struct FragInfo<fragment<Use, M, N, K, T, Layout>> {
  using S = Shape<Use, M, N, K>;
  static constexpr int rows = S::rows, cols = S::cols, kind = S::kind, E = rows * cols / 32;
  static ::emu::detail::FragMap map() { return ::emu::detail::FragMap(kind, uint32_t(rows * cols)); }
};
inline uint64_t call_key(int fn, int kind, int layout, unsigned ldm) {
  return (uint64_t(fn) << 40) | (uint64_t(kind) << 36) | (uint64_t(layout) << 32) | ldm;
}
// x[i] of this lane <-> (r, c) of the tile, for every i: the same walk for loads and stores.
template <class Frag, class F>
void for_each_element(F&& f) {
  using I = FragInfo<Frag>;
  const auto m = I::map();
  const uint32_t lane = ::emu::detail::tl_lin % 32;
  for (int i = 0; i < I::E; ++i) {
    const uint32_t e = m.elem(lane * I::E + uint32_t(i));
    f(i, int(e / I::cols), int(e % I::cols));
  }
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f,
                          const typename fragment<Use, M, N, K, T, Layout>::storage_element_type& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

inline float __float_to_tf32(float v) {
  if (!std::isfinite(v)) return v;  // Inf stays Inf, NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x1000u) & 0xffffe000u;  // round half away from zero on the 13 dropped bits (may carry to Inf)
  std::memcpy(&v, &u, 4);
  return v;
}

// matrix_a / matrix_b: the layout is the fragment's (row_major: element (r, c) at p[r * ldm + c]).
template <class Use, int M, int N, int K, class T, class Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f,
                             const typename fragment<Use, M, N, K, T, Layout>::storage_element_type* p, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>, "load_matrix_sync of an accumulator takes a layout_t");
  using Frag = fragment<Use, M, N, K, T, Layout>;
  constexpr bool row = std::is_same_v<Layout, row_major>;
  ::emu::detail::warp_collective("wmma::load_matrix_sync", detail::call_key(1, detail::FragInfo<Frag>::kind, row, ldm),
                                 p, nullptr, true);
  ::emu::detail::check_tile_pointer("wmma::load_matrix_sync", p, ldm, sizeof(*p));
  detail::for_each_element<Frag>([&](int i, int r, int c) { f.x[i] = row ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]; });
}
template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, T>;
  const bool row = layout == mem_row_major;
  ::emu::detail::warp_collective("wmma::load_matrix_sync", detail::call_key(2, 2, row, ldm), p, nullptr, true);
  ::emu::detail::check_tile_pointer("wmma::load_matrix_sync", p, ldm, sizeof(T));
  detail::for_each_element<Frag>([&](int i, int r, int c) { f.x[i] = row ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]; });
}
template <int M, int N, int K, class T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, T>;
  const bool row = layout == mem_row_major;
  ::emu::detail::warp_collective("wmma::store_matrix_sync", detail::call_key(3, 2, row, ldm), p, nullptr, true);
  ::emu::detail::check_tile_pointer("wmma::store_matrix_sync", p, ldm, sizeof(T));
  detail::for_each_element<Frag>([&](int i, int r, int c) { (row ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[i]; });
}

// d = a * b + c over the warp: lane l computes its own elements of d from every lane's a and b.
template <int M, int N, int K, class TA, class LA, class TB, class LB, class TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
  static_assert(std::is_same_v<TA, TB>, "wmma::mma_sync: matrix_a and matrix_b must have the same element type");
  using FA = fragment<matrix_a, M, N, K, TA, LA>;
  using FB = fragment<matrix_b, M, N, K, TB, LB>;
  using FC = fragment<accumulator, M, N, K, TC>;
  using IA = detail::FragInfo<FA>;
  using IB = detail::FragInfo<FB>;
  const int buf = ::emu::detail::warp_collective("wmma::mma_sync", detail::call_key(4, 0, 0, 0), &a, &b, false);
  const ::emu::detail::Launch::Coll& posts = ::emu::detail::g_launch->coll[::emu::detail::tl_lin / 32];
  const auto ma = IA::map(), mb = IB::map();
  TC out[FC::num_elements];
  detail::for_each_element<FC>([&](int i, int r, int col) {
    TC acc = c.x[i];
    for (int k = 0; k < K; ++k) {
      const uint32_t ja = ma.slot(uint32_t(r * K + k)), jb = mb.slot(uint32_t(k * N + col));
      const FA* fa = static_cast<const FA*>(posts.p[buf][ja / IA::E]);
      const FB* fb = static_cast<const FB*>(posts.q[buf][jb / IB::E]);
      acc = std::fma(TC(detail::Traits<TA>::operand(fa->x[ja % IA::E])),
                     TC(detail::Traits<TB>::operand(fb->x[jb % IB::E])), acc);
    }
    out[i] = acc;
  });
  ::emu::detail::syncwarp();  // every lane has read every lane's a and b: now d may overwrite them
  for (int i = 0; i < FC::num_elements; ++i) d.x[i] = out[i];
}
}  // namespace nvcuda::wmma

template <int B>
inline void cp_async(void* smem_dst, const void* gmem_src, bool pred) {
  static_assert(B == 4 || B == 8 || B == 16, "cp.async copies 4, 8 or 16 bytes");
  if (reinterpret_cast<uintptr_t>(smem_dst) % B || reinterpret_cast<uintptr_t>(gmem_src) % B)
    ::emu::detail::fail("cp.async: source and destination must be aligned to the copy size", nullptr);
  std::memset(smem_dst, 0xff, B);  // not readable before the wait: poison (NaN) until then
  ::emu::detail::g_launch->async[::emu::detail::tl_lin].open.push_back({smem_dst, pred ? gmem_src : nullptr, unsigned(B)});
}
inline void cp_async_commit() {
  auto& a = ::emu::detail::g_launch->async[::emu::detail::tl_lin];
  a.committed.push_back(std::move(a.open));
  a.open.clear();
}
template <int N>
inline void cp_async_wait() {
  auto& a = ::emu::detail::g_launch->async[::emu::detail::tl_lin];
  size_t done = 0;
  for (; a.committed.size() - done > size_t(N); ++done)
    for (const auto& c : a.committed[done])
      c.src ? (void)std::memcpy(c.dst, c.src, c.bytes) : (void)std::memset(c.dst, 0, c.bytes);
  a.committed.erase(a.committed.begin(), a.committed.begin() + done);
}
#endif
