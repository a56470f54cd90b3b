// conv2d on the CPU: the planner.  It picks one variant per call from the shape; the variants live in
// their own files (the table in conv2d_variants.h), all built on the same two pieces:
//   conv2d_gemm.h    a packed GEMM (BLIS style: MR x NR micro-kernel, KC x NC blocking)
//   conv2d_im2col.h  the im2col folded into the packing of the GEMM's B panels -- no col buffer is
//                    built -- with the padding as the load mask
// plus simd.h (tail loads/stores, fixed-order sums, in-bounds masks) and vec.h.
//
//   forward          direct     tensors so large that the packing's 32-bit offsets could overflow
//                    winograd   float 3x3 stride 1, one group, >= 32 channels (>= 16 at >= 56 wide),
//                               >= 11x11: F(2x2, 3x3)
//                    im2col     everything else
//   backward_input   direct     (as above)
//                    winograd   (as the forward's: the forward of gY with the flipped, transposed kernel)
//                    transposed stride 1: the forward of gY with the flipped, transposed kernel
//                    col2im     stride > 1: GEMM into columns, scattered back per image
//                    CNNEXT_CONV2D_WINOGRAD=0 turns Winograd off (the direct algorithm: im2col /
//                    transposed); CNNEXT_CONV2D_FWD / _GI=<variant> force a forward / grad input variant
//   backward_weight  direct     (as above)
//                    winograd   float 3x3 stride 1, one group, C K >= 4000 (>= 2000 at <= 24x24),
//                               >= 6x6 outputs: F(2x2, 3x3), 16 GEMMs over the tiles
//                    pointwise  1x1 unpadded stride 1, PQ >= 16, few channel pairs (Kg*Cg <= 8192):
//                               dot-product tiles beat the GEMM there
//                    planes     not 1x1, dilation 1, images large enough that the padded phase planes
//                               waste little (< 10%; < 30% with <= 64 k, < 50% with <= 16 k): dot
//                               products of contiguous rows, no packing
//                    im2col_nhwc Cg <= 32 and a multiple of the vector width: the GEMM reading its B rows
//                               in place from a padded channels-last copy of x
//                    im2col     everything else (every other 1x1 conv included)
//                    CNNEXT_CONV2D_GW=<variant> forces a backward_weight variant (tests, diagnostics;
//                    read per call; a variant that does not run on the call raises: variant.h)
// Results are deterministic: every variant sums in an order fixed by the shape and the thread count.
#include "conv2d.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "conv2d_gemm.h"  // offsets_fit
#include "conv2d_variants.h"

