// batch_norm_variants.h -- the CPU batch_norm variants, each a function with its direction's one
// signature (that of batch_norm.h's entry points), and the tables that name them.  The planner
// (batch_norm.cpp) picks one per call from the shape; tests and benchmarks run any of them by name
// with CNNEXT_BATCH_NORM=<variant> (variant.h: one that does not run on the call raises).
//
//   direction  variant    file                     runs on
//   forward    blocks     batch_norm_blocks.cpp    training: work items are blocks of channels of
//   backward                                       about 1 MiB; an item reads its channels once for
//                                                  the sums, then normalises (computes gx) while
//                                                  they are still in cache: 1 read + 1 write pass
//              chunks     batch_norm_chunks.cpp    training (backward: any): each channel split in
//                                                  a fixed number of batch chunks (parallelism when
//                                                  C is small), partial sums added in chunk order,
//                                                  then a parallel pass over planes: 2 reads + 1 write
//   forward    normalize  batch_norm_chunks.cpp    eval: the running statistics, then that pass
//   forward    rows       batch_norm_rows.cpp      S == 1 ((N, C) and channels_last): vectors across
//   backward                                       channels, fixed chunks of rows for the sums
// bfloat16 and float16 activations (float32 parameters and statistics) have a table of their own:
//   forward    lanes16    batch_norm_half.cpp      AVX-512 builds: 16 lanes widened in registers, two
//   backward                                       passes (sums per channel, then per plane)
//              widened    batch_norm_half.cpp      any: the float32 planner on a widened copy, one
//                                                  rounding per output
// Every partition is independent of the thread count, so every variant's results are bit-identical
// for any torch.set_num_threads; blocks and chunks sum in different orders (equal within rounding).
#pragma once
#include "../common/batch_norm.h"
#include "variant.h"

namespace cnnext::cpu {

template <typename T>
using BatchNormForwardFn = void (*)(const BatchNormShape& s, const BatchNormForwardArgs<T>& a);
template <typename T>
using BatchNormBackwardFn = void (*)(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a);
template <typename Fn>
using BatchNormVariant = Variant<Fn, BatchNormShape>;

namespace batch_norm_variants {
template <typename T>
void blocks_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a);
template <typename T>
void blocks_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a);
template <typename T>
void chunks_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a);
template <typename T>
void chunks_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a);
template <typename T>
void normalize_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a);
template <typename T>
void rows_forward(const BatchNormShape& s, const BatchNormForwardArgs<T>& a);
template <typename T>
void rows_backward(const BatchNormShape& s, const BatchNormBackwardArgs<T>& a);
// H = bfloat16, float16
template <typename H>
void lanes16_forward(const BatchNormShape& s, const BatchNormForwardArgs<H>& a);
template <typename H>
void lanes16_backward(const BatchNormShape& s, const BatchNormBackwardArgs<H>& a);
template <typename H>
void widened_forward(const BatchNormShape& s, const BatchNormForwardArgs<H>& a);
template <typename H>
void widened_backward(const BatchNormShape& s, const BatchNormBackwardArgs<H>& a);
}  // namespace batch_norm_variants

}  // namespace cnnext::cpu

// Explicit instantiations of a variant, for float and double.
#define CNNEXT_BATCH_NORM_FORWARD_VARIANT(fn)                                              \
  template void fn<float>(const BatchNormShape&, const BatchNormForwardArgs<float>&);     \
  template void fn<double>(const BatchNormShape&, const BatchNormForwardArgs<double>&);
#define CNNEXT_BATCH_NORM_BACKWARD_VARIANT(fn)                                             \
  template void fn<float>(const BatchNormShape&, const BatchNormBackwardArgs<float>&);    \
  template void fn<double>(const BatchNormShape&, const BatchNormBackwardArgs<double>&);
