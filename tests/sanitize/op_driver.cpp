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
#include <type_traits>
#include <vector>

#include "../../csrc/common/bfloat16.h"
#include "../../csrc/common/float16.h"

#ifndef NO_CPU
#include <ATen/Parallel.h>
#endif

// An op is driven when its csrc/cuda/<op>.cu exists and (outside the TSan build) its csrc/cpu/<op>.cpp.
#if defined(HAVE_CU_corr2d) && (defined(NO_CPU) || defined(HAVE_CPU_corr2d))
#define WITH_corr2d 1
#include "../../csrc/cpu/corr2d.h"
#include "../../csrc/cuda/corr2d.h"
#endif
#if defined(HAVE_CU_conv2d) && (defined(NO_CPU) || defined(HAVE_CPU_conv2d))
#define WITH_conv2d 1
#include "../../csrc/cpu/conv2d.h"
#include "../../csrc/cuda/conv2d.h"
#endif
#if defined(HAVE_CU_max_pool2d) && (defined(NO_CPU) || defined(HAVE_CPU_max_pool2d))
#define WITH_max_pool2d 1
#include "../../csrc/cpu/max_pool2d.h"
#include "../../csrc/cuda/max_pool2d.h"
#endif
#if defined(HAVE_CU_avg_pool2d) && (defined(NO_CPU) || defined(HAVE_CPU_avg_pool2d))
#define WITH_avg_pool2d 1
#include "../../csrc/cpu/avg_pool2d.h"
#include "../../csrc/cuda/avg_pool2d.h"
#endif
#if defined(HAVE_CU_adaptive_avg_pool2d) && (defined(NO_CPU) || defined(HAVE_CPU_adaptive_avg_pool2d))
#define WITH_adaptive_avg_pool2d 1
#include "../../csrc/cpu/adaptive_avg_pool2d.h"
#include "../../csrc/cuda/adaptive_avg_pool2d.h"
#endif
#if defined(HAVE_CU_cat) && (defined(NO_CPU) || defined(HAVE_CPU_cat))
#define WITH_cat 1
#include "../../csrc/cpu/cat.h"
#include "../../csrc/cuda/cat.h"
#endif
#if defined(HAVE_CU_batch_norm) && (defined(NO_CPU) || defined(HAVE_CPU_batch_norm))
#define WITH_batch_norm 1
#include "../../csrc/cpu/batch_norm.h"
#include "../../csrc/cuda/batch_norm.h"
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
void expect_close(const char* what, const vector<T>& got, const vector<double>& ref, double tol_override = 0) {
  ++g_checks;
  const double tol = tol_override ? tol_override : sizeof(T) == 4 ? 1e-5 : 1e-10;
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

// float32 values rounded to a 16-bit type (bfloat16, float16; nearest even), and back (exact)
template <typename Half>
vector<Half> to_half(const vector<float>& v) {
  vector<Half> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<Half, cnnext::bfloat16>) o[i] = cnnext::from_float(v[i]);
    else o[i] = cnnext::float16_from_float(v[i]);
  }
  return o;
}
template <typename Half>
vector<float> from_half(const vector<Half>& v) {
  vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = cnnext::to_float(v[i]);
  return o;
}

enum class Be { CPU, EMU };
const char* be_name(Be b) { return b == Be::CPU ? "cpu" : "emu"; }
#ifdef NO_CPU
const vector<Be> kBackends = {Be::EMU};
// ON(be, cpu statement, emulated-CUDA statement): the CPU statement is dropped from the TSan build.
#define ON(be, cpu_stmt, emu_stmt) do { emu_stmt; } while (0)
#else
const vector<Be> kBackends = {Be::CPU, Be::EMU};
#define ON(be, cpu_stmt, emu_stmt) do { if ((be) == Be::CPU) { cpu_stmt; } else { emu_stmt; } } while (0)
#endif
template <typename T>
const char* tname() { return sizeof(T) == 4 ? "f32" : "f64"; }
template <typename T>
vector<double> widen(const vector<T>& v) { return vector<double>(v.begin(), v.end()); }

std::string label(const char* op, const char* part, Be be, const char* t, const std::string& shape) {
  return std::string(op) + "/" + part + "/" + be_name(be) + "/" + t + " " + shape;
}

// ------------------------------------------------------------------ corr2d
#ifdef WITH_corr2d
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
  for (Be be : kBackends) {
    auto oy = poisoned<T>(B * OH * OW), ogx = poisoned<T>(B * H * W), ogk = poisoned<T>(kh * kw);
    const cnnext::Corr2dShape cs{B, H, W, kh, kw};
    ON(be, cnnext::cpu::corr2d_forward<T>(cs, x.data(), k.data(), oy.data()),
       cnnext::emulated::corr2d_forward<T>(cs, x.data(), k.data(), oy.data(), nullptr));
    ON(be, cnnext::cpu::corr2d_backward_input<T>(cs, gy.data(), k.data(), ogx.data()),
       cnnext::emulated::corr2d_backward_input<T>(cs, gy.data(), k.data(), ogx.data(), nullptr));
    ON(be, cnnext::cpu::corr2d_backward_kernel<T>(cs, gy.data(), x.data(), ogk.data()),
       {
         vector<T> ws(size_t(cnnext::emulated::corr2d_kernel_workspace<T>(cs, nullptr)));
         cnnext::emulated::corr2d_backward_kernel<T>(cs, gy.data(), x.data(), ogk.data(), ws.data(), nullptr);
       });
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
  corr2d_case<double>(3, 50, 41, 2, 3);          // 5880 products per tap: 3 splits
}
#endif

