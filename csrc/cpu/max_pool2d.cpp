// max_pool2d on the CPU.  x: (NC, H, W) planes; y, ind: (NC, OH, OW); contiguous.
//
//   y[p, oh, ow]   = max over the window rows h = oh*sh - ph + i*dh, columns w = ow*sw - pw + j*dw
//                    (taps outside the input skipped; ind == nullptr: the values only)
//   ind[p, oh, ow] = h*W + w of that max. The window is scanned row by row and a tap replaces the
//                    running max when (v > max || isnan(v)), PyTorch's rule: the first max wins
//                    ties, the last NaN wins over everything.
//
// Forward (float32, AVX-512), three kernels by shape:
//  - training (indices wanted): threads take output rows (p, oh); a row is done 16 outputs at a
//    time, lane l holding output ow + l (pool_block). Each tap (i, j) loads x[h, c + l*sw] for all
//    lanes at once -- one load for stride 1, two loads and a two-source permute (vpermt2ps, even
//    elements) for stride 2, a gather otherwise -- and updates a running max and, where the tap is
//    larger, the int32 index (widened to int64 on the store). Which lanes each tap may load (its
//    column inside the input) and each lane's initial index are the same for every row: they are
//    planned once per call (RowPlan), so the padded edges cost no more than the interior.
//  - inference (no indices), rows of 32 or more: column first (forward_values_avx512): the
//    window's rows are reduced into a scratch row padded with -inf, then each output takes the max
//    of its kw taps of it. Narrower rows take the training kernel without the index updates.
//  - planes of <= 16 elements (forward_planes_avx512): a plane per vector, every tap a lane
//    permutation of it.
// All three keep only the running max on the dependency chain, with a NaN mapped to +inf; the rare
// outputs that end at +inf (a NaN or a +inf in the window) are redone by the scalar loop, so ties,
// NaN and +inf follow PyTorch exactly (the inference kernel may return the other zero where +0 and -0
// tie: see forward_values_avx512). float64, and builds without AVX-512, use the scalar loop:
// the same scan, one output at a time.
//
// channels_last input (N, H, W, C) has its own forward: threads take output pixels (n, oh, ow) and
// a vector holds consecutive channels, so every tap is one contiguous load and the same
// compare-and-select (AVX-512 for float32 with a masked last vector; vec.h otherwise, with the
// channels left over after the last full vector one by one).
//
// Backward: threads take whole planes; a plane's gx is zeroed and then gy is added at ind in
// output order. One thread owns a plane, so overlapping windows accumulate in a fixed order
// and the result does not depend on the thread count.
#include "max_pool2d.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "vec.h"

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12's _mm512_min_ps / _mm512_max_ps pass _mm512_undefined_ps() as the unused merge source,
// which -Wmaybe-uninitialized reports once inlined; it is never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace cnnext::cpu {
namespace {

// Work per task of at::parallel_for, in window taps (or elements): enough that small tensors run on
// one thread, where waking the others would cost more than it saves.
constexpr int64_t kGrain = 65536;

// The in-input taps of one window along one axis, for output position o: the first tap past the
// padding (the start stepped forward by the dilation) and the end (exclusive).
struct Span {
  int64_t lo, hi;
};
inline Span window_span(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t dil, int64_t size) {
  int64_t lo = o * stride - pad;
  const int64_t hi = std::min(lo + (k - 1) * dil + 1, size);
  while (lo < 0) lo += dil;
  return {lo, hi};
}
inline Span rows_of(const MaxPool2dShape& s, int64_t oh) {
  return window_span(oh, s.stride_h, s.pad_h, s.kh, s.dil_h, s.H);
}
inline Span cols_of(const MaxPool2dShape& s, int64_t ow) {
  return window_span(ow, s.stride_w, s.pad_w, s.kw, s.dil_w, s.W);
}

// One output's window scan: PyTorch's loop (the first valid tap is the initial index).
template <typename T>
inline void pool_one(const MaxPool2dShape& s, const T* xp, int64_t h0, int64_t h1, int64_t ow, T* y,
                     int64_t* ind) {
  const auto [w0, w1] = cols_of(s, ow);
  T best = -std::numeric_limits<T>::infinity();
  int64_t best_i = h0 * s.W + w0;
  for (int64_t h = h0; h < h1; h += s.dil_h)
    for (int64_t w = w0; w < w1; w += s.dil_w) {
      const T v = xp[h * s.W + w];
      if (v > best || std::isnan(v)) {
        best = v;
        best_i = h * s.W + w;
      }
    }
  *y = best;
  if (ind) *ind = best_i;
}

#if defined(__AVX512F__)
// Bits [lo, hi) of a lane mask (empty when hi <= lo).
inline uint32_t bit_range(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0), hi = std::min<int64_t>(hi, 32);
  return hi <= lo ? 0u : uint32_t(((uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1));
}

// What one tap loads: the lanes whose column lies inside the input, and for stride 2 the elements
// p[2*lo .. min(32, room)) from the lowest of those lanes on, as far as the input row goes (room
// elements), so that taps well inside the row load all 32 and need no mask.
struct Tap {
  __mmask16 lanes;
  uint32_t elems;
};

template <int SW>
inline Tap make_tap(__mmask16 lanes, int64_t room) {
  uint32_t e = lanes;
  if (SW == 2) e = lanes ? bit_range(2 * __builtin_ctz(lanes), room) : 0u;
  return {lanes, e};
}

// Lane l in t.lanes gets p[l * stride] (SW = 1 or 2: the stride; SW = 0: any stride, by gather);
// the other lanes get 0 or garbage, and no memory outside the row's wanted elements is touched.
// Full loads go unmasked: masked loads and stores are slower on Zen 4 even with all bits set.
template <int SW>
__attribute__((always_inline)) inline __m512 load_lanes(const float* p, Tap t, __m512i lane_off) {
  if constexpr (SW == 1) {
    return t.lanes == 0xffff ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(t.lanes, p);
  } else if constexpr (SW == 2) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    if (t.elems == 0xffffffffu) return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(__mmask16(t.elems), p), even,
                                  _mm512_maskz_loadu_ps(__mmask16(t.elems >> 16), p + 16));
  } else {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), t.lanes, lane_off, p, 4);
  }
}

