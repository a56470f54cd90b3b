// common/pool2d.h -- the output size of a pooling axis, torch's pooling_output_shape, shared by
// max_pool2d and avg_pool2d (csrc/ops) and mirrored for the fake kernels by cnnext/ops/_geometry.py.
#pragma once
#include <cstdint>

namespace cnnext {

// floor (or ceil) of (in + 2p - d(k - 1) - 1) / s, plus one; with ceil_mode the last window must start
// inside the input or its left padding. In 128 bits and exact for any int64 arguments (d(k - 1) up to
// ~2^126): a wrapped int64 sum (the build uses -fwrapv) would turn an absurd kernel or dilation into a
// valid-looking size. The caller checks the result lies in (0, INT_MAX) before narrowing it.
inline __int128 pool2d_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const __int128 s_ = s;
  const __int128 num = __int128(in) + 2 * __int128(p) - __int128(d) * (k - 1) - 1 + (ceil_mode ? s_ - 1 : 0);
  __int128 o = (num >= 0 ? num / s_ : -((-num + s_ - 1) / s_)) + 1;  // floor division: num may be negative
  if (ceil_mode && o > 0 && (o - 1) * s_ >= __int128(in) + p) --o;
  return o;
}

}  // namespace cnnext
