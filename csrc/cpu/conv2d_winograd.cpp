// conv2d's Winograd variants (conv2d_variants.h): F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016) for 3x3 convs of stride 1 and dilation 1, one group.
//
// Every 2x2 tile of the output is  Y = A^T [ sum_c (G g_kc G^T) .* (B^T d_c B) ] A,  d_c the 4x4 input patch
// under the tile (rows 2i-p.., cols 2j-p..), g_kc the 3x3 kernel:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// so the channel sum is 16 GEMMs (one per element xi of the 4x4 transformed tile) of K x C by C x tiles:
// 16 * K * C multiply-adds per tile of 4 outputs, against 9 * 4 for the direct algorithm (2.25x fewer).
//
//   winograd_forward         y = conv(x, w) + b
//   winograd_backward_input  gx = the forward of gy with the flipped, transposed kernel and padding 2 - p
//
// Steps (one call):
//   1. weights: U_xi = (G g G^T)_xi, packed per xi as the GEMM's A (conv2d_gemm.h pack_a: MR-row panels)
//   2. input: each padded plane split into its even and odd columns (XE, XO: rows of Wh >= tw + 1), so that
//      the patch columns 2j, 2j+1, 2j+2, 2j+3 of consecutive tiles j are contiguous vectors XE[j], XO[j],
//      XE[j+1], XO[j+1]
//   3. per block of 64 tiles (flattened (n, i, j); the parallel loop), per block of kWc channels:
//      V_xi = (B^T d B)_xi, vectors over the tiles of an image row, written straight into the B panels of
//      16 GEMMs; then M_xi (+)= U_xi V_xi, each block's sum into fresh accumulators that are then added
//      (a chain of kWc FMAs, not C: F(2x2)'s output transform sums 9 such values, and one long chain
//      doubled its error against float64 at C = 256)
//   4. Y = A^T M A per tile, + bias, interleaved back to output rows 2i, 2i+1.
// float32 only (float64 keeps the direct im2col GEMM: Winograd is less accurate).  The error against
// torch's float64 result, relative to torch's own float32 error, is measured in tests/test_conv2d.py.
#include <cstring>
#include <type_traits>
#include <vector>

#include "conv2d_gemm.h"
#include "conv2d_variants.h"

namespace cnnext::cpu::conv2d_variants {
namespace {

constexpr int64_t kWc = 64;  // channels per fresh partial sum (and per transform-and-GEMM step)

// The conv the core computes: x (N, C, H, W) -> y (N, K, P, Q), 3x3, stride 1, padding (ph, pw).
struct WinoShape {
  int64_t N, C, H, W, K, P, Q, ph, pw;
  int64_t th, tw;  // tiles per image: ceil(P/2) x ceil(Q/2)
  int64_t Hp, Wh;  // split planes: 2 th + 2 rows, each Wh >= tw + 1 columns (even or odd)
  int64_t tiles() const { return N * th * tw; }
};

WinoShape wino_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t ph, int64_t pw) {
  WinoShape g{N, C, H, W, K, H + 2 * ph - 2, W + 2 * pw - 2, ph, pw, 0, 0, 0, 0};
  g.th = (g.P + 1) / 2, g.tw = (g.Q + 1) / 2;
  g.Hp = 2 * g.th + 2, g.Wh = g.tw + 1;
  return g;
}

// Step 2: XE/XO[(n C + c) Hp + r][j] = xpad[r][2j] / xpad[r][2j + 1], xpad[r][s] = x[r - ph][s - pw] or 0.
template <typename T>
void split_planes(const WinoShape& g, const T* x, T* xe, T* xo) {
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* src = x + p * g.H * g.W;
      for (int64_t r = 0; r < g.Hp; ++r) {
        T* e = xe + (p * g.Hp + r) * g.Wh;
        T* o = xo + (p * g.Hp + r) * g.Wh;
        const int64_t h = r - g.ph;
        if (h < 0 || h >= g.H) {
          std::fill(e, e + g.Wh, T(0)), std::fill(o, o + g.Wh, T(0));
          continue;
        }
        const T* row = src + h * g.W;
        auto scalar = [&](int64_t j) {
          const int64_t w0 = 2 * j - g.pw, w1 = w0 + 1;
          e[j] = w0 >= 0 && w0 < g.W ? row[w0] : T(0);
          o[j] = w1 >= 0 && w1 < g.W ? row[w1] : T(0);
        };
        int64_t j = 0;
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float>) {
          // the columns j whose 32 source values row[2j - pw ..] all lie in the row: two loads, the even and
          // odd lanes of the pair picked by vpermt2ps
          const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
          const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
          for (; j < (g.pw + 1) / 2; ++j) scalar(j);
          for (; j + 16 <= g.Wh && 2 * j - g.pw + 32 <= g.W; j += 16) {
            const __m512 a = _mm512_loadu_ps(row + 2 * j - g.pw), b = _mm512_loadu_ps(row + 2 * j - g.pw + 16);
            _mm512_storeu_ps(e + j, _mm512_permutex2var_ps(a, ev, b));
            _mm512_storeu_ps(o + j, _mm512_permutex2var_ps(a, od, b));
          }
        }
#endif
        for (; j < g.Wh; ++j) scalar(j);
      }
    }
  });
}