// p[l] = v[l] widened to int64, for the lanes in m (vector extensions: GCC 12's
// _mm512_cvtepi32_epi64 warns spuriously).
inline void store_indices(int64_t* p, __m512i v, __mmask16 m) {
  typedef int32_t i32x16 __attribute__((vector_size(64)));
  typedef int32_t i32x8 __attribute__((vector_size(32)));
  typedef int64_t i64x8 __attribute__((vector_size(64)));
  const i32x16 bi = i32x16(v);
  const i64x8 lo = __builtin_convertvector(i32x8(__builtin_shufflevector(bi, bi, 0, 1, 2, 3, 4, 5, 6, 7)), i64x8);
  const i64x8 hi = __builtin_convertvector(i32x8(__builtin_shufflevector(bi, bi, 8, 9, 10, 11, 12, 13, 14, 15)), i64x8);
  if (m == 0xffff) {
    _mm512_storeu_si512(p, __m512i(lo));
    _mm512_storeu_si512(p + 8, __m512i(hi));
  } else {
    _mm512_mask_storeu_epi64(p, __mmask8(m & 0xff), __m512i(lo));
    _mm512_mask_storeu_epi64(p + 8, __mmask8(m >> 8), __m512i(hi));
  }
}

// The 16-lane blocks of an output row, the same for every row, planned once per call: block b
// covers outputs ow[b] .. ow[b]+n-1 (a last partial block is shifted left to overlap the one
// before, recomputing a few outputs, rather than run short); taps[b*kw + j] says which lanes
// tap j may load (columns inside the input); first[b*16 + l] is the column of lane l's first
// valid tap, PyTorch's initial index.
struct RowPlan {
  int64_t n = 0;
  std::vector<int64_t> ow;
  std::vector<Tap> taps;
  std::vector<int32_t> first;
  std::vector<Span> rows;  // rows[oh]: the window's input rows, rows_of(s, oh)
};

