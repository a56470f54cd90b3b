// batch_norm's blocks variant (batch_norm_variants.h), (N, C, S) planes, training: work items are
// blocks of channels holding about 1 MiB of input (channel_block).  The item reads its channels
// once for the sums (for each n, x[n, c0:c1, :] is one contiguous stream), then normalises them
// (forward) or computes their gx (backward) while they are still in L2/L3: the forward is 1 read
// pass from memory + 1 write pass (whose reads hit the cache), the backward 1 read pass of x and gy
// + 1 pass writing gx.  Threads take blocks: at least 8 of them (channel_block), fewer when C is
// small (the planner takes chunks there).
#include "batch_norm_kernels.h"
#include "batch_norm_variants.h"

namespace cnnext::cpu::batch_norm_variants {

template <typename T>
void blocks_forward(const BatchNormShape& sh, const BatchNormForwardArgs<T>& a) {
  const int64_t N = sh.N, C = sh.C, S = sh.S, M = N * S;
  const T* x = a.x;
  const Affine<T> af{a.w, a.b};
  with_relu(sh.relu, [&](auto relu) {
    constexpr bool RELU = decltype(relu)::value;
    const int64_t cb = channel_block(N, C, S, sizeof(T), 1);
    at::parallel_for(0, (C + cb - 1) / cb, 1, [&](int64_t b0, int64_t b1) {
      std::vector<Sums<T>> acc(static_cast<size_t>(cb));
      std::vector<T> me, se, be;
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t c0 = blk * cb, c1 = std::min(C, c0 + cb);
        std::fill(acc.begin(), acc.end(), Sums<T>{});
        for (int64_t n = 0; n < N; ++n)  // x[n, c0:c1, :] is one contiguous stream
          for (int64_t c = c0; c < c1; ++c) plane_sums<T>(x + (n * C + c) * S, S, x[c * S], acc[c - c0], nullptr);
        for (int64_t c = c0; c < c1; ++c) {
          acc[c - c0].flush();
          finalize<T>(c, M, x[c * S], acc[c - c0].s1, acc[c - c0].s2, a.mean, a.invstd, a.running_mean,
                      a.running_var, sh.momentum, sh.eps);
        }
        if (small_planes<T>(S)) {
          spread(af, a.mean, a.invstd, c0, c1, S, me, se, be);
          for (int64_t n = 0; n < N; ++n)
            run_normalize<T, RELU>(x + (n * C + c0) * S, a.y + (n * C + c0) * S, (c1 - c0) * S, me.data(),
                                   se.data(), be.data());
        } else {
          for (int64_t n = 0; n < N; ++n)
            for (int64_t c = c0; c < c1; ++c) {
              const int64_t off = (n * C + c) * S;
              plane_normalize<T, RELU>(x + off, a.y + off, S, af.terms(a.mean, a.invstd, c));
            }
        }
      }
    });
  });
}

template <typename T>
void blocks_backward(const BatchNormShape& sh, const BatchNormBackwardArgs<T>& a) {
  const int64_t N = sh.N, C = sh.C, S = sh.S, M = N * S;
  const T *gy = a.gy, *x = a.x, *mean = a.mean, *invstd = a.invstd;
  const Affine<T> af{a.w, a.b};
  with_relu(sh.relu, [&](auto relu) {
    constexpr bool RELU = decltype(relu)::value;
    const int64_t cb = channel_block(N, C, S, sizeof(T), 2);
    at::parallel_for(0, (C + cb - 1) / cb, 1, [&](int64_t b0, int64_t b1) {
      std::vector<Sums<T>> acc(static_cast<size_t>(cb));
      std::vector<GradCoef<T>> coef(static_cast<size_t>(cb));
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t c0 = blk * cb, c1 = std::min(C, c0 + cb);
        std::fill(acc.begin(), acc.end(), Sums<T>{});
        for (int64_t n = 0; n < N; ++n)  // x[n, c0:c1, :] and gy[n, c0:c1, :]: contiguous streams
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t off = (n * C + c) * S;
            plane_grad_sums<T, RELU>(gy + off, x + off, S, af.terms(mean, invstd, c), acc[c - c0], 0);
          }
        for (int64_t c = c0; c < c1; ++c) {
          acc[c - c0].flush();
          coef[c - c0] = grad_coef<T>(c, M, acc[c - c0].s1, acc[c - c0].s2, af.w, invstd, a.gw, a.gb, sh.training);
        }
        for (int64_t n = 0; n < N; ++n)
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t off = (n * C + c) * S;
            const GradCoef<T>& k = coef[c - c0];
            plane_grad_input<T, RELU>(gy + off, x + off, a.gx + off, S, af.terms(mean, invstd, c), k.a, k.bc, k.cc, sh.training);
          }
      }
    });
  });
}

CNNEXT_BATCH_NORM_FORWARD_VARIANT(blocks_forward)
CNNEXT_BATCH_NORM_BACKWARD_VARIANT(blocks_backward)

}  // namespace cnnext::cpu::batch_norm_variants
