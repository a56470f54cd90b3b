// batch_norm on the CPU (d2l 8.5), per channel c over its M = N*S values:
//   training:  mean = sum x / M,  var = sum (x - mean)^2 / M  (biased, normalises),
//              running_mean = (1-m) running_mean + m mean,
//              running_var  = (1-m) running_var  + m var * M/(M-1)  (unbiased);
//   eval:      mean, var = running_mean, running_var;
//   y = (x - mean) * invstd * w + b,  invstd = 1/sqrt(var + eps);  relu: y = y <= 0 ? 0 : y
//   (NaN stays NaN, like torch.relu).
//   backward (gy' = y <= 0 ? 0 : gy for relu, torch's threshold_backward; xmu = x - mean):
//   gb = sum gy',  gw = invstd * sum gy' xmu,
//   gx = w invstd (gy' - sum gy'/M - xmu invstd^2 sum gy' xmu / M)   (training)
//   gx = w invstd gy'                                                (eval)
//
// Statistics are shifted sums: d = x - K_c with K_c = the channel's first value,
// sum d and sum d^2, so 1e4 + randn loses nothing to cancellation.  The sums run
// in vector lanes of T, flushed into double every 256 vectors (Sums below).
//
// Layouts: (N, C, S) planes (S > 1), and rows of C channels (S == 1: (N, C)
// inputs and channels_last (N*H*W, C) -- a native path, no copy).
//
// Threads and passes over memory, (N, C, S) layout:
//   * C >= kItems: a work item is a block of channels (threads split the blocks)
//     holding about 1 MiB of input (channel_block).  The item reads its channels
//     once for the sums (for each n, x[n, c0:c1, :] is one contiguous stream),
//     then normalises them while they are still in L2/L3:
//       training forward = 1 read pass from memory + 1 write pass (whose reads
//       hit the cache); backward = 1 read pass of x and gy for the two sums +
//       1 pass writing gx (whose reads of x and gy hit the cache).
//   * C < kItems: each channel is split into a fixed number of batch chunks (a
//     function of N and C only), partial sums are added in chunk order, then a
//     second parallel pass over planes normalises: 2 read passes + 1 write
//     (backward: 2 read passes of x and gy + 1 write of gx).
//   * eval forward: 1 read + 1 write pass (parallel over planes).
// The fused ReLU costs no pass: the forward clamps before the store, the
// backward recomputes the pre-activation from x (already being read) for its mask.
// Rows layout: fixed chunks of rows accumulate per-channel partials (vectors over
// channels), added in chunk order; then a parallel pass over rows writes:
// 2 read passes + 1 write, forward and backward.
// Every partition is independent of the thread count, so results are
// bit-identical for any torch.set_num_threads.
#include "batch_norm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

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

