// compat.h -- write CUDA kernels once; build them with nvcc (real CUDA) or with
// a host C++ compiler and -DEMU (CPU emulation that really executes every CUDA
// thread, barrier and warp shuffle).  The emulator is self-contained: its runtime is namespace
// ::emu in this file, its WMMA / cp.async in tensor_core.h; tests/emulator/selftest.cpp tests both.
//
// What a kernel file (csrc/cuda/<op>.cu) gets from this header:
//   * CNNEXT_DEVICE_NS -- the namespace its launchers live in: `cuda` under
//     nvcc, `emulated` under the emulator, so both builds link into one library (and
//     stay apart from the emulator runtime's own namespace ::emu).
//   * launch(kernel, grid, block, smem_bytes, stream, args...) -- the only way
//     kernels are launched.  Under nvcc it checks cudaGetLastError() and throws
//     std::runtime_error (torch turns that into a Python RuntimeError).
//   * EMU_EXTERN_SHARED(T, name) -- dynamic shared memory.
//   * grid_size(n, block) -- blocks for a grid-stride loop over n items.
// Emulator strategies (env EMU_STRATEGY): fibers (default, one OS thread runs
// every CUDA thread of a block cooperatively) or threads (one OS thread per CUDA
// thread; use it under ThreadSanitizer).  Blocks of a grid run one after the
// other and launches are serialized, so `__shared__` can be `static`.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
// ================================ real CUDA ==================================
#include <cuda_runtime.h>
#include <utility>
#define CNNEXT_DEVICE_NS cuda
#define EMU_FULL_MASK 0xffffffffu
// Dynamic shared memory (declared through raw bytes so that kernels that use
// different element types do not clash).
#define EMU_EXTERN_SHARED(T, name)                                   \
  extern __shared__ __align__(16) unsigned char emu_dyn_smem_raw_[]; \
  T* name = reinterpret_cast<T*>(emu_dyn_smem_raw_)
namespace cnnext_launch_detail {
inline std::string launch_config(dim3 g, dim3 b, size_t smem) {
  return "grid (" + std::to_string(g.x) + ", " + std::to_string(g.y) + ", " + std::to_string(g.z) + "), block (" +
         std::to_string(b.x) + ", " + std::to_string(b.y) + ", " + std::to_string(b.z) + "), " +
         std::to_string(smem) + " bytes of dynamic shared memory";
}
}  // namespace cnnext_launch_detail
// The error a launch reports is this launch's own: an error already pending on this host thread
// (left by an earlier call -- an unchecked launch of anyone's, or an earlier kernel's fault, which
// is sticky) is reported first, as an earlier call's, before this kernel is launched.
template <typename... P, typename... A>
inline void launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A&&... a) {
  if (const cudaError_t prior = cudaGetLastError(); prior != cudaSuccess)
    throw std::runtime_error(std::string("cnnext: a CUDA error from an earlier call was pending before this "
                                         "kernel launch (not caused by it): ") + cudaGetErrorString(prior));
  k<<<grid, block, smem, s>>>(std::forward<A>(a)...);
  if (const cudaError_t err = cudaGetLastError(); err != cudaSuccess)
    throw std::runtime_error(std::string("cnnext: CUDA kernel launch failed (") + cnnext_launch_detail::launch_config(grid, block, smem) +
                             "): " + cudaGetErrorString(err));
}
// Kernels that take more than 48 KiB of dynamic shared memory must say so first (per kernel).
template <typename... P>
inline void set_max_dynamic_smem(void (*k)(P...), size_t bytes) {
  const cudaError_t err = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("cnnext: cannot give a kernel ") + std::to_string(bytes) +
                             " bytes of dynamic shared memory: " + cudaGetErrorString(err));
}
inline unsigned grid_cap() { return 65535u; }

