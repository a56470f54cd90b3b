// op_driver.cpp -- runs every op's CPU kernels (csrc/cpu/<op>.cpp) and emulated CUDA launchers
// (csrc/cuda/<op>.cu compiled with -DEMU) on small random inputs and compares each output with a
// plain double-precision reference written here.  .ci/sanitizers.sh builds it under
// AddressSanitizer + UndefinedBehaviorSanitizer (CPU + emulated CUDA) and under ThreadSanitizer
// (emulated CUDA only, -DNO_CPU, run with EMU_STRATEGY=threads), so any out-of-bounds access,
// undefined behaviour or data race in a kernel on these inputs fails CI.
//
// Outputs are poisoned with NaN before every call, so a kernel that leaves an element unwritten
// fails too.  The script passes -DHAVE_CPU_<op> / -DHAVE_CU_<op> for each csrc/cpu/<op>.cpp and
// csrc/cuda/<op>.cu that exists; an op is wired in below by one check_<op>() function.
//
// Usage: op_driver [op ...]   (no argument: every op compiled in).  Exit 0 when all match.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#ifndef NO_CPU
#include <ATen/Parallel.h>
#endif

#if defined(HAVE_CU_corr2d) || defined(HAVE_CPU_corr2d)
#include "../../csrc/cpu/corr2d.h"
#include "../../csrc/cuda/corr2d.h"
#endif
#if defined(HAVE_CU_conv2d) || defined(HAVE_CPU_conv2d)
#include "../../csrc/cpu/conv2d.h"
#include "../../csrc/cuda/conv2d.h"
#endif