template <int SW>
RowPlan plan_row(const MaxPool2dShape& s) {
  RowPlan plan;
  plan.n = std::min<int64_t>(16, s.OW);
  for (int64_t ow = 0;; ow += 16) {
    ow = std::min(ow, s.OW - plan.n);
    plan.ow.push_back(ow);
    for (int64_t j = 0; j < s.kw; ++j) {  // lanes l < n with 0 <= c + l*sw < W
      const int64_t c = ow * s.stride_w - s.pad_w + j * s.dil_w;
      const int64_t lo = c < 0 ? (-c + s.stride_w - 1) / s.stride_w : 0;
      const int64_t hi = c < s.W ? (s.W - 1 - c) / s.stride_w + 1 : 0;
      plan.taps.push_back(make_tap<SW>(__mmask16(bit_range(lo, std::min(hi, plan.n))), s.W - c));
    }
    for (int64_t l = 0; l < 16; ++l) {
      plan.first.push_back(l < plan.n ? int32_t(cols_of(s, ow + l).lo) : 0);
    }
    if (ow + plan.n >= s.OW) break;
  }
  for (int64_t oh = 0; oh < s.OH; ++oh) plan.rows.push_back(rows_of(s, oh));
  return plan;
}

// The lanes (of `lanes`) of a result vector that ended at +inf, where the window held a NaN or a
// +inf: redo(l) recomputes each with PyTorch's literal loop (pool_one).
template <typename F>
inline void redo_inf_lanes(__m512 best, __mmask16 lanes, F&& redo) {
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  for (uint32_t m = _mm512_mask_cmp_ps_mask(lanes, best, inf, _CMP_EQ_OQ); m; m &= m - 1) redo(__builtin_ctz(m));
}

// Block b of an output row, lane l = output ow[b] + l; rows [h0, h1) step dh already clipped.
// Taps outside the input (per lane, from the plan) are masked off every update, so each lane keeps
// PyTorch's initial index (its first valid tap) until a value replaces -inf.
//
// PyTorch's rule, take a tap when (v > max || isnan(v)), done literally is one long dependency
// chain (compare -> mask or -> blend, ~7 cycles a tap). For finite and -inf data it is the plain
// running max, so the vector loop keeps only that, one cheap instruction a tap on the chain:
//   best = max(min(v, +inf), best)  min maps a NaN to +inf (vminps returns its second operand
//                                   for a NaN) and leaves every other value alone
//   ind  = v > best ? tap : ind     read off the chain, feeding only the index blend
// Ties: vmaxps returns its second operand (best) on equal values, +0 and -0 included, so the
// first of equal maxima stays, as with PyTorch's strict >. A lane that ends at +inf has seen a
// NaN or a +inf, where the last NaN wins and an earlier +inf wins ties: such lanes (rare) are
// redone one by one by pool_one, PyTorch's literal loop.
// KW > 0: the kernel width, fixed at compile time so that the taps of a row unroll (2 and 3: the
// CNN family); KW = 0: s.kw at run time. spill: a row shorter than 16 outputs may store all 16
// lanes, because the same thread writes the following rows, over the extra lanes, afterwards
// (masked stores cost more on Zen 4).
template <int SW, bool IND, int KW>
__attribute__((always_inline)) inline void pool_block(const MaxPool2dShape& s, const RowPlan& plan, int64_t b,
                                                      const float* xp, int64_t h0, int64_t h1, __m512i lane_off,
                                                      float* y, int64_t* ind, bool spill) {
  const int64_t ow = plan.ow[b], c0 = ow * s.stride_w - s.pad_w;  // lane 0's first window column
  const Tap* taps = plan.taps.data() + b * s.kw;
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512i best_i =
      _mm512_add_epi32(_mm512_set1_epi32(int32_t(h0 * s.W)), _mm512_loadu_si512(plan.first.data() + b * 16));
  for (int64_t h = h0; h < h1; h += s.dil_h) {
    const float* row = xp + h * s.W;
    const int64_t kw = KW > 0 ? KW : s.kw;
#pragma GCC unroll 4
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t c = c0 + j * s.dil_w;  // lane l reads column c + l*sw
      const Tap t = taps[j];
      const __m512 v = load_lanes<SW>(row + c, t, lane_off);
      if constexpr (IND) {
        const __mmask16 gt = _mm512_mask_cmp_ps_mask(t.lanes, v, best, _CMP_GT_OQ);
        best_i = _mm512_mask_add_epi32(best_i, gt, _mm512_set1_epi32(int32_t(h * s.W + c)), lane_off);
      }
      best = _mm512_mask_max_ps(best, t.lanes, _mm512_min_ps(v, inf), best);
    }
  }
  const __mmask16 all = spill ? __mmask16(0xffff) : __mmask16(bit_range(0, plan.n));
  if (all == 0xffff) _mm512_storeu_ps(y + ow, best);
  else _mm512_mask_storeu_ps(y + ow, all, best);
  if constexpr (IND) store_indices(ind + ow, best_i, all);
  // NaN or +inf seen: PyTorch's loop for those lanes
  redo_inf_lanes(best, __mmask16(bit_range(0, plan.n)),
                 [&](int64_t l) { pool_one(s, xp, h0, h1, ow + l, y + ow + l, IND ? ind + ow + l : nullptr); });
}