namespace cnnext::cpu {
namespace {

using namespace conv2d_variants;

bool fits(const Conv2dShape& s) { return offsets_fit(s); }
bool fits_stride1(const Conv2dShape& s) { return offsets_fit(s) && s.stride_h == 1 && s.stride_w == 1; }
bool fits_1x1(const Conv2dShape& s) {
  return offsets_fit(s) && s.R == 1 && s.S == 1 && s.pad_h == 0 && s.pad_w == 0;
}
template <typename T>
bool fits_nhwc(const Conv2dShape& s) {
  return offsets_fit(s) && (s.C / s.groups) % Vec<T>::size == 0;
}
// dilation 1, a phase plane of every channel of a group within 64 MiB, a non-empty reduction
template <typename T>
bool planes_fit(const Conv2dShape& s) {
  if (!offsets_fit(s) || s.dil_h != 1 || s.dil_w != 1 || s.N * s.P * s.Q == 0) return false;
  const PlanesGeometry g = planes_geometry(s, Vec<T>::size);
  return s.C / s.groups * g.phases * g.plane * int64_t(sizeof(T)) <= (int64_t(64) << 20);
}

// Winograd: float only (float64 keeps the exact-order GEMM)
template <typename T>
bool winograd_fits(const Conv2dShape& s) { return std::is_same_v<T, float> && winograd_runs(s); }

template <typename T>
struct Variants {
  static constexpr Conv2dVariant<Conv2dForwardFn<T>> forward[] = {
      {"direct", any_shape<Conv2dShape>, direct_forward<T>},
      {"im2col", fits, im2col_forward<T>},
      {"winograd", winograd_fits<T>, winograd_forward<T>},
  };
  static constexpr Conv2dVariant<Conv2dBackwardInputFn<T>> backward_input[] = {
      {"direct", any_shape<Conv2dShape>, direct_backward_input<T>},
      {"transposed", fits_stride1, transposed_backward_input<T>},
      {"col2im", fits, col2im_backward_input<T>},
      {"winograd", winograd_fits<T>, winograd_backward_input<T>},
  };
  static constexpr Conv2dVariant<Conv2dBackwardWeightFn<T>> backward_weight[] = {
      {"direct", any_shape<Conv2dShape>, direct_backward_weight<T>},
      {"pointwise", fits_1x1, pointwise_backward_weight<T>},
      {"im2col_nhwc", fits_nhwc<T>, im2col_nhwc_backward_weight<T>},
      {"im2col", fits, im2col_backward_weight<T>},
      {"planes", planes_fit<T>, planes_backward_weight<T>},
      {"winograd", winograd_fits<T>, winograd_backward_weight<T>},
  };
};

}  // namespace

// Winograd where it pays (measured against im2col / transposed on the family's 3x3 layers): float 3x3
// stride-1 convs with >= 32 channels in and out (>= 16 on images >= 56 wide: VGG's 16->32 @112), images of >= 11 x 11 outputs (the transforms run in vectors
// along a row of 2x2 tiles: shorter rows leave most lanes idle), and >= 64 output channels (`rows`: K for the
// forward, C for grad input) unless the image is >= 24 wide.  CNNEXT_CONV2D_WINOGRAD=0 turns it off (the
// documented switch to the direct algorithm; read per call).
bool winograd_off() {
  const char* env = std::getenv("CNNEXT_CONV2D_WINOGRAD");
  return env && std::strcmp(env, "0") == 0;
}

template <typename T>
bool use_winograd(const Conv2dShape& s, int64_t rows) {
  const int64_t channels = std::min(s.C, s.K);
  return !winograd_off() && winograd_fits<T>(s) && (channels >= 32 || (channels >= 16 && s.Q >= 56)) && s.P >= 11 &&
         s.Q >= 11 && (rows >= 64 || s.Q >= 24);
}

// Winograd's grad weight where it beat the planner's other choice on the family's 3x3 layers: enough
// channel pairs for the 16 GEMMs to outweigh the transforms and the channels-last copies (C K >= 4000, or
// >= 2000 on images of <= 24x24), outputs of >= 6x6 (Intel Xeon, 2 threads, 2026-12-04: ResNet-18's
// 64->64 @24 3.77 ms against im2col_nhwc's 5.48, VGG's 64->64 @56 22.8 against 29.4; 32->64 @56, 2048
// pairs: 16.3 against 16.0).
template <typename T>
bool use_winograd_gw(const Conv2dShape& s) {
  const int64_t pairs = s.C * s.K;
  return !winograd_off() && winograd_fits<T>(s) && s.P >= 6 && s.Q >= 6 && (pairs >= 4000 || (pairs >= 2000 && s.P <= 24));
}

// ---- the planner: one readable choice per direction ----
// CNNEXT_CONV2D_FWD / CNNEXT_CONV2D_GI / CNNEXT_CONV2D_GW=<variant> force a variant (tests, benchmarks).
template <typename T>
const Conv2dVariant<Conv2dForwardFn<T>>& plan_conv2d_forward(const Conv2dShape& s) {
  if (const auto* v = forced(Variants<T>::forward, "conv2d", "CNNEXT_CONV2D_FWD", s)) return *v;
  const char* name = !offsets_fit(s) ? "direct" : use_winograd<T>(s, s.K) ? "winograd" : "im2col";
  return by_name(Variants<T>::forward, name);
}

template <typename T>
const Conv2dVariant<Conv2dBackwardInputFn<T>>& plan_conv2d_backward_input(const Conv2dShape& s) {
  if (const auto* v = forced(Variants<T>::backward_input, "conv2d", "CNNEXT_CONV2D_GI", s)) return *v;
  const char* name = !offsets_fit(s)                          ? "direct"
                     : use_winograd<T>(s, s.C)                 ? "winograd"
                     : s.stride_h == 1 && s.stride_w == 1      ? "transposed"
                                                               : "col2im";
  return by_name(Variants<T>::backward_input, name);
}

template <typename T>
const Conv2dVariant<Conv2dBackwardWeightFn<T>>& plan_conv2d_backward_weight(const Conv2dShape& s) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, PQ = s.P * s.Q;
  if (const auto* v = forced(Variants<T>::backward_weight, "conv2d", "CNNEXT_CONV2D_GW", s)) return *v;
  // the measured ratios vs torch on the family's shapes (Intel SPR, default and znver3 tunings): the
  // dot-product tiles of "pointwise" beat the GEMM on 1x1 convs of few channel pairs, the padded phase planes
  // on large images with few output channels; the channels-last copy pays for <= 32 input channels
  const bool pointwise = fits_1x1(s) && PQ >= 16 && Kg * Cg <= 8192 && s.stride_h == 1 && s.stride_w == 1;
  const double waste = planes_fit<T>(s) ? double(planes_geometry(s, Vec<T>::size).row) / double(PQ) : 1e9;
  const bool planes = !fits_1x1(s) && (waste < 1.1 || (Kg <= 64 && waste < 1.3) || (Kg <= 16 && waste < 1.5));
  const char* name = !offsets_fit(s)                 ? "direct"
                     : use_winograd_gw<T>(s)         ? "winograd"
                     : pointwise                     ? "pointwise"
                     : planes                        ? "planes"
                     : fits_nhwc<T>(s) && Cg <= 32   ? "im2col_nhwc"
                                                     : "im2col";
  return by_name(Variants<T>::backward_weight, name);
}

