// Self test of the CUDA emulator's tensor-core and async-copy pieces (csrc/cuda/tensor_core.h) and of
// its launch checks (csrc/cuda/compat.h), run by tests/test_emulator.py.  Each mode is one check:
// the clean ones print "ok ..." and exit 0; the misuse ones must make the emulator abort with a
// message naming the rule (the test checks the exit status and the message).
//   g++ -std=c++20 -O1 -DEMU -Icsrc/cuda tests/emulator/selftest.cpp -o selftest && ./selftest gemm
#define EMU 1
#include "compat.h"
#include "tensor_core.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace wmma = nvcuda::wmma;

namespace {

// 32-byte aligned host buffers (WMMA pointers must be 256-bit aligned).
struct Buf {
  float* p;
  size_t n;
  explicit Buf(size_t n_, float v = 0.f) : p(static_cast<float*>(std::aligned_alloc(64, (n_ * 4 + 63) / 64 * 64))), n(n_) {
    for (size_t i = 0; i < n; ++i) p[i] = v;
  }
  ~Buf() { std::free(p); }
  float& operator[](size_t i) { return p[i]; }
};

float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// ---- WMMA: C (32 x 32) = A (32 x 16) * B (16 x 32), one warp per 16 x 16 tile of C -------------------
// A is stored row-major (lda = 16) or column-major (lda = 32); B row-major (ldb = 32) or column-major
// (ldb = 16); C is stored row- or column-major (ldc = 32). `round`: operands through __float_to_tf32.
template <class LA, class LB>
__global__ void gemm_kernel(const float* A, const float* B, float* C, bool round, bool c_row) {
  const int warp = threadIdx.x / 32, tm = warp / 2, tn = warp % 2;
  constexpr bool a_row = std::is_same_v<LA, wmma::row_major>, b_row = std::is_same_v<LB, wmma::row_major>;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int k0 = 0; k0 < 16; k0 += 8) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> b;
    wmma::load_matrix_sync(a, a_row ? A + tm * 16 * 16 + k0 : A + k0 * 32 + tm * 16, a_row ? 16 : 32);
    wmma::load_matrix_sync(b, b_row ? B + k0 * 32 + tn * 16 : B + tn * 16 * 16 + k0, b_row ? 32 : 16);
    if (round) {
      for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
      for (int i = 0; i < b.num_elements; ++i) b.x[i] = wmma::__float_to_tf32(b.x[i]);
    }
    wmma::mma_sync(acc, a, b, acc);
  }
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= 2.0f;  // a uniform element-wise op
  float* c = c_row ? C + tm * 16 * 32 + tn * 16 : C + tn * 16 * 32 + tm * 16;
  wmma::store_matrix_sync(c, acc, 32, c_row ? wmma::mem_row_major : wmma::mem_col_major);
}

float rna_tf32(float v) {  // the reference rounding: nearest, ties away, on the 10-bit mantissa
  if (!std::isfinite(v)) return v;
  return bits_to_float((float_to_bits(v) + 0x1000u) & 0xffffe000u);
}

