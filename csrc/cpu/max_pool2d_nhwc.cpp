// max_pool2d's channels_last variants (max_pool2d_variants.h): x (N, H, W, C), y and ind
// (N, OH, OW, C).  Threads take output pixels (n, oh, ow) and a vector holds consecutive channels,
// so every tap is one contiguous load and the same compare-and-select: channels (vec.h, any ISA;
// the channels left over after the last full vector one by one) and channels_avx512 (float32, 16
// channels per vector with a masked last vector).
#include <ATen/Parallel.h>

#include <type_traits>

#include "max_pool2d_variants.h"
#include "max_pool2d_window.h"
#include "vec.h"
#if defined(__AVX512F__)
#include "max_pool2d_avx512.h"
#endif

namespace cnnext::cpu::max_pool2d_variants {

template <typename T>
void channels_forward_nhwc(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind) {
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

template void channels_forward_nhwc<float>(const MaxPool2dShape&, int64_t, const float*, float*, int64_t*);
template void channels_forward_nhwc<double>(const MaxPool2dShape&, int64_t, const double*, double*, int64_t*);

#if defined(__AVX512F__)
namespace {
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
}  // namespace

void channels_avx512_forward_nhwc(const MaxPool2dShape& s, int64_t C, const float* x, float* y, int64_t* ind) {
  ind ? forward_nhwc_avx512<true>(s, C, x, y, ind) : forward_nhwc_avx512<false>(s, C, x, y, ind);
}
#endif

}  // namespace cnnext::cpu::max_pool2d_variants
