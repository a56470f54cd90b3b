// max_pool2d_avx512.h -- the AVX-512 pieces the float32 max_pool2d variants share (rows, columns,
// planes): tap loads of 16 output lanes at a stride, the per-call row plan, int32
// index lanes widened on the store, and the redo of lanes that ended at +inf (a NaN or a +inf in the
// window) with PyTorch's literal loop.  Only in builds with AVX-512 (the avx512 variant).
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

#include <vector>

#include "max_pool2d_window.h"
#include "simd.h"  // bit_range

// GCC 12's _mm512_min_ps / _mm512_max_ps pass _mm512_undefined_ps() as the unused merge source,
// which -Wmaybe-uninitialized reports once inlined; it is never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace cnnext::cpu {
namespace {

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

}  // namespace
}  // namespace cnnext::cpu
#endif  // __AVX512F__
