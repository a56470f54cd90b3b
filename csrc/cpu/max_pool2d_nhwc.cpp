// max_pool2d's channels_last variant (max_pool2d_variants.h): x (N, H, W, C), y and ind
// (N, OH, OW, C).  Threads take output pixels (n, oh, ow); a vec.h vector holds consecutive
// channels (the last one partial, with masked loads and stores: simd.h), so every tap is one
// contiguous load.  As in the float32 AVX-512 variants, the dependency chain keeps only the running
// max, of the tap with a NaN mapped to +inf; the index takes the tap where it is strictly larger
// (the first of equal maxima, PyTorch's rule); channels whose max ends at +inf (a NaN or a +inf in
// the window) are redone by PyTorch's literal loop, where the last NaN wins.  One source for every
// ISA (it replaced a float32 AVX-512 copy of itself that measured 0-15% faster on avx512 and that
// the avx2 and baseline builds did not have).
#include <ATen/Parallel.h>

#include <type_traits>

#include "max_pool2d_variants.h"
#include "max_pool2d_window.h"
#include "simd.h"

namespace cnnext::cpu::max_pool2d_variants {
namespace {
// int64 vectors of `bytes` bytes, and their element-aligned may_alias view for stores
template <int bytes>
struct Int64Vec {
  typedef int64_t type __attribute__((vector_size(bytes)));
  typedef int64_t unaligned __attribute__((vector_size(bytes), aligned(8), may_alias));
};
}  // namespace

template <typename T>
void channels_forward_nhwc(const MaxPool2dShape& s, int64_t C, const T* x, T* y, int64_t* ind) {
  using V = Vec<T>;
  using VT = typename V::type;
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;  // index lanes as wide as the values
  typedef I IV __attribute__((vector_size(kVecBytes)));
  // the indices widened to int64 (a vector twice as wide for float), stored through a may_alias view
  using LV = typename Int64Vec<kVecBytes * 8 / sizeof(I)>::type;
  using LVu = typename Int64Vec<kVecBytes * 8 / sizeof(I)>::unaligned;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const int64_t HW = s.H * s.W, OHW = s.OH * s.OW;
  const bool lanes = HW <= std::numeric_limits<I>::max();  // else all channels by PyTorch's loop
  const int64_t grain = std::max<int64_t>(1, kGrain / (C * s.kh * s.kw + 1));
  at::parallel_for(0, s.NC / C * OHW, grain, [&](int64_t r0, int64_t r1) {
    const VT inf = V::broadcast(kInf), neg_inf = V::broadcast(-kInf);
    for (int64_t r = r0; r < r1; ++r) {  // output pixel (n, oh, ow): C channels
      const int64_t n = r / OHW, oh = r % OHW / s.OW, ow = r % s.OW;
      const auto [h0, h1] = rows_of(s, oh);
      const auto [w0, w1] = cols_of(s, ow);
      const T* xn = x + n * HW * C;
      auto literal = [&](int64_t c) {  // PyTorch's loop for channel c
        pool_one(s, xn + c, h0, h1, ow, y + r * C + c, ind ? ind + r * C + c : nullptr, C);
      };
      if (!lanes) {
        for (int64_t c = 0; c < C; ++c) literal(c);
        continue;
      }
      for (int64_t c = 0; c < C; c += V::size) {  // channels [c, c + len)
        const int64_t len = std::min<int64_t>(V::size, C - c);
        VT best = neg_inf;
        IV best_i = IV{} + I(h0 * s.W + w0);
        // the window's taps; FULL, IND fixed at compile time keep the loop branch-free
        auto scan = [&](auto full, auto with_ind) {
          for (int64_t h = h0; h < h1; h += s.dil_h)
            for (int64_t w = w0; w < w1; w += s.dil_w) {
              const I i = I(h * s.W + w);
              const T* p = xn + i * C + c;
              const VT v = full ? V::load(p) : load_part<T>(p, len, neg_inf);
              if constexpr (with_ind) best_i = v > best ? IV{} + i : best_i;
              const VT vi = v < inf ? v : inf;  // NaN -> +inf
              best = vi > best ? vi : best;
            }
        };
        using Yes = std::true_type;
        using No = std::false_type;
        if (len == V::size) ind ? scan(Yes{}, Yes{}) : scan(Yes{}, No{});
        else ind ? scan(No{}, Yes{}) : scan(No{}, No{});
        if (len == V::size) V::store(y + r * C + c, best);
        else store_part<T>(y + r * C + c, best, len);
        if (ind) {
          const LV wide = __builtin_convertvector(best_i, LV);
          if (len == V::size) *reinterpret_cast<LVu*>(ind + r * C + c) = wide;
          else
            for (int64_t l = 0; l < len; ++l) ind[r * C + c + l] = wide[l];
        }
        if (any_lane(best == inf))  // a NaN or a +inf in the window: PyTorch's loop for those channels
          for (int64_t l = 0; l < len; ++l)
            if (best[l] == kInf) literal(c + l);
      }
    }
  });
}

template void channels_forward_nhwc<float>(const MaxPool2dShape&, int64_t, const float*, float*, int64_t*);
template void channels_forward_nhwc<double>(const MaxPool2dShape&, int64_t, const double*, double*, int64_t*);

}  // namespace cnnext::cpu::max_pool2d_variants