// Step 1: U_xi[k][c] = (G g_kc G^T)_xi, written straight into gemm A panels (conv2d_gemm.h pack_a's layout:
// rows k, reduction c in blocks of KC) at Ap + xi * Mpad * C; rows K .. Mpad are zeros.
// g(k, c, r, s): the kernel tap the conv applies (the forward's w, or grad input's flipped transpose).
template <typename T, typename Tap>
void pack_weights(const WinoShape& g, Tap&& tap, T* Ap, int64_t Mpad) {
  const int64_t plane = Mpad * g.C;  // one xi's panels
  at::parallel_for(0, Mpad / MR, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t ir = p0 * MR; ir < p1 * MR; ir += MR)
      for (int64_t c = 0; c < g.C; ++c) {  // the panel's MR rows of channel c: MR adjacent values per xi
        const int64_t pc = c / KC * KC, kcb = std::min(KC, g.C - pc);
        T* d = Ap + pc * Mpad + ir * kcb + (c - pc) * MR;
        for (int64_t i = 0; i < MR; ++i) {
          const int64_t k = ir + i;
          if (k >= g.K) {
            for (int xi = 0; xi < 16; ++xi) d[xi * plane + i] = T(0);
            continue;
          }
          T t[4][3];  // G g
          for (int q = 0; q < 3; ++q) {
            const T g0 = tap(k, c, 0, q), g1 = tap(k, c, 1, q), g2 = tap(k, c, 2, q);
            t[0][q] = g0, t[1][q] = T(0.5) * (g0 + g1 + g2), t[2][q] = T(0.5) * (g0 - g1 + g2), t[3][q] = g2;
          }
          for (int a = 0; a < 4; ++a) {  // (G g) G^T
            const T g0 = t[a][0], g1 = t[a][1], g2 = t[a][2];
            T* e = d + 4 * a * plane + i;
            e[0] = g0, e[plane] = T(0.5) * (g0 + g1 + g2), e[2 * plane] = T(0.5) * (g0 - g1 + g2), e[3 * plane] = g2;
          }
        }
      }
  });
}

// The tiles t0 .. t0+nt of the flattened (n, i, j) order as runs inside one image row, cut where the
// column index jj = t - t0 crosses a multiple of the vector width (a chunk stays inside one half of a B
// panel): f(n, i, j, jj, len).
template <typename T, typename F>
void for_each_chunk(const WinoShape& g, int64_t t0, int64_t nt, F&& f) {
  constexpr int64_t VS = Vec<T>::size;
  int64_t t = t0;
  while (t < t0 + nt) {
    const int64_t row = t / g.tw, j = t % g.tw, jj = t - t0;
    const int64_t len = std::min({g.tw - j, t0 + nt - t, VS - jj % VS});
    f(row / g.th, row % g.th, j, jj, len);
    t += len;
  }
}