// y[0:n] = (x - mean) * scale + shift, then relu.
template <typename T, bool RELU>
inline void plane_normalize(const T* __restrict__ x, T* __restrict__ y, int64_t n, T mean, T scale, T shift) {
  using V = Vec<T>;
  const VT<T> mv = V::broadcast(mean), sv = V::broadcast(scale), bv = V::broadcast(shift);
  for (int64_t i = 0; i < n; i += V::size) {
    const int64_t len = std::min<int64_t>(V::size, n - i);
    VT<T> v = (ld<T>(x + i, len, mv) - mv) * sv + bv;
    if constexpr (RELU) v = vrelu<T>(v);
    st<T>(y + i, v, len);
  }
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
inline void plane_grad_sums(const T* __restrict__ gy, const T* __restrict__ x, int64_t n, T mean, T center, T scale,
                            T shift, Sums<T>& home, int64_t next) {
  using V = Vec<T>;
  LocalSums<T> acc(home);
  const VT<T> mv = V::broadcast(mean), cv = V::broadcast(center), sv = V::broadcast(scale), bv = V::broadcast(shift);
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
                             T mean, T center, T scale, T shift, T a, T bc, T cc, bool training) {
  using V = Vec<T>;
  const VT<T> mv = V::broadcast(mean), cv = V::broadcast(center), sv = V::broadcast(scale), bv = V::broadcast(shift);
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
  // the terms of batch_norm_affine (../common/batch_norm.h), one at a time
  T scale(const T* invstd, int64_t c) const { return batch_norm_scale(invstd, w, c); }
  T center(const T* mean, const T* invstd, int64_t c) const { return batch_norm_affine(mean, invstd, w, b, c).center; }
  T shift(const T* mean, const T* invstd, int64_t c) const { return batch_norm_affine(mean, invstd, w, b, c).shift; }
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

template <typename T, bool RELU>
void forward_planes(const T* x, T* y, Affine<T> af, T* rmean, T* rvar, T* mean, T* invstd, int64_t N, int64_t C,
                    int64_t S, bool training, double momentum, double eps) {
  const int64_t M = N * S;
  auto normalize_plane = [&](int64_t n, int64_t c) {
    const int64_t off = (n * C + c) * S;
    plane_normalize<T, RELU>(x + off, y + off, S, af.center(mean, invstd, c), af.scale(invstd, c),
                             af.shift(mean, invstd, c));
  };
  const bool small = S < 2 * Vec<T>::size;
  // per-element mean, scale, shift of channels [c0, c1) (small planes)
  auto spread = [&](int64_t c0, int64_t c1, std::vector<T>& me, std::vector<T>& se, std::vector<T>& be) {
    me.resize(static_cast<size_t>((c1 - c0) * S)), se.resize(me.size()), be.resize(me.size());
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t s = 0; s < S; ++s) {
        const size_t e = static_cast<size_t>((c - c0) * S + s);
        me[e] = af.center(mean, invstd, c), se[e] = af.scale(invstd, c), be[e] = af.shift(mean, invstd, c);
      }
  };
  auto normalize_all = [&] {
    if (small) {
      std::vector<T> me, se, be;
      spread(0, C, me, se, be);
      at::parallel_for(0, N, std::max<int64_t>(1, 16384 / (C * S)), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n)
          run_normalize<T, RELU>(x + n * C * S, y + n * C * S, C * S, me.data(), se.data(), be.data());
      });
      return;
    }
    at::parallel_for(0, N * C, std::max<int64_t>(1, 16384 / S), [&](int64_t p0, int64_t p1) {
      for_planes(p0, p1, C, normalize_plane);
    });
  };
  if (!training) {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = rmean[c];
      invstd[c] = T(1.0 / std::sqrt(double(rvar[c]) + eps));
    }
    normalize_all();
    return;
  }
  const int64_t K = chunks_per_channel(N, C);
  if (K == 1) {  // items = blocks of channels: sums, then normalise from cache
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
          finalize<T>(c, M, x[c * S], acc[c - c0].s1, acc[c - c0].s2, mean, invstd, rmean, rvar, momentum, eps);
        }
        if (small) {
          spread(c0, c1, me, se, be);
          for (int64_t n = 0; n < N; ++n)
            run_normalize<T, RELU>(x + (n * C + c0) * S, y + (n * C + c0) * S, (c1 - c0) * S, me.data(), se.data(),
                                   be.data());
        } else {
          for (int64_t n = 0; n < N; ++n)
            for (int64_t c = c0; c < c1; ++c) normalize_plane(n, c);
        }
      }
    });
    return;
  }
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
    finalize<T>(c, M, x[c * S], s1, s2, mean, invstd, rmean, rvar, momentum, eps);
  }
  normalize_all();
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

