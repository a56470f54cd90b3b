// batch_norm's two-pass variants (batch_norm_variants.h), (N, C, S) planes:
//   chunks     each channel is split into K fixed batch chunks (chunks_per_channel: a function of N
//              and C only, so that few channels still give every thread work), C*K items of
//              partial sums added in chunk order, then a second parallel pass over planes
//              normalises (forward) or computes gx (backward): 2 read passes + 1 write.
//   normalize  eval forward: mean and invstd from the running statistics, then that pass: 1 read +
//              1 write.
#include "batch_norm_kernels.h"
#include "batch_norm_variants.h"

namespace cnnext::cpu::batch_norm_variants {

template <typename T>
void chunks_forward(const BatchNormShape& sh, const BatchNormForwardArgs<T>& a) {
  const int64_t N = sh.N, C = sh.C, S = sh.S, M = N * S, K = chunks_per_channel(N, C);
  const T* x = a.x;
  std::vector<double> part(static_cast<size_t>(C * K * 2));
  at::parallel_for(0, C * K, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t c = i / K, k = i % K;
      Sums<T> acc;
      const int64_t n1 = (k + 1) * N / K;
      for (int64_t n = k * N / K; n < n1; ++n)
        plane_sums<T>(x + (n * C + c) * S, S, x[c * S], acc, n + 1 < n1 ? x + ((n + 1) * C + c) * S : nullptr);
      acc.flush();
      part[2 * i] = acc.s1;
      part[2 * i + 1] = acc.s2;
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    double s1 = 0, s2 = 0;
    for (int64_t k = 0; k < K; ++k) s1 += part[2 * (c * K + k)], s2 += part[2 * (c * K + k) + 1];
    finalize<T>(c, M, x[c * S], s1, s2, a.mean, a.invstd, a.running_mean, a.running_var, sh.momentum, sh.eps);
  }
  with_relu(sh.relu, [&](auto relu) {
    normalize_planes<T, decltype(relu)::value>(x, a.y, Affine<T>{a.w, a.b}, a.mean, a.invstd, N, C, S);
  });
}

template <typename T>
void normalize_forward(const BatchNormShape& sh, const BatchNormForwardArgs<T>& a) {
  for (int64_t c = 0; c < sh.C; ++c) {
    a.mean[c] = a.running_mean[c];
    a.invstd[c] = T(1.0 / std::sqrt(double(a.running_var[c]) + sh.eps));
  }
  with_relu(sh.relu, [&](auto relu) {
    normalize_planes<T, decltype(relu)::value>(a.x, a.y, Affine<T>{a.w, a.b}, a.mean, a.invstd, sh.N, sh.C, sh.S);
  });
}

template <typename T>
void chunks_backward(const BatchNormShape& sh, const BatchNormBackwardArgs<T>& a) {
  const int64_t N = sh.N, C = sh.C, S = sh.S, M = N * S, K = chunks_per_channel(N, C);
  const T *gy = a.gy, *x = a.x, *mean = a.mean, *invstd = a.invstd;
  const Affine<T> af{a.w, a.b};
  with_relu(sh.relu, [&](auto relu) {
    constexpr bool RELU = decltype(relu)::value;
    std::vector<double> part(static_cast<size_t>(C * K * 2));
    at::parallel_for(0, C * K, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t c = i / K, k = i % K;
        const int64_t n1 = (k + 1) * N / K;
        Sums<T> acc;
        for (int64_t n = k * N / K; n < n1; ++n) {
          const int64_t off = (n * C + c) * S;
          plane_grad_sums<T, RELU>(gy + off, x + off, S, af.terms(mean, invstd, c), acc, n + 1 < n1 ? C * S : 0);
        }
        acc.flush();
        part[2 * i] = acc.s1;
        part[2 * i + 1] = acc.s2;
      }
    });
    std::vector<GradCoef<T>> coef(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      double s1 = 0, s2 = 0;
      for (int64_t k = 0; k < K; ++k) s1 += part[2 * (c * K + k)], s2 += part[2 * (c * K + k) + 1];
      coef[c] = grad_coef<T>(c, M, s1, s2, af.w, invstd, a.gw, a.gb, sh.training);
    }
    at::parallel_for(0, N * C, std::max<int64_t>(1, 16384 / S), [&](int64_t p0, int64_t p1) {
      for_planes(p0, p1, C, [&](int64_t n, int64_t c) {
        const int64_t off = (n * C + c) * S;
        const GradCoef<T>& k = coef[c];
        plane_grad_input<T, RELU>(gy + off, x + off, a.gx + off, S, af.terms(mean, invstd, c), k.a, k.bc, k.cc, sh.training);
      });
    });
  });
}

CNNEXT_BATCH_NORM_FORWARD_VARIANT(chunks_forward)
CNNEXT_BATCH_NORM_FORWARD_VARIANT(normalize_forward)
CNNEXT_BATCH_NORM_BACKWARD_VARIANT(chunks_backward)

}  // namespace cnnext::cpu::batch_norm_variants
