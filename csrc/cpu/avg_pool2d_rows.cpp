// The rows variant of average pooling (avg_pool2d_variants.h), any windows:
//   forward   (threads: output rows)  vertical: add the input rows h0..h1-1 with vector adds
//             (one or two rows are read in place); horizontal: sum each column window
//             (WindowSums: one masked vector add per input column into the outputs that hold it).
//   backward  (threads: input rows, a gather, no scatter)  vertical: g[ow] = sum over the output
//             rows oh whose window holds input row h of gy[oh, ow] * scale[oh, ow] (vector FMAs);
//             horizontal: gx[h, w] = sum of g over the output columns whose window holds w.
//             An input row with the same output rows as the row above is a copy of it.
// Leading 2-wide, stride-2 column windows ([2ow, 2ow+2): LeNet, DenseNet) take the vector path of
// avg_pool2d_lanes.h.  Rows shorter than a vector (LeNet's 28, DenseNet's 24 and 12) end in one
// masked vector op.
#include <ATen/Parallel.h>

#include <cstring>
#include <vector>

#include "avg_pool2d_lanes.h"
#include "avg_pool2d_variants.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace cnnext::cpu {
namespace {

// Row operations over n elements, full vectors then one masked vector:
//   add_rows: out = a + b;  add_row: out += a;  mul_row: out = a * b;  fma_row: out += a * b
// kPadded: `out` is a scratch row padded to whole vectors, so the tail is stored whole: a load
// soon after a masked store of the same bytes cannot take the value from the store buffer and
// stalls.
#define CNNEXT_ROW_OP(name, params, expr)                                     \
  template <bool kPadded = false, typename T>                                 \
  inline void name params {                                                   \
    using V = Vec<T>;                                                         \
    int64_t i = 0;                                                            \
    for (; i + V::size <= n; i += V::size) {                                  \
      const auto ld = [&](const T* p) { return V::load(p + i); };            \
      V::store(out + i, expr);                                                \
    }                                                                         \
    if (i < n) {                                                              \
      const int64_t m = n - i;                                                \
      const auto ld = [&](const T* p) { return load_n(p + i, m); };          \
      if constexpr (kPadded) V::store(out + i, expr);                         \
      else store_n(out + i, expr, m);                                         \
    }                                                                         \
  }
CNNEXT_ROW_OP(add_rows, (int64_t n, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out),
              ld(a) + ld(b))
CNNEXT_ROW_OP(add_row, (int64_t n, const T* __restrict__ a, T* __restrict__ out), ld(out) + ld(a))
CNNEXT_ROW_OP(mul_row, (int64_t n, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out),
              ld(a) * ld(b))
CNNEXT_ROW_OP(fma_row, (int64_t n, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out),
              ld(out) + ld(a) * ld(b))
#undef CNNEXT_ROW_OP

// out[o] = scale[o] * sum_{i in [lo[o], hi[o])} in[i] (+ in2[i]) for o in [o0, o1), N outputs at a
// time: for every input i that a chunk's windows touch, one masked vector add of in[i] into the
// lanes whose window holds i (lo and hi nondecreasing, as all pooling windows are).
template <typename T>
class WindowSums {
 public:
  WindowSums(const std::vector<int64_t>& lo, const std::vector<int64_t>& hi, int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o += N) {
      const int64_t m = std::min<int64_t>(N, o1 - o), i0 = lo[o], i1 = std::max(i0, hi[o + m - 1]);
      chunks_.push_back({o, m, i0, i1, masks_.size()});
      for (int64_t i = i0; i < i1; ++i) {
        uint32_t mask = 0;
        for (int64_t j = 0; j < m; ++j) mask |= uint32_t(lo[o + j] <= i && i < hi[o + j]) << j;
        masks_.push_back(mask);
      }
    }
  }
  template <bool kTwo>
  void apply(const T* __restrict__ in, const T* __restrict__ in2, const T* __restrict__ scale,
             T* __restrict__ out) const {
    for (const Chunk& c : chunks_) {
      typename V::type a0{}, a1{};  // two chains of dependent adds: even and odd inputs
      const uint32_t* mask = masks_.data() + c.mask0;
      int64_t i = c.i0;
      for (; i + 1 < c.i1; i += 2, mask += 2) {
        a0 = masked_add(a0, mask[0], kTwo ? in[i] + in2[i] : in[i]);
        a1 = masked_add(a1, mask[1], kTwo ? in[i + 1] + in2[i + 1] : in[i + 1]);
      }
      if (i < c.i1) a0 = masked_add(a0, mask[0], kTwo ? in[i] + in2[i] : in[i]);
      typename V::type acc = a0 + a1;
      if (scale) acc *= load_n(scale + c.o, c.m);
      store_n(out + c.o, acc, c.m);
    }
  }