// Lane l's column offset l * sw, for gathers and index adds.
inline __m512i lane_offsets(int64_t stride_w) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(int32_t(stride_w)));
}

// Rows r < spill_end of the chunk [r0, r1) may store all 16 lanes: a single-block row (OW < 16)
// spills its 16 - OW extra lanes over the ceil((16 - OW) / OW) rows after it, which the same
// thread writes afterwards.
inline int64_t spill_end(const RowPlan& plan, int64_t r0, int64_t r1) {
  return plan.n < 16 ? r1 - (16 - plan.n + plan.n - 1) / plan.n : r0;
}

// Prefetch the input rows the next output row adds (measured: up to 3x faster on Zen 4).
inline void prefetch_next_rows(const MaxPool2dShape& s, const float* xp, int64_t h1) {
  for (int64_t h = h1; h < std::min(h1 + s.stride_h, s.H); ++h)
    for (int64_t w = 0; w < s.W; w += 16) __builtin_prefetch(xp + h * s.W + w);
}

template <int SW, bool IND, int KW>
void forward_avx512(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind) {
  const RowPlan plan = plan_row<SW>(s);
  const int64_t rows = s.NC * s.OH, grain = std::max<int64_t>(1, kGrain / (s.OW * s.kh * s.kw + 1));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    const __m512i lane_off = lane_offsets(s.stride_w);
    const int64_t blocks = int64_t(plan.ow.size()), spill = spill_end(plan, r0, r1);
    int64_t p = r0 / s.OH, oh = r0 % s.OH;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xp = x + p * s.H * s.W;
      const auto [h0, h1] = plan.rows[oh];
      prefetch_next_rows(s, xp, h1);
      for (int64_t b = 0; b < blocks; ++b)
        pool_block<SW, IND, KW>(s, plan, b, xp, h0, h1, lane_off, y + r * s.OW, IND ? ind + r * s.OW : nullptr,
                                r < spill);
      if (++oh == s.OH) oh = 0, ++p;
    }
  });
}

// Inference (no indices): vertical first. For output row oh, the window's input rows are reduced
// column by column into a scratch row m, m[pw + c] = max over those rows of x[h, c] (a NaN mapped
// to +inf, as above), with -inf in the padding on both sides; then output ow is the max of its kw
// taps m[ow*sw + j*dw], loaded whole (the padding is in m: no masks). Per output row that is one
// pass over the window rows plus kw taps, instead of kh*kw taps. The value is the window's max
// either way; only which of equal maxima is returned could differ, which is seen only for +0 and
// -0 (this path may return either zero where PyTorch returns the first in row-major order).
// Lanes that end at +inf are redone by pool_one.
template <int SW>
__attribute__((always_inline)) inline __m512 load_whole(const float* p, __m512i lane_off) {
  if constexpr (SW == 1) {
    return _mm512_loadu_ps(p);
  } else if constexpr (SW == 2) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
  } else {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), __mmask16(0xffff), lane_off, p, 4);  // (GCC 12 warns on the unmasked form)
  }
}

