// Planted-bug self test of .ci/sanitizers.sh: small kernels written with compat.h, each in a clean
// version and a version with one planted bug.  The script runs this program under each sanitizer and
// checks that the clean run passes and that every planted bug is reported:
//   heap     an out-of-bounds global read, x[n]              -> ASan "heap-buffer-overflow"
//   shared   an out-of-bounds __shared__ read, tile[T]        -> ASan "global-buffer-overflow"
//            (__shared__ is `static` under the emulator; the kernel has internal linkage)
//   intovf   a 32-bit flat index that overflows               -> UBSan "signed integer overflow"
//   race     a __shared__ tile read without __syncthreads()   -> TSan "data race" (EMU_STRATEGY=threads)
// Usage: planted clean|heap|shared|intovf|race
#define EMU 1
#include "../../csrc/cuda/compat.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace {

constexpr int T = 64;  // threads per block = tile width

// y[i] = x[i] + x[i + 1] (the last element wraps to x[0]); the planted bug forgets the wrap.
__global__ void pair_sum(const float* x, float* y, int n, int plant) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int j = plant ? i + 1 : (i + 1) % n;
  y[i] = x[i] + x[j];
}

// Each block loads a tile into shared memory, then every thread reads its right neighbour's entry.
// plant 1: no barrier between the stores and the loads (a race); plant 2: reads one past the tile.
__global__ void tile_rotate(const float* x, float* y, int plant) {
  __shared__ float tile[T];
  const int t = threadIdx.x;
  tile[t] = x[blockIdx.x * T + t];
  if (plant != 1) __syncthreads();
  const int src = plant == 2 ? t + 1 : (t + 1) % T;
  const float* row = tile;  // through a pointer, so that ASan (not UBSan's array-bounds check) reports it
  y[blockIdx.x * T + t] = row[src];
}

// y[k] = k for a flat index computed in 32 bits from (row, col) with a runtime row stride; the
// planted bug uses a stride so large that row * stride overflows int.
__global__ void flat_index(float* y, int rows, int stride, int cols) {
  const int r = blockIdx.x, c = threadIdx.x;
  if (c >= cols) return;
  const int flat = r * stride + c;  // int on purpose: this is the bug class 64-bit offsets avoid
  y[(r * cols + c) % (rows * cols)] = float(flat % 7);
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "clean";
  const bool all = !std::strcmp(mode, "clean");
  int bad = 0;
  const int blocks = 3, n = blocks * T;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = float(i % 13);
  if (all || !std::strcmp(mode, "heap")) {
    launch(pair_sum, dim3(blocks), dim3(T), 0, nullptr, x.data(), y.data(), n, all ? 0 : 1);
    for (int i = 0; i < n; ++i) bad += y[i] != x[i] + x[(i + 1) % n];
  }
  if (all || !std::strcmp(mode, "race") || !std::strcmp(mode, "shared")) {
    const int plant = all ? 0 : !std::strcmp(mode, "race") ? 1 : 2;
    launch(tile_rotate, dim3(blocks), dim3(T), 0, nullptr, x.data(), y.data(), plant);
    for (int b = 0; b < blocks; ++b)
      for (int t = 0; t < T; ++t) bad += y[b * T + t] != x[b * T + (t + 1) % T];
  }
  if (all || !std::strcmp(mode, "intovf")) {
    const int rows = 4, cols = 32, stride = all ? cols : (1 << 30);
    std::vector<float> z(rows * cols, -1.0f);
    launch(flat_index, dim3(rows), dim3(cols), 0, nullptr, z.data(), rows, stride, cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) bad += z[r * cols + c] != float((r * cols + c) % 7);
  }
  std::printf("planted %s: %d mismatches\n", mode, bad);
  return all && bad ? 1 : 0;
}
