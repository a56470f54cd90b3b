// batch_norm_kernels.h -- the per-plane loops, sums and per-channel terms that every batch_norm
// CPU variant shares (anonymous namespace, like conv2d_gemm.h: each variant file gets its own
// inlined copy).  Formulas: batch_norm.cpp.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../common/batch_norm.h"
#include "simd.h"  // load_part, store_part

namespace cnnext::cpu {
namespace {

constexpr int64_t kItems = 32;       // work items wanted for the statistics (fixed: determinism)
constexpr int64_t kRowChunk = 128;   // rows per partial sum in the rows layout

template <typename T>
using VT = typename Vec<T>::type;

// load_part / store_part (simd.h): the first n < Vec<T>::size lanes.
template <typename T>
inline VT<T> ld(const T* p, int64_t len, VT<T> fill) {
  return len == Vec<T>::size ? Vec<T>::load(p) : load_part<T>(p, len, fill);
}
template <typename T>
inline void st(T* p, VT<T> v, int64_t len) {
  if (len == Vec<T>::size) Vec<T>::store(p, v);
  else store_part<T>(p, v, len);
}

// relu(v) = v <= 0 ? 0 : v: NaN stays NaN, like torch.relu; and the backward's mask
// gy' = y <= 0 ? 0 : gy, torch's threshold_backward (gy passes where y is NaN).
template <typename T>
inline VT<T> vrelu(VT<T> v) { return v <= VT<T>{} ? VT<T>{} : v; }
template <typename T>
inline VT<T> vrelu_mask(VT<T> y, VT<T> g) { return y <= VT<T>{} ? VT<T>{} : g; }

// Two running sums of one channel: vector lanes of T, added into double every
// kFlush vectors (and at the end), so a lane never adds up more than kFlush values
// and the horizontal sums are rare even for 3x3 planes.
template <typename T>
struct Sums {
  static constexpr int64_t kFlush = 256;
  VT<T> a1{}, a2{};
  int64_t pending = 0;
  double s1 = 0, s2 = 0;
  inline void flush() {
    s1 += double(Vec<T>::sum(a1));
    s2 += double(Vec<T>::sum(a2));
    a1 = a2 = VT<T>{};
    pending = 0;
  }
};

// A Sums held in registers for one plane's loop (a Sums in memory would make
// every vector add wait for a store-to-load round trip); written back at the end.
template <typename T>
struct LocalSums {
  Sums<T>& home;
  VT<T> a1, a2;
  int64_t pending;
  explicit LocalSums(Sums<T>& h) : home(h), a1(h.a1), a2(h.a2), pending(h.pending) {}
  ~LocalSums() { home.a1 = a1, home.a2 = a2, home.pending = pending; }
  inline void add(VT<T> u, VT<T> v) {
    a1 += u;
    a2 += v;
    if (__builtin_expect(++pending == Sums<T>::kFlush, 0)) {
      home.s1 += double(Vec<T>::sum(a1));
      home.s2 += double(Vec<T>::sum(a2));
      a1 = a2 = VT<T>{};
      pending = 0;
    }
  }
};

// Prefetch the plane a channel reads next (one plane = N*C*S/N values further on):
// the planes of one channel are short strided pieces the hardware prefetcher
// does not run ahead of.
template <typename T>
inline void prefetch(const T* p, int64_t i) {
  if (p) __builtin_prefetch(p + i);
}

// acc += (sum (x - k), sum (x - k)^2) over x[0:n]; `next`: the plane read after this one.
template <typename T>
inline void plane_sums(const T* __restrict__ x, int64_t n, T k, Sums<T>& home, const T* next) {
  using V = Vec<T>;
  LocalSums<T> acc(home);
  const VT<T> kv = V::broadcast(k);
  int64_t i = 0;
  for (; i + 2 * V::size <= n; i += 2 * V::size) {
    prefetch(next, i);
    prefetch(next, i + V::size);
    const VT<T> d = V::load(x + i) - kv, e = V::load(x + i + V::size) - kv;
    acc.add(d + e, d * d + e * e);
  }
  for (; i < n; i += V::size) {
    prefetch(next, i);
    const VT<T> d = ld<T>(x + i, std::min<int64_t>(V::size, n - i), kv) - kv;
    acc.add(d, d * d);
  }
}

// Channel c's terms for the per-plane loops (Affine::terms): its mean, for x - mean in the
// gradients, and the pre-activation y = (x - center) * scale + shift.
template <typename T>
struct PlaneTerms {
  T mean, center, scale, shift;
};

// y[0:n] = (x - center) * scale + shift, then relu.
template <typename T, bool RELU>
inline void plane_normalize(const T* __restrict__ x, T* __restrict__ y, int64_t n, const PlaneTerms<T>& t) {
  using V = Vec<T>;
  const VT<T> mv = V::broadcast(t.center), sv = V::broadcast(t.scale), bv = V::broadcast(t.shift);
  auto f = [&](VT<T> xv) {
    VT<T> v = (xv - mv) * sv + bv;
    if constexpr (RELU) v = vrelu<T>(v);
    return v;
  };
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) V::store(y + i, f(V::load(x + i)));
  if (i < n) store_part<T>(y + i, f(load_part<T>(x + i, n - i, mv)), n - i);
}

// Small planes (S < 2 vectors) waste most of every masked vector: normalise a run
// x[n, c0:c1, :] (contiguous) in full vectors instead, with the per-channel
// mean, scale and shift spread to per-element arrays me, se, be of the run's
// length.  Same arithmetic per element as plane_normalize.
template <typename T, bool RELU>
inline void run_normalize(const T* __restrict__ x, T* __restrict__ y, int64_t n, const T* me, const T* se,
                          const T* be) {
  using V = Vec<T>;
  for (int64_t i = 0; i < n; i += V::size) {
    const int64_t len = std::min<int64_t>(V::size, n - i);
    VT<T> v = (ld<T>(x + i, len, VT<T>{}) - ld<T>(me + i, len, VT<T>{})) * ld<T>(se + i, len, VT<T>{}) +
              ld<T>(be + i, len, VT<T>{});
    if constexpr (RELU) v = vrelu<T>(v);
    st<T>(y + i, v, len);
  }
}

// acc += (sum gy', sum gy' (x - mean)), gy' = gy zeroed where the forward's pre-activation
// (x - center) * scale + shift is <= 0 if RELU.
template <typename T, bool RELU>
inline void plane_grad_sums(const T* __restrict__ gy, const T* __restrict__ x, int64_t n, const PlaneTerms<T>& t,
                            Sums<T>& home, int64_t next) {
  using V = Vec<T>;
  LocalSums<T> acc(home);
  const VT<T> mv = V::broadcast(t.mean), cv = V::broadcast(t.center), sv = V::broadcast(t.scale),
              bv = V::broadcast(t.shift);
  for (int64_t i = 0; i < n; i += V::size) {
    if (next) prefetch(x + next, i), prefetch(gy + next, i);
    const int64_t len = std::min<int64_t>(V::size, n - i);
    const VT<T> xv = ld<T>(x + i, len, mv), xmu = xv - mv;
    VT<T> g = ld<T>(gy + i, len, VT<T>{});
    if constexpr (RELU) g = vrelu_mask<T>((xv - cv) * sv + bv, g);
    acc.add(g, g * xmu);
  }
}

// gx[0:n] = gy' * a + (x - mean) * bc + cc (training), gy' * a (eval: like torch, no
// x term, so a NaN / Inf x does not reach gx through 0 * x).
template <typename T, bool RELU>
inline void plane_grad_input(const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gx, int64_t n,
                             const PlaneTerms<T>& t, T a, T bc, T cc, bool training) {
  using V = Vec<T>;
  const VT<T> mv = V::broadcast(t.mean), cv = V::broadcast(t.center), sv = V::broadcast(t.scale),
              bv = V::broadcast(t.shift);
  const VT<T> av = V::broadcast(a), bcv = V::broadcast(bc), ccv = V::broadcast(cc);
  auto loop = [&](auto train) {
    for (int64_t i = 0; i < n; i += V::size) {
      const int64_t len = std::min<int64_t>(V::size, n - i);
      const VT<T> xv = ld<T>(x + i, len, mv), xmu = xv - mv;
      VT<T> g = ld<T>(gy + i, len, VT<T>{});
      if constexpr (RELU) g = vrelu_mask<T>((xv - cv) * sv + bv, g);
      if constexpr (decltype(train)::value) st<T>(gx + i, g * av + xmu * bcv + ccv, len);
      else st<T>(gx + i, g * av, len);
    }
  };
  if (training) loop(std::true_type{});
  else loop(std::false_type{});
}

// Per-channel terms of the pre-activation y = (x - center) * scale + shift:
// scale = invstd * w, center = mean, shift = b.  A non-finite scale (w = +-inf,
// invstd = inf) takes torch's form x * scale + (b - mean * scale) instead (center 0,
// shift b - mean * scale), so its inf - inf is NaN as in torch, not the +-inf that
// a relu would turn into 0.
template <typename T>
struct Affine {
  const T *w, *b;
  // channel c's terms (batch_norm_affine, ../common/batch_norm.h) and its mean
  PlaneTerms<T> terms(const T* mean, const T* invstd, int64_t c) const {
    const BatchNormAffine<T> a = batch_norm_affine(mean, invstd, w, b, c);
    return {mean[c], a.center, a.scale, a.shift};
  }
};

// mean, invstd and the running statistics of channel c from its shifted sums.
template <typename T>
inline void finalize(int64_t c, int64_t M, T k, double s1, double s2, T* mean, T* invstd, T* rmean, T* rvar,
                     double momentum, double eps) {
  const double mu = s1 / double(M), m = double(k) + mu;
  const double var_sum = std::max(s2 - s1 * mu, 0.0);
  mean[c] = T(m);
  invstd[c] = T(1.0 / std::sqrt(var_sum / double(M) + eps));
  if (rmean) rmean[c] = T((1 - momentum) * double(rmean[c]) + momentum * m);
  if (rvar) rvar[c] = T((1 - momentum) * double(rvar[c]) + momentum * var_sum / double(M - 1));
}

// Channels per work item when every channel is one item's: as many as keep the
// item's `streams` input arrays (N*S values each per channel) within ~1 MiB, at
// most C/8 (work for every thread).  Per-channel arithmetic does not depend on it.
inline int64_t channel_block(int64_t N, int64_t C, int64_t S, size_t elem, int streams) {
  const int64_t per_channel = N * S * int64_t(elem) * streams;
  return std::max<int64_t>(1, std::min((int64_t(1) << 20) / per_channel, (C + 7) / 8));
}

// Batch chunks per channel for the (N, C, S) statistics: a function of N and C only.
inline int64_t chunks_per_channel(int64_t N, int64_t C) {
  return C >= kItems ? 1 : std::min(N, (kItems + C - 1) / C);
}

// ------------------------------- (N, C, S) layout -------------------------------

// fn(n, c) for the planes p = n * C + c in [p0, p1), counting (n, c) up instead of dividing per
// plane: one 64-bit division per plane cost as much as normalising a 6x6 plane.
template <typename Fn>
inline void for_planes(int64_t p0, int64_t p1, int64_t C, Fn&& fn) {
  for (int64_t p = p0, n = p0 / C, c = p0 % C; p < p1; ++p) {
    fn(n, c);
    if (++c == C) c = 0, ++n;
  }
}

// Coefficients of gx = gy' a + xmu bc + cc for channel c from the sums s1 = sum gy', s2 = sum gy' xmu.
template <typename T>
struct GradCoef {
  T a, bc, cc;
};
template <typename T>
inline GradCoef<T> grad_coef(int64_t c, int64_t M, double s1, double s2, const T* w, const T* invstd, T* gw, T* gb,
                             bool training) {
  const double is = double(invstd[c]), ww = w ? double(w[c]) : 1.0;
  gb[c] = T(s1);
  gw[c] = T(s2 * is);
  if (!training) return {T(ww * is), T(0), T(0)};
  return {T(ww * is), T(-ww * is * is * is * s2 / double(M)), T(-ww * is * s1 / double(M))};
}

// Per-element mean, scale and shift of channels [c0, c1), S values each (small planes: run_normalize).
template <typename T>
void spread(const Affine<T>& af, const T* mean, const T* invstd, int64_t c0, int64_t c1, int64_t S,
            std::vector<T>& me, std::vector<T>& se, std::vector<T>& be) {
  me.resize(static_cast<size_t>((c1 - c0) * S)), se.resize(me.size()), be.resize(me.size());
  for (int64_t c = c0; c < c1; ++c) {
    const PlaneTerms<T> t = af.terms(mean, invstd, c);
    for (int64_t s = 0; s < S; ++s) {
      const size_t e = static_cast<size_t>((c - c0) * S + s);
      me[e] = t.center, se[e] = t.scale, be[e] = t.shift;
    }
  }
}

// Planes with fewer than two vectors of values are normalised as runs of whole images.
template <typename T>
inline bool small_planes(int64_t S) { return S < 2 * Vec<T>::size; }

// y = BN(x) (then relu) for every plane, from mean and invstd: a parallel pass over planes (small
// planes: over images, with the per-channel terms spread to per-element arrays).
template <typename T, bool RELU>
void normalize_planes(const T* x, T* y, Affine<T> af, const T* mean, const T* invstd, int64_t N, int64_t C,
                      int64_t S) {
  if (small_planes<T>(S)) {
    std::vector<T> me, se, be;
    spread(af, mean, invstd, 0, C, S, me, se, be);
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / (C * S)), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        run_normalize<T, RELU>(x + n * C * S, y + n * C * S, C * S, me.data(), se.data(), be.data());
    });
    return;
  }
  // the channels' terms once, not per plane (on 8x8 planes, per-plane terms cost a third of the pass)
  std::vector<PlaneTerms<T>> terms(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) terms[c] = af.terms(mean, invstd, c);
  const PlaneTerms<T>* tc = terms.data();
  at::parallel_for(0, N * C, std::max<int64_t>(1, 16384 / S), [=](int64_t p0, int64_t p1) {
    for_planes(p0, p1, C, [=](int64_t n, int64_t c) {
      const int64_t off = (n * C + c) * S;
      plane_normalize<T, RELU>(x + off, y + off, S, tc[c]);
    });
  });
}

// fn.template operator()<RELU>() with RELU = s.relu fixed at compile time.
template <typename F>
inline void with_relu(bool relu, F&& fn) {
  if (relu) fn(std::true_type{});
  else fn(std::false_type{});
}

}  // namespace
}  // namespace cnnext::cpu
