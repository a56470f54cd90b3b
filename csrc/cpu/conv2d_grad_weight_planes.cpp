// grad weight of conv2d on the CPU: dot products along the reduction axis over padded phase planes.
//
//   gW[k, c, r, t] = sum_{n, p, q} gY[n, k, p, q] * x[n, c, p*sh - ph + r, q*sw - pw + t]      (dilation 1)
//
// is a GEMM whose reduction runs over the L = N*P*Q output pixels, and both operands are contiguous
// along it -- provided x is laid out right.  Per image, x is split into its sh*sw stride phases
// (phase (a, b) holds x[c, i*sh + a - ph, j*sw + b - pw], zero in the padding) as planes of Hq x Wq with
// Wq = Q + (S-1)/sw, Hq = P + (R-1)/sh, and gY is copied into rows of the same width Wq (zero in the
// columns q >= Q).  Then tap (r, t) of channel c is one shifted plane:
//   gW[k, c, r, t] = sum_i sum_j gYp[k, i, j] * Xp[c, phase(r, t), i, j + (r/sh)*Wq + t/sw]
// -- a dot product of two contiguous rows, no masks, no transposes, no im2col.  (The zero columns of
// gYp cost (Wq - Q)/Q extra FMAs; rows are rounded up to a whole vector, also zero.)
//
// The variant "planes" (conv2d_variants.h); the planner (conv2d.cpp) picks it for images large enough that
// the zero columns cost little.  (A "cols" variant of explicit im2col rows per tile, for 1x1 convs of small
// or strided images, was removed: re-measured on the family's shapes (Intel Xeon, 2026-12-04), the im2col
// GEMM beat or tied it on every one.)
//
// Kernel: a TK x TC tile of gW (TK channels k, TC consecutive rows (c, r, t)) in TK*TC vector
// accumulators (AVX-512: 4 x 4 = 16 zmm, 8 loads per 16 FMAs); per chunk of the reduction the tile's
// accumulators are reduced across lanes by a shuffle tree (VS vectors -> one vector of VS sums) and
// added to gW.  A chunk is a few images (small planes) or a range of one image's row (large planes),
// sized so that the x planes of the chunk stay in L2 while each k tile's gY rows (TK x chunk) sit in L1:
// loops chunk -> k tile -> crs tile.  Every ISA: written with vec.h's vectors only.
//
// Threads (at::parallel_for): each thread owns a fixed range of the batch's images and writes its own
// partial gW (part 0 into gw itself), added in part order at the end; or, when gW is large next to the
// batch (or the batch smaller than the thread count), each thread owns a range of gW's k tiles over the
// whole batch.  Every sum runs in an order fixed by the shape and the thread count: bit-identical
// results across runs.
#include "conv2d_variants.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "vec.h"