// ------------------------------------------------------------------ conv2d
#ifdef WITH_conv2d
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
  for (Be be : kBackends) {
    auto oy = poisoned<T>(N * K * P * Q), ogx = poisoned<T>(N * C * H * W), ogw = poisoned<T>(K * Cg * R * S),
         ogb = poisoned<T>(K);
    ON(be, cnnext::cpu::conv2d_forward<T>(s, x.data(), w.data(), bias ? b.data() : nullptr,
         oy.data()), cnnext::emulated::conv2d_forward<T>(s, x.data(), w.data(), bias ? b.data() : nullptr,
         oy.data(), nullptr));
    ON(be, cnnext::cpu::conv2d_backward_input<T>(s, gy.data(), w.data(), ogx.data()), cnnext::emulated::conv2d_backward_input<T>(s, gy.data(), w.data(), ogx.data(), nullptr));
    ON(be, cnnext::cpu::conv2d_backward_weight<T>(s, x.data(), gy.data(), ogw.data(),
         bias ? ogb.data() : nullptr), {
         vector<T> ws(size_t(cnnext::emulated::conv2d_weight_workspace<T>(s, nullptr)));
         cnnext::emulated::conv2d_backward_weight<T>(s, x.data(), gy.data(), ogw.data(), bias ? ogb.data() : nullptr,
                                                     ws.empty() ? nullptr : ws.data(), nullptr);
       });
    expect_close(label("conv2d", "forward", be, tname<T>(), shape).c_str(), oy, y);
    expect_close(label("conv2d", "backward_input", be, tname<T>(), shape).c_str(), ogx, gx);
    expect_close(label("conv2d", "backward_weight", be, tname<T>(), shape).c_str(), ogw, gw);
    if (bias) expect_close(label("conv2d", "backward_bias", be, tname<T>(), shape).c_str(), ogb, gb);
  }
  if constexpr (sizeof(T) == 4) {  // the TF32 tensor-core kernels (WMMA + cp.async pipeline): TF32's error
    s.allow_tf32 = true;
    auto oy = poisoned<T>(N * K * P * Q), ogx = poisoned<T>(N * C * H * W), ogw = poisoned<T>(K * Cg * R * S);
    cnnext::emulated::conv2d_forward<T>(s, x.data(), w.data(), bias ? b.data() : nullptr, oy.data(), nullptr);
    cnnext::emulated::conv2d_backward_input<T>(s, gy.data(), w.data(), ogx.data(), nullptr);
    vector<T> ws(size_t(cnnext::emulated::conv2d_weight_workspace<T>(s, nullptr)));
    cnnext::emulated::conv2d_backward_weight<T>(s, x.data(), gy.data(), ogw.data(), nullptr,
                                                ws.empty() ? nullptr : ws.data(), nullptr);
    expect_close(label("conv2d", "forward_tf32", Be::EMU, tname<T>(), shape).c_str(), oy, y, 1e-2);
    expect_close(label("conv2d", "backward_input_tf32", Be::EMU, tname<T>(), shape).c_str(), ogx, gx, 1e-2);
    expect_close(label("conv2d", "backward_weight_tf32", Be::EMU, tname<T>(), shape).c_str(), ogw, gw, 1e-2);
    // bfloat16 and float16 on the same kernel (WMMA m16n16k16, float sums, one rounding per output): the
    // inputs' rounding to 16 bits against the float reference, within TF32's 1e-2 too
    auto half_run = [&](auto h, const char* hname) {
      using Half = decltype(h);
      auto to_h = [](const vector<T>& v) { return to_half<Half>(v); };
      auto to_f = [](const vector<Half>& v) { return from_half(v); };
      const auto hx = to_h(x), hw = to_h(w), hb = to_h(b), hgy = to_h(gy);
      vector<Half> hy(N * K * P * Q, Half{0xFFFF}), hgx(N * C * H * W, Half{0xFFFF}), hgw(K * Cg * R * S, Half{0xFFFF}),
          hgb(K, Half{0xFFFF});  // 0xFFFF: NaN, unwritten
      cnnext::emulated::conv2d_forward<Half>(s, hx.data(), hw.data(), bias ? hb.data() : nullptr, hy.data(), nullptr);
      cnnext::emulated::conv2d_backward_input<Half>(s, hgy.data(), hw.data(), hgx.data(), nullptr);
      vector<Half> hws(size_t(cnnext::emulated::conv2d_weight_workspace<Half>(s, nullptr)));
      cnnext::emulated::conv2d_backward_weight<Half>(s, hx.data(), hgy.data(), hgw.data(), bias ? hgb.data() : nullptr,
                                                  hws.empty() ? nullptr : hws.data(), nullptr);
      expect_close(label("conv2d", "forward_wmma16", Be::EMU, hname, shape).c_str(), to_f(hy), y, 1e-2);
      expect_close(label("conv2d", "backward_input_wmma16", Be::EMU, hname, shape).c_str(), to_f(hgx), gx, 1e-2);
      expect_close(label("conv2d", "backward_weight_wmma16", Be::EMU, hname, shape).c_str(), to_f(hgw), gw, 1e-2);
      if (bias) expect_close(label("conv2d", "backward_bias_wmma16", Be::EMU, hname, shape).c_str(), to_f(hgb), gb, 1e-2);
    };
    half_run(cnnext::bfloat16{}, "bf16");
    half_run(cnnext::float16{}, "f16");
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
  // strided grad input by phases: gcd(stride, dilation) > 1 (phases without taps), asymmetric, groups,
  // a kernel smaller than the stride; and a bias grad over several splits (4096 values per channel)
  conv2d_case<float>(1, 4, 13, 11, 4, 3, 3, 2, 3, 2, 1, 2, 1, 2, true);
  conv2d_case<double>(2, 2, 10, 9, 3, 2, 2, 3, 3, 0, 1, 1, 1, 1, false);
  conv2d_case<float>(4, 2, 32, 32, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, true);
  // the CPU's Winograd variants, forced (the planner takes them from 32 channels): two channel panels; one panel
  // in two tile splits (108 tiles); rows wide enough for the vectorised even / odd split at padding (0, 2) (grad
  // input: (2, 0)) with a half-filled last A panel (K = 17)
  for (const char* env : {"CNNEXT_CONV2D_FWD", "CNNEXT_CONV2D_GI", "CNNEXT_CONV2D_GW"}) setenv(env, "winograd", 1);
  conv2d_case<float>(2, 33, 7, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, true);
  conv2d_case<float>(3, 5, 12, 12, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, false);
  conv2d_case<float>(1, 4, 3, 70, 17, 3, 3, 1, 1, 0, 2, 1, 1, 1, true);
  for (const char* env : {"CNNEXT_CONV2D_FWD", "CNNEXT_CONV2D_GI", "CNNEXT_CONV2D_GW"}) unsetenv(env);
}
#endif