// Step 3a: V_xi for channels c0 .. c0+kc of the block's tiles, into the B panels Bx + xi * xs (panel jr
// at + jr * kc, [kc][NR]).
template <typename T>
void transform_input(const WinoShape& g, const T* xe, const T* xo, int64_t t0, int64_t nt, int64_t xs,
                     int64_t c0, int64_t kc, T* Bx) {
  using VT = typename Vec<T>::type;
  for_each_chunk<T>(g, t0, nt, [&](int64_t n, int64_t i, int64_t j, int64_t jj, int64_t len) {
    T* dst = Bx + (jj / NR<T>) * NR<T> * kc + jj % NR<T>;
    for (int64_t c = c0; c < c0 + kc; ++c) {
      const int64_t plane = ((n * g.C + c) * g.Hp + 2 * i) * g.Wh + j;
      VT u[4][4];
      for (int r = 0; r < 4; ++r) {
        const T *e = xe + plane + r * g.Wh, *o = xo + plane + r * g.Wh;
        const VT d0 = load_n<T>(e, len), d1 = load_n<T>(o, len), d2 = load_n<T>(e + 1, len), d3 = load_n<T>(o + 1, len);
        u[r][0] = d0 - d2, u[r][1] = d1 + d2, u[r][2] = d2 - d1, u[r][3] = d1 - d3;
      }
      T* d = dst + (c - c0) * NR<T>;
      for (int s = 0; s < 4; ++s) {
        store_n<T>(d + (0 + s) * xs, u[0][s] - u[2][s], len);
        store_n<T>(d + (4 + s) * xs, u[1][s] + u[2][s], len);
        store_n<T>(d + (8 + s) * xs, u[2][s] - u[1][s], len);
        store_n<T>(d + (12 + s) * xs, u[1][s] - u[3][s], len);
      }
    }
  });
}

// Step 3b: C[MR x NR] (ldc) = (add ? C : 0) + A[kc][MR] B[kc][NR], the sum in fresh accumulators.
template <typename T>
inline void micro_kernel_add(int64_t kc, const T* A, const T* B, T* C, int64_t ldc, bool add) {
  if (!add) return micro_kernel<T>(kc, A, B, C, ldc, false);
  alignas(64) T tile[MR * NR<T>];
  micro_kernel<T>(kc, A, B, tile, NR<T>, false);
  using V = Vec<T>;
  for (int64_t r = 0; r < MR; ++r)
    for (int64_t v = 0; v < NR<T>; v += V::size) V::store(C + r * ldc + v, V::load(C + r * ldc + v) + V::load(tile + r * NR<T> + v));
}