int check_gemm() {
  Buf A(32 * 16), B(16 * 32), C(32 * 32);
  uint32_t seed = 12345;
  auto rnd = [&] { seed = seed * 1664525u + 1013904223u; return float(int(seed >> 8) % 20001 - 10000) / 7777.f; };
  std::vector<float> a(32 * 16), b(16 * 32);  // logical A[m][k], B[k][n]
  for (auto& v : a) v = rnd();
  for (auto& v : b) v = rnd();
  int bad = 0;
  for (int combo = 0; combo < 8; ++combo) {
    const bool a_row = combo & 1, b_row = combo & 2, c_row = combo & 4;
    for (int m = 0; m < 32; ++m) for (int k = 0; k < 16; ++k) A[a_row ? m * 16 + k : k * 32 + m] = a[m * 16 + k];
    for (int k = 0; k < 16; ++k) for (int n = 0; n < 32; ++n) B[b_row ? k * 32 + n : n * 16 + k] = b[k * 32 + n];
    for (int round = 0; round < 2; ++round) {
      auto run = [&](auto la, auto lb) {  // std::type_identity: the layout tags are incomplete types
        launch(gemm_kernel<typename decltype(la)::type, typename decltype(lb)::type>, dim3(1), dim3(128), 0, nullptr, (const float*)A.p,
               (const float*)B.p, C.p, bool(round), c_row);
      };
      if (a_row && b_row) run(std::type_identity<wmma::row_major>{}, std::type_identity<wmma::row_major>{});
      else if (a_row) run(std::type_identity<wmma::row_major>{}, std::type_identity<wmma::col_major>{});
      else if (b_row) run(std::type_identity<wmma::col_major>{}, std::type_identity<wmma::row_major>{});
      else run(std::type_identity<wmma::col_major>{}, std::type_identity<wmma::col_major>{});
      double err_ref = 0, err_exact = 0, scale = 0;
      for (int m = 0; m < 32; ++m)
        for (int n = 0; n < 32; ++n) {
          double ref = 0, exact = 0;  // ref: the operands as the tensor core reads them; exact: fp64
          for (int k = 0; k < 16; ++k) {
            const float x = a[m * 16 + k], y = b[k * 32 + n];
            const float xr = round ? rna_tf32(x) : bits_to_float(float_to_bits(x) & 0xffffe000u);
            const float yr = round ? rna_tf32(y) : bits_to_float(float_to_bits(y) & 0xffffe000u);
            ref += double(xr) * yr;
            exact += double(x) * y;
          }
          const double got = C[c_row ? m * 32 + n : n * 32 + m] / 2.0;
          err_ref = std::max(err_ref, std::abs(got - ref));
          err_exact = std::max(err_exact, std::abs(got - exact));
          scale = std::max(scale, std::abs(exact));
        }
      err_ref /= scale, err_exact /= scale;
      const bool ok = err_ref < 2e-6 && err_exact > 1e-5 && err_exact < 1e-2;
      std::printf("%s gemm A %s B %s C %s %s: rel err vs tf32 reference %.2e, vs fp64 %.2e\n", ok ? "ok" : "FAIL",
                  a_row ? "row" : "col", b_row ? "row" : "col", c_row ? "row" : "col", round ? "rounded" : "truncated",
                  err_ref, err_exact);
      bad += !ok;
    }
  }
  return bad ? 1 : 0;
}

// ---- WMMA on 16-bit operands: C (32 x 32) = A (32 x 16) * B (16 x 16 ... 32), one m16n16k16 step per tile --
// H = __half or __nv_bfloat16; A row- or column-major, B row- or column-major, C row-major. The operands are
// H values (converted from random floats with round to nearest even); their products are exact in float, so
// the result must equal a float64 sum of the same H values to float accumulation error, and differ from the
// unrounded floats' product by about the 16-bit rounding.
template <class H, class LA, class LB>
__global__ void gemm16_kernel(const H* A, const H* B, float* C) {
  const int warp = threadIdx.x / 32, tm = warp / 2, tn = warp % 2;
  constexpr bool a_row = std::is_same_v<LA, wmma::row_major>, b_row = std::is_same_v<LB, wmma::row_major>;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::fragment<wmma::matrix_a, 16, 16, 16, H, LA> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, H, LB> b;
  wmma::load_matrix_sync(a, a_row ? A + tm * 16 * 16 : A + tm * 16, a_row ? 16 : 32);
  wmma::load_matrix_sync(b, b_row ? B + tn * 16 : B + tn * 16 * 16, b_row ? 32 : 16);
  wmma::mma_sync(acc, a, b, acc);
  wmma::store_matrix_sync(C + tm * 16 * 32 + tn * 16, acc, 32, wmma::mem_row_major);
}