// Output length of a pooling window axis, torch's formula (pooling_output_shape).
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil) {
  int64_t num = in + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0);
  int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil && (o - 1) * s >= in + p) --o;
  return o;
}

// ------------------------------------------------------------------ max_pool2d
#ifdef WITH_max_pool2d
template <typename T>
void max_pool2d_case(int64_t NC, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                     int64_t pw, int64_t dh, int64_t dw, bool ceil, int64_t C = 1) {
  cnnext::MaxPool2dShape s{};
  s.NC = NC; s.H = H; s.W = W; s.kh = kh; s.kw = kw; s.stride_h = sh; s.stride_w = sw;
  s.pad_h = ph; s.pad_w = pw; s.dil_h = dh; s.dil_w = dw;
  s.OH = pool_out(H, kh, sh, ph, dh, ceil);
  s.OW = pool_out(W, kw, sw, pw, dw, ceil);
  const int64_t OH = s.OH, OW = s.OW;
  auto x = rnd<T>(NC * H * W), gy = rnd<T>(NC * OH * OW);
  vector<double> y(NC * OH * OW), ind(NC * OH * OW), gx(NC * H * W, 0.0);
  for (int64_t p = 0; p < NC; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        T best = -std::numeric_limits<T>::infinity();
        int64_t bi = -1;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t h = oh * sh - ph + i * dh, w = ow * sw - pw + j * dw;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const T v = x[(p * H + h) * W + w];
            if (bi < 0 || v > best || std::isnan(v)) best = v, bi = h * W + w;
          }
        const int64_t o = (p * OH + oh) * OW + ow;
        y[o] = best;
        ind[o] = double(bi);
        gx[p * H * W + bi] += gy[o];
      }
  char shape[200];
  std::snprintf(shape, sizeof shape, "NC=%lld H=%lld W=%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld d=%lld,%lld%s",
                (long long)NC, (long long)H, (long long)W, (long long)kh, (long long)kw, (long long)sh, (long long)sw,
                (long long)ph, (long long)pw, (long long)dh, (long long)dw, ceil ? " ceil" : "");
  for (Be be : kBackends) {
    auto oy = poisoned<T>(NC * OH * OW), ogx = poisoned<T>(NC * H * W);
    vector<int64_t> oind(NC * OH * OW, -7);
    ON(be, cnnext::cpu::max_pool2d_forward<T>(s, x.data(), oy.data(), oind.data()),
       cnnext::emulated::max_pool2d_forward<T>(s, x.data(), oy.data(), oind.data(), nullptr));
    vector<int64_t> ref_ind(ind.begin(), ind.end());  // the backward reads the reference indices
    ON(be, if (!cnnext::cpu::max_pool2d_backward<T>(s, gy.data(), ref_ind.data(), ogx.data())) {
         std::printf("FAIL max_pool2d/backward/cpu: rejected valid indices\n"); ++g_fail; },
       cnnext::emulated::max_pool2d_backward<T>(s, gy.data(), ref_ind.data(), ogx.data(), nullptr));
    expect_close(label("max_pool2d", "forward", be, tname<T>(), shape).c_str(), oy, y);
    expect_close(label("max_pool2d", "indices", be, tname<T>(), shape).c_str(), widen(oind), ind);
    expect_close(label("max_pool2d", "backward", be, tname<T>(), shape).c_str(), ogx, gx);
    // the forward without indices (ind == nullptr: inference)
    auto oy2 = poisoned<T>(NC * OH * OW);
    ON(be, cnnext::cpu::max_pool2d_forward<T>(s, x.data(), oy2.data(), nullptr),
       cnnext::emulated::max_pool2d_forward<T>(s, x.data(), oy2.data(), nullptr, nullptr));
    expect_close(label("max_pool2d", "forward(no indices)", be, tname<T>(), shape).c_str(), oy2, y);
  }
