// common/backend.h -- how csrc/ops finds an op's kernel on each backend, without knowing any backend.
//
// An op's entry points are tags in csrc/common/<op>.h, each with the one signature every backend
// implements, taking the op's geometry struct (and a stream, which the CPU ignores):
//   struct Corr2dForward { template <typename T> using Fn = void(const Corr2dShape&, const T* x, ..., cudaStream_t); };
// Each backend registers its implementation in its own file, at load time:
//   csrc/cpu/<op>.cpp    CNNEXT_REGISTER_CPU_KERNEL(Corr2dForward, corr2d_forward)
//   csrc/cuda/<op>.cu    CNNEXT_REGISTER_DEVICE_KERNEL(Corr2dForward, corr2d_forward)  -- compiled twice:
//                        by nvcc it registers Backend::CUDA, by the host compiler with -DEMU (the
//                        emulator) Backend::Emulator
// and csrc/ops/<op>.cpp makes one call, `call_kernel<Corr2dForward, scalar_t>(backend_for(x), s, ...)`
// (dispatch.h): one table lookup picks CPU, the emulator or the GPU.  Torch-free and CUDA-free.
#pragma once
#include <cstdint>

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

// A helper of csrc/common that the CPU kernels and the CUDA kernels (nvcc, or the emulator) both call.
#if defined(__CUDACC__)
#define CNNEXT_HOST_DEVICE __host__ __device__
#else
#define CNNEXT_HOST_DEVICE
#endif

namespace cnnext {

enum class Backend : int { CPU = 0, Emulator = 1, CUDA = 2 };  // (EMU is the emulator build's macro)
inline constexpr int kNumBackends = 3;

// The implementations of op tag Op for dtype T (void: dtype-free ops such as cat), one per backend;
// nullptr where a backend has none (CUDA in a build without nvcc, or a CPU-only capability).
template <typename Op, typename T>
struct Kernel {
  using Fn = typename Op::template Fn<T>;
  static inline Fn* table[kNumBackends] = {};
};

template <typename Op, typename T>
struct RegisterKernel {
  RegisterKernel(Backend be, typename Kernel<Op, T>::Fn* fn) { Kernel<Op, T>::table[int(be)] = fn; }
};

// A CPU kernel f(args...) as the backend signature f(args..., cudaStream_t): the stream is dropped.
template <auto F>
struct WithoutStream;
template <typename R, typename... A, R (*F)(A...)>
struct WithoutStream<F> {
  static R call(A... a, cudaStream_t) { return F(a...); }
};

namespace emulated {
// The emulator's cap on grid-stride grids (grid_size in csrc/cuda/compat.h), for the calling thread:
// 64 by default, at most the GPU's 65535; returns the previous cap.  Defined in csrc/cuda/emulator.cu.
unsigned set_grid_cap(unsigned cap);
}  // namespace emulated

}  // namespace cnnext

#define CNNEXT_REGISTER_CAT2(a, b) a##b
#define CNNEXT_REGISTER_CAT(a, b) CNNEXT_REGISTER_CAT2(a, b)
#define CNNEXT_REGISTER_NAME(what) CNNEXT_REGISTER_CAT(cnnext_register_##what##_, __COUNTER__)

// Backend `be` implements Op with the function (pointer) fn for dtype T.
#define CNNEXT_REGISTER_KERNEL_T(Op, T, be, fn) \
  static const ::cnnext::RegisterKernel<Op, T> CNNEXT_REGISTER_NAME(T)(be, fn);

// The CPU implements Op with the template cnnext::cpu::fn<T> (float and double), signature without the stream.
#define CNNEXT_REGISTER_CPU_KERNEL(Op, fn)                                                                   \
  CNNEXT_REGISTER_KERNEL_T(Op, float, ::cnnext::Backend::CPU, &::cnnext::WithoutStream<&fn<float>>::call)   \
  CNNEXT_REGISTER_KERNEL_T(Op, double, ::cnnext::Backend::CPU, &::cnnext::WithoutStream<&fn<double>>::call)

// ... and for bfloat16 and float16 with cnnext::cpu::fn<bfloat16> / fn<float16> (cpu_kernels.cpp, namespace cnnext::cpu).
#define CNNEXT_REGISTER_CPU_HALF_KERNEL(Op, fn)                                                                \
  CNNEXT_REGISTER_KERNEL_T(Op, bfloat16, ::cnnext::Backend::CPU, &::cnnext::WithoutStream<&fn<bfloat16>>::call) \
  CNNEXT_REGISTER_KERNEL_T(Op, float16, ::cnnext::Backend::CPU, &::cnnext::WithoutStream<&fn<float16>>::call)

// In csrc/cuda/<op>.cu: this compilation's device backend (CUDA under nvcc, EMU under the emulator)
// implements Op with the launcher template cnnext::CNNEXT_DEVICE_NS::fn<T> (float and double).
#if defined(EMU)
#define CNNEXT_THIS_DEVICE ::cnnext::Backend::Emulator
#else
#define CNNEXT_THIS_DEVICE ::cnnext::Backend::CUDA
#endif
#define CNNEXT_REGISTER_DEVICE_KERNEL(Op, fn)                                                        \
  CNNEXT_REGISTER_KERNEL_T(Op, float, CNNEXT_THIS_DEVICE, &::cnnext::CNNEXT_DEVICE_NS::fn<float>)   \
  CNNEXT_REGISTER_KERNEL_T(Op, double, CNNEXT_THIS_DEVICE, &::cnnext::CNNEXT_DEVICE_NS::fn<double>)
// ... and for bfloat16 and float16 (csrc/common/bfloat16.h, float16.h): the launcher's half-precision kernels.
#define CNNEXT_REGISTER_DEVICE_HALF_KERNEL(Op, fn)                                                          \
  CNNEXT_REGISTER_KERNEL_T(Op, bfloat16, CNNEXT_THIS_DEVICE, &::cnnext::CNNEXT_DEVICE_NS::fn<::cnnext::bfloat16>) \
  CNNEXT_REGISTER_KERNEL_T(Op, float16, CNNEXT_THIS_DEVICE, &::cnnext::CNNEXT_DEVICE_NS::fn<::cnnext::float16>)
