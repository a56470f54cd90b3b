// conv2d's tensor-core implicit GEMM (sm_80+; the emulator runs it with csrc/cuda/tensor_core.h's WMMA
// and cp.async), one kernel for three element types T:
//   float           convs whose plan allows TF32: wmma tf32 m16n16k8, operands rounded with __float_to_tf32
//   __half          float16 convs: wmma m16n16k16 on the half operands as stored
//   __nv_bfloat16   bfloat16 convs: likewise
// all with float accumulators.  The GEMMs, the plan (Geom) and the launchers are conv2d.cu's (see its top
// comment); this file holds the kernel and its launch.
#include "compat.h"
#include "tensor_core.h"
#include "conv2d_igemm.h"

namespace {

// ---- the tensor-core implicit GEMM ----
// The same three GEMMs as conv2d_igemm, tiled TC_BM x TC_BN = 64 x 128 per 256-thread block, the
// reduction in steps of BK = 16 through a TC_STAGES = 3 deep pipeline in shared memory:
//   loads   every thread fetches, per step, 4 elements (zero outside the image or the GEMM) of the
//           64 x 16 A tile (rows tid/16 + 16i, reduction index tid%16) and 8 of the 16 x 128 B tile
//           (forward / grad input: reduction index tid/16, columns tid%16 + 16j; grad weight: reduction
//           index tid%16, columns tid/16 + 16j), the same im2col index math and mixed-radix counters as
//           conv2d_igemm, for the step STAGES-1 ahead of the one being multiplied; float: one 4-byte
//           cp.async each (it lands at the wait), half types: a plain load and store (2 bytes are below
//           cp.async's smallest copy), visible after the same barrier;
//   math    warp w (8 warps, 2 x 4) owns rows 32*(w/4) .. +31 and columns 32*(w%4) .. +31 of the tile:
//           2 x 2 wmma accumulators (fp32); float: per 8-wide slice of the step two matrix_a and two
//           matrix_b tf32 fragments loaded from shared memory and rounded with __float_to_tf32 element by
//           element (the one uniform operation on fragment elements); half types: one m16n16k16 slice;
//   epilogue the accumulators go through shared memory (store_matrix_sync, the pipeline buffers reused);
//           thread tid writes column tid%128, rows tid/128 + 2t, t < 32 (coalesced along the column),
//           adding the bias in float and rounding once to T (grad weight: float, see TcOut).
// Strided grad input (kBwdInS) is phase-decomposed exactly as in conv2d_igemm (grid z = group x phase,
// each phase a dense GEMM over its own taps, the column's gX offset decoded into shared memory).
constexpr int TC_STAGES = 3;  // TC_BM x TC_BN: conv2d_igemm.h
// Shared-memory rows, in elements of T: ldm a multiple of 16 bytes, every tile pointer 32-byte aligned.
template <typename T>
struct TcSmem {
  static constexpr bool tf32 = std::is_same_v<T, float>;
  static constexpr int KSTEP = tf32 ? 8 : 16;  // the WMMA shape's k
  static constexpr int LDA = BK + 16 / int(sizeof(T)), LDB = TC_BN + 16 / int(sizeof(T)), LDC = TC_BN + 4;
  static constexpr int A_STAGE = TC_BM * LDA, B_STAGE = BK * LDB;  // elements of T
  static constexpr int PIPE = TC_STAGES * (A_STAGE + B_STAGE) * int(sizeof(T)), CTILE = TC_BM * LDC * 4;
  static constexpr int BYTES = PIPE > CTILE ? PIPE : CTILE;  // float 40704, half types 33792
  static_assert((A_STAGE * sizeof(T)) % 32 == 0 && (B_STAGE * sizeof(T)) % 32 == 0 &&
                    (16 * LDA * sizeof(T)) % 32 == 0 && (KSTEP * LDB * sizeof(T)) % 32 == 0 &&
                    (KSTEP * sizeof(T)) % 32 == 0 && (16 * LDC * 4) % 32 == 0,
                "every WMMA tile pointer must be 32-byte aligned");
};

// One element of a pipeline stage: float by cp.async (zero-filled when !ok), the half types directly.
template <typename T>
__device__ __forceinline__ void stage_copy(T* dst, const T* src, bool ok) {
  if constexpr (sizeof(T) == 4) cp_async<4>(dst, src, ok);
  else *dst = ok ? *src : T{};
}

template <typename T, int KIND, bool PW>
__global__ void __launch_bounds__(kBlock, 2)  // two blocks per SM: at most 128 registers (sm_90 took 188 unbounded)
conv2d_igemm_wmma(const Geom gm, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ gy,
                  const T* __restrict__ bias, TcOut<T, KIND>* __restrict__ out) {
#if CNNEXT_TENSOR_CORES
  using namespace nvcuda;
  using L = TcSmem<T>;
  constexpr int TC_LDA = L::LDA, TC_LDB = L::LDB, TC_LDC = L::LDC;
  constexpr int TC_A_STAGE = L::A_STAGE, TC_B_STAGE = L::B_STAGE;
  __align__(128) __shared__ unsigned char smem[L::BYTES];
  __shared__ int64_t s_col_base[TC_BN];
  __shared__ int s_col_h[TC_BN], s_col_w[TC_BN];
  __shared__ int64_t s_col_out[KIND == kBwdInS ? TC_BN : 1];  // kBwdInS: the column's gx offset
  T* const As = reinterpret_cast<T*>(smem);             // [stage][TC_BM][TC_LDA]
  T* const Bs = As + TC_STAGES * TC_A_STAGE;            // [stage][BK][TC_LDB]
  float* const Cs = reinterpret_cast<float*>(smem);     // [TC_BM][TC_LDC], after the pipeline drained

  const int Cg = gm.Cg, Kg = gm.Kg;
  const int H = gm.H, W = gm.W, P = gm.P, Q = gm.Q, R = gm.R, S = gm.S;
  const int sh = gm.sh, sw = gm.sw, ph = gm.ph, pw = gm.pw, dh = gm.dh, dw = gm.dw;
  const int HW = gm.HW, PQ = gm.PQ, RS = gm.RS;
  const int M = gm.M, splits = gm.splits;
  const int64_t Ncols = gm.Ncols, red = gm.red, chunk = gm.chunk;
  const int tid = threadIdx.x, warp = tid / 32, wm = warp / 4, wn = warp % 4;
  const int a_k = tid % 16, a_m = tid / 16;
  const int b_k = KIND == kBwdW ? tid % 16 : tid / 16;
  const int b_n = KIND == kBwdW ? tid / 16 : tid % 16;

  for (int z = blockIdx.z; z < gm.nz; z += gridDim.z) {
    const int g = KIND == kBwdW ? z / splits : KIND == kBwdInS ? z / gm.nphase : z;
    const int split = KIND == kBwdW ? z % splits : 0;
    // this z's GEMM (kBwdInS: its phase's, as in conv2d_igemm)
    int64_t ncols = Ncols, nred = red, ntn = gm.tiles_n;
    int rad_b = KIND == kBwdW ? P : R, rad_c = KIND == kBwdW ? Q : S;
    PhaseDim phh{}, phw{};
    if constexpr (KIND == kBwdInS) {
      const int phz = z % gm.nphase;
      phh = phase_dim(phz / sw, sh, ph, dh, H, R);
      phw = phase_dim(phz % sw, sw, pw, dw, W, S);
      ncols = gm.N * phh.n * phw.n;
      nred = int64_t(Kg) * phh.tn * phw.tn;
      ntn = (ncols + TC_BN - 1) / TC_BN;
      rad_b = max(1, phh.tn);
      rad_c = max(1, phw.tn);
    }
    const int64_t k_begin = split * chunk, k_end = KIND == kBwdW ? min(red, k_begin + chunk) : nred;
    for (int tm = blockIdx.y; tm < gm.tiles_m; tm += gridDim.y) {
      const int m0 = tm * TC_BM;
      for (int64_t tn = blockIdx.x; tn < ntn; tn += gridDim.x) {
        const int64_t n0 = tn * TC_BN;
        // this tile's B columns, decoded once (as in conv2d_igemm)
        if (tid < TC_BN) {
          const int64_t col = n0 + tid, cc = col < ncols ? col : 0;
          int64_t base;
          int ch, cw;
          if constexpr (KIND == kFwd) {
            const int64_t n = cc / PQ;
            const int pq = int(cc - n * PQ), p = pq / Q, q = pq - p * Q;
            base = (n * gm.C + int64_t(g) * Cg) * HW + (PW ? pq : 0);
            ch = p * sh - ph;
            cw = q * sw - pw;
          } else if constexpr (KIND == kBwdIn) {
            const int64_t n = cc / HW;
            const int hw = int(cc - n * HW), h = hw / W, ww = hw - h * W;
            base = (n * gm.K + int64_t(g) * Kg) * PQ + (PW ? hw : 0);
            ch = h + ph;
            cw = ww + pw;
          } else if constexpr (KIND == kBwdInS) {
            const int HWn = phh.n * phw.n;
            const int64_t n = cc / HWn;
            const int hw = int(cc - n * HWn), hh = hw / phw.n, ww = hw - hh * phw.n;
            base = (n * gm.K + int64_t(g) * Kg) * PQ;
            ch = hh + phh.base;
            cw = ww + phw.base;
            s_col_out[tid] = (n * gm.C + int64_t(g) * Cg) * HW + (phh.first + hh * sh) * W + phw.first + ww * sw;
          } else {
            const int c = int(cc / RS), rs = int(cc - int64_t(c) * RS), r = rs / S, t = rs - r * S;
            base = int64_t(g * Cg + c) * HW;
            ch = r * dh - ph;
            cw = t * dw - pw;
          }
          s_col_base[tid] = base;
          s_col_h[tid] = ch;
          s_col_w[tid] = cw;
        }
        __syncthreads();
        const T* a_row = w + int64_t(g * Kg + m0 + a_m) * gm.wrow;
        int64_t ka = k_begin + a_k, kb = k_begin + b_k;
        Digits da, db;
        da.set(ka, rad_b, rad_c);
        db.set(kb, rad_b, rad_c);
        const Step st(BK, rad_b, rad_c);

        // Issues this thread's copies of the next reduction step into pipeline stage `stage`, then
        // advances the counters by one step.
        auto issue = [&](int stage) {
          T* as = As + stage * TC_A_STAGE;
          T* bs = Bs + stage * TC_B_STAGE;
          const bool ka_ok = ka < k_end, kb_ok = kb < k_end;
UNROLL
          for (int i = 0; i < TC_BM / 16; ++i) {
            const int m = m0 + a_m + 16 * i;
            const T* src = w;
            bool ok = ka_ok && m < M;
            if (ok) {
              if constexpr (KIND == kFwd) src = a_row + int64_t(16 * i) * gm.wrow + ka;
              else if constexpr (KIND == kBwdIn) src = w + (int64_t(g * Kg) + da.a) * gm.wrow + (m * R + da.b) * S + da.c;
              else if constexpr (KIND == kBwdInS)
                src = w + (int64_t(g * Kg) + da.a) * gm.wrow + (m * R + phh.t0 + da.b * phh.tstep) * S + phw.t0 +
                      da.c * phw.tstep;
              else src = gy + (da.a * gm.K + g * Kg + m) * PQ + da.b * Q + da.c;
            }
            stage_copy(as + (a_m + 16 * i) * TC_LDA + a_k, src, ok);
          }
UNROLL
          for (int j = 0; j < TC_BN / 16; ++j) {
            const int cj = b_n + 16 * j;
            const T* src = KIND == kBwdIn || KIND == kBwdInS ? gy : x;
            bool ok = kb_ok && n0 + cj < ncols;
            if (ok) {
              const int64_t base = s_col_base[cj];
              if constexpr (KIND == kFwd) {
                const int c = int(db.a);
                if (PW) {
                  src = x + base + int64_t(c) * HW;
                } else {
                  const int h = s_col_h[cj] + db.b * dh, ww = s_col_w[cj] + db.c * dw;
                  ok = h >= 0 && h < H && ww >= 0 && ww < W;
                  src = x + base + (c * H + h) * W + ww;
                }
              } else if constexpr (KIND == kBwdIn) {
                const int k = int(db.a);
                if (PW) {
                  src = gy + base + int64_t(k) * PQ;
                } else {
                  int th = s_col_h[cj] - db.b * dh, tw = s_col_w[cj] - db.c * dw;
                  ok = th >= 0 && tw >= 0;
                  if (sh != 1) { ok = ok && th % sh == 0; th /= sh; }
                  if (sw != 1) { ok = ok && tw % sw == 0; tw /= sw; }
                  ok = ok && th < P && tw < Q;
                  src = gy + base + k * PQ + th * Q + tw;
                }
              } else if constexpr (KIND == kBwdInS) {
                const int th = s_col_h[cj] - db.b * phh.dp, tw = s_col_w[cj] - db.c * phw.dp;
                ok = th >= 0 && th < P && tw >= 0 && tw < Q;
                src = gy + base + int(db.a) * PQ + th * Q + tw;
              } else {
                const T* xn = x + db.a * gm.C * HW + base;
                if (PW) {
                  src = xn + db.b * Q + db.c;
                } else {
                  const int h = db.b * sh + s_col_h[cj], ww = db.c * sw + s_col_w[cj];
                  ok = h >= 0 && h < H && ww >= 0 && ww < W;
                  src = xn + h * W + ww;
                }
              }
              if (!ok) src = KIND == kBwdIn || KIND == kBwdInS ? gy : x;  // never dereferenced (zero-fill), but valid
            }
            stage_copy(bs + b_k * TC_LDB + cj, src, ok);
          }
          ka += BK;
          kb += BK;
          if (KIND != kFwd) da.step(st.da, st.db, st.dc, rad_b, rad_c);
          if (KIND != kBwdW) db.step(st.da, st.db, st.dc, rad_b, rad_c);
          else db = da;
        };

        wmma::fragment<wmma::accumulator, 16, 16, L::KSTEP, float> acc[2][2];
UNROLL
        for (int i = 0; i < 2; ++i)
UNROLL
          for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

        const int64_t nk = (k_end - k_begin + BK - 1) / BK;
UNROLL
        for (int s = 0; s < TC_STAGES - 1; ++s) {
          if (s < nk) issue(s);
          cp_async_commit();
        }
        for (int64_t kt = 0; kt < nk; ++kt) {
          cp_async_wait<TC_STAGES - 2>();  // this thread's copies of step kt have landed ...
          __syncthreads();                 // ... and every thread's; step kt-1's stage is free again
          if (kt + TC_STAGES - 1 < nk) issue(int((kt + TC_STAGES - 1) % TC_STAGES));
          cp_async_commit();
          const T* as = As + int(kt % TC_STAGES) * TC_A_STAGE + (32 * wm) * TC_LDA;
          const T* bs = Bs + int(kt % TC_STAGES) * TC_B_STAGE + 32 * wn;
          using Op = std::conditional_t<L::tf32, wmma::precision::tf32, T>;
UNROLL
          for (int kk = 0; kk < BK; kk += L::KSTEP) {
            wmma::fragment<wmma::matrix_a, 16, 16, L::KSTEP, Op, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, L::KSTEP, Op, wmma::row_major> fb[2];
UNROLL
            for (int i = 0; i < 2; ++i) {
              wmma::load_matrix_sync(fa[i], as + 16 * i * TC_LDA + kk, TC_LDA);
              if constexpr (L::tf32) {
UNROLL
                for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
              }
            }
UNROLL
            for (int j = 0; j < 2; ++j) {
              wmma::load_matrix_sync(fb[j], bs + kk * TC_LDB + 16 * j, TC_LDB);
              if constexpr (L::tf32) {
UNROLL
                for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
              }
            }
UNROLL
            for (int i = 0; i < 2; ++i)
UNROLL
              for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
          }
        }
        cp_async_wait<0>();  // only empty groups are left; every thread done with the pipeline buffers:
        __syncthreads();     // they become the accumulator tile
UNROLL
        for (int i = 0; i < 2; ++i)
UNROLL
          for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(Cs + (32 * wm + 16 * i) * TC_LDC + 32 * wn + 16 * j, acc[i][j], TC_LDC,
                                    wmma::mem_row_major);
        __syncthreads();
        // ---- epilogue: thread tid writes column n0 + tid%128, rows m0 + tid/128 + 2t ----
        const int cl = tid % TC_BN;
        const int64_t col = n0 + cl;
        if (col < ncols) {
          int64_t obase;
          int64_t ostride;  // between rows m and m + 1
          if constexpr (KIND == kFwd) {
            const int64_t n = col / PQ, pq = col - n * PQ;
            obase = (n * gm.K + g * Kg) * PQ + pq;
            ostride = PQ;
          } else if constexpr (KIND == kBwdIn) {
            const int64_t n = col / HW, hw = col - n * HW;
            obase = (n * gm.C + g * Cg) * HW + hw;
            ostride = HW;
          } else if constexpr (KIND == kBwdInS) {
            obase = s_col_out[cl];
            ostride = HW;
          } else {
            obase = (int64_t(split) * gm.K + g * Kg) * gm.wrow + col;
            ostride = gm.wrow;
          }
          for (int r = tid / TC_BN; r < TC_BM; r += kBlock / TC_BN) {
            const int m = m0 + r;
            if (m >= M) break;
            float v = Cs[r * TC_LDC + cl];
            if (KIND == kFwd && bias) v += to_acc(bias[g * Kg + m]);
            if constexpr (KIND == kBwdW) out[obase + m * ostride] = v;
            else out[obase + m * ostride] = from_acc<T>(v);
          }
        }
        __syncthreads();  // Cs (the pipeline buffers) and the column decode are rewritten by the next tile
      }
    }
  }
#else
  __trap();  // launched only on sm_80+ (use_tensor_cores())
#endif
}

}  // namespace

