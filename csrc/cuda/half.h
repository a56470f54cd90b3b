// half.h -- the 16-bit float types of the CUDA kernels, written once for nvcc and for the emulator.
// Include after compat.h.
//
//   __half, __nv_bfloat16   CUDA's types (cuda_fp16.h, cuda_bf16.h); the emulator's are 16-bit structs
//                           with the same conversions: __float2half_rn / __half2float and
//                           __float2bfloat16_rn / __bfloat162float, round to nearest even as on the GPU
//                           (csrc/common/float16.h, bfloat16.h: the same bits as torch's c10::Half / BFloat16)
//   Acc<T>                  what a kernel sums T in: float for the half types, T itself for float and double
//   to_acc(v), from_acc<T>(a)  T <-> Acc<T> (the one rounding of a half result is from_acc)
//   DeviceT<T>              a launcher's device element type for csrc/common's storage types
//                           (cnnext::float16 -> __half, cnnext::bfloat16 -> __nv_bfloat16; float, double: T)
#pragma once
#include <type_traits>

#include "../common/bfloat16.h"
#include "../common/float16.h"
#include "compat.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#elif defined(EMU)
struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
inline __half __float2half_rn(float f) { return {cnnext::float16_from_float(f).bits}; }
inline float __half2float(__half h) { return cnnext::to_float(cnnext::float16{h.bits}); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {cnnext::from_float(f).bits}; }
inline float __bfloat162float(__nv_bfloat16 h) { return cnnext::to_float(cnnext::bfloat16{h.bits}); }
#endif

namespace {

template <typename T> struct AccOf { using type = T; };
template <> struct AccOf<__half> { using type = float; };
template <> struct AccOf<__nv_bfloat16> { using type = float; };
template <typename T> using Acc = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(Acc<T> v) {
  if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(v);
  else return v;
}

template <typename T> struct DeviceOf { using type = T; };
template <> struct DeviceOf<cnnext::float16> { using type = __half; };
template <> struct DeviceOf<cnnext::bfloat16> { using type = __nv_bfloat16; };
template <typename T> using DeviceT = typename DeviceOf<T>::type;
template <typename T>
DeviceT<T>* device_ptr(T* p) { return reinterpret_cast<DeviceT<T>*>(p); }
template <typename T>
const DeviceT<T>* device_ptr(const T* p) { return reinterpret_cast<const DeviceT<T>*>(p); }

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

}  // namespace