template <class H>
int check_gemm16(const char* hname, H (*to_h)(float), float (*from_h)(H)) {
  H* A = static_cast<H*>(std::aligned_alloc(64, 32 * 16 * sizeof(H)));
  H* B = static_cast<H*>(std::aligned_alloc(64, 16 * 32 * sizeof(H)));
  Buf C(32 * 32);
  uint32_t seed = 777;
  auto rnd = [&] { seed = seed * 1664525u + 1013904223u; return float(int(seed >> 8) % 20001 - 10000) / 7777.f; };
  std::vector<float> a(32 * 16), b(16 * 32);
  for (auto& v : a) v = rnd();
  for (auto& v : b) v = rnd();
  int bad = 0;
  for (int combo = 0; combo < 4; ++combo) {
    const bool a_row = combo & 1, b_row = combo & 2;
    for (int m = 0; m < 32; ++m) for (int k = 0; k < 16; ++k) A[a_row ? m * 16 + k : k * 32 + m] = to_h(a[m * 16 + k]);
    for (int k = 0; k < 16; ++k) for (int n = 0; n < 32; ++n) B[b_row ? k * 32 + n : n * 16 + k] = to_h(b[k * 32 + n]);
    auto run = [&](auto la, auto lb) {
      launch(gemm16_kernel<H, typename decltype(la)::type, typename decltype(lb)::type>, dim3(1), dim3(128), 0, nullptr,
             (const H*)A, (const H*)B, C.p);
    };
    if (a_row && b_row) run(std::type_identity<wmma::row_major>{}, std::type_identity<wmma::row_major>{});
    else if (a_row) run(std::type_identity<wmma::row_major>{}, std::type_identity<wmma::col_major>{});
    else if (b_row) run(std::type_identity<wmma::col_major>{}, std::type_identity<wmma::row_major>{});
    else run(std::type_identity<wmma::col_major>{}, std::type_identity<wmma::col_major>{});
    double err_ref = 0, err_exact = 0, scale = 0;
    for (int m = 0; m < 32; ++m)
      for (int n = 0; n < 32; ++n) {
        double ref = 0, exact = 0;  // ref: the H operands in fp64; exact: the unrounded floats
        for (int k = 0; k < 16; ++k) {
          ref += double(from_h(to_h(a[m * 16 + k]))) * from_h(to_h(b[k * 32 + n]));
          exact += double(a[m * 16 + k]) * b[k * 32 + n];
        }
        err_ref = std::max(err_ref, std::abs(C[m * 32 + n] - ref));
        err_exact = std::max(err_exact, std::abs(C[m * 32 + n] - exact));
        scale = std::max(scale, std::abs(exact));
      }
    err_ref /= scale, err_exact /= scale;
    const bool ok = err_ref < 2e-6 && err_exact > 1e-5 && err_exact < 2e-2;
    std::printf("%s gemm16 %s A %s B %s: rel err vs %s reference %.2e, vs the unrounded floats %.2e\n", ok ? "ok" : "FAIL",
                hname, a_row ? "row" : "col", b_row ? "row" : "col", hname, err_ref, err_exact);
    bad += !ok;
  }
  std::free(A);
  std::free(B);
  return bad ? 1 : 0;
}

// __float_to_tf32 on chosen bit patterns, against cvt.rna.tf32.f32.
int check_rounding() {
  struct Case { uint32_t in, out; const char* what; };
  const Case cases[] = {
      {0x3f800000u, 0x3f800000u, "1.0 exact"},
      {0x3f800fffu, 0x3f800000u, "below half an ulp: down"},
      {0x3f801000u, 0x3f802000u, "a tie: away from zero (even would stay)"},
      {0x3f803000u, 0x3f804000u, "a tie on an odd mantissa: away"},
      {0x3f801001u, 0x3f802000u, "above half: up"},
      {0xbf801000u, 0xbf802000u, "negative tie: away from zero"},
      {0x3f7ff000u, 0x3f800000u, "carry into the exponent"},
      {0x7f7fffffu, 0x7f800000u, "FLT_MAX rounds to Inf"},
      {0x7f800000u, 0x7f800000u, "Inf stays"},
      {0xff800000u, 0xff800000u, "-Inf stays"},
      {0x00000fffu, 0x00000000u, "subnormal: down"},
      {0x00001000u, 0x00002000u, "subnormal tie: away"},
  };
  int bad = 0;
  for (const Case& c : cases) {
    const uint32_t got = float_to_bits(wmma::__float_to_tf32(bits_to_float(c.in)));
    bad += got != c.out;
    std::printf("%s tf32(0x%08x) = 0x%08x (expected 0x%08x: %s)\n", got == c.out ? "ok" : "FAIL", c.in, got, c.out, c.what);
  }
  const float nan = wmma::__float_to_tf32(std::nanf(""));
  bad += !std::isnan(nan);
  std::printf("%s tf32(NaN) is NaN\n", std::isnan(nan) ? "ok" : "FAIL");
  return bad ? 1 : 0;
}

