// max_pool2d on the CPU.  x: (NC, H, W) planes; y, ind: (NC, OH, OW); contiguous.
//
//   y[p, oh, ow]   = max over the window rows h = oh*sh - ph + i*dh, columns w = ow*sw - pw + j*dw
//                    (taps outside the input skipped)
//   ind[p, oh, ow] = h*W + w of that max. The window is scanned row by row and a tap replaces the
//                    running max when (v > max || isnan(v)), PyTorch's rule: the first max wins
//                    ties, the last NaN wins over everything.
//
// Forward: threads take output rows (p, oh). Within a row, the columns whose whole window lies
// inside the input ("interior") are done 16 outputs at a time with AVX-512: lane l holds output
// ow + l, and each tap (i, j) loads x[h, c + l*sw] for all lanes at once -- a plain load for
// stride 1, two loads and a two-source permute (vpermt2ps, even elements) for stride 2, a
// gather otherwise -- then one compare-and-blend updates the 16 running maxima and their
// indices. The columns at the padded edges (and every column of float64, or builds without
// AVX-512) go through the scalar loop, which is the same scan one output at a time.
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

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace cnnext::cpu {
namespace {

// One output's window scan: PyTorch's loop (the first valid tap is the initial index).
template <typename T>
inline void pool_one(const MaxPool2dShape& s, const T* xp, int64_t h0, int64_t h1, int64_t ow, T* y,
                     int64_t* ind) {
  int64_t w0 = ow * s.stride_w - s.pad_w;
  const int64_t w1 = std::min(w0 + (s.kw - 1) * s.dil_w + 1, s.W);
  while (w0 < 0) w0 += s.dil_w;
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
  *ind = best_i;
}

#if defined(__AVX512F__)
// Bits [lo, hi) of a lane mask (empty when hi <= lo).
inline uint32_t bit_range(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0), hi = std::min<int64_t>(hi, 32);
  return hi <= lo ? 0u : uint32_t(((uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1));
}

// What one tap loads: the lanes whose column lies inside the input, and for stride 2 the elements
// p[2*lo .. 2*(hi-1)] spanning the lowest to the highest of those lanes.
struct Tap {
  __mmask16 lanes;
  uint32_t elems;
};

template <int SW>
inline Tap make_tap(__mmask16 lanes) {
  uint32_t e = lanes;
  if (SW == 2 && lanes) e = bit_range(2 * __builtin_ctz(lanes), 2 * (32 - __builtin_clz(uint32_t(lanes))) - 1);
  return {lanes, e};
}

// Lane l in t.lanes gets p[l * stride] (SW = 1 or 2: the stride; SW = 0: any stride, by gather);
// the other lanes get 0 or garbage, and no memory outside the wanted elements is touched.
template <int SW>
__attribute__((always_inline)) inline __m512 load_lanes(const float* p, Tap t, __m512i lane_off) {
  if constexpr (SW == 1) {
    return _mm512_maskz_loadu_ps(t.lanes, p);
  } else if constexpr (SW == 2) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(__mmask16(t.elems), p), even,
                                  _mm512_maskz_loadu_ps(__mmask16(t.elems >> 16), p + 16));
  } else {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), t.lanes, lane_off, p, 4);
  }
}

// Outputs ow .. ow+n-1 (n <= 16) of one row, lane l = output ow + l; rows [h0, h1) step dh
// already clipped; tap j of a window row loads with taps[EDGE ? j : 0].
// EDGE = false: every tap of every lane lies inside the input columns.
// EDGE = true: taps outside are masked off per lane, and a lane takes its first valid tap
// unconditionally (that is PyTorch's initial index; its value replaces the initial -inf).
template <int SW, bool EDGE>
__attribute__((always_inline)) inline void pool_block(const MaxPool2dShape& s, const float* xp, int64_t h0,
                                                      int64_t h1, int64_t ow, int64_t n, const Tap* taps,
                                                      __m512i lane_off, float* y, int64_t* ind) {
  const int64_t c0 = ow * s.stride_w - s.pad_w;  // first column of lane 0's window
  const __mmask16 all = __mmask16(bit_range(0, n));
  __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512i best_i = _mm512_add_epi32(_mm512_set1_epi32(int32_t(h0 * s.W + c0)), lane_off);
  __mmask16 seen = EDGE ? __mmask16(0) : all;
  for (int64_t h = h0; h < h1; h += s.dil_h) {
    const float* row = xp + h * s.W;
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t c = c0 + j * s.dil_w;  // lane l reads column c + l*sw
      const Tap t = taps[EDGE ? j : 0];
      const __m512 v = load_lanes<SW>(row + c, t, lane_off);
      __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      if constexpr (EDGE) {
        take = (take | __mmask16(~seen)) & t.lanes;
        seen |= t.lanes;
      }
      best = _mm512_mask_mov_ps(best, take, v);
      best_i = _mm512_mask_mov_epi32(best_i, take, _mm512_add_epi32(_mm512_set1_epi32(int32_t(h * s.W + c)), lane_off));
    }
  }
  _mm512_mask_storeu_ps(y + ow, all, best);
  // widen the int32 indices to int64 (vector extensions: GCC 12's cvtepi32_epi64 warns spuriously)
  typedef int32_t i32x16 __attribute__((vector_size(64)));
  typedef int32_t i32x8 __attribute__((vector_size(32)));
  typedef int64_t i64x8 __attribute__((vector_size(64)));
  const i32x16 bi = i32x16(best_i);
  const i64x8 lo = __builtin_convertvector(i32x8(__builtin_shufflevector(bi, bi, 0, 1, 2, 3, 4, 5, 6, 7)), i64x8);
  const i64x8 hi = __builtin_convertvector(i32x8(__builtin_shufflevector(bi, bi, 8, 9, 10, 11, 12, 13, 14, 15)), i64x8);
  _mm512_mask_storeu_epi64(ind + ow, __mmask8(all & 0xff), __m512i(lo));
  _mm512_mask_storeu_epi64(ind + ow + 8, __mmask8(all >> 8), __m512i(hi));
}

