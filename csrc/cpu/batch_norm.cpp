// batch_norm on the CPU (d2l 8.5), per channel c over its M = N*S values:
//   training:  mean = sum x / M,  var = sum (x - mean)^2 / M  (biased, normalises),
//              running_mean = (1-m) running_mean + m mean,
//              running_var  = (1-m) running_var  + m var * M/(M-1)  (unbiased);
//   eval:      mean, var = running_mean, running_var;
//   y = (x - mean) * invstd * w + b,  invstd = 1/sqrt(var + eps);  relu: y = y <= 0 ? 0 : y
//   (NaN stays NaN, like torch.relu).
//   backward (gy' = y <= 0 ? 0 : gy for relu, torch's threshold_backward; xmu = x - mean):
//   gb = sum gy',  gw = invstd * sum gy' xmu,
//   gx = w invstd (gy' - sum gy'/M - xmu invstd^2 sum gy' xmu / M)   (training)
//   gx = w invstd gy'                                                (eval)
//
// Statistics are shifted sums: d = x - K_c with K_c = the channel's first value,
// sum d and sum d^2, so 1e4 + randn loses nothing to cancellation.  The sums run
// in vector lanes of T, flushed into double every 256 vectors (Sums, batch_norm_kernels.h).
//
// This file is the planner: the variants live in their own files (the table and what each does in
// batch_norm_variants.h), chosen here from the shape:
//   S == 1 (rows of C channels: (N, C) inputs, channels_last)      rows
//   eval forward                                                   normalize
//   C >= kItems (32) channels: blocks of channels are enough work  blocks
//   fewer channels: batch chunks per channel                       chunks
//   bfloat16 / float16 activations                                 lanes16 (AVX-512 builds; not rows), else widened
// CNNEXT_BATCH_NORM=<variant> forces one (tests, diagnostics; read per call).
// The fused ReLU costs no pass: the forward clamps before the store, the backward recomputes the
// pre-activation from x (already being read) for its mask.
#include "batch_norm.h"

#include <type_traits>

#include "batch_norm_kernels.h"  // kItems, chunks_per_channel
#include "batch_norm_variants.h"

namespace cnnext::cpu {
namespace {

using namespace batch_norm_variants;

bool training(const BatchNormShape& s) { return s.training; }
bool eval(const BatchNormShape& s) { return !s.training; }
bool rows_layout(const BatchNormShape& s) { return s.S == 1; }

template <typename T>
struct Variants {
  static constexpr BatchNormVariant<BatchNormForwardFn<T>> forward[] = {
      {"blocks", training, blocks_forward<T>},
      {"chunks", training, chunks_forward<T>},
      {"normalize", eval, normalize_forward<T>},
      {"rows", rows_layout, rows_forward<T>},
  };
  static constexpr BatchNormVariant<BatchNormBackwardFn<T>> backward[] = {
      {"blocks", any_shape<BatchNormShape>, blocks_backward<T>},
      {"chunks", any_shape<BatchNormShape>, chunks_backward<T>},
      {"rows", rows_layout, rows_backward<T>},
  };
};
template <typename H>
struct HalfVariants {  // H = bfloat16, float16
  static constexpr BatchNormVariant<BatchNormForwardFn<H>> forward[] = {
#if defined(__AVX512F__)
      {"lanes16", any_shape<BatchNormShape>, lanes16_forward<H>},
#endif
      {"widened", any_shape<BatchNormShape>, widened_forward<H>},
  };
  static constexpr BatchNormVariant<BatchNormBackwardFn<H>> backward[] = {
#if defined(__AVX512F__)
      {"lanes16", any_shape<BatchNormShape>, lanes16_backward<H>},
#endif
      {"widened", any_shape<BatchNormShape>, widened_backward<H>},
  };
};
template <typename T>
constexpr bool is_half = std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>;

constexpr const char* kForce = "CNNEXT_BATCH_NORM";

}  // namespace

// ---- the planner: one readable choice per direction ----
template <typename T>
void batch_norm_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a) {
  if constexpr (is_half<T>) {  // lanes16 where built, except rows (S == 1): widened runs float32's rows
    const auto* v = forced(HalfVariants<T>::forward, "batch_norm", kForce, s, HalfVariants<T>::backward,
                           Variants<float>::forward, Variants<float>::backward);
    return (v ? *v : s.S == 1 ? by_name(HalfVariants<T>::forward, "widened") : HalfVariants<T>::forward[0]).fn(s, a);
  }
  // (the half tables' names are ignored here: widened runs this planner under them)
  const auto* v = forced(Variants<T>::forward, "batch_norm", kForce, s, Variants<T>::backward,
                         HalfVariants<bfloat16>::forward, HalfVariants<bfloat16>::backward);
  const char* name = s.S == 1 ? "rows" : !s.training ? "normalize" : chunks_per_channel(s.N, s.C) == 1 ? "blocks" : "chunks";
  (v ? *v : by_name(Variants<T>::forward, name)).fn(s, a);
}

template <typename T>
void batch_norm_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a) {
  if constexpr (is_half<T>) {
    const auto* v = forced(HalfVariants<T>::backward, "batch_norm", kForce, s, HalfVariants<T>::forward,
                           Variants<float>::forward, Variants<float>::backward);
    return (v ? *v : s.S == 1 ? by_name(HalfVariants<T>::backward, "widened") : HalfVariants<T>::backward[0]).fn(s, a);
  }
  const auto* v = forced(Variants<T>::backward, "batch_norm", kForce, s, Variants<T>::forward,
                         HalfVariants<bfloat16>::forward, HalfVariants<bfloat16>::backward);
  const char* name = s.S == 1 ? "rows" : chunks_per_channel(s.N, s.C) == 1 ? "blocks" : "chunks";
  (v ? *v : by_name(Variants<T>::backward, name)).fn(s, a);
}

#define CNNEXT_INSTANTIATE(T)                                                                        \
  template void batch_norm_forward<T>(const BatchNormShape&, const BatchNormForwardArgs<T>&);   \
  template void batch_norm_backward<T>(const BatchNormShape&, const BatchNormBackwardArgs<T>&);
CNNEXT_INSTANTIATE(float)
CNNEXT_INSTANTIATE(double)
CNNEXT_INSTANTIATE(bfloat16)
CNNEXT_INSTANTIATE(float16)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