#elif defined(EMU)
// ============================== CPU emulation ================================
#define CNNEXT_DEVICE_NS emulated
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>
#include <sys/mman.h>
#include <ucontext.h>
#if __cplusplus >= 202002L
#include <barrier>
#define EMU_HAVE_THREADS 1  // strategy (a) needs std::barrier (C++20)
#endif
// Fibers switch with 20 instructions of asm on x86-64; glibc's swapcontext makes
// a sigprocmask system call per switch.  Sanitizer builds keep ucontext.
#if defined(__x86_64__) && !defined(EMU_UCONTEXT) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define EMU_ASM_SWITCH 1
#include <xmmintrin.h>
extern "C" void emu_switch_x64(void** save_sp, void* load_sp);
asm(".pushsection .text\n.weak emu_switch_x64\n.hidden emu_switch_x64\n.type emu_switch_x64,@function\n"
    "emu_switch_x64:\n pushq %rbp\n pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
    " subq $8, %rsp\n stmxcsr (%rsp)\n fnstcw 4(%rsp)\n movq %rsp, (%rdi)\n movq %rsi, %rsp\n"
    " ldmxcsr (%rsp)\n fldcw 4(%rsp)\n addq $8, %rsp\n"
    " popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n popq %rbp\n ret\n"
    ".size emu_switch_x64, .-emu_switch_x64\n.popsection\n");
#endif

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))  // accepted anywhere in a declaration, like nvcc's
// Static shared memory: one instance per process, so blocks of a grid must run
// one after another (and launches are serialized by a mutex).
#define __shared__ static
#define EMU_EXTERN_SHARED(T, name) T* name = reinterpret_cast<T*>(::emu::detail::dyn_smem())
#define EMU_FULL_MASK 0xffffffffu
#define EMU_STR2(x) #x
#define EMU_STR(x) EMU_STR2(x)
#define __syncthreads() ::emu::detail::syncthreads(__FILE__ ":" EMU_STR(__LINE__))

