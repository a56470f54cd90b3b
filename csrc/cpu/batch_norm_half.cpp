// batch_norm on bfloat16 and float16 activations (H) with float32 parameters and statistics (the
// mixed-precision batch norm of torch.autocast): batch_norm's variants "lanes16" and "widened" for the
// half types (batch_norm_variants.h; the planner in batch_norm.cpp takes lanes16 where it is built).
// lanes16 (AVX-512): every element read once as H and widened in registers, sums in float32 per vector
// lane and in double across planes, each output rounded once (to nearest even).
//   forward, training  pass 1 per channel: sums of x - k and (x - k)^2 (k: the channel's first element,
//                      so the variance does not cancel), mean, biased variance, invstd, running stats;
//                      pass 2 per plane: y = (x - mean) * invstd * w + b (then relu)
//   forward, eval      mean and invstd from the running statistics, pass 2
//   backward           pass 1 per channel: gb = sum gy', gw = invstd * sum gy' (x - mean), gy' = gy zeroed
//                      where the pre-activation is <= 0 (relu; recomputed from x);
//                      pass 2 per plane: gx = w invstd (gy' - gb/M - xhat gw/M) (training), w invstd gy' (eval)
// Threads: pass 1 over channels, pass 2 over planes.  (N, C, S) layout; the planner sends rows (S == 1:
// (N, C) inputs and channels_last) to widened, whose float32 planner has the rows variant.  lanes16 runs 16 lanes at a time (ld16 / st16: bfloat16
// widened by a shift and rounded to nearest even in integer arithmetic, float16 by vcvtph2ps / vcvtps2ph;
// masked tails).  widened (every build; the only one without AVX-512): the input widened to a float32
// copy, the float32 planner (batch_norm.cpp) run on it, the outputs rounded once -- 16 lanes of floats held
// in an array had GCC move every vector through the stack in the avx2 build (split vector moves).

#include <memory>

#include "batch_norm.h"           // the float32 planner (widened)
#include "batch_norm_variants.h"
#include "half_copy.h"            // widen_into, round_into

// GCC 12 warns that intrinsics' internal _mm512_undefined_* operands "may be used uninitialized"
// wherever _mm512_cvtepu16_epi32 and the masked 16-bit loads are inlined (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "simd.h"

namespace cnnext::cpu::batch_norm_variants {

#if defined(__AVX512F__)
namespace {

// 16 bfloat16 (the first n; 0 past them) widened to float32
inline __m512 ld16(const bfloat16* p, int64_t n) {
  const __m256i h = _mm256_maskz_loadu_epi16(__mmask16(bit_range(0, std::min<int64_t>(16, n))), p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
// v rounded to bfloat16 (nearest even; NaN -> 0x7FC0, as from_float), the first n lanes stored
inline void st16(bfloat16* p, __m512 v, int64_t n) {
  const __m512i u = _mm512_castps_si512(v);
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF),
                                                   _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC00000));
  _mm256_mask_storeu_epi16(p, __mmask16(bit_range(0, std::min<int64_t>(16, n))),
                           _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
}
// 16 float16 (the first n; 0 past them) widened to float32; v rounded to float16 (nearest even), n lanes stored
inline __m512 ld16(const float16* p, int64_t n) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(__mmask16(bit_range(0, std::min<int64_t>(16, n))), p));
}
inline void st16(float16* p, __m512 v, int64_t n) {
  _mm256_mask_storeu_epi16(p, __mmask16(bit_range(0, std::min<int64_t>(16, n))),
                           _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
using F16 = __m512;
inline F16 bc(float v) { return _mm512_set1_ps(v); }
inline F16 relu_keep(F16 pre, F16 g) {  // g where pre > 0 or pre is NaN, else 0 (the mask of threshold_backward)
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(pre, _mm512_setzero_ps(), _CMP_NLE_UQ), g);
}
inline F16 relu(F16 v) { return relu_keep(v, v); }
inline float lanes_sum(F16 v) { return hsum16(v); }
inline F16 keep_first(F16 v, int64_t n) { return _mm512_maskz_mov_ps(__mmask16(bit_range(0, std::min<int64_t>(16, n))), v); }

// sums over the plane (n elements) of u and q, f(x, gy, u, q) per vector of 16 lanes, lanes added in a
// fixed order: float32 in the plane, double across planes
template <typename H, typename F>
inline void plane_sums(const H* x, const H* gy, int64_t n, F&& f, double& s1, double& s2) {
  F16 a1 = bc(0.0f), a2 = bc(0.0f);
  for (int64_t i = 0; i < n; i += 16) {
    F16 u, q;
    f(ld16(x + i, n - i), gy ? ld16(gy + i, n - i) : bc(0.0f), u, q);
    a1 = a1 + keep_first(u, n - i), a2 = a2 + keep_first(q, n - i);
  }
  s1 += lanes_sum(a1), s2 += lanes_sum(a2);
}

inline int64_t plane_grain(int64_t S) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, S)); }

