// probe.cpp -- compiled into the baseline variant only (plain x86-64, runs on every x86-64 CPU):
// which CPU variants this CPU can run, from cpuid (libgcc's __builtin_cpu_supports, which also
// checks with xgetbv that the OS saves the AVX / AVX-512 registers).  cnnext/_loader.py loads the
// baseline library first, asks, then loads the chosen variant.
//
// The levels are the x86-64 psABI's: x86-64-v4 = AVX-512 F/BW/CD/DQ/VL (+ v3);
// x86-64-v3 = AVX, AVX2, BMI1/2, F16C, FMA, LZCNT, MOVBE, XSAVE (+ v2: SSE4.2, POPCNT, ...).
#include <cstdio>
#include <cstring>

// Space-separated names of the variants this CPU can run, best first.
extern "C" const char* cnnext_cpu_supported() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512 avx2 baseline";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2 baseline";
#endif
  return "baseline";
}

// The CPU features behind each level, as cpuid reports them (for the ImportError's message).
extern "C" const char* cnnext_cpu_features() {
  static char buf[256];
  buf[0] = 0;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  static const char* names[] = {"sse4.2", "popcnt", "avx", "avx2", "fma", "bmi2", "avx512f", "avx512bw",
                                "avx512cd", "avx512dq", "avx512vl", "avx512bf16"};
#define CNNEXT_FEATURE(i, n)                                   \
  if (__builtin_cpu_supports(n)) {                             \
    std::strncat(buf, buf[0] ? " " : "", sizeof buf - std::strlen(buf) - 1); \
    std::strncat(buf, names[i], sizeof buf - std::strlen(buf) - 1);          \
  }
  CNNEXT_FEATURE(0, "sse4.2") CNNEXT_FEATURE(1, "popcnt") CNNEXT_FEATURE(2, "avx") CNNEXT_FEATURE(3, "avx2")
  CNNEXT_FEATURE(4, "fma") CNNEXT_FEATURE(5, "bmi2") CNNEXT_FEATURE(6, "avx512f") CNNEXT_FEATURE(7, "avx512bw")
  CNNEXT_FEATURE(8, "avx512cd") CNNEXT_FEATURE(9, "avx512dq") CNNEXT_FEATURE(10, "avx512vl")
  CNNEXT_FEATURE(11, "avx512bf16")
#undef CNNEXT_FEATURE
#endif
  return buf;
}