namespace {

using std::int64_t;
using std::vector;

int g_fail = 0, g_checks = 0;
std::mt19937_64 g_rng(12345);

template <typename T>
vector<T> rnd(int64_t n, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> d(lo, hi);
  vector<T> v(n);
  for (auto& x : v) x = T(d(g_rng));
  return v;
}
template <typename T>
vector<T> poisoned(int64_t n) {
  return vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

// max |got - ref| / max |ref| within the project's tolerance (fp32 1e-5, fp64 1e-10); NaN = unwritten.
template <typename T>
void expect_close(const char* what, const vector<T>& got, const vector<double>& ref) {
  ++g_checks;
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-10;
  double scale = 1e-30, err = 0;
  int64_t worst = -1;
  for (double r : ref) scale = std::max(scale, std::fabs(r));
  if (got.size() != ref.size()) {
    std::printf("FAIL %s: size %zu != %zu\n", what, got.size(), ref.size());
    ++g_fail;
    return;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::isnan(double(got[i])) != std::isnan(ref[i]) ? INFINITY
                     : std::isnan(ref[i])                            ? 0.0
                                                                     : std::fabs(double(got[i]) - ref[i]);
    if (e > err) err = e, worst = int64_t(i);
  }
  if (err / scale > tol) {
    std::printf("FAIL %s: rel err %.3g at flat index %lld (got %.9g, want %.9g)\n", what, err / scale,
                (long long)worst, double(got[worst]), ref[worst]);
    ++g_fail;
  }
}

enum class Be { CPU, EMU };
const char* be_name(Be b) { return b == Be::CPU ? "cpu" : "emu"; }
vector<Be> backends(bool have_cpu, bool have_cu) {
  vector<Be> v;
#ifndef NO_CPU
  if (have_cpu) v.push_back(Be::CPU);
#else
  (void)have_cpu;
#endif
  if (have_cu) v.push_back(Be::EMU);
  return v;
}
template <typename T>
const char* tname() { return sizeof(T) == 4 ? "f32" : "f64"; }

#ifndef HAVE_CPU_corr2d
#define HAVE_CPU_corr2d 0
#else
#undef HAVE_CPU_corr2d
#define HAVE_CPU_corr2d 1
#endif
#ifndef HAVE_CU_corr2d
#define HAVE_CU_corr2d 0
#else
#undef HAVE_CU_corr2d
#define HAVE_CU_corr2d 1
#endif
#ifndef HAVE_CPU_conv2d
#define HAVE_CPU_conv2d 0
#else
#undef HAVE_CPU_conv2d
#define HAVE_CPU_conv2d 1
#endif
#ifndef HAVE_CU_conv2d
#define HAVE_CU_conv2d 0
#else
#undef HAVE_CU_conv2d
#define HAVE_CU_conv2d 1
#endif

// Call a kernel on backend `be`: cnnext::cpu::fn(args...) or cnnext::emu::fn(args..., stream).
#ifdef NO_CPU
#define CALL(be, have_cpu, have_cu, fn, ...) \
  do { if constexpr (have_cu) cnnext::emu::fn(__VA_ARGS__, nullptr); } while (0)
#else
#define CALL(be, have_cpu, have_cu, fn, ...)                                  \
  do {                                                                        \
    if ((be) == Be::CPU) { if constexpr (have_cpu) cnnext::cpu::fn(__VA_ARGS__); } \
    else { if constexpr (have_cu) cnnext::emu::fn(__VA_ARGS__, nullptr); }         \
  } while (0)
#endif

std::string label(const char* op, const char* part, Be be, const char* t, const std::string& shape) {
  return std::string(op) + "/" + part + "/" + be_name(be) + "/" + t + " " + shape;
}

// ------------------------------------------------------------------ corr2d
#if HAVE_CPU_corr2d || HAVE_CU_corr2d
template <typename T>
void corr2d_case(int64_t B, int64_t H, int64_t W, int64_t kh, int64_t kw) {
  const int64_t OH = H - kh + 1, OW = W - kw + 1;
  auto x = rnd<T>(B * H * W), k = rnd<T>(kh * kw), gy = rnd<T>(B * OH * OW);
  vector<double> y(B * OH * OW, 0), gx(B * H * W, 0), gk(kh * kw, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j)
        for (int64_t u = 0; u < kh; ++u)
          for (int64_t v = 0; v < kw; ++v) {
            const int64_t xi = (b * H + i + u) * W + j + v, yi = (b * OH + i) * OW + j;
            y[yi] += double(x[xi]) * k[u * kw + v];
            gx[xi] += double(gy[yi]) * k[u * kw + v];
            gk[u * kw + v] += double(gy[yi]) * x[xi];
          }
  char shape[128];
  std::snprintf(shape, sizeof shape, "B=%lld H=%lld W=%lld k=%lldx%lld", (long long)B, (long long)H, (long long)W,
                (long long)kh, (long long)kw);
  for (Be be : backends(HAVE_CPU_corr2d, HAVE_CU_corr2d)) {
    auto oy = poisoned<T>(B * OH * OW), ogx = poisoned<T>(B * H * W), ogk = poisoned<T>(kh * kw);
    CALL(be, HAVE_CPU_corr2d, HAVE_CU_corr2d, corr2d_forward<T>, x.data(), k.data(), oy.data(), B, H, W, kh, kw);
    CALL(be, HAVE_CPU_corr2d, HAVE_CU_corr2d, corr2d_backward_input<T>, gy.data(), k.data(), ogx.data(), B, H, W,
         kh, kw);
    CALL(be, HAVE_CPU_corr2d, HAVE_CU_corr2d, corr2d_backward_kernel<T>, gy.data(), x.data(), ogk.data(), B, H, W,
         kh, kw);
    expect_close(label("corr2d", "forward", be, tname<T>(), shape).c_str(), oy, y);
    expect_close(label("corr2d", "backward_input", be, tname<T>(), shape).c_str(), ogx, gx);
    expect_close(label("corr2d", "backward_kernel", be, tname<T>(), shape).c_str(), ogk, gk);
  }
}
void check_corr2d(bool big) {
  corr2d_case<float>(1, 1, 1, 1, 1);
  corr2d_case<float>(2, 7, 5, 3, 2);
  corr2d_case<double>(3, 6, 9, 6, 1);   // kernel as tall as the input
  corr2d_case<float>(1, 5, 33, 2, 33);  // kernel as wide as the input
  corr2d_case<double>(2, 4, 4, 1, 1);
  if (big) corr2d_case<float>(3, 78, 77, 3, 3);  // > 64 blocks * 256 threads: grid-stride loops loop
}
#endif

// ------------------------------------------------------------------ conv2d
#if HAVE_CPU_conv2d || HAVE_CU_conv2d
template <typename T>
void conv2d_case(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t sh, int64_t sw,
                 int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G, bool bias) {
  cnnext::Conv2dShape s{};
  s.N = N; s.C = C; s.H = H; s.W = W; s.K = K; s.R = R; s.S = S;
  s.stride_h = sh; s.stride_w = sw; s.pad_h = ph; s.pad_w = pw; s.dil_h = dh; s.dil_w = dw; s.groups = G;
  s.P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1;
  s.Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  const int64_t P = s.P, Q = s.Q, Cg = C / G, Kg = K / G;
  auto x = rnd<T>(N * C * H * W), w = rnd<T>(K * Cg * R * S), b = rnd<T>(K), gy = rnd<T>(N * K * P * Q);
  vector<double> y(N * K * P * Q, 0), gx(N * C * H * W, 0), gw(K * Cg * R * S, 0), gb(K, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          const int64_t yi = ((n * K + k) * P + p) * Q + q, g = k / Kg;
          y[yi] = bias ? double(b[k]) : 0.0;
          gb[k] += gy[yi];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < R; ++r)
              for (int64_t t = 0; t < S; ++t) {
                const int64_t h = p * sh - ph + r * dh, ww = q * sw - pw + t * dw;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                const int64_t xi = ((n * C + g * Cg + c) * H + h) * W + ww, wi = ((k * Cg + c) * R + r) * S + t;
                y[yi] += double(x[xi]) * w[wi];
                gx[xi] += double(gy[yi]) * w[wi];
                gw[wi] += double(gy[yi]) * x[xi];
              }
        }
  char shape[200];
  std::snprintf(shape, sizeof shape, "N=%lld C=%lld H=%lld W=%lld K=%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld d=%lld,%lld g=%lld%s",
                (long long)N, (long long)C, (long long)H, (long long)W, (long long)K, (long long)R, (long long)S,
                (long long)sh, (long long)sw, (long long)ph, (long long)pw, (long long)dh, (long long)dw,
                (long long)G, bias ? " bias" : "");
  for (Be be : backends(HAVE_CPU_conv2d, HAVE_CU_conv2d)) {
    auto oy = poisoned<T>(N * K * P * Q), ogx = poisoned<T>(N * C * H * W), ogw = poisoned<T>(K * Cg * R * S),
         ogb = poisoned<T>(K);
    CALL(be, HAVE_CPU_conv2d, HAVE_CU_conv2d, conv2d_forward<T>, s, x.data(), w.data(), bias ? b.data() : nullptr,
         oy.data());
    CALL(be, HAVE_CPU_conv2d, HAVE_CU_conv2d, conv2d_backward_input<T>, s, gy.data(), w.data(), ogx.data());
    CALL(be, HAVE_CPU_conv2d, HAVE_CU_conv2d, conv2d_backward_weight<T>, s, x.data(), gy.data(), ogw.data(),
         bias ? ogb.data() : nullptr);
    expect_close(label("conv2d", "forward", be, tname<T>(), shape).c_str(), oy, y);
    expect_close(label("conv2d", "backward_input", be, tname<T>(), shape).c_str(), ogx, gx);
    expect_close(label("conv2d", "backward_weight", be, tname<T>(), shape).c_str(), ogw, gw);
    if (bias) expect_close(label("conv2d", "backward_bias", be, tname<T>(), shape).c_str(), ogb, gb);
  }
}
void check_conv2d(bool big) {
  conv2d_case<float>(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, false);
  conv2d_case<float>(2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true);
  conv2d_case<double>(1, 4, 9, 8, 6, 3, 2, 2, 3, 1, 0, 1, 2, 2, true);   // groups, stride, dilation
  conv2d_case<float>(2, 6, 5, 5, 6, 5, 5, 1, 1, 2, 2, 1, 1, 6, false);   // depthwise, kernel = padded input
  conv2d_case<float>(1, 2, 8, 8, 3, 1, 1, 3, 3, 0, 0, 1, 1, 1, true);    // 1x1, stride > kernel
  conv2d_case<double>(1, 3, 11, 4, 2, 11, 4, 1, 1, 0, 0, 1, 1, 1, true); // kernel = input
  if (big) conv2d_case<float>(2, 8, 20, 20, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::function<void(bool)>> ops;
#if HAVE_CPU_corr2d || HAVE_CU_corr2d
  ops["corr2d"] = check_corr2d;
#endif
#if HAVE_CPU_conv2d || HAVE_CU_conv2d
  ops["conv2d"] = check_conv2d;
#endif
  const bool big = !std::getenv("DRIVER_SMALL");
  vector<std::string> want(argv + 1, argv + argc);
  if (want.empty())
    for (auto& kv : ops) want.push_back(kv.first);
  for (auto& name : want) {
    auto it = ops.find(name);
    if (it == ops.end()) {
      std::printf("FAIL %s: not wired into op_driver.cpp\n", name.c_str());
      ++g_fail;
      continue;
    }
    const int before = g_fail, checks = g_checks;
    it->second(big);
    std::printf("%s %s: %d comparisons\n", g_fail == before ? "ok  " : "FAIL", name.c_str(), g_checks - checks);
  }
  std::printf("op_driver: %d comparisons, %d failures\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