struct uint3 { unsigned x = 0, y = 0, z = 0; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
typedef struct CUstream_st* cudaStream_t;  // same spelling as CUDA's, so launcher declarations match
constexpr int warpSize = 32;

inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

template <class T> inline T __ldg(const T* p) { return *p; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __frcp_rn(float x) { return 1.0f / x; }   // IEEE round-to-nearest reciprocal, as on the GPU
inline double __drcp_rn(double x) { return 1.0 / x; }
#ifndef EMU_NO_MINMAX
template <class A, class B> inline std::common_type_t<A, B> min(A a, B b) { return b < a ? b : a; }
template <class A, class B> inline std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }
#endif

template <class T> inline T emu_atomic_add(T* p, T v) {
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  } else {  // CAS loop for float/double (what atomicAdd does conceptually)
    T old, nw;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do { nw = old + v; } while (!__atomic_compare_exchange(p, &old, &nw, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return old;
  }
}
inline float atomicAdd(float* p, float v) { return emu_atomic_add(p, v); }
inline double atomicAdd(double* p, double v) { return emu_atomic_add(p, v); }
inline int atomicAdd(int* p, int v) { return emu_atomic_add(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return emu_atomic_add(p, v); }

namespace emu {
enum class Strategy { Fibers, Threads };

namespace detail {
[[noreturn]] inline void fail(const char* what, const char* detail) {
  std::fprintf(stderr, "[emu] block (%u,%u,%u) thread (%u,%u,%u): %s %s\n", blockIdx.x, blockIdx.y, blockIdx.z,
               threadIdx.x, threadIdx.y, threadIdx.z, what, detail ? detail : "");
  std::abort();
}
// One cp.async copy in flight (tensor_core.h): it lands in shared memory at the wait that
// completes its group, not before.
struct AsyncCopy {
  void* dst;
  const void* src;  // nullptr: zero-fill
  unsigned bytes;
};
struct AsyncGroups {  // one thread's copies: the open group, then committed groups, oldest first
  std::vector<AsyncCopy> open;
  std::vector<std::vector<AsyncCopy>> committed;
  bool empty() const {
    if (!open.empty()) return false;
    for (auto& g : committed) if (!g.empty()) return false;
    return true;
  }
};
// Dynamic shared memory: exactly the bytes asked for (so ASan sees an overflow), 128-byte aligned
// like the GPU's (WMMA needs 32-byte aligned tiles).
struct DynSmem {
  unsigned char* p = nullptr;
  size_t n = 0;
  DynSmem() = default;
  DynSmem(const DynSmem&) = delete;
  DynSmem& operator=(const DynSmem&) = delete;
  void alloc(size_t bytes) {
    n = bytes;
    if (n) p = static_cast<unsigned char*>(::operator new(n, std::align_val_t(128)));
  }
  ~DynSmem() { if (p) ::operator delete(p, std::align_val_t(128)); }
};
inline std::atomic<uint32_t>& launch_counter() { static std::atomic<uint32_t> c{0}; return c; }

struct Launch {  // one kernel launch
  void (*fn)(void*);
  void* arg;
  dim3 grid, block;
  unsigned nthreads, nwarps;
  unsigned long long nblocks;
  uint32_t serial = 0;                  // which launch this is (varies the emulated WMMA layout)
  DynSmem dyn;                          // dynamic shared memory
  std::vector<unsigned> gen;            // per thread: shuffle generation (double buffering)
  std::vector<const char*> site;        // per thread: barrier site (divergence check)
  struct alignas(64) Slots { uint64_t v[2][32]; };
  std::vector<Slots> warps;             // shuffle exchange buffers
  // Warp-collective calls (WMMA): every lane posts (seq, key, two pointers) in buffer seq & 1,
  // the warp syncs, and each lane checks that all 32 posted the same call.
  struct Coll { uint32_t seq[2][32]; uint64_t key[2][32]; const void* p[2][32]; const void* q[2][32]; };
  std::vector<Coll> coll;
  std::vector<uint32_t> cgen;           // per thread: warp-collective calls made in this block
  std::vector<AsyncGroups> async;       // per thread: cp.async copies not yet waited for
  void begin_block(unsigned long long b) {
    blockIdx = uint3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / grid.x / grid.y)};
    if (dyn.n) std::memset(dyn.p, 0xff, dyn.n);  // poison: NaN / -1
  }
  void begin_thread(unsigned lin) {  // per-thread state at the start of each block
    gen[lin] = 0;
    cgen[lin] = 0;
    Coll& c = coll[lin / 32];
    c.seq[0][lin % 32] = c.seq[1][lin % 32] = ~0u;
    async[lin].open.clear();
    async[lin].committed.clear();
  }
  void set_thread(unsigned lin) {
    threadIdx = uint3{lin % block.x, lin / block.x % block.y, lin / block.x / block.y};
  }
  unsigned lanes(unsigned w) const { return std::min(32u, nthreads - 32 * w); }
};
inline Launch* g_launch = nullptr;
inline thread_local unsigned tl_lin = 0;  // linear thread index inside the block
inline thread_local int tl_mode = 0;      // 1 fibers, 2 threads
inline unsigned char* dyn_smem() { return g_launch->dyn.p; }
// A thread that ends with cp.async copies it never waited for read shared memory that was never
// written on a GPU (or leave writes landing after the block is gone).
inline void end_thread(Launch& l, unsigned lin) {
  if (!l.async[lin].empty()) fail("cp.async: the thread exited with copies it never waited for", "(cp_async_wait<0>)");
}

// ---------------- strategy (b): cooperative fibers on one OS thread ----------
struct FiberExec {
  enum St : unsigned char { RUN, AT_BLOCK, AT_WARP, DONE };
#ifdef EMU_ASM_SWITCH
  struct F { void* sp; St st; };
  void* sched_sp = nullptr;
  void to_fiber(unsigned i) { emu_switch_x64(&sched_sp, f[i].sp); }
  void to_sched() { emu_switch_x64(&f[cur].sp, sched_sp); }
  void init_fiber(unsigned i) {  // frame popped by emu_switch_x64: csr, r15..rbp, return address
    void** top = reinterpret_cast<void**>(stacks[i] + stack_sz);
    std::memset(top - 9, 0, 9 * sizeof(void*));
    top[-2] = reinterpret_cast<void*>(&FiberExec::entry);
    uint32_t* csr = reinterpret_cast<uint32_t*>(top - 9);
    csr[0] = _mm_getcsr(); csr[1] = 0x037f;
    f[i].sp = top - 9;
  }
#else
  struct F { ucontext_t uc; St st; };
  ucontext_t sched;
  void to_fiber(unsigned i) { swapcontext(&sched, &f[i].uc); }
  void to_sched() { swapcontext(&f[cur].uc, &sched); }
  void init_fiber(unsigned i) {
    getcontext(&f[i].uc);
    f[i].uc.uc_stack.ss_sp = stacks[i];
    f[i].uc.uc_stack.ss_size = stack_sz;
    f[i].uc.uc_link = nullptr;
    makecontext(&f[i].uc, &FiberExec::entry, 0);
  }
#endif
  std::vector<F> f;
  std::vector<char*> stacks;
  size_t stack_sz = 0, map_sz = 0;
  unsigned cur = 0;
  Launch* L = nullptr;
  ~FiberExec() { for (char* s : stacks) munmap(s - 4096, map_sz); }
  void ensure(unsigned n) {
    if (!stack_sz) {
      const char* e = std::getenv("EMU_FIBER_STACK_KB");
      stack_sz = size_t(e ? std::atoi(e) : 64) * 1024;
      map_sz = stack_sz + 4096;
    }
    while (stacks.size() < n) {  // stack + PROT_NONE guard page below it
      void* p = mmap(nullptr, map_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) fail("mmap failed", nullptr);
      mprotect(p, 4096, PROT_NONE);
      stacks.push_back(static_cast<char*>(p) + 4096);
    }
    f.resize(n);
  }
  static FiberExec*& self() { static thread_local FiberExec* s; return s; }
  static void entry() {
    FiberExec* e = self();
    e->L->fn(e->L->arg);
    end_thread(*e->L, e->cur);
    e->f[e->cur].st = DONE;
    e->to_sched();  // never resumed
    __builtin_unreachable();
  }
  void wait(St st, const char* site) {
    L->site[cur] = site;
    f[cur].st = st;
    to_sched();
  }
  bool release() {  // called when every live fiber is blocked
    bool any = false;
    for (unsigned w = 0; w < L->nwarps; ++w) {
      unsigned b = 32 * w, e = b + L->lanes(w), live = 0, at = 0;
      for (unsigned i = b; i < e; ++i) if (f[i].st != DONE) { ++live; at += f[i].st == AT_WARP; }
      if (live && at == live) { for (unsigned i = b; i < e; ++i) if (f[i].st == AT_WARP) f[i].st = RUN; any = true; }
    }
    if (any) return true;
    const char* s = nullptr;
    for (unsigned i = 0; i < L->nthreads; ++i) {
      if (f[i].st == DONE) continue;
      if (f[i].st != AT_BLOCK) { cur = i; L->set_thread(i); fail("deadlock: divergent warp sync/shuffle", nullptr); }
      if (!s) s = L->site[i];
      else if (std::strcmp(s, L->site[i])) { cur = i; L->set_thread(i); fail("divergent __syncthreads:", L->site[i]); }
    }
    for (auto& x : f) if (x.st == AT_BLOCK) x.st = RUN;
    return s != nullptr;
  }
  void run(Launch& l) {
    L = &l;
    ensure(l.nthreads);
    self() = this;
    tl_mode = 1;
    blockDim = l.block; gridDim = l.grid;
    for (unsigned long long b = 0; b < l.nblocks; ++b) {
      l.begin_block(b);
      for (unsigned i = 0; i < l.nthreads; ++i) {
        init_fiber(i);
        f[i].st = RUN;
        l.begin_thread(i);
      }
      unsigned live = l.nthreads;
      while (live) {
        for (unsigned i = 0; i < l.nthreads; ++i) {
          if (f[i].st != RUN) continue;
          cur = i; tl_lin = i; l.set_thread(i);
          to_fiber(i);
          live -= f[i].st == DONE;
        }
        if (live && !release()) fail("deadlock", nullptr);
      }
    }
    tl_mode = 0;
  }
};
inline FiberExec& fibers() { static FiberExec e; return e; }

#ifdef EMU_HAVE_THREADS
// ---------------- strategy (a): one OS thread per CUDA thread ----------------
struct ThreadExec {
  struct OnSync { ThreadExec* e; void operator()() noexcept { e->check_sites(); } };
  struct OnBlockEnd { ThreadExec* e; void operator()() noexcept { e->next_block(); } };
  std::vector<std::thread> pool;
  std::mutex m;
  std::condition_variable cv, cv_done;
  uint64_t gen = 0;
  unsigned need = 0, remaining = 0;
  bool stop = false;
  Launch* L = nullptr;
  unsigned long long blk = 0;
  std::unique_ptr<std::barrier<OnSync>> bar;                 // __syncthreads
  std::vector<std::unique_ptr<std::barrier<>>> wbar;         // warp syncs / shuffles
  std::unique_ptr<std::barrier<OnBlockEnd>> gbar;            // between blocks
  ~ThreadExec() {
    { std::lock_guard<std::mutex> lk(m); stop = true; }
    cv.notify_all();
    for (auto& t : pool) t.join();
  }
  void check_sites() {
    const char* s = nullptr;
    for (unsigned i = 0; i < L->nthreads; ++i) {
      const char* x = L->site[i];
      if (!x) continue;
      if (!s) s = x;
      else if (std::strcmp(s, x)) { L->set_thread(i); fail("divergent __syncthreads:", x); }
    }
  }
  void make_barriers() {
    bar = std::make_unique<std::barrier<OnSync>>(L->nthreads, OnSync{this});
    wbar.resize(L->nwarps);
    for (unsigned w = 0; w < L->nwarps; ++w) wbar[w] = std::make_unique<std::barrier<>>(L->lanes(w));
  }
  void next_block() {
    if (++blk < L->nblocks) { make_barriers(); L->begin_block(blk); }
  }
  void worker(unsigned id) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return stop || (gen != seen && id < need); });
        if (stop) return;
        seen = gen;
      }
      Launch& l = *L;
      tl_mode = 2; tl_lin = id;
      l.set_thread(id);
      blockDim = l.block; gridDim = l.grid;
      for (unsigned long long b = 0; b < l.nblocks; ++b) {
        blockIdx = uint3{unsigned(b % l.grid.x), unsigned(b / l.grid.x % l.grid.y), unsigned(b / l.grid.x / l.grid.y)};
        l.begin_thread(id);
        l.fn(l.arg);
        end_thread(l, id);
        l.site[id] = nullptr;  // exited threads count as arrived (like the hardware)
        bar->arrive_and_drop();
        wbar[id / 32]->arrive_and_drop();
        gbar->arrive_and_wait();
      }
      std::lock_guard<std::mutex> lk(m);
      if (--remaining == 0) cv_done.notify_one();
    }
  }
  void run(Launch& l) {
    L = &l; blk = 0;
    while (pool.size() < l.nthreads) pool.emplace_back(&ThreadExec::worker, this, unsigned(pool.size()));
    make_barriers();
    gbar = std::make_unique<std::barrier<OnBlockEnd>>(l.nthreads, OnBlockEnd{this});
    l.begin_block(0);
    std::unique_lock<std::mutex> lk(m);
    need = remaining = l.nthreads; ++gen;
    cv.notify_all();
    cv_done.wait(lk, [&] { return remaining == 0; });
  }
};
inline ThreadExec& threads() { static ThreadExec e; return e; }
#endif

