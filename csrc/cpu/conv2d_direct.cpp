// conv2d variants "direct": plain loops, used only for tensors so large that the packing's 32-bit
// offsets could overflow (an image of more than ~5M elements next to tiny outputs; offsets_fit in
// conv2d_gemm.h): correct and parallel, not fast.
// Threads: forward over (n, k) output planes, grad input over (n, c) planes, grad weight over its
// (k, c) rows and grad bias over k: each output element is owned by one thread.
#include <ATen/Parallel.h>

#include <algorithm>

#include "conv2d_variants.h"

namespace cnnext::cpu::conv2d_variants {
namespace {

// Calls f(input offset h*W + w, output offset p*Q + q) for every output position (p, q) whose
// kernel tap (r, t) lands inside the input (not in the padding), in (p, q) order.
template <typename F>
inline void for_each_tap(const Conv2dShape& s, int64_t r, int64_t t, F&& f) {
  for (int64_t p = 0; p < s.P; ++p) {
    const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
    if (h < 0 || h >= s.H) continue;
    for (int64_t q = 0; q < s.Q; ++q) {
      const int64_t w = q * s.stride_w - s.pad_w + t * s.dil_w;
      if (w >= 0 && w < s.W) f(h * s.W + w, p * s.Q + q);
    }
  }
}

}  // namespace

template <typename T>
void direct_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  at::parallel_for(0, s.N * s.K, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / s.K, k = i % s.K, g = k / Kg;
      T* yp = y + i * PQ;
      std::fill(yp, yp + PQ, b ? b[k] : T(0));
      for (int64_t c = 0; c < Cg; ++c) {
        const T* xp = x + (n * s.C + g * Cg + c) * s.H * s.W;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t) {
            const T wv = w[((k * Cg + c) * s.R + r) * s.S + t];
            for_each_tap(s, r, t, [&](int64_t xi, int64_t yi) { yp[yi] += wv * xp[xi]; });
          }
      }
    }
  });
}

template <typename T>
void direct_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  at::parallel_for(0, s.N * s.C, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / s.C, c = i % s.C, g = c / Cg, cl = c % Cg;
      T* gxp = gx + i * s.H * s.W;
      std::fill(gxp, gxp + s.H * s.W, T(0));
      for (int64_t kl = 0; kl < Kg; ++kl) {
        const int64_t k = g * Kg + kl;
        const T* gyp = gy + (n * s.K + k) * PQ;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t) {
            const T wv = w[((k * Cg + cl) * s.R + r) * s.S + t];
            for_each_tap(s, r, t, [&](int64_t xi, int64_t yi) { gxp[xi] += wv * gyp[yi]; });
          }
      }
    }
  });
}

template <typename T>
void direct_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, PQ = s.P * s.Q;
  at::parallel_for(0, s.K * Cg, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t k = i / Cg, c = i % Cg, g = k / Kg;
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t) {
          T acc = 0;
          for (int64_t n = 0; n < s.N; ++n) {
            const T* xp = x + (n * s.C + g * Cg + c) * s.H * s.W;
            const T* gyp = gy + (n * s.K + k) * PQ;
            for_each_tap(s, r, t, [&](int64_t xi, int64_t yi) { acc += gyp[yi] * xp[xi]; });
          }
          gw[(i * s.R + r) * s.S + t] = acc;
        }
    }
  });
  if (gb) {
    at::parallel_for(0, s.K, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        T acc = 0;
        for (int64_t n = 0; n < s.N; ++n) {
          const T* gyp = gy + (n * s.K + k) * PQ;
          for (int64_t j = 0; j < PQ; ++j) acc += gyp[j];
        }
        gb[k] = acc;
      }
    });
  }
}

CNNEXT_CONV2D_FORWARD_VARIANT(direct_forward)
CNNEXT_CONV2D_BACKWARD_INPUT_VARIANT(direct_backward_input)
CNNEXT_CONV2D_BACKWARD_WEIGHT_VARIANT(direct_backward_weight)

}  // namespace cnnext::cpu::conv2d_variants