#if defined(__AVX512F__)
// AVX-512: conv2d_gemm.h's 8 x 32 float kernel, its fresh sums added to C in the registers
#define CNNEXT_TILE_ADD(i, C, ldc)                                                  \
  _mm512_storeu_ps(C + i * ldc, _mm512_add_ps(_mm512_loadu_ps(C + i * ldc), c##i##0)), \
      _mm512_storeu_ps(C + i * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(C + i * ldc + 16), c##i##1));
template <>
inline void micro_kernel_add<float>(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, bool add) {
  CNNEXT_TILE_8X32_OPEN(C, ldc, false)
  CNNEXT_TILE_8X32_FMA(A, B, kc)
  if (add) {
    CNNEXT_TILE_ROWS(CNNEXT_TILE_ADD, C, ldc)
  } else {
    CNNEXT_TILE_8X32_CLOSE(C, ldc)
  }
}
#undef CNNEXT_TILE_ADD
#endif

// C[Mpad x ncols] (row stride ldc, default ncols) (add ? += : =) A B over kc: the A panels of MR rows
// `astride` apart, the B panels of NR columns kc * NR apart.
template <typename T>
void gemm_panels(int64_t kc, int64_t Mpad, int64_t ncols, const T* A, int64_t astride, const T* B, T* C, bool add,
                 int64_t ldc = 0) {
  if (!ldc) ldc = ncols;
  for (int64_t ir = 0; ir < Mpad; ir += MR)
    for (int64_t jr = 0; jr < ncols; jr += NR<T>)
      micro_kernel_add<T>(kc, A + ir * astride, B + jr * kc, C + ir * ldc + jr, ldc, add);
}

// Step 4: y rows 2i, 2i+1 (cols 2j ..) of output channel k from the 16 M_xi of the block's tiles.
template <typename T>
inline void store_pair(T* row, typename Vec<T>::type a, typename Vec<T>::type b, int64_t n) {
  // row[2l] = a[l], row[2l + 1] = b[l] for 2l (+1) < n
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512 va = (__m512)a, vb = (__m512)b;
    const __m512 l = _mm512_permutex2var_ps(va, lo, vb), h = _mm512_permutex2var_ps(va, hi, vb);
    store_n<float>(row, (typename Vec<float>::type)l, std::min<int64_t>(n, 16));
    if (n > 16) store_n<float>(row + 16, (typename Vec<float>::type)h, n - 16);
    return;
  }
#endif
  for (int64_t l = 0; 2 * l < n; ++l) {
    row[2 * l] = a[l];
    if (2 * l + 1 < n) row[2 * l + 1] = b[l];
  }
}

template <typename T>
void transform_output(const WinoShape& g, const T* Cx, int64_t ldc, int64_t cs, int64_t t0, int64_t nt,
                      const T* bias, T* y) {
  using VT = typename Vec<T>::type;
  for_each_chunk<T>(g, t0, nt, [&](int64_t n, int64_t i, int64_t j, int64_t jj, int64_t len) {
    const int64_t ncols = std::min(2 * len, g.Q - 2 * j);
    for (int64_t k = 0; k < g.K; ++k) {
      const T* m = Cx + k * ldc + jj;
      VT t[2][4];
      for (int s = 0; s < 4; ++s) {
        const VT m0 = load_n<T>(m + (0 + s) * cs, len), m1 = load_n<T>(m + (4 + s) * cs, len), m2 = load_n<T>(m + (8 + s) * cs, len),
                 m3 = load_n<T>(m + (12 + s) * cs, len);
        t[0][s] = m0 + m1 + m2, t[1][s] = m1 - m2 - m3;
      }
      const VT bv = Vec<T>::broadcast(bias ? bias[k] : T(0));
      T* out = y + ((n * g.K + k) * g.P + 2 * i) * g.Q + 2 * j;
      for (int a = 0; a < 2 && 2 * i + a < g.P; ++a)
        store_pair<T>(out + a * g.Q, t[a][0] + t[a][1] + t[a][2] + bv, t[a][1] - t[a][2] - t[a][3] + bv, ncols);
    }
  });
}

// Steps 2-4 with the weights packed (Ap, Mpad rows per xi).
template <typename T>
void winograd_core(const WinoShape& g, const T* x, const T* Ap, int64_t Mpad, const T* bias, T* y) {
  Buf<T> xe(g.N * g.C * g.Hp * g.Wh), xo(g.N * g.C * g.Hp * g.Wh);
  split_planes<T>(g, x, xe.p, xo.p);
  // blocks of 64 tiles (two B panels), or of 32 where that shares the blocks more evenly among the threads
  const int64_t T_ = g.tiles(), th = at::get_num_threads();
  auto span = [&](int64_t nb) { return ceil_div(ceil_div(T_, nb), th) * nb; };  // tiles per thread, padded
  const int64_t nb = span(NR<T>) < span(2 * NR<T>) ? NR<T> : 2 * NR<T>, blocks = ceil_div(T_, nb);
  // the 16 xi buffers of B panels (xs apart) and of M (cs apart): a power-of-two stride would put the 16
  // vectors a transform reads or writes in one L1 set (more than its ways)
  const int64_t xs = kWc * nb + 16, cs = Mpad * nb + 16;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    Buf<T> Bx(16 * xs), Cx(16 * cs);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t t0 = blk * nb, nt = std::min(nb, T_ - t0), ncpad = round_up(nt, NR<T>);
      for (int64_t c0 = 0; c0 < g.C; c0 += kWc) {
        const int64_t kc = std::min(kWc, g.C - c0);
        if (nt < ncpad)  // the last panel's padding columns: zeros, read by the micro-kernel
          for (int64_t xi = 0; xi < 16; ++xi)
            for (int64_t c = 0; c < kc; ++c)
              std::fill_n(Bx.p + xi * xs + (ncpad - NR<T>) * kc + c * NR<T> + (nt % NR<T>), NR<T> - nt % NR<T>,
                          T(0));
        transform_input<T>(g, xe.p, xo.p, t0, nt, xs, c0, kc, Bx.p);
        const int64_t pc = c0 / KC * KC, kcb = std::min(KC, g.C - pc);  // pack_a's block holding c0
        for (int64_t xi = 0; xi < 16; ++xi)
          gemm_panels<T>(kc, Mpad, ncpad, Ap + xi * Mpad * g.C + pc * Mpad + (c0 - pc) * MR, kcb, Bx.p + xi * xs,
                         Cx.p + xi * cs, c0 > 0);
      }
      transform_output<T>(g, Cx.p, ncpad, cs, t0, nt, bias, y);
    }
  });
}