// The tensor core truncates operands that were not rounded: 1 + 0.75 * 2^-10 enters as 1.
__global__ void truncation_kernel(const float* A, const float* B, float* C, bool round) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
  wmma::fill_fragment(c, 0.0f);
  wmma::load_matrix_sync(a, A, 8);
  wmma::load_matrix_sync(b, B, 16);
  if (round)
    for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
  wmma::mma_sync(c, a, b, c);
  wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
}

int check_truncation() {
  Buf A(16 * 8, 0.f), B(8 * 16, 0.f), C(16 * 16);
  A[0] = bits_to_float(0x3f801800u);  // 1 + 0.75 * 2^-10
  B[0] = 1.0f;
  int bad = 0;
  for (int round = 0; round < 2; ++round) {
    launch(truncation_kernel, dim3(1), dim3(32), 0, nullptr, (const float*)A.p, (const float*)B.p, C.p, bool(round));
    const float want = round ? 1.0f + 1.0f / 1024 : 1.0f;
    bad += C[0] != want;
    std::printf("%s %s operand 1 + 0.75 * 2^-10 times 1 = %.10g (expected %.10g)\n", C[0] == want ? "ok" : "FAIL",
                round ? "rounded" : "unrounded", C[0], want);
  }
  return bad;
}

// Layout dependence: lane 0 sets its x[0] alone (not a uniform operation) and reads back where it
// landed; on the emulator that is neither fixed nor the natural (0, 0).
__global__ void layout_kernel(float* C) {
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
  wmma::fill_fragment(c, 0.0f);
  if (threadIdx.x == 0) c.x[0] = 1.0f;
  wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
}

int check_layout() {
  Buf C(256);
  int pos[4];
  for (int t = 0; t < 4; ++t) {
    launch(layout_kernel, dim3(1), dim3(32), 0, nullptr, C.p);
    pos[t] = -1;
    for (int i = 0; i < 256; ++i)
      if (C[i] == 1.0f) pos[t] = i;
  }
  const bool moves = pos[0] != pos[1] || pos[1] != pos[2] || pos[2] != pos[3];
  const bool natural = pos[0] == 0 && pos[1] == 0 && pos[2] == 0 && pos[3] == 0;
  std::printf("%s lane 0's x[0] landed at elements %d %d %d %d of the tile in four launches\n",
              moves && !natural ? "ok" : "FAIL", pos[0], pos[1], pos[2], pos[3]);
  return moves && !natural ? 0 : 1;
}

// ---- misuse of WMMA: each must abort ------------------------------------------------------------------
__global__ void misuse_kernel(const float* A, float* C, int mode) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
  wmma::fill_fragment(c, 0.0f);
  const int lane = threadIdx.x % 32;
  switch (mode) {
    case 0:  // divergent: half the warp loads
      if (lane < 16) wmma::load_matrix_sync(a, A, 8);
      break;
    case 1:  // lanes pass different pointers
      wmma::load_matrix_sync(a, A + (lane % 2) * 8 * 16, 8);
      break;
    case 2:  // misaligned pointer
      wmma::load_matrix_sync(a, A + 1, 8);
      break;
    case 3:  // ldm of 6 floats (24 bytes)
      wmma::load_matrix_sync(a, A, 6);
      break;
    case 4:  // lanes disagree on ldm
      wmma::load_matrix_sync(a, A, lane < 31 ? 8 : 16);
      break;
    case 5:  // a lane exits before the collective store
      if (lane == 7) return;
      wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
      break;
    case 6:  // lanes store with different layouts
      wmma::store_matrix_sync(C, c, 16, lane < 16 ? wmma::mem_row_major : wmma::mem_col_major);
      break;
    default:  // called from a partial warp (the block has 16 threads)
      wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
  }
}