 private:
  using V = Vec<T>;
  static constexpr int N = V::size;
  // acc + v in the lanes of mask
  static typename V::type masked_add(typename V::type acc, uint32_t mask, T v) {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4)
      return (typename V::type)_mm512_mask_add_ps((__m512)acc, __mmask16(mask), (__m512)acc, _mm512_set1_ps(v));
    else
      return (typename V::type)_mm512_mask_add_pd((__m512d)acc, __mmask8(mask), (__m512d)acc, _mm512_set1_pd(v));
#else
    for (int j = 0; j < N; ++j)
      if (mask >> j & 1) acc[j] += v;
    return acc;
#endif
  }
  struct Chunk {
    int64_t o, m, i0, i1;
    size_t mask0;
  };
  std::vector<Chunk> chunks_;
  std::vector<uint32_t> masks_;
};

template <typename T>
int64_t padded_size(int64_t n) { return (n + Vec<T>::size - 1) / Vec<T>::size * Vec<T>::size; }

// Inverse of monotone windows [lo[o], hi[o]) over n inputs: input i lies in the windows
// [first[i], last[i]) (first = #windows ending at or before i, last = #windows starting at or before i).
void invert_windows(const std::vector<int64_t>& lo, const std::vector<int64_t>& hi, int64_t n,
                    std::vector<int64_t>& first, std::vector<int64_t>& last) {
  const int64_t m = int64_t(lo.size());
  first.assign(n, 0);
  last.assign(n, 0);
  int64_t f = 0, l = 0;
  for (int64_t i = 0; i < n; ++i) {
    while (f < m && hi[f] <= i) ++f;
    while (l < m && lo[l] <= i) ++l;
    first[i] = f;
    last[i] = std::max(f, l);
  }
}

// Output rows [r0, r1), any windows.
template <typename T>
void forward_rows(const T* x, T* y, const AvgPoolPlan<T>& P, int64_t npair, const WindowSums<T>& columns,
                  int64_t r0, int64_t r1) {
  const int64_t H = P.H, W = P.W, OH = P.OH, OW = P.OW;
  std::vector<T> buf(padded_size<T>(W));
  int64_t p = r0 / OH, oh = r0 % OH;
  for (int64_t r = r0; r < r1; ++r, ++oh) {
    if (oh == OH) oh = 0, ++p;
    const int64_t a = P.h0[oh], b = P.h1[oh];
    const T* sc = P.scale.data() + oh * OW;
    T* yr = y + r * OW;
    if (a == b) {
      std::fill(yr, yr + OW, T(0));
      continue;
    }
    // vertical: rows a (and a+1) in place, or their sum in buf
    const T* ra = x + (p * H + a) * W;
    const T* rb = b - a == 2 ? ra + W : nullptr;
    if (b - a > 2) {
      add_rows<true>(W, ra, ra + W, buf.data());
      for (int64_t h = a + 2; h < b; ++h) add_row<true>(W, ra + (h - a) * W, buf.data());
      ra = buf.data();
    }
    // horizontal
    if (rb) pair_sums<true>(ra, rb, sc, yr, npair);
    else pair_sums<false>(ra, rb, sc, yr, npair);
    if (rb) columns.template apply<true>(ra, rb, sc, yr);
    else columns.template apply<false>(ra, rb, sc, yr);
  }
}