// ---- grad weight: gW_kc = G^T [ sum_tiles (A gy_kt A^T) .* (B^T d_ct B) ] G ----
// (the forward's Y = A^T (U .* V) A differentiated: dU = sum (A dY A^T) .* V, dg = G^T dU G), 16 GEMMs of
// K x C reducing over the tiles.  The transforms run in vectors over channels, so x and gy are first
// copied channels-last (padded: xc (N, Hp, Wp, Cp), gc (N, 2 th, 2 tw, Kq), zeros outside).
// Work items: (row a of the 4x4 transformed tile, split s, channel panel p), 4 * S * Cp / NR of them.  Item
// (a, s, p) computes xi = 4a .. 4a+3 (a a compile-time constant: its two input rows and two gy rows, the
// vectors in registers) for the tiles of split s (S a function of the shape only: 2 where there is one
// panel) and the NR channels of panel p, into its split's partial P_s, in fresh partials of kTiles tiles.
// A thread takes its items as runs of up to kRunPanels panels of one (a, s), the gy transform once per
// run.  The P_s are added in split order: the result is the same for any thread count.
constexpr int64_t kTiles = 64;
constexpr int64_t kItems = 8;       // items at least this, where the tiles allow
constexpr int64_t kRunPanels = 4;   // panels per run (a run's B panels: 4 kTiles kRunPanels NR floats)

template <typename T>
void channels_last_padded(const T* src, int64_t N, int64_t C, int64_t H, int64_t W, int64_t top, int64_t left,
                          int64_t Hp, int64_t Wp, int64_t Cp, T* dst) {
  at::parallel_for(0, N * Hp, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / Hp, h = r % Hp - top;
      T* row = dst + r * Wp * Cp;
      std::fill(row, row + Wp * Cp, T(0));
      if (h < 0 || h >= H) continue;
      for (int64_t c = 0; c < C; ++c) {
        const T* s = src + ((n * C + c) * H + h) * W;
        for (int64_t w = 0; w < W; ++w) row[(w + left) * Cp + c] = s[w];
      }
    }
  });
}

// fn(std::integral_constant<int, a>{}) for a = 0 .. 3
template <typename F>
inline void with_row(int64_t a, F&& fn) {
  switch (a) {
    case 0: return fn(std::integral_constant<int, 0>{});
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, 2>{});
    default: return fn(std::integral_constant<int, 3>{});
  }
}

// Rows k .. k + VS (those < Mpad; k a multiple of VS) of one reduction step of MR-row A panels kt steps long
// (dst: the step's place in the first panel): lane l into panel (k + l) / MR, row (k + l) % MR.
template <typename T>
inline void store_a_rows(T* dst, typename Vec<T>::type v, int64_t k, int64_t Mpad, int64_t kt) {
  if constexpr (std::is_same_v<T, float> && Vec<T>::size == 16 && MR == 8) {  // AVX-512: two whole panels' rows
    typedef float half __attribute__((vector_size(32), aligned(alignof(float)), may_alias));
    *reinterpret_cast<half*>(dst + k * kt) = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    if (k + 8 < Mpad)
      *reinterpret_cast<half*>(dst + (k + 8) * kt) = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    return;
  }
  for (int64_t l = 0; l < Vec<T>::size && k + l < Mpad; ++l) dst[(k + l) / MR * MR * kt + (k + l) % MR] = v[l];
}

}  // namespace