inline void syncthreads(const char* site) {
  if (tl_mode == 1) return fibers().wait(FiberExec::AT_BLOCK, site);
#ifdef EMU_HAVE_THREADS
  g_launch->site[tl_lin] = site;
  threads().bar->arrive_and_wait();
#endif
}
inline void syncwarp() {
  if (tl_mode == 1) return fibers().wait(FiberExec::AT_WARP, nullptr);
#ifdef EMU_HAVE_THREADS
  threads().wbar[tl_lin / 32]->arrive_and_wait();
#endif
}
// Every lane publishes its value, the warp synchronizes, then reads the source
// lane.  Two buffers alternate, so one sync per shuffle is enough.
template <class T> inline T shfl(unsigned mask, T v, int src_lane_in_warp) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type larger than 8 bytes");
  Launch& l = *g_launch;
  const unsigned lane = tl_lin & 31, w = tl_lin >> 5;
  if (mask != EMU_FULL_MASK && mask != (l.lanes(w) == 32 ? ~0u : (1u << l.lanes(w)) - 1))
    fail("only full-warp masks are emulated", nullptr);
  uint64_t* slots = l.warps[w].v[l.gen[tl_lin]++ & 1];
  std::memcpy(&slots[lane], &v, sizeof(T));
  syncwarp();
  T r = v;
  if (unsigned(src_lane_in_warp) < l.lanes(w)) std::memcpy(&r, &slots[src_lane_in_warp], sizeof(T));
  return r;
}

