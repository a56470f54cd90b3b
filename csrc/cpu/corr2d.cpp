// corr2d on the CPU: valid 2-D cross-correlation of a batch of planes with one
// kernel (d2l 6.2):   y[b, i, j] = sum_{u < kh, v < kw} x[b, i+u, j+v] * k[u, v]
//
// Every kernel works on whole rows, so the inner loop is a vectorised axpy
// (vec.h) along the width:
//   forward        y[b, i, :]    += k[u, v] * x[b, i+u, v : v+OW]      (threads: output rows)
//   grad input     gx[b, r, v:v+OW] += k[u, v] * gy[b, r-u, :]          (threads: input rows, a gather)
//   grad kernel    gk[u, v] = sum_{b,i} dot(gy[b, i, :], x[b, i+u, v : v+OW])
// The kernel gradient is reduced in fixed chunks of rows whose partial sums are
// added in chunk order, so the result does not depend on the thread count.
#include "corr2d.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "vec.h"

namespace cnnext::cpu {

template <typename T>
void corr2d_forward(const Corr2dShape& shape, const T* x, const T* k, T* y) {
  const int64_t B = shape.B, H = shape.H, W = shape.W, kh = shape.kh, kw = shape.kw;
  const int64_t OH = H - kh + 1, OW = W - kw + 1;
  at::parallel_for(0, B * OH, std::max<int64_t>(1, 4096 / (OW * kh * kw + 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / OH, i = r % OH;
      T* yr = y + r * OW;
      std::fill(yr, yr + OW, T(0));
      for (int64_t u = 0; u < kh; ++u) {
        const T* xr = x + (b * H + i + u) * W;
        for (int64_t v = 0; v < kw; ++v) axpy(OW, k[u * kw + v], xr + v, yr);
      }
    }
  });
}

template <typename T>
void corr2d_backward_input(const Corr2dShape& shape, const T* gy, const T* k, T* gx) {
  const int64_t B = shape.B, H = shape.H, W = shape.W, kh = shape.kh, kw = shape.kw;
  const int64_t OH = H - kh + 1, OW = W - kw + 1;
  at::parallel_for(0, B * H, std::max<int64_t>(1, 4096 / (W * kh * kw + 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / H, h = r % H;
      T* gxr = gx + r * W;
      std::fill(gxr, gxr + W, T(0));
      // input row h receives from output rows i = h - u, 0 <= i < OH
      for (int64_t u = std::max<int64_t>(0, h - OH + 1); u <= std::min(h, kh - 1); ++u) {
        const T* gyr = gy + (b * OH + h - u) * OW;
        for (int64_t v = 0; v < kw; ++v) axpy(OW, k[u * kw + v], gyr, gxr + v);
      }
    }
  });
}

template <typename T>
void corr2d_backward_kernel(const Corr2dShape& shape, const T* gy, const T* x, T* gk) {
  const int64_t B = shape.B, H = shape.H, W = shape.W, kh = shape.kh, kw = shape.kw;
  const int64_t OH = H - kh + 1, OW = W - kw + 1, K = kh * kw, rows = B * OH;
  const int64_t chunk = std::max<int64_t>(1, 16384 / (OW + 1));  // rows per partial sum; thread-count independent
  const int64_t nchunks = (rows + chunk - 1) / chunk;
  std::vector<T> partial(nchunks * K, T(0));
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      T* p = partial.data() + c * K;
      for (int64_t r = c * chunk; r < std::min(rows, (c + 1) * chunk); ++r) {
        const int64_t b = r / OH, i = r % OH;
        const T* gyr = gy + r * OW;
        for (int64_t u = 0; u < kh; ++u) {
          const T* xr = x + (b * H + i + u) * W;
          for (int64_t v = 0; v < kw; ++v) p[u * kw + v] += dot(OW, gyr, xr + v);
        }
      }
    }
  });
  for (int64_t j = 0; j < K; ++j) {
    T s = 0;
    for (int64_t c = 0; c < nchunks; ++c) s += partial[c * K + j];
    gk[j] = s;
  }
}

#define CNNEXT_INSTANTIATE(T)                                                                                \
  template void corr2d_forward<T>(const Corr2dShape&, const T*, const T*, T*);        \
  template void corr2d_backward_input<T>(const Corr2dShape&, const T*, const T*, T*); \
  template void corr2d_backward_kernel<T>(const Corr2dShape&, const T*, const T*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
