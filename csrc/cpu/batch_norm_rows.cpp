// batch_norm's rows variant (batch_norm_variants.h): S == 1, x (R, C) rows -- (N, C) inputs and
// channels_last (N*H*W, C), a native path, no copy.  Per-channel parameters live in arrays, vectors
// run across channels.  Fixed chunks of rows accumulate per-channel partials (vectors over
// channels), added in chunk order; then a parallel pass over rows writes: 2 read passes + 1 write,
// forward and backward.
#include "batch_norm_kernels.h"
#include "batch_norm_variants.h"

namespace cnnext::cpu {
namespace {

// Per-channel sums over fixed chunks of rows, added in chunk order: `row(r, acc1, acc2)`
// adds row r's contribution to the T accumulators of the chunk.
template <typename T, typename RowFn>
void row_sums(int64_t R, int64_t C, std::vector<double>& s1, std::vector<double>& s2, RowFn row) {
  const int64_t nchunks = (R + kRowChunk - 1) / kRowChunk;
  std::vector<double> part(static_cast<size_t>(nchunks * 2 * C));
  at::parallel_for(0, nchunks, 1, [&](int64_t k0, int64_t k1) {
    std::vector<T> a1(static_cast<size_t>(C)), a2(static_cast<size_t>(C));
    for (int64_t k = k0; k < k1; ++k) {
      std::fill(a1.begin(), a1.end(), T(0));
      std::fill(a2.begin(), a2.end(), T(0));
      for (int64_t r = k * kRowChunk; r < std::min(R, (k + 1) * kRowChunk); ++r) row(r, a1.data(), a2.data());
      double* p = part.data() + k * 2 * C;
      for (int64_t c = 0; c < C; ++c) p[c] = double(a1[c]), p[C + c] = double(a2[c]);
    }
  });
  s1.assign(size_t(C), 0.0);
  s2.assign(size_t(C), 0.0);
  for (int64_t k = 0; k < nchunks; ++k)
    for (int64_t c = 0; c < C; ++c) s1[c] += part[k * 2 * C + c], s2[c] += part[k * 2 * C + C + c];
}

template <typename T, bool RELU>
void forward_rows(const T* x, T* y, Affine<T> af, T* rmean, T* rvar, T* mean, T* invstd, int64_t R, int64_t C,
                  bool training, double momentum, double eps) {
  using V = Vec<T>;
  if (training) {
    std::vector<double> s1, s2;
    row_sums<T>(R, C, s1, s2, [&](int64_t r, T* a1, T* a2) {
      const T* xr = x + r * C;
      for (int64_t c = 0; c < C; c += V::size) {
        const int64_t len = std::min<int64_t>(V::size, C - c);
        const VT<T> k = ld<T>(x + c, len, VT<T>{});  // shift: row 0
        const VT<T> d = ld<T>(xr + c, len, VT<T>{}) - k;
        st<T>(a1 + c, ld<T>(a1 + c, len, VT<T>{}) + d, len);
        st<T>(a2 + c, ld<T>(a2 + c, len, VT<T>{}) + d * d, len);
      }
    });
    for (int64_t c = 0; c < C; ++c) finalize<T>(c, R, x[c], s1[c], s2[c], mean, invstd, rmean, rvar, momentum, eps);
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = rmean[c];
      invstd[c] = T(1.0 / std::sqrt(double(rvar[c]) + eps));
    }
  }
  std::vector<T> ce(static_cast<size_t>(C)), sc(static_cast<size_t>(C)), sh(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const PlaneTerms<T> t = af.terms(mean, invstd, c);
    ce[c] = t.center, sc[c] = t.scale, sh[c] = t.shift;
  }
  at::parallel_for(0, R, std::max<int64_t>(1, 16384 / C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < C; c += V::size) {
        const int64_t len = std::min<int64_t>(V::size, C - c);
        const VT<T> m = ld<T>(ce.data() + c, len, VT<T>{});
        VT<T> v = (ld<T>(x + r * C + c, len, VT<T>{}) - m) * ld<T>(sc.data() + c, len, VT<T>{}) +
                  ld<T>(sh.data() + c, len, VT<T>{});
        if constexpr (RELU) v = vrelu<T>(v);
        st<T>(y + r * C + c, v, len);
      }
  });
}