template <typename T>
void winograd_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  using V = Vec<T>;
  using VT = typename V::type;
  constexpr int64_t VS = V::size;
  const WinoShape g = wino_shape(s.N, s.C, s.H, s.W, s.K, s.pad_h, s.pad_w);
  const int64_t Hp = g.Hp, Wp = 2 * g.tw + 2, Cp = round_up(s.C, NR<T>), Mpad = round_up(s.K, MR);
  const int64_t Kq = round_up(std::max(Mpad, s.K), VS), Ph = 2 * g.th, Qw = 2 * g.tw;
  Buf<T> xc(s.N * Hp * Wp * Cp), gc(s.N * Ph * Qw * Kq);
  channels_last_padded<T>(x, s.N, s.C, s.H, s.W, s.pad_h, s.pad_w, Hp, Wp, Cp, xc.p);
  channels_last_padded<T>(gy, s.N, s.K, s.P, s.Q, 0, 0, Ph, Qw, Kq, gc.p);
  const int64_t T_ = g.tiles(), npan = Cp / NR<T>, nblk = ceil_div(T_, kTiles);
  const int64_t S = std::max<int64_t>(1, std::min(nblk, ceil_div(kItems, 4 * npan))), per_a = S * npan;
  Buf<T> P(S * 16 * Mpad * Cp);
  at::parallel_for(0, 4 * per_a, 1, [&](int64_t i0, int64_t i1) {
    const int64_t run = std::min(kRunPanels, npan) * NR<T>;
    Buf<T> Ab(4 * Mpad * kTiles), Bb(4 * run * kTiles);
    for (int64_t item = i0; item < i1;) {
      const int64_t a = item / per_a, sp = item % per_a / npan, p0 = item % npan;
      const int64_t p1 = std::min({npan, p0 + (i1 - item), p0 + kRunPanels});
      item += p1 - p0;
      const int64_t cb = p0 * NR<T>, cr = (p1 - p0) * NR<T>;  // the run's channels cb .. cb + cr
      const int64_t b0 = sp * nblk / S, b1 = (sp + 1) * nblk / S;
      T* Ps = P.p + (sp * 16 + 4 * a) * Mpad * Cp;
      with_row(a, [&](auto row) {
        constexpr int A = decltype(row)::value;
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t t0 = blk * kTiles, kt = std::min(kTiles, T_ - t0);
          for (int64_t t = t0; t < t0 + kt; ++t) {
            const int64_t n = t / (g.th * g.tw), i = t / g.tw % g.th, j = t % g.tw, tt = t - t0;
            // B: (B^T d B)[A][q] of this tile for the run's channels, into row tt of the channel panels
            for (int64_t c = cb; c < cb + cr; c += VS) {
              // row A of B^T d: rows 0 - 2, 1 + 2, 2 - 1, 1 - 3 of d
              constexpr int r0 = A == 0 ? 0 : A == 3 ? 1 : A == 1 ? 1 : 2, r1 = A == 0 ? 2 : A == 3 ? 3 : A == 1 ? 2 : 1;
              const T* d = xc.p + ((n * Hp + 2 * i) * Wp + 2 * j) * Cp + c;
              const T *e = d + r0 * Wp * Cp, *f = d + r1 * Wp * Cp;
              const VT w0 = V::load(e), w1 = V::load(e + Cp), w2 = V::load(e + 2 * Cp), w3 = V::load(e + 3 * Cp);
              const VT z0 = V::load(f), z1 = V::load(f + Cp), z2 = V::load(f + 2 * Cp), z3 = V::load(f + 3 * Cp);
              const VT m0 = A == 1 ? w0 + z0 : w0 - z0, m1 = A == 1 ? w1 + z1 : w1 - z1, m2 = A == 1 ? w2 + z2 : w2 - z2,
                       m3 = A == 1 ? w3 + z3 : w3 - z3;
              T* dst = Bb.p + (c - cb) / NR<T> * NR<T> * kt + tt * NR<T> + c % NR<T>;
              V::store(dst, m0 - m2);  // (.) B: columns 0 - 2, 1 + 2, 2 - 1, 1 - 3
              V::store(dst + cr * kt, m1 + m2);
              V::store(dst + 2 * cr * kt, m2 - m1);
              V::store(dst + 3 * cr * kt, m1 - m3);
            }
            // A: row A of A gy A^T of this tile for every output-channel group, into row tt of the MR-row panels
            for (int64_t k = 0; k < Mpad; k += VS) {
              const T* q0 = gc.p + ((n * Ph + 2 * i) * Qw + 2 * j) * Kq + k;
              const T* q1 = q0 + Qw * Kq;
              VT h0, h1;  // row A of A gy: gy row 0, 0 + 1, 0 - 1, -1
              if constexpr (A == 0) h0 = V::load(q0), h1 = V::load(q0 + Kq);
              else if constexpr (A == 3) h0 = -V::load(q1), h1 = -V::load(q1 + Kq);
              else if constexpr (A == 1) h0 = V::load(q0) + V::load(q1), h1 = V::load(q0 + Kq) + V::load(q1 + Kq);
              else h0 = V::load(q0) - V::load(q1), h1 = V::load(q0 + Kq) - V::load(q1 + Kq);
              T* dst = Ab.p + tt * MR;  // (.) A^T: columns 0, 0 + 1, 0 - 1, -1
              store_a_rows<T>(dst, h0, k, Mpad, kt);
              store_a_rows<T>(dst + Mpad * kt, h0 + h1, k, Mpad, kt);
              store_a_rows<T>(dst + 2 * Mpad * kt, h0 - h1, k, Mpad, kt);
              store_a_rows<T>(dst + 3 * Mpad * kt, -h1, k, Mpad, kt);
            }
          }
          for (int64_t q = 0; q < 4; ++q)
            gemm_panels<T>(kt, Mpad, cr, Ab.p + q * Mpad * kt, kt, Bb.p + q * cr * kt, Ps + q * Mpad * Cp + cb, blk > b0,
                           Cp);
        }
      });
    }
  });
  // gW[k][c] = G^T m G, m[a][b] = P_{4a+b}[k][c]
  at::parallel_for(0, s.K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t c = 0; c < s.C; ++c) {
        T m[4][4], t[3][4];
        for (int xi = 0; xi < 16; ++xi) {
          T sum = P.p[(xi * Mpad + k) * Cp + c];
          for (int64_t sp = 1; sp < S; ++sp) sum += P.p[((sp * 16 + xi) * Mpad + k) * Cp + c];
          m[xi / 4][xi % 4] = sum;
        }
        for (int b = 0; b < 4; ++b)
          t[0][b] = m[0][b] + T(0.5) * (m[1][b] + m[2][b]), t[1][b] = T(0.5) * (m[1][b] - m[2][b]),
          t[2][b] = T(0.5) * (m[1][b] + m[2][b]) + m[3][b];
        T* out = gw + (k * s.C + c) * 9;
        for (int r = 0; r < 3; ++r)
          out[3 * r] = t[r][0] + T(0.5) * (t[r][1] + t[r][2]), out[3 * r + 1] = T(0.5) * (t[r][1] - t[r][2]),
                  out[3 * r + 2] = T(0.5) * (t[r][1] + t[r][2]) + t[r][3];
      }
  });
  grad_bias<T>(s, gy, gb);
}

