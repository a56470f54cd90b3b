// conv2d_variants.h -- the CPU conv2d variants, each a function with its direction's one signature
// (the same as the public entry points of conv2d.h), and the table that names them.  The planner
// (conv2d.cpp) picks one per call from the shape; tests and benchmarks can run any of them by name
// (find_conv2d_variant) on the shapes it `runs` on.
//
//   direction        variant              file                              runs on
//   forward          direct               conv2d_direct.cpp                 any shape
//                    im2col               conv2d_im2col.cpp                 offsets_fit(s)
//                    winograd             conv2d_winograd.cpp               float, winograd_runs(s)
//   backward_input   direct               conv2d_direct.cpp                 any shape
//                    transposed           conv2d_im2col.cpp                 offsets_fit, stride 1
//                    col2im               conv2d_im2col.cpp                 offsets_fit(s)
//                    winograd             conv2d_winograd.cpp               float, winograd_runs(s)
//   backward_weight  direct               conv2d_direct.cpp                 any shape
//                    pointwise            conv2d_grad_weight_pointwise.cpp  1x1, unpadded, offsets_fit
//                    im2col_nhwc          conv2d_grad_weight_im2col.cpp     offsets_fit, Cg % VS == 0
//                    im2col               conv2d_grad_weight_im2col.cpp     offsets_fit(s)
//                    planes               conv2d_grad_weight_planes.cpp     planes_fit(s): dilation 1
//                    winograd             conv2d_winograd.cpp               float, winograd_runs(s)
// Every variant writes its outputs fully (gb too when not nullptr) and sums in an order fixed by the
// shape and the thread count: results are bit-identical across runs.
#pragma once
#include <cstdint>

#include "../common/conv2d.h"
#include "variant.h"

namespace cnnext::cpu {

template <typename T>
using Conv2dForwardFn = void (*)(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);
template <typename T>
using Conv2dBackwardInputFn = void (*)(const Conv2dShape& s, const T* gy, const T* w, T* gx);
template <typename T>
using Conv2dBackwardWeightFn = void (*)(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);

// One named variant (variant.h): `runs(s)` says whether fn computes shape s (not whether it is the fastest).
template <typename Fn>
using Conv2dVariant = Variant<Fn, Conv2dShape>;

// The planner's choice for shape s (conv2d.cpp), and the variant called `name` (nullptr if none).
template <typename T>
const Conv2dVariant<Conv2dForwardFn<T>>& plan_conv2d_forward(const Conv2dShape& s);
template <typename T>
const Conv2dVariant<Conv2dBackwardInputFn<T>>& plan_conv2d_backward_input(const Conv2dShape& s);
template <typename T>
const Conv2dVariant<Conv2dBackwardWeightFn<T>>& plan_conv2d_backward_weight(const Conv2dShape& s);
template <typename Fn>
const Conv2dVariant<Fn>* find_conv2d_variant(const char* name);

namespace conv2d_variants {
template <typename T>
void direct_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);
template <typename T>
void im2col_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);
template <typename T>
void winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);
template <typename T>
void direct_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx);
template <typename T>
void transposed_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx);
template <typename T>
void col2im_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx);
template <typename T>
void winograd_backward_input(const Conv2dShape& s, const T* gy, const T* w, T* gx);
// The shapes winograd_forward and winograd_backward_input compute: 3x3, stride 1, dilation 1, one group,
// padding <= 2 (conv2d_winograd.cpp).
bool winograd_runs(const Conv2dShape& s);
template <typename T>
void direct_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);
template <typename T>
void pointwise_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);
template <typename T>
void im2col_nhwc_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);
template <typename T>
void im2col_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);

template <typename T>
void winograd_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);
template <typename T>
void planes_backward_weight(const Conv2dShape& s, const T* x, const T* gy, T* gw, T* gb);

// gb[k] = sum of gy[:, k] over N, P, Q: the packed variants' grad bias (vector lanes per image row,
// then the images in order).  gb may be nullptr (nothing to do).
template <typename T>
void grad_bias(const Conv2dShape& s, const T* gy, T* gb);
}  // namespace conv2d_variants

// The padded phase planes of the "planes" grad weight (conv2d_grad_weight_planes.cpp) for vectors of vs
// elements: row = one image's gY row (P rows of Wq = Q + (S-1)/stride_w, rounded up to a vector),
// plane = one phase plane of x, phases = the stride phases that hold kernel taps.  row / (P*Q) is the
// FMA overhead of the zero columns.
struct PlanesGeometry {
  int64_t row, plane, phases;
};
PlanesGeometry planes_geometry(const Conv2dShape& s, int64_t vs);

}  // namespace cnnext::cpu

// Explicit instantiations of a variant file's functions, for float and double.
#define CNNEXT_CONV2D_FORWARD_VARIANT(fn)                                                        \
  template void fn<float>(const Conv2dShape&, const float*, const float*, const float*, float*); \
  template void fn<double>(const Conv2dShape&, const double*, const double*, const double*, double*);
#define CNNEXT_CONV2D_BACKWARD_INPUT_VARIANT(fn)                                     \
  template void fn<float>(const Conv2dShape&, const float*, const float*, float*); \
  template void fn<double>(const Conv2dShape&, const double*, const double*, double*);
#define CNNEXT_CONV2D_BACKWARD_WEIGHT_VARIANT(fn)                                            \
  template void fn<float>(const Conv2dShape&, const float*, const float*, float*, float*); \
  template void fn<double>(const Conv2dShape&, const double*, const double*, double*, double*);