inline std::mutex& launch_mutex() { static std::mutex m; return m; }
inline Strategy& strategy() {
  static Strategy s = [] {
    const char* e = std::getenv("EMU_STRATEGY");
    return e && !std::strcmp(e, "threads") ? Strategy::Threads : Strategy::Fibers;
  }();
  return s;
}
inline void run_grid(dim3 grid, dim3 block, size_t smem, void (*fn)(void*), void* arg) {
  std::lock_guard<std::mutex> lk(launch_mutex());
  Launch l;
  l.fn = fn; l.arg = arg; l.grid = grid; l.block = block;
  l.nthreads = block.x * block.y * block.z;
  l.nblocks = 1ull * grid.x * grid.y * grid.z;
  if (l.nthreads == 0 || l.nthreads > 1024) fail("invalid block size", nullptr);
  l.nwarps = (l.nthreads + 31) / 32;
  l.serial = launch_counter().fetch_add(1);
  l.dyn.alloc(smem);
  l.gen.assign(l.nthreads, 0);
  l.site.assign(l.nthreads, nullptr);
  l.warps.resize(l.nwarps);
  l.coll.resize(l.nwarps);
  l.cgen.assign(l.nthreads, 0);
  l.async.resize(l.nthreads);
  g_launch = &l;
#ifdef EMU_HAVE_THREADS
  if (strategy() == Strategy::Threads) { threads().run(l); g_launch = nullptr; return; }
#endif
  fibers().run(l);
  g_launch = nullptr;
}
}  // namespace detail
inline void set_strategy(Strategy s) { detail::strategy() = s; }
}  // namespace emu