constexpr int64_t kMaxTaps = 64;  // edge blocks of wider kernels take the scalar loop

// One output row in blocks of 16 lanes; a last partial block is shifted left to overlap the
// previous one (recomputing a few outputs) rather than run short. Blocks inside the interior
// columns [a, b) (whole window inside the input) skip the per-lane edge masks.
template <int SW>
void pool_row_avx512(const MaxPool2dShape& s, const float* xp, int64_t h0, int64_t h1, float* y, int64_t* ind) {
  const int64_t sw = SW ? SW : s.stride_w;
  const __m512i lane_off = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(int32_t(sw)));
  const int64_t span = (s.kw - 1) * s.dil_w + 1;
  const int64_t a = (s.pad_w + sw - 1) / sw;  // first ow with ow*sw - pw >= 0
  const int64_t b = s.W + s.pad_w - span >= 0 ? (s.W + s.pad_w - span) / sw + 1 : 0;  // ow*sw - pw + span <= W below
  const int64_t n = std::min<int64_t>(16, s.OW);
  const Tap inner = make_tap<SW>(__mmask16(bit_range(0, n)));
  Tap taps[kMaxTaps];
  for (int64_t ow = 0;; ow += 16) {
    ow = std::min(ow, s.OW - n);
    if (ow >= a && ow + n <= b) {
      pool_block<SW, false>(s, xp, h0, h1, ow, n, &inner, lane_off, y, ind);
    } else if (s.kw <= kMaxTaps) {
      for (int64_t j = 0; j < s.kw; ++j) {  // lanes l < n with 0 <= c + l*sw < W
        const int64_t c = ow * sw - s.pad_w + j * s.dil_w;
        const int64_t lo = c < 0 ? (-c + sw - 1) / sw : 0, hi = c < s.W ? (s.W - 1 - c) / sw + 1 : 0;
        taps[j] = make_tap<SW>(__mmask16(bit_range(lo, std::min(hi, n))));
      }
      pool_block<SW, true>(s, xp, h0, h1, ow, n, taps, lane_off, y, ind);
    } else {
      for (int64_t o = ow; o < ow + n; ++o) pool_one(s, xp, h0, h1, o, y + o, ind + o);
    }
    if (ow + n >= s.OW) break;
  }
}
#endif

// Output row oh of plane xp.
template <typename T>
void pool_row(const MaxPool2dShape& s, const T* xp, int64_t oh, T* y, int64_t* ind) {
  int64_t h0 = oh * s.stride_h - s.pad_h;
  const int64_t h1 = std::min(h0 + (s.kh - 1) * s.dil_h + 1, s.H);
  while (h0 < 0) h0 += s.dil_h;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    // lanes hold int32 indices and column offsets
    if (s.H * s.W <= std::numeric_limits<int32_t>::max() && 16 * s.stride_w <= std::numeric_limits<int32_t>::max()) {
      if (s.stride_w == 1) pool_row_avx512<1>(s, xp, h0, h1, y, ind);
      else if (s.stride_w == 2) pool_row_avx512<2>(s, xp, h0, h1, y, ind);
      else pool_row_avx512<0>(s, xp, h0, h1, y, ind);
      return;
    }
  }
#endif
  for (int64_t ow = 0; ow < s.OW; ++ow) pool_one(s, xp, h0, h1, ow, y + ow, ind + ow);
}

}  // namespace

template <typename T>
void max_pool2d_forward(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind) {
  const int64_t rows = s.NC * s.OH, grain = std::max<int64_t>(1, 16384 / (s.OW * s.kh * s.kw + 1));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / s.OH, oh = r % s.OH;
      pool_row(s, x + p * s.H * s.W, oh, y + r * s.OW, ind + r * s.OW);
    }
  });
}

template <typename T>
bool max_pool2d_backward(const MaxPool2dShape& s, const T* gy, const int64_t* ind, T* gx) {
  const int64_t HW = s.H * s.W, OHW = s.OH * s.OW;
  std::atomic<bool> ok{true};
  at::parallel_for(0, s.NC, std::max<int64_t>(1, 32768 / (HW + 2 * OHW)), [&](int64_t p0, int64_t p1) {
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
  template bool max_pool2d_backward<T>(const MaxPool2dShape&, const T*, const int64_t*, T*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