template <typename T, bool RELU>
void backward_planes(const T* gy, const T* x, Affine<T> af, const T* mean, const T* invstd, T* gx, T* gw, T* gb,
                     int64_t N, int64_t C, int64_t S, bool training) {
  const int64_t M = N * S;
  auto plane_sums = [&](int64_t n, int64_t c, Sums<T>& acc, int64_t next) {
    const int64_t off = (n * C + c) * S;
    plane_grad_sums<T, RELU>(gy + off, x + off, S, mean[c], af.center(mean, invstd, c), af.scale(invstd, c),
                             af.shift(mean, invstd, c), acc, next);
  };
  auto grad_plane = [&](int64_t n, int64_t c, const GradCoef<T>& k) {
    const int64_t off = (n * C + c) * S;
    plane_grad_input<T, RELU>(gy + off, x + off, gx + off, S, mean[c], af.center(mean, invstd, c),
                              af.scale(invstd, c), af.shift(mean, invstd, c), k.a, k.bc, k.cc, training);
  };
  const int64_t K = chunks_per_channel(N, C);
  if (K == 1) {  // items = blocks of channels: sums, then grad input from cache
    const int64_t cb = channel_block(N, C, S, sizeof(T), 2);
    at::parallel_for(0, (C + cb - 1) / cb, 1, [&](int64_t b0, int64_t b1) {
      std::vector<Sums<T>> acc(static_cast<size_t>(cb));
      std::vector<GradCoef<T>> coef(static_cast<size_t>(cb));
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t c0 = blk * cb, c1 = std::min(C, c0 + cb);
        std::fill(acc.begin(), acc.end(), Sums<T>{});
        for (int64_t n = 0; n < N; ++n)  // x[n, c0:c1, :] and gy[n, c0:c1, :]: contiguous streams
          for (int64_t c = c0; c < c1; ++c) plane_sums(n, c, acc[c - c0], 0);
        for (int64_t c = c0; c < c1; ++c) {
          acc[c - c0].flush();
          coef[c - c0] = grad_coef<T>(c, M, acc[c - c0].s1, acc[c - c0].s2, af.w, invstd, gw, gb, training);
        }
        for (int64_t n = 0; n < N; ++n)
          for (int64_t c = c0; c < c1; ++c) grad_plane(n, c, coef[c - c0]);
      }
    });
    return;
  }
  std::vector<double> part(static_cast<size_t>(C * K * 2));
  at::parallel_for(0, C * K, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t c = i / K, k = i % K;
      const int64_t n1 = (k + 1) * N / K;
      Sums<T> acc;
      for (int64_t n = k * N / K; n < n1; ++n) plane_sums(n, c, acc, n + 1 < n1 ? C * S : 0);
      acc.flush();
      part[2 * i] = acc.s1;
      part[2 * i + 1] = acc.s2;
    }
  });
  std::vector<GradCoef<T>> coef(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    double s1 = 0, s2 = 0;
    for (int64_t k = 0; k < K; ++k) s1 += part[2 * (c * K + k)], s2 += part[2 * (c * K + k) + 1];
    coef[c] = grad_coef<T>(c, M, s1, s2, af.w, invstd, gw, gb, training);
  }
  at::parallel_for(0, N * C, std::max<int64_t>(1, 16384 / S), [&](int64_t p0, int64_t p1) {
    for_planes(p0, p1, C, [&](int64_t n, int64_t c) { grad_plane(n, c, coef[c]); });
  });
}

// ------------------------------- rows layout (S == 1) -------------------------------
// x: (R, C) rows.  Per-channel parameters live in arrays, vectors run across channels.

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
  for (int64_t c = 0; c < C; ++c)
    ce[c] = af.center(mean, invstd, c), sc[c] = af.scale(invstd, c), sh[c] = af.shift(mean, invstd, c);
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
  for (int64_t c = 0; c < C; ++c)
    ce[c] = af.center(mean, invstd, c), sc[c] = af.scale(invstd, c), sh[c] = af.shift(mean, invstd, c);
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
void batch_norm_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a) {
  const T *x = a.x, *w = a.w, *b = a.b;
  T *y = a.y, *rmean = a.running_mean, *rvar = a.running_var, *mean = a.mean, *invstd = a.invstd;
  const int64_t N = s.N, C = s.C, S = s.S;
  const bool training = s.training, relu = s.relu;
  const double momentum = s.momentum, eps = s.eps;
  const Affine<T> af{w, b};
  if (S == 1) {
    if (relu) forward_rows<T, true>(x, y, af, rmean, rvar, mean, invstd, N, C, training, momentum, eps);
    else forward_rows<T, false>(x, y, af, rmean, rvar, mean, invstd, N, C, training, momentum, eps);
  } else {
    if (relu) forward_planes<T, true>(x, y, af, rmean, rvar, mean, invstd, N, C, S, training, momentum, eps);
    else forward_planes<T, false>(x, y, af, rmean, rvar, mean, invstd, N, C, S, training, momentum, eps);
  }
}

template <typename T>
void batch_norm_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a) {
  const T *gy = a.gy, *x = a.x, *w = a.w, *b = a.b, *mean = a.mean, *invstd = a.invstd;
  T *gx = a.gx, *gw = a.gw, *gb = a.gb;
  const int64_t N = s.N, C = s.C, S = s.S;
  const bool training = s.training, relu = s.relu;
  const Affine<T> af{w, b};
  if (S == 1) {
    if (relu) backward_rows<T, true>(gy, x, af, mean, invstd, gx, gw, gb, N, C, training);
    else backward_rows<T, false>(gy, x, af, mean, invstd, gx, gw, gb, N, C, training);
  } else {
    if (relu) backward_planes<T, true>(gy, x, af, mean, invstd, gx, gw, gb, N, C, S, training);
    else backward_planes<T, false>(gy, x, af, mean, invstd, gx, gw, gb, N, C, S, training);
  }
}

#define CNNEXT_INSTANTIATE(T)                                                                        \
  template void batch_norm_forward<T>(const BatchNormShape&, const BatchNormForwardArgs<T>&);   \
  template void batch_norm_backward<T>(const BatchNormShape&, const BatchNormBackwardArgs<T>&);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
