// max_pool2d's planes variant (max_pool2d_variants.h), float32 with AVX-512: threads take planes.
#include "max_pool2d_variants.h"

#if defined(__AVX512F__)
#include <ATen/Parallel.h>

#include "max_pool2d_avx512.h"

namespace cnnext::cpu {
namespace {

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

}  // namespace

void max_pool2d_variants::planes_forward(const MaxPool2dShape& s, const float* x, float* y, int64_t* ind) {
  ind ? forward_planes_avx512<true>(s, x, y, ind) : forward_planes_avx512<false>(s, x, y, ind);
}

}  // namespace cnnext::cpu
#endif  // __AVX512F__