template <int SW, int KW>
void forward_values_avx512(const MaxPool2dShape& s, const float* x, float* y) {
  const RowPlan plan = plan_row<SW>(s);
  // m covers the left padding, the row, and every element a tap load of any block reads
  const int64_t len = std::max(s.pad_w + s.W + 16, plan.ow.back() * s.stride_w + (s.kw - 1) * s.dil_w +
                                                        16 * std::max<int64_t>(s.stride_w, 2) + 1);
  const int64_t rows = s.NC * s.OH, grain = std::max<int64_t>(1, kGrain / (s.OW * s.kh * s.kw + 1));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    const __m512i lane_off = lane_offsets(s.stride_w);
    std::vector<float> scratch(len, -std::numeric_limits<float>::infinity());
    float* m = scratch.data() + s.pad_w;  // m[c], c in [-pw, len - pw)
    const int64_t blocks = int64_t(plan.ow.size()), kw = KW > 0 ? KW : s.kw;
    const int64_t spill = spill_end(plan, r0, r1);
    const __mmask16 tail = __mmask16(bit_range(0, s.W % 16));
    int64_t p = r0 / s.OH, oh = r0 % s.OH;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xp = x + p * s.H * s.W;
      const auto [h0, h1] = plan.rows[oh];
      prefetch_next_rows(s, xp, h1);
      // vertical: m[c] = max over the window rows
      int64_t c = 0;
      for (; c + 16 <= s.W; c += 16) {
        __m512 acc = neg_inf;
        for (int64_t h = h0; h < h1; h += s.dil_h) acc = _mm512_max_ps(_mm512_min_ps(_mm512_loadu_ps(xp + h * s.W + c), inf), acc);
        _mm512_storeu_ps(m + c, acc);
      }
      if (tail) {
        __m512 acc = neg_inf;
        for (int64_t h = h0; h < h1; h += s.dil_h)
          acc = _mm512_max_ps(_mm512_min_ps(_mm512_maskz_loadu_ps(tail, xp + h * s.W + c), inf), acc);
        _mm512_mask_storeu_ps(m + c, tail, acc);
      }
      // horizontal: kw taps of m per block of 16 outputs
      float* yr = y + r * s.OW;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t ow = plan.ow[b];
        const float* mb = m + ow * s.stride_w - s.pad_w;
        __m512 best = neg_inf;
#pragma GCC unroll 4
        for (int64_t j = 0; j < kw; ++j) best = _mm512_max_ps(load_whole<SW>(mb + j * s.dil_w, lane_off), best);
        const __mmask16 all = r < spill ? __mmask16(0xffff) : __mmask16(bit_range(0, plan.n));
        if (all == 0xffff) _mm512_storeu_ps(yr + ow, best);
        else _mm512_mask_storeu_ps(yr + ow, all, best);
        redo_inf_lanes(best, __mmask16(bit_range(0, plan.n)), [&](int64_t l) {
          pool_one(s, xp, h0, h1, ow + l, yr + ow + l, static_cast<int64_t*>(nullptr));
        });
      }
      if (++oh == s.OH) oh = 0, ++p;
    }
  });
}

// Planes of at most 16 elements whose output fits in 16 too (GoogLeNet's 3x3 maps, the 4x4 and
// 2x2 maps of small inputs), where a row of 3 outputs would fill 3 of 16 lanes: one vector holds a
// whole plane, lane o computes output o of the plane, and tap t = (i, j) (row-major, PyTorch's
// scan order) is a lane permutation of the plane, vpermps with idx[t][o] = h*W + w of output o's
// tap t, masked to the outputs whose tap t lies inside the input. The updates are those of
// pool_block (running max, index blend on >, +inf lanes redone by pool_one).
struct PlanePlan {
  int64_t n = 0;                 // OH * OW
  std::vector<int32_t> idx;      // per tap, 16 lanes
  std::vector<__mmask16> valid;  // per tap
  __m512i first;                 // PyTorch's initial index of each output
};