// Input rows [r0, r1), any windows.
template <typename T>
void backward_rows(const T* gy, T* gx, const AvgPoolPlan<T>& P, const std::vector<int64_t>& oh_lo,
                   const std::vector<int64_t>& oh_hi, int64_t npair, const WindowSums<T>& columns, int64_t r0, int64_t r1) {
  const int64_t H = P.H, W = P.W, OH = P.OH, OW = P.OW;
  std::vector<T> g(padded_size<T>(OW));
  int64_t p = r0 / H, h = r0 % H;
  for (int64_t r = r0; r < r1; ++r, ++h) {
    if (h == H) h = 0, ++p;
    const int64_t a = oh_lo[h], b = oh_hi[h];
    T* gxr = gx + r * W;
    if (a == b) {
      std::fill(gxr, gxr + W, T(0));
      continue;
    }
    if (r > r0 && h > 0 && oh_lo[h - 1] == a && oh_hi[h - 1] == b) {  // same windows as the row above
      std::memcpy(gxr, gxr - W, W * sizeof(T));
      continue;
    }
    // vertical: g = sum_{oh in [a, b)} gy[p, oh, :] * scale[oh, :]
    const T* gyp = gy + p * OH * OW;
    mul_row<true>(OW, gyp + a * OW, P.scale.data() + a * OW, g.data());
    for (int64_t oh = a + 1; oh < b; ++oh) fma_row<true>(OW, gyp + oh * OW, P.scale.data() + oh * OW, g.data());
    // horizontal
    duplicate_pairs(g.data(), gxr, npair);
    columns.template apply<false>(g.data(), nullptr, nullptr, gxr);
  }
}

}  // namespace

template <typename T>
void avg_pool2d_variants::rows_forward(const AvgPoolPlan<T>& P, int64_t planes, const T* x, T* y) {
  const int64_t W = P.W, OH = P.OH, OW = P.OW;
  const int64_t npair = std::min(leading_pairs(P.w0, P.w1), OW);
  const WindowSums<T> columns(P.w0, P.w1, npair, OW);  // the columns after the leading pairs
  int64_t kmax = 1;
  for (int64_t oh = 0; oh < OH; ++oh) kmax = std::max(kmax, P.h1[oh] - P.h0[oh]);
  const int64_t grain = std::max<int64_t>(1, 32768 / (kmax * W + OW));
  at::parallel_for(0, planes * OH, grain,
                   [&](int64_t r0, int64_t r1) { forward_rows(x, y, P, npair, columns, r0, r1); });
}

template <typename T>
void avg_pool2d_variants::rows_backward(const AvgPoolPlan<T>& P, int64_t planes, const T* gy, T* gx) {
  const int64_t H = P.H, W = P.W, OW = P.OW;
  std::vector<int64_t> oh_lo, oh_hi, ow_lo, ow_hi;
  invert_windows(P.h0, P.h1, H, oh_lo, oh_hi);
  invert_windows(P.w0, P.w1, W, ow_lo, ow_hi);
  // leading columns 2i, 2i+1 that lie in output column i only
  int64_t npair = 0;
  while (npair < OW && 2 * npair + 1 < W && ow_lo[2 * npair] == npair && ow_hi[2 * npair] == npair + 1 &&
         ow_lo[2 * npair + 1] == npair && ow_hi[2 * npair + 1] == npair + 1)
    ++npair;
  const WindowSums<T> columns(ow_lo, ow_hi, 2 * npair, W);  // input column w sums g over [ow_lo[w], ow_hi[w])
  int64_t kmax = 1;
  for (int64_t h = 0; h < H; ++h) kmax = std::max(kmax, oh_hi[h] - oh_lo[h]);
  const int64_t grain = std::max<int64_t>(1, 32768 / (kmax * OW + W));
  at::parallel_for(0, planes * H, grain, [&](int64_t r0, int64_t r1) {
    backward_rows(gy, gx, P, oh_lo, oh_hi, npair, columns, r0, r1);
  });
}

CNNEXT_AVG_POOL2D_VARIANT(avg_pool2d_variants::rows_forward, avg_pool2d_variants::rows_backward)

}  // namespace cnnext::cpu