// ---- cp.async -----------------------------------------------------------------------------------------
// Thread t copies src[4t .. 4t + 3] (16 bytes) into shared memory in group 0 and src[128 + 4t ..] in
// group 1, then reads per `mode`; out gets what it saw.
__global__ void async_kernel(const float* src, float* out, int mode) {
  EMU_EXTERN_SHARED(float, s);  // 256 floats, poisoned by the emulator at every block's start
  const int t = threadIdx.x;
  cp_async<16>(&s[4 * t], src + 4 * t, true);
  cp_async_commit();
  cp_async<16>(&s[128 + 4 * t], src + 128 + 4 * t, mode != 3);  // mode 3: zero-fill
  cp_async_commit();
  if (mode == 1) {  // read before any wait: poisoned
    out[t] = s[4 * t];
    cp_async_wait<0>();
    return;
  }
  if (mode == 2) {  // wait<1>: group 0 landed, group 1 not yet
    cp_async_wait<1>();
    out[t] = s[4 * t];
    out[32 + t] = s[128 + 4 * t];
    cp_async_wait<0>();
    return;
  }
  if (mode == 4) {  // another thread's copy, after this thread's wait but without a barrier (fiber strategy: deterministic)
    __syncthreads();  // every copy has been issued (none has been waited for)
    cp_async_wait<0>();
    out[t] = s[4 * ((t + 1) % 32)];
    return;
  }
  cp_async_wait<0>();
  __syncthreads();
  for (int i = 0; i < 8; ++i) out[8 * t + i] = s[(8 * t + i + 4) % 256];  // another thread's data
}

__global__ void async_misuse_kernel(const float* src, int mode) {
  __shared__ __align__(16) float s[64];
  const int t = threadIdx.x;
  if (mode == 0) cp_async<4>(reinterpret_cast<char*>(&s[t]) + 2, src + t, true);  // misaligned destination
  else if (mode == 1) cp_async<16>(&s[4 * (t % 16)], src + 2, true);         // source not 16-byte aligned
  else cp_async<8>(&s[2 * t], src + 2 * t, true);                                // mode 2: never waited for
  cp_async_commit();
  if (mode != 2) cp_async_wait<0>();
}

int check_async(int mode) {
  Buf src(256), out(256, -1.f);
  for (int i = 0; i < 256; ++i) src[i] = float(i);
  launch(async_kernel, dim3(1), dim3(32), 256 * sizeof(float), nullptr, (const float*)src.p, out.p, mode);
  bool ok = true;
  if (mode == 0 || mode == 3) {
    for (int t = 0; t < 32; ++t)
      for (int i = 0; i < 8; ++i) {
        const int e = (8 * t + i + 4) % 256;
        ok = ok && out[8 * t + i] == (mode == 3 && e >= 128 ? 0.f : float(e));
      }
    std::printf("%s cp.async %s: every thread sees every copy after wait + __syncthreads\n", ok ? "ok" : "FAIL",
                mode == 3 ? "with zero-fill" : "16-byte copies");
  } else if (mode == 1 || mode == 4) {
    // (mode 4: the emulator runs threads in order, so the last one finds thread 0's copy done)
    for (int t = 0; t < (mode == 4 ? 31 : 32); ++t) ok = ok && std::isnan(out[t]);
    std::printf("%s cp.async destination read %s reads the poison (NaN)\n", ok ? "ok" : "FAIL",
                mode == 1 ? "before the wait" : "after the own wait but before the barrier (another thread's copy)");
  } else {
    for (int t = 0; t < 32; ++t) ok = ok && out[t] == float(4 * t) && std::isnan(out[32 + t]);
    std::printf("%s cp_async_wait<1>: the older group landed, the newer one not yet\n", ok ? "ok" : "FAIL");
  }
  return ok ? 0 : 1;
}