namespace cnnext::CNNEXT_DEVICE_NS {

template <typename T, int KIND, typename O>
void conv2d_wmma_launch(const conv2d_igemm::Geom& g, dim3 grid, bool pw, const T* x, const T* w, const T* gy,
                        const T* b, O* out, cudaStream_t stream) {
  static_assert(std::is_same_v<O, TcOut<T, KIND>>, "conv2d_wmma_launch: O is TcOut<T, KIND>");
  if constexpr (KIND != kBwdInS) {  // strided: never the 1x1 plain GEMM
    if (pw) return launch(conv2d_igemm_wmma<T, KIND, true>, grid, dim3(kBlock), 0, stream, g, x, w, gy, b, out);
  }
  launch(conv2d_igemm_wmma<T, KIND, false>, grid, dim3(kBlock), 0, stream, g, x, w, gy, b, out);
}

#define CNNEXT_INSTANTIATE(T, KIND, O)                                                                          \
  template void conv2d_wmma_launch<T, KIND, O>(const conv2d_igemm::Geom&, dim3, bool, const T*, const T*, const T*, \
                                               const T*, O*, cudaStream_t);
#define CNNEXT_INSTANTIATE_KINDS(T)                                                                 \
  CNNEXT_INSTANTIATE(T, kFwd, T) CNNEXT_INSTANTIATE(T, kBwdIn, T) CNNEXT_INSTANTIATE(T, kBwdInS, T) \
  CNNEXT_INSTANTIATE(T, kBwdW, float)
CNNEXT_INSTANTIATE_KINDS(float)
CNNEXT_INSTANTIATE_KINDS(__half)
CNNEXT_INSTANTIATE_KINDS(__nv_bfloat16)
#undef CNNEXT_INSTANTIATE_KINDS
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::CNNEXT_DEVICE_NS