#ifndef NO_CPU
  // channels_last on the CPU: x (N, H, W, C), y and ind (N, OH, OW, C), NC = N*C
  if (C > 0 && NC % C == 0) {
    const int64_t N = NC / C;
    vector<T> xl(NC * H * W);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t hw = 0; hw < H * W; ++hw) xl[(n * H * W + hw) * C + c] = x[(n * C + c) * H * W + hw];
    vector<double> yl(NC * OH * OW), il(NC * OH * OW);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t o = 0; o < OH * OW; ++o) {
          yl[(n * OH * OW + o) * C + c] = y[(n * C + c) * OH * OW + o];
          il[(n * OH * OW + o) * C + c] = ind[(n * C + c) * OH * OW + o];
        }
    auto oyl = poisoned<T>(NC * OH * OW), oyl2 = poisoned<T>(NC * OH * OW);
    vector<int64_t> oil(NC * OH * OW, -7);
    cnnext::cpu::max_pool2d_forward_nhwc<T>(s, C, xl.data(), oyl.data(), oil.data());
    cnnext::cpu::max_pool2d_forward_nhwc<T>(s, C, xl.data(), oyl2.data(), nullptr);
    const std::string sh = std::string(shape) + " C=" + std::to_string(C);
    expect_close(label("max_pool2d", "forward_nhwc", Be::CPU, tname<T>(), sh).c_str(), oyl, yl);
    expect_close(label("max_pool2d", "indices_nhwc", Be::CPU, tname<T>(), sh).c_str(), widen(oil), il);
    expect_close(label("max_pool2d", "forward_nhwc(no indices)", Be::CPU, tname<T>(), sh).c_str(), oyl2, yl);
  }
#endif
}
void check_max_pool2d(bool big) {
  max_pool2d_case<float>(1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, false);
  max_pool2d_case<float>(3, 7, 6, 2, 2, 2, 2, 0, 0, 1, 1, false, 3);
  max_pool2d_case<double>(2, 9, 8, 3, 3, 2, 1, 1, 1, 1, 1, true, 2);
  max_pool2d_case<float>(2, 10, 11, 3, 2, 2, 3, 1, 1, 2, 2, true);   // dilation, ceil_mode
  max_pool2d_case<float>(34, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, false, 17);  // channels_last: C not a vector multiple
  max_pool2d_case<float>(64, 5, 4, 2, 2, 2, 1, 1, 0, 1, 1, true, 32);   // channels_last: C = 2 vectors
  max_pool2d_case<double>(24, 7, 3, 3, 2, 2, 2, 1, 1, 2, 1, false, 8);
  max_pool2d_case<float>(1, 5, 5, 5, 5, 1, 1, 2, 2, 1, 1, false);    // kernel = padded input
  max_pool2d_case<double>(2, 8, 8, 1, 1, 3, 3, 0, 0, 1, 1, false);   // stride > kernel
  max_pool2d_case<float>(5, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, false);    // CPU: a whole plane per vector
  max_pool2d_case<float>(3, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1, true);     // CPU: small plane, ceil_mode
  max_pool2d_case<float>(2, 5, 70, 3, 3, 2, 2, 1, 1, 1, 1, false);   // wide rows: blocks, the last shifted
  max_pool2d_case<float>(2, 6, 67, 2, 3, 1, 3, 1, 1, 2, 2, true);    // stride 3 (gathers), dilation, ceil_mode
  if (big) max_pool2d_case<float>(16, 40, 40, 3, 3, 1, 1, 1, 1, 1, 1, false);  // grid-stride loops loop
}
#endif

// ------------------------------------------------------------------ avg_pool2d / adaptive_avg_pool2d
#if defined(WITH_avg_pool2d) || defined(WITH_adaptive_avg_pool2d)
// Average pooling of (planes, H, W) over the windows [h0[oh], h1[oh]) x [w0[ow], w1[ow]), / div[oh*OW+ow].
struct Windows { vector<int64_t> h0, h1, w0, w1; vector<double> div; };
template <typename T>
void avg_ref(const vector<T>& x, const vector<T>& gy, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
             const Windows& win, vector<double>& y, vector<double>& gx) {
  y.assign(planes * OH * OW, 0.0);
  gx.assign(planes * H * W, 0.0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t o = (p * OH + oh) * OW + ow;
        const double d = win.div[oh * OW + ow];
        double acc = 0;
        for (int64_t h = win.h0[oh]; h < win.h1[oh]; ++h)
          for (int64_t w = win.w0[ow]; w < win.w1[ow]; ++w) {
            acc += x[(p * H + h) * W + w];
            gx[(p * H + h) * W + w] += gy[o] / d;
          }
        y[o] = acc / d;
      }
}
#endif

