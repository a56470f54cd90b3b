// cat ops: schema, argument checks, output allocation, dispatch.
//
//   cnnext::cat_forward(Tensor[] tensors, int dim) -> Tensor
//       torch.cat(tensors, dim): equal rank (1-D empty tensors of shape (0,) are skipped, as torch.cat
//       does), dtype and device, any dtype (the kernels copy bytes).
//   cnnext::cat_backward(Tensor grad_output, int dim, SymInt[] split_sizes) -> Tensor[]
//       the slices grad_output.narrow(dim, off_i, split_sizes[i]), each a new tensor.
//
// Memory layout: like torch.cat, the output is channels_last (channels_last_3d) when every input
// suggests that format, else contiguous.  The kernels see the tensors in memory order: with the
// permutation perm of the format (identity, (0,2,3,1) or (0,2,3,4,1)) and q the position of dim
// in it, outer = prod of the sizes of perm[0..q) and a row of input i holds
// size_i(dim) * prod of the sizes of perm(q..] elements.  So channels_last inputs are
// concatenated along C in place, with no extra pass.  The kernels take a row stride per input,
// so an input whose rows are dense but spaced out or repeated -- a slice along an outer dim or
// along dim itself (x[:, 16:48]), an expand() along an outer dim -- is read in place too.  Any
// other view (transposed, strided inside a row) is first made dense with .contiguous(format): one
// extra copy of that input only.  The same holds for grad_output in backward, whose slices get
// grad_output's suggested format and are always dense.
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../common/cat.h"
#include "dispatch.h"

namespace cnnext {
namespace {

constexpr const char* kOp = "cat";

std::string tname(size_t i) { return "tensors[" + std::to_string(i) + "]"; }

// torch.cat skips these for backward compatibility.
bool legacy_empty(const at::Tensor& t) { return t.dim() == 1 && t.size(0) == 0; }

// Memory order of the dims of a tensor dense in format `fmt`, outermost first.
std::vector<int64_t> memory_order(int64_t nd, at::MemoryFormat fmt) {
  std::vector<int64_t> perm;
  if ((fmt == at::MemoryFormat::ChannelsLast && nd == 4) || (fmt == at::MemoryFormat::ChannelsLast3d && nd == 5)) {
    perm.push_back(0);
    for (int64_t d = 2; d < nd; ++d) perm.push_back(d);
    perm.push_back(1);
  } else {
    for (int64_t d = 0; d < nd; ++d) perm.push_back(d);
  }
  return perm;
}

// (outer, elements of one row) of a tensor of sizes `sizes` in format `fmt`, rows split at `dim`.
std::pair<int64_t, int64_t> rows_at(at::IntArrayRef sizes, int64_t dim, at::MemoryFormat fmt) {
  const auto perm = memory_order(int64_t(sizes.size()), fmt);
  int64_t outer = 1, inner = 1;
  bool before = true;
  for (int64_t d : perm) {
    if (d == dim) before = false;
    (before ? outer : inner) *= sizes[d];
  }
  return {outer, inner};
}

// Bytes from one row to the next of t seen as (outer, inner) rows in format fmt, split at dim:
// defined when the inner dims are dense and the outer dims collapse into one stride (size-1 dims
// do not count); -1 otherwise.
int64_t row_stride(const at::Tensor& t, int64_t dim, at::MemoryFormat fmt) {
  const auto perm = memory_order(t.dim(), fmt);
  const auto sizes = t.sizes(), strides = t.strides();
  const int64_t q = std::find(perm.begin(), perm.end(), dim) - perm.begin();
  int64_t expected = 1;
  for (int64_t k = t.dim() - 1; k >= q; --k) {
    const int64_t d = perm[k];
    if (sizes[d] != 1 && strides[d] != expected) return -1;
    expected *= sizes[d];
  }
  const int64_t inner = expected;
  int64_t rs = -1;
  for (int64_t k = q - 1; k >= 0; --k) {
    const int64_t d = perm[k];
    if (sizes[d] == 1) continue;
    if (rs < 0) expected = rs = strides[d];
    if (strides[d] != expected) return -1;
    expected *= sizes[d];
  }
  return (rs < 0 ? inner : rs) * int64_t(t.element_size());
}

int64_t wrap_dim(int64_t dim, int64_t nd, const char* what) {
  TORCH_CHECK_INDEX(dim >= -nd && dim < nd, kOp, ": dim must be in [", -nd, ", ", nd - 1, "] for ", what, " of ",
                    nd, " dims, got ", dim);
  return dim < 0 ? dim + nd : dim;
}

void check_strided(const char* op_arg, const at::Tensor& t) {
  TORCH_CHECK(t.layout() == at::kStrided && !t.is_quantized(), kOp, ": ", op_arg,
              " must be a dense (strided) tensor, got layout ", t.layout());
}

at::Tensor cat_forward(at::TensorList tensors, int64_t dim) {
  TORCH_CHECK_VALUE(!tensors.empty(), kOp, ": tensors must be a non-empty list of tensors");
  const at::Tensor& first = tensors[0];
  int64_t ref = -1;  // the first tensor that is not skipped
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const std::string arg = tname(i);
    check_strided(arg.c_str(), t);
    TORCH_CHECK(t.dim() > 0, kOp, ": ", arg, " is zero-dimensional and cannot be concatenated");
    if (i > 0) {
      check_same_dtype(kOp, arg.c_str(), t, "tensors[0]", first);
      check_same_device(kOp, arg.c_str(), t, "tensors[0]", first);
    }
    if (ref < 0 && !legacy_empty(t)) ref = int64_t(i);
  }
  if (ref < 0) {  // only (0,)-shaped tensors: torch.cat returns one
    wrap_dim(dim, 1, "tensors");
    return at::empty({0}, first.options());
  }
  const at::Tensor& r = tensors[ref];
  const int64_t nd = r.dim();
  dim = wrap_dim(dim, nd, "tensors");
  const std::string ref_arg = tname(ref);
  std::vector<int64_t> out_sizes = r.sizes().vec();
  out_sizes[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    if (legacy_empty(t)) continue;
    TORCH_CHECK(t.dim() == nd, kOp, ": ", tname(i), " is ", t.dim(), "-D but ", ref_arg, " is ", nd,
                "-D; all tensors must have the same number of dims (only 1-D empty tensors of shape (0,) are "
                "skipped, as torch.cat does)");
    for (int64_t d = 0; d < nd; ++d)
      TORCH_CHECK(d == dim || t.size(d) == r.size(d), kOp, ": sizes of tensors must match except in dim ", dim,
                  ": ", tname(i), " has size ", t.size(d), " in dim ", d, " but ", ref_arg, " has size ",
                  r.size(d));
    out_sizes[dim] += t.size(dim);
  }
  // torch.cat's output format: the inputs' common suggested format, else contiguous.
  at::MemoryFormat fmt = tensors[0].suggest_memory_format();
  for (const at::Tensor& t : tensors)
    if (t.suggest_memory_format() != fmt) fmt = at::MemoryFormat::Contiguous;
  at::Tensor out = at::empty(out_sizes, first.options().memory_format(fmt));
  if (nothing_to_compute(out)) return out;

