// max_pool2d's scalar variant (max_pool2d_variants.h): PyTorch's loop, one output at a time, threads
// over output rows.  The reference the vector variants are checked against, and what float64 and
// the builds without AVX-512 run.
#include <ATen/Parallel.h>

#include "max_pool2d_variants.h"
#include "max_pool2d_window.h"

namespace cnnext::cpu::max_pool2d_variants {

template <typename T>
void scalar_forward(const MaxPool2dShape& s, const T* x, T* y, int64_t* ind) {
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

template void scalar_forward<float>(const MaxPool2dShape&, const float*, float*, int64_t*);
template void scalar_forward<double>(const MaxPool2dShape&, const double*, double*, int64_t*);

}  // namespace cnnext::cpu::max_pool2d_variants
