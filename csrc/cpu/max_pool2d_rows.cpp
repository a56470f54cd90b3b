// max_pool2d's rows variant (max_pool2d_variants.h), float32 with AVX-512: threads take output rows
// (p, oh); a row is done 16 outputs at a time, lane l holding output ow + l (pool_block). Each tap
// (i, j) loads x[h, c + l*sw] for all lanes at once -- one load for stride 1, two loads and a
// two-source permute (vpermt2ps, even elements) for stride 2, a gather otherwise -- and updates a
// running max and, where the tap is larger, the int32 index (widened to int64 on the store). Which
// lanes each tap may load (its column inside the input) and each lane's initial index are the same
// for every row: they are planned once per call (RowPlan), so the padded edges cost no more than
// the interior.  With ind == nullptr the index updates are compiled out.
#include "max_pool2d_variants.h"

#if defined(__AVX512F__)
#include <ATen/Parallel.h>

#include "max_pool2d_avx512.h"

namespace cnnext::cpu {
namespace {

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
// CNN family; values only, see forward_kw); KW = 0: s.kw at run time.
// spill: a row shorter than 16 outputs may store all 16
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

// Without indices, the kernel width fixed at compile time where the family pools (2 and 3), so
// that a row's taps unroll: measured 10-40% faster under -mtune=znver3 (no faster under generic).
// With indices it measured no faster under either tuning: the run-time width only.
template <int SW, bool IND>
void forward_kw(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind) {
  if constexpr (!IND) {
    if (s.kw == 2) return forward_avx512<SW, false, 2>(s, x, y, ind);
    if (s.kw == 3) return forward_avx512<SW, false, 3>(s, x, y, ind);
  }
  forward_avx512<SW, IND, 0>(s, x, y, ind);
}

template <int SW>
void forward_sw(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind) {
  ind ? forward_kw<SW, true>(s, x, y, ind) : forward_kw<SW, false>(s, x, y, ind);
}

}  // namespace

void max_pool2d_variants::rows_forward(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind) {
  if (s.stride_w == 1) forward_sw<1>(s, x, y, ind);
  else if (s.stride_w == 2) forward_sw<2>(s, x, y, ind);
  else forward_sw<0>(s, x, y, ind);
}

}  // namespace cnnext::cpu
#endif  // __AVX512F__