#ifdef WITH_avg_pool2d
template <typename T>
void avg_pool2d_case(int64_t planes, int64_t H, int64_t W, int64_t kH, int64_t kW, int64_t sH, int64_t sW, int64_t pH,
                     int64_t pW, bool ceil, bool cip, int64_t dov) {
  const int64_t OH = pool_out(H, kH, sH, pH, 1, ceil), OW = pool_out(W, kW, sW, pW, 1, ceil);
  Windows win;
  for (int64_t oh = 0; oh < OH; ++oh) {
    int64_t a = oh * sH - pH, b = std::min(a + kH, H + pH);
    win.h0.push_back(std::max<int64_t>(a, 0)); win.h1.push_back(std::min(b, H));
  }
  for (int64_t ow = 0; ow < OW; ++ow) {
    int64_t a = ow * sW - pW, b = std::min(a + kW, W + pW);
    win.w0.push_back(std::max<int64_t>(a, 0)); win.w1.push_back(std::min(b, W));
  }
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t ha = oh * sH - pH, hb = std::min(ha + kH, H + pH), wa = ow * sW - pW, wb = std::min(wa + kW, W + pW);
      const double full = double((hb - ha) * (wb - wa));
      const double inb = double((win.h1[oh] - win.h0[oh]) * (win.w1[ow] - win.w0[ow]));
      win.div.push_back(dov ? double(dov) : cip ? full : inb);
    }
  auto x = rnd<T>(planes * H * W), gy = rnd<T>(planes * OH * OW);
  vector<double> y, gx;
  avg_ref(x, gy, planes, H, W, OH, OW, win, y, gx);
  char shape[200];
  std::snprintf(shape, sizeof shape, "planes=%lld H=%lld W=%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld%s%s div=%lld",
                (long long)planes, (long long)H, (long long)W, (long long)kH, (long long)kW, (long long)sH,
                (long long)sW, (long long)pH, (long long)pW, ceil ? " ceil" : "", cip ? " count_include_pad" : "",
                (long long)dov);
  const cnnext::AvgPool2dShape as{planes, H, W, OH, OW, kH, kW, sH, sW, pH, pW, cip, dov};
  for (Be be : kBackends) {
    auto oy = poisoned<T>(planes * OH * OW), ogx = poisoned<T>(planes * H * W);
    ON(be, {
         cnnext::cpu::avg_pool2d_forward<T>(as, x.data(), oy.data());
         cnnext::cpu::avg_pool2d_backward<T>(as, gy.data(), ogx.data());
       }, {
         cnnext::emulated::avg_pool2d_forward<T>(as, x.data(), oy.data(), nullptr);
         cnnext::emulated::avg_pool2d_backward<T>(as, gy.data(), ogx.data(), nullptr);
       });
    expect_close(label("avg_pool2d", "forward", be, tname<T>(), shape).c_str(), oy, y);
    expect_close(label("avg_pool2d", "backward", be, tname<T>(), shape).c_str(), ogx, gx);
  }
}
void check_avg_pool2d(bool big) {
  avg_pool2d_case<float>(1, 1, 1, 1, 1, 1, 1, 0, 0, false, true, 0);
  avg_pool2d_case<float>(3, 7, 6, 2, 2, 2, 2, 0, 0, false, true, 0);
  avg_pool2d_case<double>(2, 9, 8, 3, 3, 2, 1, 1, 1, true, false, 0);
  avg_pool2d_case<float>(2, 10, 11, 3, 2, 2, 3, 1, 1, true, true, 0);
  avg_pool2d_case<double>(2, 6, 7, 3, 3, 2, 2, 1, 1, true, true, 5);  // divisor_override
  avg_pool2d_case<float>(1, 5, 5, 5, 5, 1, 1, 2, 2, false, false, 0);
  avg_pool2d_case<double>(2, 8, 8, 1, 1, 3, 3, 0, 0, false, true, 0);
  if (big) avg_pool2d_case<float>(16, 40, 40, 3, 3, 1, 1, 1, 1, false, true, 0);
}
#endif

#ifdef WITH_adaptive_avg_pool2d
template <typename T>
void adaptive_case(int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  Windows win;
  for (int64_t i = 0; i < OH; ++i) { win.h0.push_back(i * H / OH); win.h1.push_back(((i + 1) * H + OH - 1) / OH); }
  for (int64_t i = 0; i < OW; ++i) { win.w0.push_back(i * W / OW); win.w1.push_back(((i + 1) * W + OW - 1) / OW); }
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow)
      win.div.push_back(double((win.h1[oh] - win.h0[oh]) * (win.w1[ow] - win.w0[ow])));
  auto x = rnd<T>(planes * H * W), gy = rnd<T>(planes * OH * OW);
  vector<double> y, gx;
  avg_ref(x, gy, planes, H, W, OH, OW, win, y, gx);
  char shape[128];
  std::snprintf(shape, sizeof shape, "planes=%lld H=%lld W=%lld out=%lldx%lld", (long long)planes, (long long)H,
                (long long)W, (long long)OH, (long long)OW);
  for (Be be : kBackends) {
    auto oy = poisoned<T>(planes * OH * OW), ogx = poisoned<T>(planes * H * W);
    ON(be, {
         cnnext::cpu::adaptive_avg_pool2d_forward<T>({planes, H, W, OH, OW}, x.data(), oy.data());
         cnnext::cpu::adaptive_avg_pool2d_backward<T>({planes, H, W, OH, OW}, gy.data(), ogx.data());
       }, {
         cnnext::emulated::adaptive_avg_pool2d_forward<T>({planes, H, W, OH, OW}, x.data(), oy.data(), nullptr);
         cnnext::emulated::adaptive_avg_pool2d_backward<T>({planes, H, W, OH, OW}, gy.data(), ogx.data(), nullptr);
       });
    expect_close(label("adaptive_avg_pool2d", "forward", be, tname<T>(), shape).c_str(), oy, y);
    expect_close(label("adaptive_avg_pool2d", "backward", be, tname<T>(), shape).c_str(), ogx, gx);
  }
}
void check_adaptive_avg_pool2d(bool big) {
  adaptive_case<float>(1, 1, 1, 1, 1);
  adaptive_case<float>(3, 7, 6, 1, 1);    // global
  adaptive_case<double>(2, 9, 8, 4, 3);
  adaptive_case<float>(2, 5, 7, 7, 9);    // output larger than input: overlapping windows
  adaptive_case<double>(1, 13, 3, 5, 2);
  if (big) adaptive_case<float>(64, 33, 30, 6, 6);
}
#endif