// Shapes the Winograd variants compute: 3x3, stride 1, dilation 1, one group, padding <= 2 (grad input's
// padding 2 - p must not be negative), within the packing's offsets.
bool winograd_runs(const Conv2dShape& s) {
  return s.R == 3 && s.S == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1 &&
         s.groups == 1 && s.pad_h <= 2 && s.pad_w <= 2 && s.P > 0 && s.Q > 0 && offsets_fit(s);
}

template <typename T>
void winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const WinoShape g = wino_shape(s.N, s.C, s.H, s.W, s.K, s.pad_h, s.pad_w);
  const int64_t Mpad = round_up(s.K, MR);
  Buf<T> Ap(16 * Mpad * s.C);
  pack_weights<T>(g, [&](int64_t k, int64_t c, int r, int q) { return w[((k * s.C + c) * 3 + r) * 3 + q]; }, Ap.p,
                  Mpad);
  winograd_core<T>(g, x, Ap.p, Mpad, b, y);
}

template <typename T>
void winograd_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  // gx = conv(gy, w'), w'[c][k][r][q] = w[k][c][2 - r][2 - q], padding 2 - p: (N, K, P, Q) -> (N, C, H, W)
  const WinoShape g = wino_shape(s.N, s.K, s.P, s.Q, s.C, 2 - s.pad_h, 2 - s.pad_w);
  const int64_t Mpad = round_up(s.C, MR);
  Buf<T> Ap(16 * Mpad * s.K);
  pack_weights<T>(g, [&](int64_t c, int64_t k, int r, int q) { return w[((k * s.C + c) * 3 + 2 - r) * 3 + 2 - q]; },
                  Ap.p, Mpad);
  winograd_core<T>(g, gy, Ap.p, Mpad, nullptr, gx);
}

CNNEXT_CONV2D_FORWARD_VARIANT(winograd_forward)
CNNEXT_CONV2D_BACKWARD_WEIGHT_VARIANT(winograd_backward_weight)
CNNEXT_CONV2D_BACKWARD_INPUT_VARIANT(winograd_backward_input)

}  // namespace cnnext::cpu::conv2d_variants