template <bool RELU, typename H>
void normalize(const BatchNormShape& s, const H* x, H* y, const float* mean, const float* invstd, const float* w,
               const float* b) {
  at::parallel_for(0, s.N * s.C, plane_grain(s.S), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const BatchNormAffine<float> t = batch_norm_affine(mean, invstd, w, b, p % s.C);  // y = (x - center) * scale + shift
      const F16 cv = bc(t.center), sv = bc(t.scale), hv = bc(t.shift);
      const H* xp = x + p * s.S;
      H* yp = y + p * s.S;
      for (int64_t i = 0; i < s.S; i += 16) {
        F16 v = (ld16(xp + i, s.S - i) - cv) * sv + hv;
        if constexpr (RELU) v = relu(v);  // NaN stays NaN, as torch.relu
        st16(yp + i, v, s.S - i);
      }
    }
  });
}

}  // namespace

template <typename H>
void lanes16_forward(const BatchNormShape& s, const BatchNormForwardArgs<H>& a) {
  const int64_t N = s.N, C = s.C, S = s.S, M = N * S;
  if (s.training) {
    at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const float k = M > 0 ? to_float(a.x[c * S]) : 0.0f;
        const F16 kv = bc(k);
        double s1 = 0, s2 = 0;
        for (int64_t n = 0; n < N; ++n)
          plane_sums(a.x + (n * C + c) * S, static_cast<const H*>(nullptr), S, [&](F16 v, F16, F16& u, F16& q) {
            const F16 d = v - kv;
            u = d, q = d * d;
          }, s1, s2);
        const double m1 = s1 / double(M), var = std::max(0.0, s2 / double(M) - m1 * m1);
        a.mean[c] = float(k + m1);
        a.invstd[c] = float(1.0 / std::sqrt(var + s.eps));
        if (a.running_mean) {
          a.running_mean[c] = float((1 - s.momentum) * a.running_mean[c] + s.momentum * (k + m1));
          const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
          a.running_var[c] = float((1 - s.momentum) * a.running_var[c] + s.momentum * unbiased);
        }
      }
    });
  } else {
    for (int64_t c = 0; c < C; ++c) {
      a.mean[c] = a.running_mean[c];
      a.invstd[c] = float(1.0 / std::sqrt(double(a.running_var[c]) + s.eps));
    }
  }
  if (s.relu) normalize<true>(s, a.x, a.y, a.mean, a.invstd, a.w, a.b);
  else normalize<false>(s, a.x, a.y, a.mean, a.invstd, a.w, a.b);
}