template <typename T, bool RELU>
void backward_rows(const T* gy, const T* x, Affine<T> af, const T* mean, const T* invstd, T* gx, T* gw, T* gb,
                   int64_t R, int64_t C, bool training) {
  using V = Vec<T>;
  std::vector<T> ce(static_cast<size_t>(C)), sc(static_cast<size_t>(C)), sh(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const PlaneTerms<T> t = af.terms(mean, invstd, c);
    ce[c] = t.center, sc[c] = t.scale, sh[c] = t.shift;
  }
  // gy' and x - mean of row r, channels [c, c+len)
  auto load = [&](int64_t r, int64_t c, int64_t len, VT<T>& g, VT<T>& xmu) {
    const VT<T> xv = ld<T>(x + r * C + c, len, VT<T>{});
    xmu = xv - ld<T>(mean + c, len, VT<T>{});
    g = ld<T>(gy + r * C + c, len, VT<T>{});
    if constexpr (RELU)  // the forward's pre-activation, same expression
      g = vrelu_mask<T>((xv - ld<T>(ce.data() + c, len, VT<T>{})) * ld<T>(sc.data() + c, len, VT<T>{}) +
                            ld<T>(sh.data() + c, len, VT<T>{}),
                        g);
  };
  std::vector<double> s1, s2;
  row_sums<T>(R, C, s1, s2, [&](int64_t r, T* a1, T* a2) {
    for (int64_t c = 0; c < C; c += V::size) {
      const int64_t len = std::min<int64_t>(V::size, C - c);
      VT<T> g, xmu;
      load(r, c, len, g, xmu);
      st<T>(a1 + c, ld<T>(a1 + c, len, VT<T>{}) + g, len);
      st<T>(a2 + c, ld<T>(a2 + c, len, VT<T>{}) + g * xmu, len);
    }
  });
  std::vector<T> ka(static_cast<size_t>(C)), kb(static_cast<size_t>(C)), kc(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const GradCoef<T> k = grad_coef<T>(c, R, s1[c], s2[c], af.w, invstd, gw, gb, training);
    ka[c] = k.a, kb[c] = k.bc, kc[c] = k.cc;
  }
  at::parallel_for(0, R, std::max<int64_t>(1, 16384 / C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < C; c += V::size) {
        const int64_t len = std::min<int64_t>(V::size, C - c);
        VT<T> g, xmu;
        load(r, c, len, g, xmu);
        VT<T> v = g * ld<T>(ka.data() + c, len, VT<T>{});
        if (training)  // eval: no x term, as plane_grad_input
          v = v + xmu * ld<T>(kb.data() + c, len, VT<T>{}) + ld<T>(kc.data() + c, len, VT<T>{});
        st<T>(gx + r * C + c, v, len);
      }
  });
}

}  // namespace

template <typename T>
void batch_norm_variants::rows_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a) {
  with_relu(s.relu, [&](auto relu) {
    forward_rows<T, decltype(relu)::value>(a.x, a.y, Affine<T>{a.w, a.b}, a.running_mean, a.running_var, a.mean,
                                           a.invstd, s.N, s.C, s.training, s.momentum, s.eps);
  });
}

template <typename T>
void batch_norm_variants::rows_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a) {
  with_relu(s.relu, [&](auto relu) {
    backward_rows<T, decltype(relu)::value>(a.gy, a.x, Affine<T>{a.w, a.b}, a.mean, a.invstd, a.gx, a.gw, a.gb,
                                            s.N, s.C, s.training);
  });
}

CNNEXT_BATCH_NORM_FORWARD_VARIANT(batch_norm_variants::rows_forward)
CNNEXT_BATCH_NORM_BACKWARD_VARIANT(batch_norm_variants::rows_backward)

}  // namespace cnnext::cpu
