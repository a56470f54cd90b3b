// max_pool2d's columns variant (max_pool2d_variants.h), float32 with AVX-512, values only
// (inference).  Threads take output rows, as the rows variant does.
#include "max_pool2d_variants.h"

#if defined(__AVX512F__)
#include <ATen/Parallel.h>

#include "max_pool2d_avx512.h"

namespace cnnext::cpu {
namespace {

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

// The kernel width fixed at compile time where the family pools (2 and 3): measured 5-15% faster
// under -mtune=znver3.
template <int SW>
void forward_kw(const MaxPool2dShape& s, const float* x, float* y) {
  if (s.kw == 2) forward_values_avx512<SW, 2>(s, x, y);
  else if (s.kw == 3) forward_values_avx512<SW, 3>(s, x, y);
  else forward_values_avx512<SW, 0>(s, x, y);
}

}  // namespace

void max_pool2d_variants::columns_forward(const MaxPool2dShape& s, const float* x, float* y, int64_t*) {
  if (s.stride_w == 1) forward_kw<1>(s, x, y);
  else if (s.stride_w == 2) forward_kw<2>(s, x, y);
  else forward_kw<0>(s, x, y);
}

}  // namespace cnnext::cpu
#endif  // __AVX512F__