// ---- launch configuration: refused with the exception the real launch() throws -----------------------
__global__ void nop_kernel(float* p) {
  EMU_EXTERN_SHARED(float, dyn);
  if (threadIdx.x == 0 && blockIdx.x == 0 && p) p[0] = dyn ? 1.f : 2.f;
}

int check_config() {
  int bad = 0;
  auto expect_throw = [&](const char* what, auto&& fn) {
    try {
      fn();
      std::printf("FAIL %s: launched\n", what);
      ++bad;
    } catch (const std::runtime_error& e) {
      const bool ok = std::strstr(e.what(), "cnnext: CUDA kernel launch failed") || std::strstr(e.what(), "cannot give");
      std::printf("%s %s: %s\n", ok ? "ok" : "FAIL", what, e.what());
      bad += !ok;
    }
  };
  expect_throw("block of 2048 threads", [] { launch(nop_kernel, dim3(1), dim3(2048), 0, nullptr, (float*)nullptr); });
  expect_throw("block.z of 65", [] { launch(nop_kernel, dim3(1), dim3(1, 1, 65), 0, nullptr, (float*)nullptr); });
  expect_throw("grid.y of 65536", [] { launch(nop_kernel, dim3(1, 65536), dim3(32), 0, nullptr, (float*)nullptr); });
  expect_throw("empty grid", [] { launch(nop_kernel, dim3(0), dim3(32), 0, nullptr, (float*)nullptr); });
  expect_throw("64 KiB of dynamic shared memory without the attribute",
               [] { launch(nop_kernel, dim3(1), dim3(32), 64 * 1024, nullptr, (float*)nullptr); });
  expect_throw("an attribute above sm_86's 99 KiB", [] { set_max_dynamic_smem(nop_kernel, 100 * 1024); });
  Buf p(1);
  set_max_dynamic_smem(nop_kernel, 64 * 1024);
  launch(nop_kernel, dim3(1), dim3(32), 64 * 1024, nullptr, p.p);
  const bool ok = p[0] == 1.f;
  std::printf("%s 64 KiB of dynamic shared memory after set_max_dynamic_smem\n", ok ? "ok" : "FAIL");
  return bad + !ok;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string m = argc > 1 ? argv[1] : "";
  Buf A(16 * 16 * 2, 1.f), C(16 * 16 * 2);
  if (m == "gemm") return check_gemm();
  if (m == "gemm16")
    return check_gemm16<__half>("half", __float2half_rn, __half2float) +
           check_gemm16<__nv_bfloat16>("bfloat16", __float2bfloat16_rn, __bfloat162float);
  if (m == "rounding") return check_rounding();
  if (m == "truncation") return check_truncation();
  if (m == "layout") return check_layout();
  if (m == "config") return check_config();
  if (m == "async") return check_async(0) + check_async(1) + check_async(2) + check_async(3) + check_async(4);
  const char* misuse[] = {"divergent", "pointers", "misaligned", "ldm", "ldm_differs", "exited", "layouts", "partial_warp"};
  for (int i = 0; i < 8; ++i)
    if (m == misuse[i]) {
      launch(misuse_kernel, dim3(1), dim3(i == 7 ? 16 : 32), 0, nullptr, (const float*)A.p, C.p, i);
      std::printf("misuse '%s' was not caught\n", misuse[i]);
      return 0;
    }
  const char* amisuse[] = {"async_misaligned_dst", "async_misaligned_src", "async_not_waited"};
  for (int i = 0; i < 3; ++i)
    if (m == amisuse[i]) {
      launch(async_misuse_kernel, dim3(1), dim3(32), 0, nullptr, (const float*)A.p, i);
      std::printf("misuse '%s' was not caught\n", amisuse[i]);
      return 0;
    }
  std::fprintf(stderr, "usage: selftest gemm|gemm16|rounding|truncation|layout|config|async|<misuse>\n");
  return 2;
}