// ------------------------------------------------------------------ cat (byte copies)
#ifdef WITH_cat
// pad[i]: input i's row stride is bytes[i] + pad[i] (0: dense); pad[i] < 0: stride 0 (a broadcast row).
// gpad: extra bytes between rows of grad_output.
void cat_case(int64_t outer, vector<int64_t> bytes, vector<int64_t> pad, int64_t gpad) {
  const int64_t n = int64_t(bytes.size());
  pad.resize(n, 0);
  vector<int64_t> strides(n);
  int64_t row = 0;
  for (int64_t i = 0; i < n; ++i) {
    row += bytes[i];
    strides[i] = pad[i] < 0 ? 0 : bytes[i] + pad[i];
  }
  const int64_t gstride = row + gpad;
  std::uniform_int_distribution<int> d(0, 255);
  vector<vector<unsigned char>> in(n), gin(n);
  for (int64_t i = 0; i < n; ++i) {  // exact sizes (+1 so that no vector is empty): ASan sees any overrun
    in[i].resize(outer ? (outer - 1) * strides[i] + bytes[i] + 1 : 1);
    for (auto& c : in[i]) c = (unsigned char)d(g_rng);
  }
  vector<unsigned char> want(outer * row + 1), gout(outer ? (outer - 1) * gstride + row + 1 : 1);
  for (auto& c : gout) c = (unsigned char)d(g_rng);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0, off = 0; i < n; off += bytes[i], ++i)
      std::memcpy(&want[o * row + off], &in[i][o * strides[i]], bytes[i]);
  char shape[96];
  std::snprintf(shape, sizeof shape, "outer=%lld pieces=%lld row=%lld gpad=%lld", (long long)outer, (long long)n,
                (long long)row, (long long)gpad);
  for (Be be : kBackends) {
    vector<unsigned char> got(outer * row + 1, 0xAB);
    for (int64_t i = 0; i < n; ++i) gin[i].assign(outer * bytes[i] + 1, 0xCD);
    vector<cnnext::CatPiece> pieces(n), gpieces(n);
    for (int64_t i = 0; i < n; ++i) {
      pieces[i] = {in[i].data(), bytes[i], strides[i]}; gpieces[i] = {gin[i].data(), bytes[i], bytes[i]};
    }
    ON(be, {
         cnnext::cpu::cat_forward(pieces.data(), n, got.data(), outer);
         cnnext::cpu::cat_backward(gout.data(), gstride, outer, gpieces.data(), n);
       }, {
         cnnext::emulated::cat_forward(pieces.data(), n, got.data(), outer, nullptr);
         cnnext::emulated::cat_backward(gout.data(), gstride, outer, gpieces.data(), n, nullptr);
       });
    ++g_checks;
    if (std::memcmp(got.data(), want.data(), outer * row) || got[outer * row] != 0xAB) {
      std::printf("FAIL cat/forward/%s %s: bytes differ (or written past the end)\n", be_name(be), shape);
      ++g_fail;
    }
    ++g_checks;
    for (int64_t i = 0, off = 0; i < n; off += bytes[i], ++i) {
      bool ok = gin[i][outer * bytes[i]] == 0xCD;
      for (int64_t o = 0; o < outer && ok; ++o) ok = !std::memcmp(&gin[i][o * bytes[i]], &gout[o * gstride + off], bytes[i]);
      if (!ok) {
        std::printf("FAIL cat/backward/%s %s: piece %lld differs\n", be_name(be), shape, (long long)i);
        ++g_fail;
        break;
      }
    }
  }
}
void check_cat(bool big) {
  cat_case(1, {4}, {}, 0);
  cat_case(3, {4, 8, 12}, {}, 0);
  cat_case(5, {3, 0, 5, 1}, {}, 0);                 // odd byte counts, an empty piece
  cat_case(2, {8, 16, 8, 24, 8, 40, 8}, {}, 0);
  cat_case(7, {64, 4}, {8, -1}, 12);                // a slice, a broadcast row, a strided grad_output
  cat_case(4, {12, 20, 4}, {4, 0, -1}, 4);
  cat_case(1, {4096, 12, 4100}, {}, 0);
  if (big) cat_case(300, {256, 124, 132}, {64, 0, 4}, 0);
}
#endif