  const at::DeviceGuard guard(out.device());
  const int64_t esize = int64_t(out.element_size());
  const int64_t outer = rows_at(out_sizes, dim, fmt).first;
  std::vector<at::Tensor> keep;  // inputs made dense in fmt (the extra pass), kept alive
  std::vector<CatPiece> pieces;
  for (const at::Tensor& t : tensors) {
    if (legacy_empty(t) || t.numel() == 0) continue;
    int64_t rs = row_stride(t, dim, fmt);
    const at::Tensor& c = rs >= 0 ? t : keep.emplace_back(t.contiguous(fmt));
    if (rs < 0) rs = row_stride(c, dim, fmt);
    pieces.push_back(CatPiece{const_cast<void*>(c.const_data_ptr()), rows_at(c.sizes(), dim, fmt).second * esize, rs});
  }
  call_kernel<CatForward, void>(backend_for(out), pieces.data(), int64_t(pieces.size()), out.mutable_data_ptr(), outer);
  return out;
}

std::vector<at::Tensor> cat_backward(const at::Tensor& grad_output, int64_t dim, c10::SymIntArrayRef split_sizes) {
  const auto splits = C10_AS_INTARRAYREF_SLOW(split_sizes);
  check_strided("grad_output", grad_output);
  TORCH_CHECK(grad_output.dim() > 0, kOp, ": grad_output must have at least 1 dim, got a zero-dimensional tensor");
  dim = wrap_dim(dim, grad_output.dim(), "grad_output");
  int64_t sum = 0;
  for (size_t i = 0; i < splits.size(); ++i) {
    TORCH_CHECK(splits[i] >= 0, kOp, ": split_sizes[", i, "] must be >= 0, got ", splits[i]);
    sum += splits[i];
  }
  TORCH_CHECK(sum == grad_output.size(dim), kOp, ": split_sizes ", splits, " sum to ", sum,
              " but grad_output has size ", grad_output.size(dim), " in dim ", dim);
  const at::MemoryFormat fmt = grad_output.suggest_memory_format();
  std::vector<at::Tensor> grads;
  grads.reserve(splits.size());
  std::vector<int64_t> sizes = grad_output.sizes().vec();
  for (int64_t s : splits) {
    sizes[dim] = s;
    grads.push_back(at::empty(sizes, grad_output.options().memory_format(fmt)));
  }
  if (nothing_to_compute(grad_output)) return grads;

  const at::DeviceGuard guard(grad_output.device());
  int64_t gs = row_stride(grad_output, dim, fmt);
  const at::Tensor g = gs >= 0 ? grad_output : grad_output.contiguous(fmt);  // the extra pass, if needed
  if (gs < 0) gs = row_stride(g, dim, fmt);
  const int64_t esize = int64_t(g.element_size());
  const int64_t outer = rows_at(g.sizes(), dim, fmt).first;
  std::vector<CatPiece> pieces;
  for (at::Tensor& t : grads) {
    if (t.numel() == 0) continue;
    const int64_t bytes = rows_at(t.sizes(), dim, fmt).second * esize;
    pieces.push_back(CatPiece{t.mutable_data_ptr(), bytes, bytes});
  }
  call_kernel<CatBackward, void>(backend_for(g), g.const_data_ptr(), gs, outer, pieces.data(), int64_t(pieces.size()));
  return grads;
}

}  // namespace
}  // namespace cnnext

TORCH_LIBRARY_FRAGMENT(cnnext, m) {
  m.def("cat_forward(Tensor[] tensors, int dim) -> Tensor");
  m.def("cat_backward(Tensor grad_output, int dim, SymInt[] split_sizes) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(cnnext, CPU, m) {
  m.impl("cat_forward", &cnnext::cat_forward);
  m.impl("cat_backward", &cnnext::cat_backward);
}

#ifdef CNNEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(cnnext, CUDA, m) {
  m.impl("cat_forward", &cnnext::cat_forward);
  m.impl("cat_backward", &cnnext::cat_backward);
}
#endif