template <typename Fn>
const Conv2dVariant<Fn>* find_conv2d_variant(const char* name) {
  auto find = [&](const auto& table) -> const Conv2dVariant<Fn>* { return find_variant(table, name); };
  if constexpr (std::is_same_v<Fn, Conv2dForwardFn<float>>) return find(Variants<float>::forward);
  if constexpr (std::is_same_v<Fn, Conv2dForwardFn<double>>) return find(Variants<double>::forward);
  if constexpr (std::is_same_v<Fn, Conv2dBackwardInputFn<float>>) return find(Variants<float>::backward_input);
  if constexpr (std::is_same_v<Fn, Conv2dBackwardInputFn<double>>) return find(Variants<double>::backward_input);
  if constexpr (std::is_same_v<Fn, Conv2dBackwardWeightFn<float>>) return find(Variants<float>::backward_weight);
  if constexpr (std::is_same_v<Fn, Conv2dBackwardWeightFn<double>>) return find(Variants<double>::backward_weight);
}

// ---- the entry points of conv2d.h: empty problems here, the rest to the planned variant ----
template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  if (s.N * s.P * s.Q == 0 || s.K == 0) return;
  plan_conv2d_forward<T>(s).fn(s, x, w, b, y);
}

template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  const int64_t nx = s.N * s.C * s.H * s.W;
  if (nx == 0) return;
  if (s.N * s.P * s.Q == 0 || s.K == 0) {
    std::fill(gx, gx + nx, T(0));
    return;
  }
  plan_conv2d_backward_input<T>(s).fn(s, gy, w, gx);
}

template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb) {
  if (offsets_fit(s) && s.K * (s.C / s.groups) * s.R * s.S == 0) return grad_bias(s, gy, gb);
  plan_conv2d_backward_weight<T>(s).fn(s, x, gy, gw, gb);
}

#define CNNEXT_INSTANTIATE(T)                                                                                     \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*);                          \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);                             \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);                        \
  template const Conv2dVariant<Conv2dForwardFn<T>>& plan_conv2d_forward<T>(const Conv2dShape&);                   \
  template const Conv2dVariant<Conv2dBackwardInputFn<T>>& plan_conv2d_backward_input<T>(const Conv2dShape&);      \
  template const Conv2dVariant<Conv2dBackwardWeightFn<T>>& plan_conv2d_backward_weight<T>(const Conv2dShape&);    \
  template const Conv2dVariant<Conv2dForwardFn<T>>* find_conv2d_variant<Conv2dForwardFn<T>>(const char*);         \
  template const Conv2dVariant<Conv2dBackwardInputFn<T>>* find_conv2d_variant<Conv2dBackwardInputFn<T>>(const char*); \
  template const Conv2dVariant<Conv2dBackwardWeightFn<T>>* find_conv2d_variant<Conv2dBackwardWeightFn<T>>(const char*);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
