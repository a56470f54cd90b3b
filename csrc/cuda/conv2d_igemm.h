// conv2d_igemm.h -- what conv2d's two implicit-GEMM kernel files share (conv2d.cu: the SIMT kernels,
// the plan and the launchers; conv2d_wmma.cu: the tensor-core kernel, tf32 / fp16 / bf16): the GEMM's sizes (Geom),
// the pass kinds, the block size and reduction step, and the mixed-radix counters of the im2col index
// math.  Included after compat.h.
#pragma once
#include <cstdint>

#include "../common/conv2d.h"
#include "compat.h"
#include "half.h"

// `#pragma unroll` for nvcc; the host compiler of the emulator does not know it.
#if defined(__CUDACC__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif

namespace cnnext::conv2d_igemm {

constexpr int kBlock = 256;
constexpr int BK = 16, kPad = 4;  // reduction step; shared-memory row padding
// kBwdInS: grad input of a strided conv (stride > 1), by phase decomposition (phase_dim below)
constexpr int kFwd = 0, kBwdIn = 1, kBwdW = 2, kBwdInS = 3;
constexpr int TC_BM = 64, TC_BN = 128;  // the tensor-core kernel's output tile (conv2d_wmma.cu)

// The sizes one conv2d_igemm launch needs, computed once on the host: as kernel parameters they live
// in constant memory, so the kernel reads them as instruction operands instead of holding registers.
struct Geom {
  int H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw;
  int Cg, Kg, HW, PQ, RS;
  int M, tiles_m, nz, splits;  // GEMM rows, their tiles, grid z extent (groups x splits or phases), splits
  int nphase;                  // kBwdInS: sh * sw phases (grid z = groups x phases), else 1
  int64_t N, C, K, Ncols, red, tiles_n, chunk, wrow;  // wrow = Cg*R*S: length of a weight row
                                                      // kBwdInS: Ncols, red, tiles_n are the largest phase's
  int tile;                                         // SIMT: 64 or 128; 0: the tensor-core kernel (host side: which kernel)
};

}  // namespace cnnext::conv2d_igemm

namespace {

using cnnext::Conv2dShape;
using namespace cnnext::conv2d_igemm;

// A number in mixed radix (a, b, c) with digits b < B, c < C: stepping it by a fixed amount costs
// two compares instead of two divisions.
struct Digits {
  int64_t a;
  int b, c;
  __device__ void set(int64_t v, int B, int C) {
    a = v / (int64_t(B) * C);
    const int rem = int(v - a * B * C);
    b = rem / C;
    c = rem - b * C;
  }
  // Adds the step (da, db, dc), given in the same radix.
  __device__ void step(int64_t da, int db, int dc, int B, int C) {
    c += dc;
    const int cb = c >= C;
    c -= cb ? C : 0;
    b += db + cb;
    const int ca = b >= B;
    b -= ca ? B : 0;
    a += da + ca;
  }
};

struct Step {
  int64_t da;
  int db, dc;
  __device__ Step(int64_t v, int B, int C) : da(v / (int64_t(B) * C)), db(int(v / C % B)), dc(int(v % C)) {}
};

// Strided grad input by phase decomposition (kBwdInS), per dimension (h shown; w likewise): the rows
// h of gx with (h + pad) % stride == a (phase a < stride) take gy only from the taps r with
// r*dil % stride == a -- r = t0 + i*tstep, i < tn, tstep = stride / gcd(stride, dil) -- at gy row
// p = (h + pad - r*dil) / stride = hh + base - i*dp for h = first + hh*stride (hh < n), dp =
// dil / gcd: each phase is a dense stride-1 sub-problem (no zero taps, no div/mod per load).  A phase
// may have no rows (n = 0) or no taps (tn = 0: its rows of gx are 0).
struct PhaseDim {
  int first, n;        // rows first + hh*stride, hh < n
  int t0, tstep, tn;   // taps t0 + i*tstep, i < tn
  int base, dp;        // gy row hh + base - i*dp
};
__device__ inline PhaseDim phase_dim(int a, int stride, int pad, int dil, int H, int R) {
  PhaseDim d;
  d.first = ((a - pad) % stride + stride) % stride;
  d.n = d.first < H ? (H - d.first + stride - 1) / stride : 0;
  int x = stride, y = dil;  // gcd
  while (y) { const int t = x % y; x = y; y = t; }
  d.tstep = stride / x;
  d.dp = dil / x;
  d.t0 = -1;
  for (int r = 0; r < d.tstep && r < R; ++r)
    if (r * dil % stride == a) { d.t0 = r; break; }
  d.tn = d.t0 < 0 ? 0 : (R - d.t0 + d.tstep - 1) / d.tstep;
  d.base = d.t0 < 0 ? 0 : (d.first + pad - d.t0 * dil) / stride;  // exact: the numerator is a multiple
  if (d.t0 < 0) d.t0 = 0;
  return d;
}

// The im2col gathers, all in 32-bit within one image.
template <typename T>
__device__ T x_at(const T* xn, int c, int h, int w, int H, int W) {  // xn: this image, this group
  return (h >= 0 && h < H && w >= 0 && w < W) ? xn[(c * H + h) * W + w] : T(0);
}

}  // namespace

namespace {
// What the tensor-core kernel writes: T, except the grad weight, float (fp32 split partials for the half
// types, added and rounded once by sum_splits_kernel; gW itself for float).
template <typename T, int KIND>
using TcOut = std::conditional_t<KIND == cnnext::conv2d_igemm::kBwdW, float, T>;
}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {
// The tensor-core kernel of pass KIND (g.tile == 0) for T = float (tf32), __half or __nv_bfloat16, defined
// in conv2d_wmma.cu.
// (O = TcOut<T, KIND>, spelled out: the alias in a signature would name the internal kBwdW in the symbol.)
template <typename T, int KIND, typename O>
void conv2d_wmma_launch(const conv2d_igemm::Geom& g, dim3 grid, bool pw, const T* x, const T* w, const T* gy,
                        const T* b, O* out, cudaStream_t stream);
}  // namespace cnnext::CNNEXT_DEVICE_NS