inline void __syncwarp(unsigned = EMU_FULL_MASK) { emu::detail::syncwarp(); }
template <class T> inline T __shfl_sync(unsigned m, T v, int src, int width = warpSize) {
  const int lane = emu::detail::tl_lin & 31;
  return emu::detail::shfl(m, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T> inline T __shfl_xor_sync(unsigned m, T v, int laneMask, int width = warpSize) {
  const int lane = emu::detail::tl_lin & 31, src = lane ^ laneMask;
  return emu::detail::shfl(m, v, src >= ((lane / width) + 1) * width ? lane : src);
}
template <class T> inline T __shfl_down_sync(unsigned m, T v, unsigned delta, int width = warpSize) {
  const int lane = emu::detail::tl_lin & 31;
  return emu::detail::shfl(m, v, (lane & (width - 1)) + int(delta) < width ? lane + int(delta) : lane);
}
template <class T> inline T __shfl_up_sync(unsigned m, T v, unsigned delta, int width = warpSize) {
  const int lane = emu::detail::tl_lin & 31;
  return emu::detail::shfl(m, v, (lane & (width - 1)) >= int(delta) ? lane - int(delta) : lane);
}

namespace emu::detail {
inline std::string launch_config(dim3 g, dim3 b, size_t smem) {
  return "grid (" + std::to_string(g.x) + ", " + std::to_string(g.y) + ", " + std::to_string(g.z) + "), block (" +
         std::to_string(b.x) + ", " + std::to_string(b.y) + ", " + std::to_string(b.z) + "), " +
         std::to_string(smem) + " bytes of dynamic shared memory";
}
// Dynamic shared memory a kernel may take (set_max_dynamic_smem); 48 KiB without the attribute.
inline std::mutex& smem_attr_mutex() { static std::mutex m; return m; }
inline std::vector<std::pair<const void*, size_t>>& smem_attrs() { static std::vector<std::pair<const void*, size_t>> v; return v; }
inline size_t max_dynamic_smem(const void* fn) {
  std::lock_guard<std::mutex> lk(smem_attr_mutex());
  for (auto& [f, n] : smem_attrs()) if (f == fn) return std::max<size_t>(n, 48 * 1024);
  return 48 * 1024;
}
// The launch configurations CUDA refuses (cudaErrorInvalidConfiguration / InvalidValue on every
// supported GPU) are refused here too, with the same exception the real launch() throws.
inline void check_config(const void* fn, dim3 g, dim3 b, size_t smem) {
  const char* why = nullptr;
  if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 || uint64_t(b.x) * b.y * b.z > 1024)
    why = "block dimensions outside (1..1024, 1..1024, 1..64) or over 1024 threads";
  else if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535u || g.z > 65535u)
    why = "grid dimensions outside (1..2^31-1, 1..65535, 1..65535)";
  else if (smem > max_dynamic_smem(fn))
    why = "more dynamic shared memory than the kernel was allowed (48 KiB unless set_max_dynamic_smem raised it)";
  if (why)
    throw std::runtime_error("cnnext: CUDA kernel launch failed (" + launch_config(g, b, smem) +
                             "): invalid configuration argument [emulator: " + why + "]");
}
}  // namespace emu::detail