PlanePlan plan_plane(const MaxPool2dShape& s) {
  PlanePlan P;
  P.n = s.OH * s.OW;
  alignas(64) int32_t first[16] = {};
  for (int64_t o = 0; o < P.n; ++o) first[o] = int32_t(rows_of(s, o / s.OW).lo * s.W + cols_of(s, o % s.OW).lo);
  P.first = _mm512_load_si512(first);
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t j = 0; j < s.kw; ++j) {
      int32_t idx[16] = {};
      uint32_t valid = 0;
      for (int64_t o = 0; o < P.n; ++o) {
        const int64_t h = o / s.OW * s.stride_h - s.pad_h + i * s.dil_h, w = o % s.OW * s.stride_w - s.pad_w + j * s.dil_w;
        if (h >= 0 && h < s.H && w >= 0 && w < s.W) idx[o] = int32_t(h * s.W + w), valid |= 1u << o;
      }
      if (!valid) continue;  // a tap in the padding for every output
      P.idx.insert(P.idx.end(), idx, idx + 16);
      P.valid.push_back(__mmask16(valid));
    }
  return P;
}

template <bool IND>
void forward_planes_avx512(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind) {
  const PlanePlan P = plan_plane(s);
  const int64_t HW = s.H * s.W, taps = int64_t(P.valid.size());
  const __mmask16 in_mask = __mmask16(bit_range(0, HW)), out_mask = __mmask16(bit_range(0, P.n));
  at::parallel_for(0, s.NC, std::max<int64_t>(1, kGrain / (P.n * s.kh * s.kw + 1)), [&](int64_t p0, int64_t p1) {
    const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * HW;
      const __m512 v = _mm512_maskz_loadu_ps(in_mask, xp);
      __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      __m512i best_i = P.first;
      for (int64_t t = 0; t < taps; ++t) {
        const __m512i idx = _mm512_loadu_si512(P.idx.data() + 16 * t);
        const __m512 tv = _mm512_permutexvar_ps(idx, v);
        if constexpr (IND) best_i = _mm512_mask_mov_epi32(best_i, _mm512_mask_cmp_ps_mask(P.valid[t], tv, best, _CMP_GT_OQ), idx);
        best = _mm512_mask_max_ps(best, P.valid[t], _mm512_min_ps(tv, inf), best);
      }
      _mm512_mask_storeu_ps(y + p * P.n, out_mask, best);
      if constexpr (IND) store_indices(ind + p * P.n, best_i, out_mask);
      redo_inf_lanes(best, out_mask, [&](int64_t o) {
        const auto [h0, h1] = rows_of(s, o / s.OW);
        pool_one(s, xp, h0, h1, o % s.OW, y + p * P.n + o, IND ? ind + p * P.n + o : nullptr);
      });
    }
  });
}

// forward_avx512 for the stride SW, with or without indices, kernel width 2, 3 or any.
template <int SW>
void forward_avx512_kw(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind) {
  // inference: column first, except on rows narrower than kColumnFirstMinW (measured slower there)
  constexpr int64_t kColumnFirstMinW = 32;
  const bool cols = !ind && s.W >= kColumnFirstMinW;
  if (s.kw == 2) ind ? forward_avx512<SW, true, 2>(s, x, y, ind) : cols ? forward_values_avx512<SW, 2>(s, x, y) : forward_avx512<SW, false, 2>(s, x, y, ind);
  else if (s.kw == 3) ind ? forward_avx512<SW, true, 3>(s, x, y, ind) : cols ? forward_values_avx512<SW, 3>(s, x, y) : forward_avx512<SW, false, 3>(s, x, y, ind);
  else ind ? forward_avx512<SW, true, 0>(s, x, y, ind) : cols ? forward_values_avx512<SW, 0>(s, x, y) : forward_avx512<SW, false, 0>(s, x, y, ind);
}
#endif

