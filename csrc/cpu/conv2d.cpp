// conv2d on the CPU -- first version: direct loops, correct and parallel (the fast path follows).
//   forward        y[n, k, p, q]  = b[k] + sum_{c, r, s} x[n, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw] * w[k, c, r, s]
//                                  (threads: (n, k) planes)
//   grad input     gx[n, c, h, w] = sum over (k, r, s) with h = p*sh - ph + r*dh, w = q*sw - pw + s*dw   (gather;
//                                  threads: (n, c) planes)
//   grad weight    gw[k, c, r, s] = sum_{n, p, q} gy[n, k, p, q] * x[...]   (threads: (k, c) rows, each owned by one thread)
//   grad bias      gb[k]          = sum_{n, p, q} gy[n, k, p, q]
#include "conv2d.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace cnnext::cpu {

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
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
            for (int64_t p = 0; p < s.P; ++p) {
              const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
              if (h < 0 || h >= s.H) continue;
              for (int64_t q = 0; q < s.Q; ++q) {
                const int64_t ww = q * s.stride_w - s.pad_w + t * s.dil_w;
                if (ww >= 0 && ww < s.W) yp[p * s.Q + q] += wv * xp[h * s.W + ww];
              }
            }
          }
      }
    }
  });
}

template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
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
            for (int64_t p = 0; p < s.P; ++p) {
              const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
              if (h < 0 || h >= s.H) continue;
              for (int64_t q = 0; q < s.Q; ++q) {
                const int64_t ww = q * s.stride_w - s.pad_w + t * s.dil_w;
                if (ww >= 0 && ww < s.W) gxp[h * s.W + ww] += wv * gyp[p * s.Q + q];
              }
            }
          }
      }
    }
  });
}

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
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
            for (int64_t p = 0; p < s.P; ++p) {
              const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
              if (h < 0 || h >= s.H) continue;
              for (int64_t q = 0; q < s.Q; ++q) {
                const int64_t ww = q * s.stride_w - s.pad_w + t * s.dil_w;
                if (ww >= 0 && ww < s.W) acc += gyp[p * s.Q + q] * xp[h * s.W + ww];
              }
            }
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

#define CNNEXT_INSTANTIATE(T)                                                                 \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*);      \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);         \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
