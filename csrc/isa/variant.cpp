// variant.cpp -- compiled into every CPU variant library (cnnext/_cpu_<isa>.so, see setup.py):
// the library says which variant it is, so cnnext.info() reports the code that actually runs.
//
// Why one shared library per ISA (and not ATen-style per-ISA namespaces in one library): the
// kernels instantiate inline functions of torch's and the standard library's headers
// (at::parallel_for, std::vector, ...).  Those are COMDAT: compiled with AVX-512 in one object and
// without in another, the linker keeps one copy, and the baseline kernels could end up calling
// AVX-512 code (SIGILL on an AVX2 CPU).  Here each variant is linked on its own, every symbol is
// local (exports.map) except the kernels' entry points (namespace cnnext::cpu) and these
// cnnext_cpu_* functions, and it is linked with -Bsymbolic-functions: a variant only ever calls its
// own copies.  The ops library (_C) is compiled for plain x86-64, holds no kernel code, and leaves
// the entry points undefined; cnnext/_loader.py loads the chosen variant RTLD_GLOBAL first, so
// _C's calls resolve to it.  .ci/check_isa.py disassembles each library to check this holds.
#ifndef CNNEXT_CPU_ISA_NAME
#error "compiled once per CPU variant: setup.py / CMakeLists.txt define CNNEXT_CPU_ISA_NAME"
#endif

extern "C" const char* cnnext_cpu_isa() { return CNNEXT_CPU_ISA_NAME; }

// The widest vector the variant's kernels use (csrc/cpu/vec.h follows the same macros).
extern "C" const char* cnnext_cpu_simd() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__SSE2__)
  return "SSE2";
#elif defined(__ARM_NEON)
  return "NEON";
#else
  return "scalar";
#endif
}