// The scalar loop, output row by output row.
template <typename T>
void forward_scalar(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind) {
  const int64_t rows = s.NC * s.OH, grain = std::max<int64_t>(1, kGrain / (s.OW * s.kh * s.kw + 1));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / s.OH, oh = r % s.OH;
      const auto [h0, h1] = rows_of(s, oh);
      for (int64_t ow = 0; ow < s.OW; ++ow)
        pool_one(s, x + p * s.H * s.W, h0, h1, ow, y + r * s.OW + ow, ind ? ind + r * s.OW + ow : nullptr);
    }
  });
}

}  // namespace

template <typename T>
void max_pool2d_forward(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind) {
#if defined(__AVX512F__)
  constexpr int64_t kMax32 = std::numeric_limits<int32_t>::max();
  if constexpr (std::is_same_v<T, float>) {
    if (s.H * s.W <= 16 && s.OH * s.OW <= 16) {  // a plane per vector
      ind ? forward_planes_avx512<true>(s, x, y, ind) : forward_planes_avx512<false>(s, x, y, ind);
      return;
    }
    if (s.H * s.W <= kMax32 && 16 * s.stride_w <= kMax32) {  // lanes hold int32 indices and offsets
      if (s.stride_w == 1) forward_avx512_kw<1>(s, x, y, ind);
      else if (s.stride_w == 2) forward_avx512_kw<2>(s, x, y, ind);
      else forward_avx512_kw<0>(s, x, y, ind);
      return;
    }
  }
#endif
  forward_scalar(s, x, y, ind);
}

#if defined(__AVX512F__)
// channels_last, float32: 16 channels per vector, the last partial vector masked; the running max
// and index blend of pool_block, channels whose max ends at +inf (a NaN or a +inf in the window)
// redone with PyTorch's loop.
template <bool IND>
void forward_nhwc_avx512(const MaxPool2dShape& s, int64_t C, const float* x, float* y, int64_t* ind) {
  const int64_t HW = s.H * s.W, OHW = s.OH * s.OW;
  const int64_t grain = std::max<int64_t>(1, kGrain / (C * s.kh * s.kw + 1));
  at::parallel_for(0, s.NC / C * OHW, grain, [&](int64_t r0, int64_t r1) {
    const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    for (int64_t r = r0; r < r1; ++r) {  // output pixel (n, oh, ow): C channels
      const int64_t n = r / OHW, oh = r % OHW / s.OW, ow = r % s.OW;
      const auto [h0, h1] = rows_of(s, oh);
      const auto [w0, w1] = cols_of(s, ow);
      const float* xn = x + n * HW * C;
      for (int64_t c = 0; c < C; c += 16) {
        const bool full = c + 16 <= C;
        const __mmask16 m = __mmask16(bit_range(0, C - c));
        __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        __m512i best_i = _mm512_set1_epi32(int32_t(h0 * s.W + w0));
        for (int64_t h = h0; h < h1; h += s.dil_h)
          for (int64_t w = w0; w < w1; w += s.dil_w) {
            const int64_t i = h * s.W + w;
            const __m512 v = full ? _mm512_loadu_ps(xn + i * C + c) : _mm512_maskz_loadu_ps(m, xn + i * C + c);
            if constexpr (IND)
              best_i = _mm512_mask_mov_epi32(best_i, _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ), _mm512_set1_epi32(int32_t(i)));
            best = _mm512_max_ps(_mm512_min_ps(v, inf), best);
          }
        if (full) _mm512_storeu_ps(y + r * C + c, best);
        else _mm512_mask_storeu_ps(y + r * C + c, m, best);
        if constexpr (IND) store_indices(ind + r * C + c, best_i, m);
        redo_inf_lanes(best, m, [&](int64_t l) {  // PyTorch's loop for channel c + l
          float b = -std::numeric_limits<float>::infinity();
          int64_t bi = h0 * s.W + w0;
          for (int64_t h = h0; h < h1; h += s.dil_h)
            for (int64_t w = w0; w < w1; w += s.dil_w) {
              const float v = xn[(h * s.W + w) * C + c + l];
              if (v > b || std::isnan(v)) b = v, bi = h * s.W + w;
            }
          y[r * C + c + l] = b;
          if (IND) ind[r * C + c + l] = bi;
        });
      }
    }
  });
}
#endif