namespace cnnext::cpu {
namespace {

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
struct Scratch {  // 64-byte aligned, uninitialised
  T* p;
  explicit Scratch(int64_t n) {
    p = static_cast<T*>(std::aligned_alloc(64, round_up(std::max<int64_t>(n, 1) * int64_t(sizeof(T)), 64)));
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

#if defined(__AVX512F__)
constexpr int TK = 4, TC = 4;  // 16 accumulators + 8 operand vectors of 32 registers
#else
constexpr int TK = 2, TC = 4;  // 8 accumulators + 5 operand vectors of 16 registers
#endif

// One level of the lane-sum tree: u and w each hold VS/B partial sums of width B; the result holds
// 2*VS/B partial sums of width B/2 (u's first, in order): lanes [m*h, m*h + h) = lo + hi halves.
template <int VS, int B>
constexpr int fold_idx(int j) {
  const int h = B / 2, m = j / h, i = j % h, np = VS / B;
  return m < np ? m * B + i : VS + (m - np) * B + i;
}
template <typename vt, int VS, int B, std::size_t... I>
inline vt fold(vt u, vt w, std::index_sequence<I...>) {
  return __builtin_shufflevector(u, w, fold_idx<VS, B>(int(I))...) +
         __builtin_shufflevector(u, w, (fold_idx<VS, B>(int(I)) + B / 2)...);
}
template <typename T, int B>
inline void fold_all(typename Vec<T>::type* a, int n) {
  if constexpr (B >= 2) {
    for (int i = 0; i < n / 2; ++i)
      a[i] = fold<typename Vec<T>::type, Vec<T>::size, B>(a[2 * i], a[2 * i + 1],
                                                           std::make_index_sequence<Vec<T>::size>{});
    fold_all<T, B / 2>(a, n / 2);
  }
}
// a[0 .. VS) -> one vector whose lane i is the sum of a[i]'s lanes (a is overwritten); a fixed order.
template <typename T>
inline typename Vec<T>::type sum_lanes(typename Vec<T>::type* a) {
  fold_all<T, Vec<T>::size>(a, Vec<T>::size);
  return a[0];
}

// Keeps a loaded vector in a register: without it GCC folds the load into each of the TC FMAs that use
// it (TC loads instead of one: the loop becomes load-bound).
// Takes and returns the vector by value: no reference to a stack slot (ASan's frames give 64-byte vectors
// only 32-byte alignment, which UBSan reports as a misaligned reference binding).
template <typename vt>
inline vt in_register(vt v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+v"(v));
#endif
  return v;
}

// out[a*TC + b] = sum over images i < nimg and elements j < nj (a multiple of the vector width) of
// y[a][i*ys + j] * x[b][i*xs + j].  y rows are vector-aligned, x rows are not.
template <typename T>
inline void dot_tile(const T* const* y, const T* const* x, int64_t nimg, int64_t ys, int64_t xs, int64_t nj,
                     T* __restrict__ out) {
  using V = Vec<T>;
  using vt = typename V::type;
  constexpr int VS = V::size, NA = TK * TC;
  static_assert(NA % VS == 0, "the tile's accumulators must fill whole lane-sum trees");
  vt acc[NA];
#pragma GCC unroll 16
  for (int i = 0; i < NA; ++i) acc[i] = vt{};
  for (int64_t i = 0; i < nimg; ++i) {
    const T* yp[TK];
    const T* xp[TC];
#pragma GCC unroll 4
    for (int a = 0; a < TK; ++a) yp[a] = y[a] + i * ys;
#pragma GCC unroll 4
    for (int b = 0; b < TC; ++b) xp[b] = x[b] + i * xs;
    for (int64_t j = 0; j < nj; j += VS) {
      vt xv[TC];
#pragma GCC unroll 4
      for (int b = 0; b < TC; ++b) {
        xv[b] = in_register(V::load(xp[b] + j));
      }
#pragma GCC unroll 4
      for (int a = 0; a < TK; ++a) {
        const vt yv = in_register(V::load(yp[a] + j));
#pragma GCC unroll 4
        for (int b = 0; b < TC; ++b) acc[a * TC + b] += yv * xv[b];
      }
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < NA; g += VS) V::store(out + g, sum_lanes<T>(acc + g));
}

// Adds (or, first, stores) a tile's results out[a*TC + b] to gW rows k0.., columns c0..
template <typename T>
inline void put_tile(T* dst, const T* out, int64_t k0, int64_t nk, int64_t c0, int64_t nc, int64_t CRS, bool first) {
  for (int64_t a = 0; a < nk; ++a) {
    T* d = dst + (k0 + a) * CRS + c0;
    const T* o = out + a * TC;
    if (first) {
      for (int64_t b = 0; b < nc; ++b) d[b] = o[b];
    } else {
      for (int64_t b = 0; b < nc; ++b) d[b] += o[b];
    }
  }
}

// d[0 .. n) = src[j*step] for jlo <= j < jhi, 0 elsewhere
template <typename T>
inline void copy_run(T* __restrict__ d, const T* src, int64_t n, int64_t jlo, int64_t jhi, int64_t step) {
  std::fill(d, d + jlo, T(0));
  if (step == 1) {
    if (jhi > jlo) std::memcpy(d + jlo, src + jlo, (jhi - jlo) * sizeof(T));
  } else {
    for (int64_t j = jlo; j < jhi; ++j) d[j] = src[j * step];
  }
  std::fill(d + std::max(jhi, jlo), d + n, T(0));
}

// valid j of 0 <= j*step + ofs < size, clamped to [0, n): [lo, hi)
inline void valid_range(int64_t ofs, int64_t step, int64_t size, int64_t n, int64_t& lo, int64_t& hi) {
  lo = std::min(n, ofs < 0 ? ceil_div(-ofs, step) : int64_t(0));
  hi = std::max(lo, std::min(n, size - 1 - ofs < 0 ? int64_t(0) : (size - 1 - ofs) / step + 1));
}

template <typename T>
void planes_grad_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw) {
  constexpr int64_t VS = Vec<T>::size;
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, RS = s.R * s.S, CRS = Cg * RS;
  const int64_t sh = s.stride_h, sw = s.stride_w, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t nA = std::min(sh, s.R), nB = std::min(sw, s.S), nph = nA * nB;
  const int64_t Rq = (s.R - 1) / sh + 1, Sq = (s.S - 1) / sw + 1;
  const int64_t Wq = s.Q + Sq - 1, Hq = s.P + Rq - 1;
  const int64_t Lr = round_up(s.P * Wq, VS);                     // gYp row of one image
  const int64_t Xr = round_up(Lr + (Rq - 1) * Wq + Sq - 1, VS);  // one phase plane of one image
  // Planes waste (Lr - PQ) / PQ of the FMAs on zero columns.
  const int64_t nthreads = at::get_num_threads(), ntk = ceil_div(Kg, TK);
  const bool split_k = s.N < nthreads || s.K * CRS > s.N * s.C * nph * Xr;
  const int64_t nparts = split_k ? std::min(nthreads, G * ntk) : std::min(nthreads, s.N);
  const int64_t nimg_part = split_k ? s.N : ceil_div(s.N, nparts);
  // a chunk of the reduction: its x planes (Cg*nph rows) within ~512 KiB of L2
  const int64_t J = std::clamp<int64_t>((512 << 10) / (Cg * nph * int64_t(sizeof(T))) / VS * VS, 16 * VS, 128 * VS);
  const int64_t nbmax = Lr >= J ? 1 : std::max<int64_t>(1, std::min(nimg_part, J / Lr));  // images per chunk
  const int64_t nseg = Lr >= J ? ceil_div(Lr, J) : 1, seg = round_up(ceil_div(Lr, nseg), VS);

  // x row of (c, r, t) in the chunk's planes [c][phase][image][Xr]
  std::vector<int64_t> xoff(CRS);
  for (int64_t i = 0; i < int64_t(xoff.size()); ++i) {
    const int64_t c = i / RS, r = i / s.S % s.R, t = i % s.S;
    xoff[i] = ((c * nph + (r % sh) * nB + t % sw) * nbmax) * Xr + (r / sh) * Wq + t / sw;
  }
  // partial sums of parts 1.. (part 0 writes gw); split_k: every part writes its own rows of gw.  Not
  // zero-filled: each part stores its first chunk's sums.
  Scratch<T> Pbuf(split_k ? 0 : (nparts - 1) * s.K * CRS);

  at::parallel_for(0, nparts, 1, [&](int64_t p0, int64_t p1) {
    Scratch<T> xb(Cg * nph * nbmax * Xr), yb(Kg * nbmax * Lr);
    alignas(64) T out[TK * TC];
    for (int64_t part = p0; part < p1; ++part) {
      int64_t n0 = 0, n1 = s.N, t0 = 0, t1 = G * ntk;  // images, global k tiles (g*ntk + kt)
      if (split_k) {
        t0 = G * ntk * part / nparts, t1 = G * ntk * (part + 1) / nparts;
      } else {
        n0 = s.N * part / nparts, n1 = s.N * (part + 1) / nparts;
      }
      T* dst = split_k || part == 0 ? gw : Pbuf.p + (part - 1) * s.K * CRS;
      for (int64_t g = t0 / ntk; g < G && g * ntk < t1; ++g) {
        const int64_t ka = std::max(t0 - g * ntk, int64_t(0)), kb = std::min(t1 - g * ntk, ntk);  // k tiles
        const int64_t kr0 = ka * TK, kr1 = std::min(kb * TK, Kg);                                 // k rows
        T* dstg = dst + g * Kg * CRS;
        for (int64_t na = n0; na < n1; na += nbmax) {
          const int64_t nb = std::min(nbmax, n1 - na);
          const bool first = na == n0;
          // the chunk's phase planes of x (zero in the padding and past the plane)
          for (int64_t i = 0; i < nb; ++i)
            for (int64_t c = 0; c < Cg; ++c) {
              const T* xc = x + ((na + i) * s.C + g * Cg + c) * HW;
              for (int64_t a = 0; a < nA; ++a)
                for (int64_t b = 0; b < nB; ++b) {
                  T* const d0 = xb.p + ((c * nph + a * nB + b) * nbmax + i) * Xr;
                  T* d = d0;
                  int64_t jlo, jhi;
                  valid_range(b - s.pad_w, sw, s.W, Wq, jlo, jhi);
                  for (int64_t ii = 0; ii < Hq; ++ii, d += Wq) {
                    const int64_t h = ii * sh + a - s.pad_h;
                    if (h < 0 || h >= s.H) std::fill(d, d + Wq, T(0));
                    else copy_run(d, xc + h * s.W + b - s.pad_w, Wq, jlo, jhi, sw);
                  }
                  std::fill(d, d0 + Xr, T(0));
                }
            }
          // the chunk's gY rows of this part's k, Wq wide (zero past Q and past P*Wq)
          for (int64_t k = kr0; k < kr1; ++k)
            for (int64_t i = 0; i < nb; ++i) {
              T* d = yb.p + (k * nbmax + i) * Lr;
              const T* src = gy + ((na + i) * s.K + g * Kg + k) * PQ;
              if (Wq == s.Q) {
                std::memcpy(d, src, PQ * sizeof(T));
              } else {
                for (int64_t p = 0; p < s.P; ++p) {
                  std::memcpy(d + p * Wq, src + p * s.Q, s.Q * sizeof(T));
                  std::fill(d + p * Wq + s.Q, d + (p + 1) * Wq, T(0));
                }
              }
              std::fill(d + s.P * Wq, d + Lr, T(0));
            }
          for (int64_t j0 = 0; j0 < Lr; j0 += seg) {
            const int64_t nj = std::min(seg, Lr - j0);
            for (int64_t kt = ka; kt < kb; ++kt) {
              const T* yr[TK];
              for (int a = 0; a < TK; ++a) yr[a] = yb.p + std::min(kt * TK + a, Kg - 1) * nbmax * Lr + j0;
              for (int64_t c0 = 0; c0 < CRS; c0 += TC) {
                const T* xr[TC];
                for (int b = 0; b < TC; ++b) xr[b] = xb.p + xoff[std::min(c0 + b, CRS - 1)] + j0;
                dot_tile(yr, xr, nb, Lr, Xr, nj, out);
                put_tile(dstg, out, kt * TK, std::min<int64_t>(TK, Kg - kt * TK), c0, std::min<int64_t>(TC, CRS - c0),
                         CRS, first && j0 == 0);
              }
            }
          }
        }
      }
    }
  });
  if (!split_k && nparts > 1) {
    at::parallel_for(0, s.K * CRS, 2048, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        T v = gw[i];
        for (int64_t part = 1; part < nparts; ++part) v += Pbuf.p[(part - 1) * s.K * CRS + i];
        gw[i] = v;
      }
    });
  }
}

}  // namespace

namespace conv2d_variants {
template <typename T>
void planes_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  grad_bias(s, gy, gb);
  planes_grad_weight(s, x, gy, gw);
}
#define CNNEXT_INSTANTIATE(T) \
  template void planes_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE
}  // namespace conv2d_variants

PlanesGeometry planes_geometry(const Conv2dShape& s, int64_t vs) {
  PlanesGeometry g;
  const int64_t Rq = (s.R - 1) / s.stride_h + 1, Sq = (s.S - 1) / s.stride_w + 1, Wq = s.Q + Sq - 1;
  g.row = round_up(s.P * Wq, vs);
  g.plane = round_up(g.row + (Rq - 1) * Wq + Sq - 1, vs);
  g.phases = std::min(s.stride_h, s.R) * std::min(s.stride_w, s.S);
  return g;
}

}  // namespace cnnext::cpu