template <typename H>
void lanes16_backward(const BatchNormShape& s, const BatchNormBackwardArgs<H>& a) {
  const int64_t N = s.N, C = s.C, S = s.S, M = N * S;
  const bool relu = s.relu;
  at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const BatchNormAffine<float> t = batch_norm_affine(a.mean, a.invstd, a.w, a.b, c);
      const F16 cv = bc(t.center), sv = bc(t.scale), hv = bc(t.shift), mv = bc(a.mean[c]);
      double sg = 0, sgx = 0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t off = (n * C + c) * S;
        plane_sums(a.x + off, a.gy + off, S, [&](F16 v, F16 g, F16& u, F16& q) {
          if (relu) g = relu_keep((v - cv) * sv + hv, g);
          u = g, q = g * (v - mv);
        }, sg, sgx);
      }
      a.gb[c] = float(sg);
      a.gw[c] = float(sgx * double(a.invstd[c]));
    }
  });
  at::parallel_for(0, N * C, plane_grain(S), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c = p % C;
      const BatchNormAffine<float> t = batch_norm_affine(a.mean, a.invstd, a.w, a.b, c);
      const float is = a.invstd[c];
      const float gbm = s.training ? a.gb[c] / float(M) : 0.0f, gwm = s.training ? a.gw[c] / float(M) : 0.0f;
      const F16 cv = bc(t.center), sv = bc(t.scale), hv = bc(t.shift), mv = bc(a.mean[c]);
      const F16 wsv = bc((a.w ? a.w[c] : 1.0f) * is), gbv = bc(gbm), xg = bc(is * gwm);
      const H *xp = a.x + p * S, *gp = a.gy + p * S;
      H* out = a.gx + p * S;
      for (int64_t i = 0; i < S; i += 16) {
        const F16 v = ld16(xp + i, S - i);
        F16 g = ld16(gp + i, S - i);
        if (relu) g = relu_keep((v - cv) * sv + hv, g);
        st16(out + i, wsv * (g - gbv - (v - mv) * xg), S - i);
      }
    }
  });
}

template void lanes16_forward<bfloat16>(const BatchNormShape&, const BatchNormForwardArgs<bfloat16>&);
template void lanes16_forward<float16>(const BatchNormShape&, const BatchNormForwardArgs<float16>&);
template void lanes16_backward<bfloat16>(const BatchNormShape&, const BatchNormBackwardArgs<bfloat16>&);
template void lanes16_backward<float16>(const BatchNormShape&, const BatchNormBackwardArgs<float16>&);
#endif

// ---- widened: the float32 planner on widened copies ----
template <typename H>
void widened_forward(const BatchNormShape& s, const BatchNormForwardArgs<H>& a) {
  const int64_t n = s.N * s.C * s.S;
  const std::unique_ptr<float[]> x(new float[n]), y(new float[n]);  // (uninitialised: both fully written)
  widen_into(x.get(), a.x, n);
  batch_norm_forward<float>(s, {x.get(), y.get(), a.w, a.b, a.running_mean, a.running_var, a.mean, a.invstd});
  round_into(a.y, y.get(), n);
}

template <typename H>
void widened_backward(const BatchNormShape& s, const BatchNormBackwardArgs<H>& a) {
  const int64_t n = s.N * s.C * s.S;
  const std::unique_ptr<float[]> gy(new float[n]), x(new float[n]), gx(new float[n]);
  widen_into(gy.get(), a.gy, n);
  widen_into(x.get(), a.x, n);
  batch_norm_backward<float>(s, {gy.get(), x.get(), a.w, a.b, a.mean, a.invstd, gx.get(), a.gw, a.gb});
  round_into(a.gx, gx.get(), n);
}

template void widened_forward<bfloat16>(const BatchNormShape&, const BatchNormForwardArgs<bfloat16>&);
template void widened_forward<float16>(const BatchNormShape&, const BatchNormForwardArgs<float16>&);
template void widened_backward<bfloat16>(const BatchNormShape&, const BatchNormBackwardArgs<bfloat16>&);
template void widened_backward<float16>(const BatchNormShape&, const BatchNormBackwardArgs<float16>&);

}  // namespace cnnext::cpu::batch_norm_variants