template <typename T>
void max_pool2d_forward_nhwc(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (s.H * s.W <= std::numeric_limits<int32_t>::max()) {  // int32 index lanes
      ind ? forward_nhwc_avx512<true>(s, C, x, y, ind) : forward_nhwc_avx512<false>(s, C, x, y, ind);
      return;
    }
  }
#endif
  using V = Vec<T>;
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;  // index lanes as wide as the values
  typedef I IV __attribute__((vector_size(kVecBytes)));
  const int64_t HW = s.H * s.W, OHW = s.OH * s.OW, C_vec = HW <= std::numeric_limits<I>::max() ? C : 0;
  const int64_t grain = std::max<int64_t>(1, kGrain / (C * s.kh * s.kw + 1));
  at::parallel_for(0, s.NC / C * OHW, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // output pixel (n, oh, ow): C channels
      const int64_t n = r / OHW, oh = r % OHW / s.OW, ow = r % s.OW;
      const auto [h0, h1] = rows_of(s, oh);
      const auto [w0, w1] = cols_of(s, ow);
      const T* xn = x + n * HW * C;
      int64_t c = 0;
      for (; c + V::size <= C_vec; c += V::size) {  // V::size channels at once
        typename V::type best = V::broadcast(-std::numeric_limits<T>::infinity());
        IV best_i = IV{} + I(h0 * s.W + w0);
        for (int64_t h = h0; h < h1; h += s.dil_h)
          for (int64_t w = w0; w < w1; w += s.dil_w) {
            const I i = I(h * s.W + w);
            const typename V::type v = V::load(xn + i * C + c);
            const auto take = (v > best) | (v != v);  // (v > max || isnan(v))
            best = take ? v : best;
            best_i = take ? IV{} + i : best_i;
          }
        V::store(y + r * C + c, best);
        if (ind)
          for (int l = 0; l < V::size; ++l) ind[r * C + c + l] = best_i[l];
      }
      for (; c < C; ++c) {  // the remaining channels one by one
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_i = h0 * s.W + w0;
        for (int64_t h = h0; h < h1; h += s.dil_h)
          for (int64_t w = w0; w < w1; w += s.dil_w) {
            const T v = xn[(h * s.W + w) * C + c];
            if (v > best || std::isnan(v)) {
              best = v;
              best_i = h * s.W + w;
            }
          }
        y[r * C + c] = best;
        if (ind) ind[r * C + c] = best_i;
      }
    }
  });
}

template <typename T>
bool max_pool2d_backward(const MaxPool2dShape& s, const T* gy, const int64_t* ind, T* gx) {
  const int64_t HW = s.H * s.W, OHW = s.OH * s.OW;
  std::atomic<bool> ok{true};
  at::parallel_for(0, s.NC, std::max<int64_t>(1, kGrain / (HW + OHW)), [&](int64_t p0, int64_t p1) {
    bool good = true;
    for (int64_t p = p0; p < p1; ++p) {
      T* g = gx + p * HW;
      const T* gyp = gy + p * OHW;
      const int64_t* ip = ind + p * OHW;
      std::fill(g, g + HW, T(0));
      for (int64_t o = 0; o < OHW; ++o) {
        const int64_t i = ip[o];
        if (uint64_t(i) < uint64_t(HW)) g[i] += gyp[o];
        else good = false;
      }
    }
    if (!good) ok = false;
  });
  return ok;
}

#define CNNEXT_INSTANTIATE(T)                                                                  \
  template void max_pool2d_forward<T>(const MaxPool2dShape&, const T*, T*, int64_t*);          \
  template void max_pool2d_forward_nhwc<T>(const MaxPool2dShape&, int64_t, const T*, T*, int64_t*); \
  template bool max_pool2d_backward<T>(const MaxPool2dShape&, const T*, const int64_t*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