// ------------------------------------------------------------------ batch_norm (+ relu)
#ifdef WITH_batch_norm
template <typename T>
void batch_norm_case(int64_t N, int64_t C, int64_t S, bool training, bool affine, bool stats, bool relu) {
  const double momentum = 0.1, eps = 1e-5;
  const int64_t M = N * S;
  auto x = rnd<T>(N * C * S), w = rnd<T>(C), b = rnd<T>(C), gy = rnd<T>(N * C * S);
  auto rm0 = rnd<T>(C), rv0 = rnd<T>(C, 0.5, 2.0);
  vector<double> y(N * C * S), gx(N * C * S), gw(C), gb(C), mean(C), invstd(C), rm(C), rv(C);
  for (int64_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t s = 0; s < S; ++s) m += x[(n * C + c) * S + s];
    m /= double(M);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t s = 0; s < S; ++s) v += (x[(n * C + c) * S + s] - m) * (x[(n * C + c) * S + s] - m);
    v /= double(M);
    const double mu = training ? m : double(rm0[c]), is = 1.0 / std::sqrt((training ? v : double(rv0[c])) + eps);
    mean[c] = mu; invstd[c] = is;
    rm[c] = training ? (1 - momentum) * rm0[c] + momentum * m : rm0[c];
    rv[c] = training ? (1 - momentum) * rv0[c] + momentum * v * double(M) / double(M - 1) : rv0[c];
    const double wc = affine ? double(w[c]) : 1.0, bc = affine ? double(b[c]) : 0.0;
    double sg = 0, sgx = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t i = (n * C + c) * S + s;
        const double xh = (x[i] - mu) * is, yy = xh * wc + bc;
        y[i] = relu ? std::max(yy, 0.0) : yy;
        const double g = relu && yy <= 0 ? 0.0 : double(gy[i]);
        sg += g; sgx += g * xh;
      }
    gw[c] = sgx; gb[c] = sg;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t i = (n * C + c) * S + s;
        const double xh = (x[i] - mu) * is, yy = xh * wc + bc;
        const double g = relu && yy <= 0 ? 0.0 : double(gy[i]);
        gx[i] = training ? wc * is / double(M) * (double(M) * g - sg - xh * sgx) : wc * is * g;
      }
  }
  char shape[160];
  std::snprintf(shape, sizeof shape, "N=%lld C=%lld S=%lld%s%s%s%s", (long long)N, (long long)C, (long long)S,
                training ? " training" : " eval", affine ? " affine" : "", stats ? " running-stats" : "",
                relu ? " relu" : "");
  const cnnext::BatchNormShape bs{N, C, S, training, momentum, eps, relu};
  for (Be be : kBackends) {
    auto oy = poisoned<T>(N * C * S), ogx = poisoned<T>(N * C * S), ogw = poisoned<T>(C), ogb = poisoned<T>(C),
         om = poisoned<T>(C), ois = poisoned<T>(C);
    auto orm = rm0, orv = rv0;
    const T* wp = affine ? w.data() : nullptr;
    const T* bp = affine ? b.data() : nullptr;
    T* rmp = stats ? orm.data() : nullptr;
    T* rvp = stats ? orv.data() : nullptr;
    ON(be, {
         cnnext::cpu::batch_norm_forward<T>(bs, {x.data(), oy.data(), wp, bp, rmp, rvp, om.data(), ois.data()});
         cnnext::cpu::batch_norm_backward<T>(bs, {gy.data(), x.data(), wp, bp, om.data(), ois.data(), ogx.data(),
                                                  ogw.data(), ogb.data()});
       }, {
         // the launchers' workspaces (split partials, per-channel coefficients), sized exactly: ASan sees overruns
         vector<T> wsf(size_t(cnnext::emulated::batch_norm_forward_workspace<T>(bs, nullptr)));
         vector<T> wsb(size_t(cnnext::emulated::batch_norm_backward_workspace<T>(bs, nullptr)));
         cnnext::emulated::batch_norm_forward<T>(bs, {x.data(), oy.data(), wp, bp, rmp, rvp, om.data(), ois.data(),
                                                      wsf.data()}, nullptr);
         cnnext::emulated::batch_norm_backward<T>(bs, {gy.data(), x.data(), wp, bp, om.data(), ois.data(), ogx.data(),
                                                       ogw.data(), ogb.data(), wsb.data()}, nullptr);
       });
    expect_close(label("batch_norm", "forward", be, tname<T>(), shape).c_str(), oy, y);
    if (training) {
      expect_close(label("batch_norm", "save_mean", be, tname<T>(), shape).c_str(), om, mean);
      expect_close(label("batch_norm", "save_invstd", be, tname<T>(), shape).c_str(), ois, invstd);
    }
    if (stats) {
      expect_close(label("batch_norm", "running_mean", be, tname<T>(), shape).c_str(), orm, rm);
      expect_close(label("batch_norm", "running_var", be, tname<T>(), shape).c_str(), orv, rv);
    }
    expect_close(label("batch_norm", "backward_input", be, tname<T>(), shape).c_str(), ogx, gx);
    if (affine) {
      expect_close(label("batch_norm", "backward_weight", be, tname<T>(), shape).c_str(), ogw, gw);
      expect_close(label("batch_norm", "backward_bias", be, tname<T>(), shape).c_str(), ogb, gb);
    }
  }
  if constexpr (sizeof(T) == 4) {  // bfloat16 / float16 activations, float32 parameters (the CPU's half
    // variants and the emulated kernels on the half types) against the float32 kernels (checked above) on
    // the same 16-bit values: one rounding of the outputs, within 1e-2
    auto half_run = [&](auto h, const char* hname) {
      using Half = decltype(h);
      auto to_h = [](const vector<T>& v) { return to_half<Half>(v); };
      auto to_f = [](const vector<Half>& v) { return from_half(v); };
      const auto hx = to_h(x), hgy = to_h(gy);
      const auto fx = to_f(hx), fgy = to_f(hgy);
      vector<float> ry(N * C * S), rgx(N * C * S), rgw(C), rgb(C), rmean(C), ristd(C), rrm = rm0, rrv = rv0;
      {  // (the emulated float32 launchers: the TSan build has no CPU kernels)
        vector<float> wsf(size_t(cnnext::emulated::batch_norm_forward_workspace<float>(bs, nullptr)));
        vector<float> wsb(size_t(cnnext::emulated::batch_norm_backward_workspace<float>(bs, nullptr)));
        cnnext::emulated::batch_norm_forward<float>(bs, {fx.data(), ry.data(), affine ? w.data() : nullptr,
                                                         affine ? b.data() : nullptr, stats ? rrm.data() : nullptr,
                                                         stats ? rrv.data() : nullptr, rmean.data(), ristd.data(),
                                                         wsf.data()}, nullptr);
        cnnext::emulated::batch_norm_backward<float>(bs, {fgy.data(), fx.data(), affine ? w.data() : nullptr,
                                                          affine ? b.data() : nullptr, rmean.data(), ristd.data(),
                                                          rgx.data(), rgw.data(), rgb.data(), wsb.data()}, nullptr);
      }
      for (Be be : kBackends) {
        vector<Half> hy(N * C * S, Half{0xFFFF}), hgx(N * C * S, Half{0xFFFF});
        auto ogw = poisoned<float>(C), ogb = poisoned<float>(C), om = poisoned<float>(C), ois = poisoned<float>(C);
        auto orm = rm0, orv = rv0;
        const float* wp = affine ? w.data() : nullptr;
        const float* bp = affine ? b.data() : nullptr;
        float* rmp = stats ? orm.data() : nullptr;
        float* rvp = stats ? orv.data() : nullptr;
        ON(be, {
             cnnext::cpu::batch_norm_forward<Half>(bs, {hx.data(), hy.data(), wp, bp, rmp, rvp, om.data(), ois.data()});
             cnnext::cpu::batch_norm_backward<Half>(bs, {hgy.data(), hx.data(), wp, bp, om.data(), ois.data(),
                                                         hgx.data(), ogw.data(), ogb.data()});
           }, {
             vector<float> wsf(size_t(cnnext::emulated::batch_norm_forward_workspace<Half>(bs, nullptr)));
             vector<float> wsb(size_t(cnnext::emulated::batch_norm_backward_workspace<Half>(bs, nullptr)));
             cnnext::emulated::batch_norm_forward<Half>(bs, {hx.data(), hy.data(), wp, bp, rmp, rvp, om.data(),
                                                             ois.data(), wsf.data()}, nullptr);
             cnnext::emulated::batch_norm_backward<Half>(bs, {hgy.data(), hx.data(), wp, bp, om.data(), ois.data(),
                                                              hgx.data(), ogw.data(), ogb.data(), wsb.data()}, nullptr);
           });
        expect_close(label("batch_norm", "forward_half", be, hname, shape).c_str(), to_f(hy), widen(ry), 1e-2);
        expect_close(label("batch_norm", "backward_input_half", be, hname, shape).c_str(), to_f(hgx), widen(rgx), 1e-2);
        if (affine)
          expect_close(label("batch_norm", "backward_weight_half", be, hname, shape).c_str(), ogw, widen(rgw), 1e-2);
      }
    };
    half_run(cnnext::bfloat16{}, "bf16");
    half_run(cnnext::float16{}, "f16");
  }
}
void check_batch_norm(bool big) {
  batch_norm_case<double>(2, 1, 1, true, false, false, false);  // M = 2: gx is a cancellation residue (fp64)
  batch_norm_case<float>(3, 1, 1, true, false, false, false);
  batch_norm_case<float>(3, 4, 5, true, true, true, false);
  batch_norm_case<double>(2, 3, 7, false, true, true, false);   // eval
  batch_norm_case<float>(4, 5, 1, true, true, true, true);      // (N, C) rows, relu
  batch_norm_case<double>(1, 2, 33, true, false, true, true);   // N = 1, relu
  batch_norm_case<float>(2, 3, 9, false, false, true, true);    // eval, relu, no affine
  if (big) batch_norm_case<float>(4, 16, 300, true, true, true, false);
  // several splits per channel (two-stage reductions): planes with whole vectors, planes without, rows;
  // the backward workspace (2*C*splits partials + 6*C coefficients) says how many splits the plan took
  const auto splits = [](int64_t N, int64_t C, int64_t S) {
    const cnnext::BatchNormShape bs{N, C, S, true, 0.1, 1e-5, false};
    return (cnnext::emulated::batch_norm_backward_workspace<float>(bs, nullptr) - 6 * C) / (2 * C);
  };
  ++g_checks;
  if (splits(8, 2, 1024) != 4 || splits(5, 1, 999) != 3 || splits(700, 3, 1) != 11) {
    std::printf("FAIL batch_norm: the split plan is not the expected 4 / 3 / 11 splits\n");
    ++g_fail;
  }
  batch_norm_case<float>(8, 2, 1024, true, true, true, true);
  batch_norm_case<double>(5, 1, 999, true, true, true, false);
  batch_norm_case<float>(700, 3, 1, true, true, true, true);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::function<void(bool)>> ops;
#ifdef WITH_corr2d
  ops["corr2d"] = check_corr2d;
#endif
#ifdef WITH_conv2d
  ops["conv2d"] = check_conv2d;
#endif
#ifdef WITH_max_pool2d
  ops["max_pool2d"] = check_max_pool2d;
#endif
#ifdef WITH_avg_pool2d
  ops["avg_pool2d"] = check_avg_pool2d;
#endif
#ifdef WITH_adaptive_avg_pool2d
  ops["adaptive_avg_pool2d"] = check_adaptive_avg_pool2d;
#endif
#ifdef WITH_cat
  ops["cat"] = check_cat;
#endif
#ifdef WITH_batch_norm
  ops["batch_norm"] = check_batch_norm;
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