// The largest opt-in dynamic shared memory of every supported GPU: sm_86/sm_89 allow 99 KiB per
// block (sm_80 163 KiB, sm_90 227 KiB), so the emulator refuses more, as an sm_86 would.
template <typename... P>
inline void set_max_dynamic_smem(void (*k)(P...), size_t bytes) {
  if (bytes > 99 * 1024)
    throw std::runtime_error("cnnext: cannot give a kernel " + std::to_string(bytes) +
                             " bytes of dynamic shared memory: invalid argument [emulator: sm_86 allows 99 KiB]");
  std::lock_guard<std::mutex> lk(emu::detail::smem_attr_mutex());
  for (auto& [f, n] : emu::detail::smem_attrs())
    if (f == reinterpret_cast<const void*>(k)) { n = bytes; return; }
  emu::detail::smem_attrs().emplace_back(reinterpret_cast<const void*>(k), bytes);
}

template <typename... P, typename... A>
inline void launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t, A&&... a) {
  emu::detail::check_config(reinterpret_cast<const void*>(k), grid, block, smem);
  auto body = [&] { k(a...); };  // each emulated thread gets its own copy of the parameters
  emu::detail::run_grid(grid, block, smem, [](void* p) { (*static_cast<decltype(body)*>(p))(); }, &body);
}

// Blocks for grid-stride loops are capped lower than on a GPU (64 by default; see grid_size):
// fewer fibers to start, and every thread really loops.  The cap is per calling thread, and tests
// raise it (cnnext::emu::set_grid_cap, up to the GPU's 65535) to run the large grids a GPU runs.
namespace emu::detail {
inline thread_local unsigned tl_grid_cap = 64;
}
inline unsigned grid_cap() { return emu::detail::tl_grid_cap; }

#else
#error "compat.h: compile with nvcc, or define EMU for the CPU emulation"
#endif

// Blocks for a grid-stride loop over n items: enough to fill any GPU, capped so the grid stays
// small (each thread then loops).  n may exceed 2^31.  The cap is 65535 on a GPU and lower under
// the emulator (grid_cap() above); kGridCapMax bounds both (for index-width decisions).
constexpr unsigned kGridCapMax = 65535u;
inline unsigned grid_size(int64_t n, unsigned block, unsigned cap = grid_cap()) {
  const int64_t b = (n + block - 1) / block;
  return b < 1 ? 1u : (b > int64_t(cap) ? cap : unsigned(b));
}
