// vec.h -- the SIMD vector the CPU kernels are written with.
//
// GCC/Clang vector extensions: Vec<T>::type is the widest vector the CPU
// variant being compiled targets: 64 bytes with AVX-512 (avx512 = x86-64-v4),
// 32 with AVX/AVX2 (avx2 = x86-64-v3), 16 otherwise (baseline x86-64 = SSE2,
// NEON, or plain scalar code the compiler splits).  setup.py compiles every
// csrc/cpu file once per variant; the import picks the variant from cpuid and
// `cnnext.info()["cpu_isa"]` reports it.
// Arithmetic on these types is element-wise; with -ffp-contract=fast a*b+c
// becomes an FMA.
#pragma once
#include <cstdint>
#include <cstring>

namespace cnnext::cpu {

#if defined(__AVX512F__)
inline constexpr int kVecBytes = 64;
#elif defined(__AVX__)
inline constexpr int kVecBytes = 32;
#else
inline constexpr int kVecBytes = 16;
#endif

template <typename T>
struct Vec {
  static constexpr int size = kVecBytes / int(sizeof(T));
  typedef T type __attribute__((vector_size(kVecBytes), aligned(sizeof(T))));  // unaligned-safe
  // Loads and stores go through an element-aligned, may_alias view of the vector: one unaligned
  // vector move under every -mtune.  (A std::memcpy of the vector is split into 32-byte pieces by
  // GCC's Intel tunings and reassembled through the stack: a store-forwarding stall per vector.)
  typedef T unaligned __attribute__((vector_size(kVecBytes), aligned(alignof(T)), may_alias));
  static type load(const T* p) { return *reinterpret_cast<const unaligned*>(p); }
  static void store(T* p, type v) { *reinterpret_cast<unaligned*>(p) = v; }
  // x - 0 is x for every x (-0 included, unlike 0 + x), so it folds away to one broadcast
  static type broadcast(T x) { return x - type{}; }
  static T sum(type v) { T s = 0; for (int i = 0; i < size; ++i) s += v[i]; return s; }
};

// y[0:n] += a * x[0:n]
template <typename T>
inline void axpy(int64_t n, T a, const T* __restrict__ x, T* __restrict__ y) {
  using V = Vec<T>;
  const typename V::type va = V::broadcast(a);
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) V::store(y + i, V::load(y + i) + va * V::load(x + i));
  for (; i < n; ++i) y[i] += a * x[i];
}

// sum_i x[i] * y[i], vector lanes first, then the tail: a fixed order.
template <typename T>
inline T dot(int64_t n, const T* __restrict__ x, const T* __restrict__ y) {
  using V = Vec<T>;
  typename V::type acc{};
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) acc += V::load(x + i) * V::load(y + i);
  T s = V::sum(acc);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

}  // namespace cnnext::cpu
