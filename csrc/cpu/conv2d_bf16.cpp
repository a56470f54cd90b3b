// conv2d_bf16.cpp -- conv2d's forward and grad input on bfloat16 tensors with AVX512_BF16's vdpbf16ps
// (Intel Sapphire Rapids, AMD Zen 4): bfloat16 products summed in float32, one rounding per output.
//
// The packed GEMM of conv2d_im2col.cpp (conv2d_gemm.h's blocking, conv2d_im2col.h's tables) with the
// reduction taken in pairs: vdpbf16ps multiplies two bfloat16 pairs per 32-bit lane and adds both
// products to a float32 lane, so
//   A panel   [kp][MR] 32-bit words: word (p, i) = (w[i, 2p], w[i, 2p+1])        (low half, high half)
//   B panel   [kp][32] 32-bit words: word (p, l) = (col[2p, j_l], col[2p+1, j_l])
//   micro-kernel  C[MR x 32] += sum_p A(p, i) . B(p, l): per pair of the reduction two B vectors and
//                 MR broadcasts of an A word, 2 MR vdpbf16ps -- the float kernel's 2 MR FMAs per
//                 step, but two reduction steps each.
// KCP = 256 pairs per block (a B panel is 32 KiB and an A panel 8 KiB, as the float kernel's).  The B
// packer is the float one's im2col (masked loads of contiguous columns, a few masked loads per run of
// columns in an image row, stride 2 through an even-element permute, else element by element) on
// 16-bit elements, two rows zero-extended and interleaved into pairs.  The epilogue adds the bias in
// float32 and rounds to bfloat16 (vcvtneps2bf16: round to nearest even).
// vdpbf16ps treats bfloat16 denormals (|v| < 2^-126) as zero, inputs and products alike.
//
// Threads: over blocks of output columns (pixels of the whole batch), as forward_packed.
// Shapes the packed path does not take (offsets beyond 32 bits; grad input with a stride > 1) and
// CPUs without AVX512_BF16 are computed by the float32 variants on widened copies (`widened`).
#include "conv2d_bf16.h"

#include <type_traits>

// GCC 12 warns that intrinsics' internal _mm512_undefined_* operands "may be used uninitialized"
// wherever _mm512_cvtepu16_epi32 and the masked 16-bit loads are inlined (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "../common/bfloat16.h"
#include "half_copy.h"
#include "conv2d.h"
#include "conv2d_im2col.h"
#include "variant.h"

#if defined(__AVX512F__) && defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define CNNEXT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,bmi2")))
#endif

namespace cnnext::cpu {
bool conv2d_bf16_dot();

#if defined(__AVX512F__) && defined(__x86_64__)
namespace {

constexpr int64_t KCP = 256;  // pairs of the reduction per block
constexpr int64_t NRB = NR<float>;  // columns per B panel, as the float GEMM's: two vectors of 16 words
static_assert(MR == 8, "the AVX-512 micro-kernel has 8 rows");

// C[8 x 32] (row stride ldc) = (acc ? C : 0) + A[kp][8] . B[kp][32] (bfloat16 pairs, float32 sums)
CNNEXT_BF16_TARGET void micro_dp(int64_t kp, const uint32_t* __restrict__ A, const uint32_t* __restrict__ B,
                                 float* __restrict__ C, int64_t ldc, bool acc) {
  CNNEXT_TILE_8X32_OPEN(C, ldc, acc)
  for (int64_t p = 0; p < kp; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(B), b1 = (__m512bh)_mm512_load_si512(B + 16);
#define F(i)                                                 \
  {                                                          \
    const __m512bh a = (__m512bh)_mm512_set1_epi32(int(A[i])); \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, a, b0);              \
    c##i##1 = _mm512_dpbf16_ps(c##i##1, a, b1);              \
  }
    F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)
#undef F
    A += 8;
    B += 32;
  }
  CNNEXT_TILE_8X32_CLOSE(C, ldc)
}

// Row k of the unrolled X at the 16 columns jr + 16*half .. (ColTab ct): their bfloat16 bits, 0 in the
// padding.
inline __m256i im2col_row16(const uint16_t* X, const ColTab& ct, int64_t jr, int half, const RowTab& rt, int64_t k,
                            __m512i h0, __m512i w0, __m512i Hv, __m512i Wv, int64_t H, int64_t W) {
  const __m512i rh = _mm512_set1_epi32(rt.rh[k]), rs = _mm512_set1_epi32(rt.rs[k]);
  const __mmask16 m = in_bounds16(h0, rh, Hv, w0, rs, Wv);
  const int64_t g = jr / 16 + half;  // ColTab's group of 16 columns
  if (ct.contig[jr / NRB]) return _mm256_maskz_loadu_epi16(m, X + ct.base[jr] + rt.off[k] + 16 * half);
  const uint16_t* src = X + rt.off[k];
  const uint16_t* sm = ct.smask.data() + g * 16;
  const int32_t* so = ct.soff.data() + g * 16;
  const int ns = ct.nseg[g];
  __m256i v = _mm256_setzero_si256();
  if (ct.step == 1 && ns <= 8) {  // a few runs of consecutive columns: masked loads
    for (int i = 0; i < ns; ++i) v = _mm256_mask_loadu_epi16(v, m & sm[i], src + so[i]);
    return v;
  }
  if (ct.step == 2 && ns <= 4) {  // stride 2: lane l of a run reads p[2l], the even elements of a load
    const __m512i even = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26,
                                          24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (int i = 0; i < ns; ++i) {
      const __mmask16 mm = m & sm[i];
      const __mmask32 lm = __mmask32(_pdep_u32(mm, 0x55555555u));
      const __m512i e = _mm512_permutexvar_epi16(even, _mm512_maskz_loadu_epi16(lm, src + so[i]));
      v = _mm256_mask_mov_epi16(v, mm, _mm512_castsi512_si256(e));
    }
    return v;
  }
  alignas(32) uint16_t e[16];
  for (int l = 0; l < 16; ++l) {
    const int64_t j = jr + 16 * half + l;
    e[l] = in_bounds(ct.h0[j] + rt.rh[k], H, ct.w0[j] + rt.rs[k], W) ? X[ct.base[j] + rt.off[k]] : 0;
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(e));
}

// B panel [kcp][32] of pairs of rows 2*p0 .. of the unrolled X and columns jr .. jr+32.
void pack_b_pairs(uint32_t* __restrict__ out, const uint16_t* X, const ColTab& ct, int64_t jr, const RowTab& rt,
                  int64_t p0, int64_t kcp, int64_t H, int64_t W) {
  const __m512i Hv = _mm512_set1_epi32(int32_t(H)), Wv = _mm512_set1_epi32(int32_t(W));
  const __m512i h0a = _mm512_loadu_si512(ct.h0.data() + jr), h0b = _mm512_loadu_si512(ct.h0.data() + jr + 16);
  const __m512i w0a = _mm512_loadu_si512(ct.w0.data() + jr), w0b = _mm512_loadu_si512(ct.w0.data() + jr + 16);
  for (int64_t p = 0; p < kcp; ++p) {
    const int64_t k = 2 * (p0 + p);
    for (int half = 0; half < 2; ++half) {
      const __m512i h0 = half ? h0b : h0a, w0 = half ? w0b : w0a;
      const __m512i lo = _mm512_cvtepu16_epi32(im2col_row16(X, ct, jr, half, rt, k, h0, w0, Hv, Wv, H, W));
      const __m512i hi = _mm512_cvtepu16_epi32(im2col_row16(X, ct, jr, half, rt, k + 1, h0, w0, Hv, Wv, H, W));
      _mm512_store_si512(out + p * NRB + 16 * half, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

// dst[0:n] = bfloat16(src[0:n] + bias), rounded to nearest even
CNNEXT_BF16_TARGET void store_rounded(uint16_t* dst, const float* src, int64_t n, float bias) {
  const __m512 bv = _mm512_set1_ps(bias);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = __mmask16(bit_range(0, std::min<int64_t>(16, n - i)));
    const __m256bh r = _mm512_cvtneps_pbh(_mm512_add_ps(_mm512_maskz_loadu_ps(m, src + i), bv));
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)r);
  }
}

// ---- the AMX tile kernel (Intel Sapphire Rapids): TDPBF16PS, C[16 x 16] += A[16 x 32] . B[16 pairs x 16] ----
#define CNNEXT_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// AMX-TILE and AMX-BF16 (cpuid 7.0 EDX bits 24 and 22), and Linux's permission to use the tile data
// state (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA; oneDNN asks for it the same way).
bool amx_available() {
  static const bool ok = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 24) & 1u) || !((d >> 22) & 1u)) return false;
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  }();
  return ok;
}

// Tiles 0-3: C (16 rows x 16 floats), 4-5: A (16 rows x 32 bfloat16), 6-7: B (16 pairs x 16 words).
// (ldtilecfg through asm with the whole struct as its operand: GCC 12's _tile_loadconfig names one byte
// of it, and the other 63 were optimised away as dead stores.)
CNNEXT_AMX_TARGET void amx_configure() {
  struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } cfg{};
  static_assert(sizeof(cfg) == 64, "the tile configuration is 64 bytes");
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
}
CNNEXT_AMX_TARGET void amx_release() { _tile_release(); }

// A tile addressing: tile (rows 16t.., pairs 16kt..) at A + kt*kstep + t*tile, rows `stride` bytes apart.
struct TileA {
  int64_t kstep, tile, stride;
};
// pack_a's layout of a block of rb (16 or 32) rows: [kcp/16][rb/16 tiles][16 rows][16 words]
inline TileA packed_a(int64_t rb) { return {rb * 16, 256, 64}; }

// C[rb x 32] (row stride ldc) = (acc ? C : 0) + A . B over kcp pairs (a multiple of 16): A rb = 32 rows
// (two) or 16 (one A tile, TileA), B a pack_b_pairs panel ([kcp][32] words).
CNNEXT_AMX_TARGET void amx_kernel(int64_t kcp, const uint32_t* A, TileA ta, const uint32_t* B, float* C, int64_t ldc,
                                  bool acc, bool two) {
  const int64_t ls = ldc * 4;
  if (acc) {
    _tile_loadd(0, C, ls);
    _tile_loadd(1, C + 16, ls);
    if (two) {
      _tile_loadd(2, C + 16 * ldc, ls);
      _tile_loadd(3, C + 16 * ldc + 16, ls);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    if (two) {
      _tile_zero(2);
      _tile_zero(3);
    }
  }
  for (int64_t kt = 0; kt < kcp / 16; ++kt) {
    _tile_loadd(4, A + kt * ta.kstep, ta.stride);
    _tile_loadd(6, B + kt * 16 * NRB, NRB * 4);
    _tile_loadd(7, B + kt * 16 * NRB + 16, NRB * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (two) {
      _tile_loadd(5, A + kt * ta.kstep + ta.tile, ta.stride);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, C, ls);
  _tile_stored(1, C + 16, ls);
  if (two) {
    _tile_stored(2, C + 16 * ldc, ls);
    _tile_stored(3, C + 16 * ldc + 16, ls);
  }
}

// ---- one plan for both kernels ----
enum class Engine { dot, amx };

// The A layout and padding of an engine: rows in blocks of MR (dot) or 32 (amx; rows padded to 16, so
// the last block may be 16 rows), pairs padded to 16 (amx).
struct PairGemm {
  Engine e;
  int64_t M, Kd, Mpad, KP;
  PairGemm(Engine e_, int64_t M_, int64_t Kd_)
      : e(e_), M(M_), Kd(Kd_), Mpad(round_up(M_, e_ == Engine::amx ? 16 : MR)),
        KP(e_ == Engine::amx ? round_up(ceil_div(Kd_, 2), 16) : ceil_div(Kd_, 2)) {}
  int64_t words() const { return Mpad * KP; }
};

// A(i, kd) (bfloat16 bits src(i, kd); 0 for i >= M or kd >= Kd) packed for the engine: pair block pc (of
// KCP pairs) at dst + pc*Mpad; in it, dot: panel ir (MR rows) at + ir*kcp, word (p, i) at [p*MR + i];
// amx: the row block at row mb (rb = 32 rows, or 16 at the end) at + mb*kcp, [kcp/16][rb/16][16 rows][16 words].
template <typename Src>
void pack_a(uint32_t* dst, const PairGemm& g, Src&& src) {
  const int64_t rows = g.e == Engine::amx ? 32 : MR;  // per block (the last amx block may have 16)
  auto word = [&](int64_t i, int64_t p) -> uint32_t {
    const int64_t k = 2 * p;
    if (i >= g.M) return 0;
    const uint32_t lo = k < g.Kd ? src(i, k) : 0, hi = k + 1 < g.Kd ? src(i, k + 1) : 0;
    return lo | hi << 16;
  };
  at::parallel_for(0, ceil_div(g.Mpad, rows), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t pc = 0; pc < g.KP; pc += KCP) {
      const int64_t kcp = std::min(KCP, g.KP - pc);
      for (int64_t ib = b0; ib < b1; ++ib) {
        const int64_t rb = std::min(rows, g.Mpad - ib * rows);
        uint32_t* d = dst + pc * g.Mpad + ib * rows * kcp;
        for (int64_t p = 0; p < kcp; ++p)
          for (int64_t r = 0; r < rb; ++r) {
            const uint32_t v = word(ib * rows + r, pc + p);
            if (g.e == Engine::dot) d[p * MR + r] = v;
            else d[(p / 16) * rb * 16 + (r / 16) * 256 + (r % 16) * 16 + p % 16] = v;
          }
      }
    }
  });
}

CNNEXT_BF16_TARGET void gemm_dot(const PairGemm& g, int64_t ncpad, const uint32_t* Ablk, const uint32_t* Bb, float* C,
                                 int64_t kcp, bool acc) {
  for (int64_t ir = 0; ir < g.Mpad; ir += MR)
    for (int64_t jr = 0; jr < ncpad; jr += NRB)
      micro_dp(kcp, Ablk + ir * kcp, Bb + jr * kcp, C + ir * ncpad + jr, ncpad, acc);
}

CNNEXT_AMX_TARGET void gemm_amx(const PairGemm& g, int64_t ncpad, const uint32_t* Ablk, const uint32_t* Bb, float* C,
                                int64_t kcp, bool acc) {
  for (int64_t mb = 0; mb < g.Mpad; mb += 32) {
    const int64_t rb = std::min<int64_t>(32, g.Mpad - mb);
    for (int64_t jr = 0; jr < ncpad; jr += NRB)
      amx_kernel(kcp, Ablk + mb * kcp, packed_a(rb), Bb + jr * kcp, C + mb * ncpad + jr, ncpad, acc, rb == 32);
  }
}

// y = conv(x) + b, the weights packed per group by pack_a (g.words() each)
void forward_pairs(const Conv2dShape& s, const PairGemm& pg, const uint16_t* x, const uint32_t* Ap, const uint16_t* b,
                   uint16_t* y) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q, L = s.N * PQ;
  const RowTab rt = rows_im2col(s, Cg, 2 * pg.KP);  // rows past CRS: always out of bounds (0)
  const int64_t ncb = column_block<float>(L, at::get_num_threads());  // multiples of 32 columns
  at::parallel_for(0, ceil_div(L, ncb), 1, [&](int64_t b0, int64_t b1) {
    const int64_t ncbpad = round_up(ncb, NRB);
    Buf<uint32_t> Bbuf(KCP * ncbpad);
    Buf<float> Cbuf(pg.Mpad * ncbpad);
    ColTab ct;
    if (pg.e == Engine::amx) amx_configure();  // per thread
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * ncb, nc = std::min(ncb, L - j0), ncpad = round_up(nc, NRB);
      fill_cols<NRB>(ct, s, j0, nc, ncpad, s.C * HW, true);
      for (int64_t g = 0; g < G; ++g) {
        const uint16_t* Xg = x + (ct.n0 * s.C + g * Cg) * HW;
        for (int64_t pc = 0; pc < pg.KP; pc += KCP) {
          const int64_t kcp = std::min(KCP, pg.KP - pc);
          for (int64_t jr = 0; jr < ncpad; jr += NRB) pack_b_pairs(Bbuf.p + jr * kcp, Xg, ct, jr, rt, pc, kcp, s.H, s.W);
          const uint32_t* Ablk = Ap + g * pg.words() + pc * pg.Mpad;
          if (pg.e == Engine::amx) gemm_amx(pg, ncpad, Ablk, Bbuf.p, Cbuf.p, kcp, pc > 0);
          else gemm_dot(pg, ncpad, Ablk, Bbuf.p, Cbuf.p, kcp, pc > 0);
        }
        for_each_image_run(s, j0, nc, [&](int64_t n, int64_t pq0, int64_t pq1, int64_t jj) {
          for (int64_t k = 0; k < Kg; ++k) {
            const float bias = b ? to_float(bfloat16{b[g * Kg + k]}) : 0.0f;
            store_rounded(y + (n * s.K + g * Kg + k) * PQ + pq0, Cbuf.p + k * ncpad + jj, pq1 - pq0, bias);
          }
        });
      }
    }
    if (pg.e == Engine::amx) amx_release();
  });
}

void packed_forward(Engine e, const Conv2dShape& s, const bfloat16* x, const bfloat16* w, const bfloat16* b,
                    bfloat16* y) {
  const int64_t G = s.groups, Kg = s.K / G, CRS = s.C / G * s.R * s.S;
  const PairGemm pg(e, Kg, CRS);
  Buf<uint32_t> Ap(G * pg.words());
  for (int64_t g = 0; g < G; ++g) {
    const bfloat16* wg = w + g * Kg * CRS;
    pack_a(Ap.p + g * pg.words(), pg, [&](int64_t i, int64_t kd) { return uint32_t(wg[i * CRS + kd].bits); });
  }
  forward_pairs(s, pg, &x->bits, Ap.p, b ? &b->bits : nullptr, &y->bits);
}

// Stride 1: grad input is the forward conv of gY (transposed_shape, conv2d_im2col.h) with the flipped,
// transposed kernel A(c, (k, r', s')) = w[k, c, R-1-r', S-1-s'] per group.
void packed_backward_input(Engine e, const Conv2dShape& s, const bfloat16* gy, const bfloat16* w, bfloat16* gx) {
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, RS = s.R * s.S, KRS = Kg * RS;
  const PairGemm pg(e, Cg, KRS);
  Buf<uint32_t> Ap(G * pg.words());
  for (int64_t g = 0; g < G; ++g) {
    const bfloat16* wg = w + g * Kg * Cg * RS;
    pack_a(Ap.p + g * pg.words(), pg, [&](int64_t c, int64_t kd) {
      const int64_t k = kd / RS, rs = kd % RS;
      return uint32_t(wg[(k * Cg + c) * RS + RS - 1 - rs].bits);
    });
  }
  forward_pairs(transposed_shape(s), pg, &gy->bits, Ap.p, nullptr, &gx->bits);
}

// ---- grad weight: gW[k, crs] = sum_j gY[k, j] col[crs, j] (M = Kg, N = CRS, reduction over j = (n, p, q)) ----
// B panel [kcp][32] of col^T in pairs of j: word (p, l) = (col[lane0 + l, j0 + 2p], col[lane0 + l, j0 + 2p + 1]),
// lanes from RowTab rt (segmented: runs of consecutive offsets), j from ColTab ct.
void pack_b_rows_pairs(uint32_t* __restrict__ out, const uint16_t* X, const ColTab& ct, int64_t kcp, const RowTab& rt,
                       int64_t lane0, int64_t H, int64_t W) {
  const __m512i Hv = _mm512_set1_epi32(int32_t(H)), Wv = _mm512_set1_epi32(int32_t(W));
  for (int half = 0; half < 2; ++half) {
    const int64_t l0 = lane0 + 16 * half;
    const __m512i rh = _mm512_loadu_si512(rt.rh.data() + l0), rs = _mm512_loadu_si512(rt.rs.data() + l0);
    const int ns = rt.nseg[l0 / 16];
    const uint16_t* sm = rt.smask.data() + l0;
    const int32_t* so = rt.soff.data() + l0;
    auto row = [&](int64_t j) -> __m256i {
      const __mmask16 m =
          in_bounds16(_mm512_set1_epi32(ct.h0[j]), rh, Hv, _mm512_set1_epi32(ct.w0[j]), rs, Wv);
      const uint16_t* src = X + ct.base[j];
      if (ns <= 6) {
        __m256i v = _mm256_setzero_si256();
        for (int i = 0; i < ns; ++i) v = _mm256_mask_loadu_epi16(v, m & sm[i], src + so[i]);
        return v;
      }
      alignas(32) uint16_t e[16];
      for (int l = 0; l < 16; ++l) e[l] = (m >> l) & 1 ? src[rt.off[l0 + l]] : 0;
      return _mm256_load_si256(reinterpret_cast<const __m256i*>(e));
    };
    for (int64_t p = 0; p < kcp; ++p) {
      const __m512i lo = _mm512_cvtepu16_epi32(row(2 * p)), hi = _mm512_cvtepu16_epi32(row(2 * p + 1));
      _mm512_store_si512(out + p * NRB + 16 * half, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

// C[Mpad x CRSpad] += A . B for one block of the reduction: A the block's gY rows ([Mpad][2 kcp] bfloat16,
// row-major: a tile row is 32 consecutive j), B packed per panel of 32 lanes c0 .. c1.
CNNEXT_AMX_TARGET void gemm_amx_gw(int64_t Mpad, int64_t kcp, const uint16_t* A, const uint16_t* X, const ColTab& ct,
                                   const RowTab& rt, int64_t c0, int64_t c1, int64_t CRSpad, uint32_t* Bb, float* C,
                                   int64_t H, int64_t W) {
  const TileA ta{16, 16 * kcp, 4 * kcp};  // rows of kcp words
  const uint32_t* Aw = reinterpret_cast<const uint32_t*>(A);
  for (int64_t jc = c0; jc < c1; jc += NRB) {
    pack_b_rows_pairs(Bb, X, ct, kcp, rt, jc, H, W);
    for (int64_t mb = 0; mb < Mpad; mb += 32)
      amx_kernel(kcp, Aw + mb * kcp, ta, Bb, C + mb * CRSpad + jc, CRSpad, true, Mpad - mb >= 32);
  }
}

constexpr int64_t KCJ = 512;  // j per block of the grad weight's reduction (256 pairs)

void amx_backward_weight_impl(const Conv2dShape& s, const bfloat16* xb, const bfloat16* gyb, bfloat16* gwb) {
  const uint16_t *x = &xb->bits, *gy = &gyb->bits;
  const int64_t G = s.groups, Cg = s.C / G, Kg = s.K / G, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t CRS = Cg * s.R * s.S, L = s.N * PQ, Mpad = round_up(Kg, 16), CRSpad = round_up(CRS, NRB);
  const int64_t nthreads = at::get_num_threads();
  RowTab rt = rows_im2col(s, Cg, CRSpad);
  rt.segment();
  // as conv2d_grad_weight_im2col.cpp: threads over gW's columns when gW is large next to the batch, else
  // over ranges of the batch whose partial sums are added in part order
  const bool split_cols = CRSpad >= 2 * nthreads * NRB && L <= 8 * CRS;
  const int64_t nparts = split_cols ? std::min(nthreads, CRSpad / NRB) : std::max<int64_t>(1, std::min(nthreads, L));
  const int64_t nbuf = split_cols ? 1 : nparts;
  std::vector<float> P(nbuf * G * Mpad * CRSpad, 0.0f);
  at::parallel_for(0, nparts, 1, [&](int64_t t0, int64_t t1) {
    Buf<uint16_t> Abuf(Mpad * KCJ);
    Buf<uint32_t> Bbuf(KCJ / 2 * NRB);
    ColTab ct;
    amx_configure();
    for (int64_t part = t0; part < t1; ++part) {
      int64_t l0 = 0, l1 = L, c0 = 0, c1 = CRSpad;
      if (split_cols) {
        const int64_t np = CRSpad / NRB;
        c0 = np * part / nparts * NRB, c1 = np * (part + 1) / nparts * NRB;
      } else {
        l0 = L * part / nparts, l1 = L * (part + 1) / nparts;
      }
      for (int64_t g = 0; g < G; ++g) {
        float* C = P.data() + ((split_cols ? 0 : part) * G + g) * Mpad * CRSpad;
        for (int64_t pc = l0; pc < l1; pc += KCJ) {
          const int64_t kc = std::min(KCJ, l1 - pc), kcpad = round_up(kc, 32);
          // A = gY rows of these columns, [Mpad][kcpad], zero beyond Kg and kc
          std::memset(Abuf.p, 0, sizeof(uint16_t) * Mpad * kcpad);
          for_each_image_run(s, pc, kc, [&](int64_t n, int64_t pq0, int64_t pq1, int64_t jj) {
            for (int64_t k = 0; k < Kg; ++k)
              std::memcpy(Abuf.p + k * kcpad + jj, gy + (n * s.K + g * Kg + k) * PQ + pq0, 2 * (pq1 - pq0));
          });
          fill_cols<NRB>(ct, s, pc, kc, kcpad, s.C * HW, true);  // columns past kc: out of bounds (0)
          gemm_amx_gw(Mpad, kcpad / 2, Abuf.p, x + (ct.n0 * s.C + g * Cg) * HW, ct, rt, c0, c1, CRSpad, Bbuf.p, C,
                      s.H, s.W);
        }
      }
    }
    amx_release();
  });
  at::parallel_for(0, s.K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t g = k / Kg, kl = k % Kg;
      for (int64_t i = 0; i < CRS; ++i) {
        float v = P[(g * Mpad + kl) * CRSpad + i];
        for (int64_t part = 1; part < nbuf; ++part) v += P[((part * G + g) * Mpad + kl) * CRSpad + i];
        gwb[k * CRS + i] = from_float(v);
      }
    }
  });
}

}  // namespace
#endif

namespace {
// ---- "float": the float32 variants on widened copies (float32 sums, one rounding per output; widen_into /
// round_into: half_copy.h). H = bfloat16, or float16 (whose only kernel this is) ----

template <typename H>
void float_forward(const Conv2dShape& s, const H* x, const H* w, const H* b, H* y) {
  const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P * s.Q, nw = s.K * (s.C / s.groups) * s.R * s.S;
  Buf<float> xf(nx), wf(nw), bf(b ? s.K : 0), yf(ny);
  widen_into(xf.p, x, nx);
  widen_into(wf.p, w, nw);
  if (b) widen_into(bf.p, b, s.K);
  conv2d_forward<float>(s, xf.p, wf.p, b ? bf.p : nullptr, yf.p);
  round_into(y, yf.p, ny);
}

template <typename H>
void float_backward_input(const Conv2dShape& s, const H* gy, const H* w, H* gx) {
  const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P * s.Q, nw = s.K * (s.C / s.groups) * s.R * s.S;
  Buf<float> gyf(ny), wf(nw), gxf(nx);
  widen_into(gyf.p, gy, ny);
  widen_into(wf.p, w, nw);
  conv2d_backward_input<float>(s, gyf.p, wf.p, gxf.p);
  round_into(gx, gxf.p, nx);
}

// gb[k] = sum of gY[:, k] in float32 (images in order), rounded once; gb may be nullptr
template <typename H>
void grad_bias_half(const Conv2dShape& s, const H* gy, H* gb) {
  if (!gb) return;
  const int64_t PQ = s.P * s.Q;
  at::parallel_for(0, s.K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      float acc = 0;
      for (int64_t n = 0; n < s.N; ++n) {
        const H* r = gy + (n * s.K + k) * PQ;
        float t = 0;
        for (int64_t i = 0; i < PQ; ++i) t += to_float(r[i]);
        acc += t;
      }
      gb[k] = round_to<H>(acc);
    }
  });
}

template <typename H>
void float_backward_weight(const Conv2dShape& s, const H* x, const H* gy, H* gw, H* gb) {
  const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P * s.Q, nw = s.K * (s.C / s.groups) * s.R * s.S;
  Buf<float> xf(nx), gyf(ny), gwf(nw), gbf(gb ? s.K : 0);
  widen_into(xf.p, x, nx);
  widen_into(gyf.p, gy, ny);
  conv2d_backward_weight<float>(s, xf.p, gyf.p, gwf.p, gb ? gbf.p : nullptr);
  round_into(gw, gwf.p, nw);
  if (gb) round_into(gb, gbf.p, s.K);
}

#if defined(__AVX512F__) && defined(__x86_64__)
bool amx_fits(const Conv2dShape& s) { return amx_available() && offsets_fit(s); }
bool dot_fits(const Conv2dShape& s) { return conv2d_bf16_dot() && offsets_fit(s); }
bool stride1(const Conv2dShape& s) { return s.stride_h == 1 && s.stride_w == 1 && offsets_fit(transposed_shape(s)); }
bool amx_fits_input(const Conv2dShape& s) { return amx_available() && stride1(s); }
bool dot_fits_input(const Conv2dShape& s) { return conv2d_bf16_dot() && stride1(s); }
void amx_forward(const Conv2dShape& s, const bfloat16* x, const bfloat16* w, const bfloat16* b, bfloat16* y) {
  packed_forward(Engine::amx, s, x, w, b, y);
}
void dot_forward(const Conv2dShape& s, const bfloat16* x, const bfloat16* w, const bfloat16* b, bfloat16* y) {
  packed_forward(Engine::dot, s, x, w, b, y);
}
void amx_backward_input(const Conv2dShape& s, const bfloat16* gy, const bfloat16* w, bfloat16* gx) {
  packed_backward_input(Engine::amx, s, gy, w, gx);
}
void dot_backward_input(const Conv2dShape& s, const bfloat16* gy, const bfloat16* w, bfloat16* gx) {
  packed_backward_input(Engine::dot, s, gy, w, gx);
}
void amx_backward_weight(const Conv2dShape& s, const bfloat16* x, const bfloat16* gy, bfloat16* gw, bfloat16* gb) {
  grad_bias_half(s, gy, gb);
  amx_backward_weight_impl(s, x, gy, gw);
}
#endif

using ForwardFn = void (*)(const Conv2dShape&, const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*);
using BackwardInputFn = void (*)(const Conv2dShape&, const bfloat16*, const bfloat16*, bfloat16*);
using BackwardWeightFn = void (*)(const Conv2dShape&, const bfloat16*, const bfloat16*, bfloat16*, bfloat16*);
constexpr Variant<ForwardFn, Conv2dShape> kForward[] = {
    {"float", any_shape<Conv2dShape>, float_forward<bfloat16>},
#if defined(__AVX512F__) && defined(__x86_64__)
    {"amx", amx_fits, amx_forward},
    {"dot", dot_fits, dot_forward},
#endif
};
constexpr Variant<BackwardInputFn, Conv2dShape> kBackwardInput[] = {
    {"float", any_shape<Conv2dShape>, float_backward_input<bfloat16>},
#if defined(__AVX512F__) && defined(__x86_64__)
    {"amx", amx_fits_input, amx_backward_input},
    {"dot", dot_fits_input, dot_backward_input},
#endif
};

constexpr Variant<BackwardWeightFn, Conv2dShape> kBackwardWeight[] = {
    {"float", any_shape<Conv2dShape>, float_backward_weight<bfloat16>},
#if defined(__AVX512F__) && defined(__x86_64__)
    {"amx", amx_fits, amx_backward_weight},
#endif
};

// The planner: AMX where the CPU has it, the packed path takes the shape and the GEMM has at least 16
// rows (`rows`: output channels per group for the forward and the grad weight, input channels for the
// grad input), else float32 on widened copies.  With fewer rows a tile's work is mostly padding and
// the bfloat16 packing dominates: LeNet's 1->6 5x5 conv took 197 / 549 / 240 us (forward / grad input /
// grad weight) with amx against 169 / 495 / 114 with float; from 16 rows amx wins (DenseNet's 64->32 3x3
// @24: 1.33 / 0.96 / 2.08 ms against 3.24 / 2.93 / 3.47; Sapphire Rapids, 2 threads).  "dot" (vdpbf16ps) only when forced: on Sapphire Rapids it reached 56 GMAC/s per core against
// the float32 micro-kernel's 95 (one vdpbf16ps per two cycles), so it lost to widening there.
// `others`: the other directions' tables, whose variants (dot, for the grad weight) the forcing names
// without error (variant.h's forced).
template <typename V, std::size_t n, typename... Others>
const V& plan(const V (&table)[n], const Conv2dShape& s, int64_t rows, const Others&... others) {
  if (const V* v = forced(table, "conv2d", "CNNEXT_CONV2D_BF16", s, others...)) return *v;
  const V* amx = find_variant(table, "amx");
  return amx && rows >= 16 && amx->runs(s) ? *amx : table[0];
}
}  // namespace

#if defined(__AVX512F__) && defined(__x86_64__)
bool conv2d_bf16_dot() {
  static const bool ok = __builtin_cpu_supports("avx512bf16");
  return ok;
}
bool conv2d_bf16_amx() { return amx_available(); }
#else
bool conv2d_bf16_dot() { return false; }
bool conv2d_bf16_amx() { return false; }
#endif

// The entries for H = bfloat16 (the planner's variant) and float16 (the "float" variant alone: no float16
// dot product or tile on the AVX-512 subsets every variant may use), with the empty cases of conv2d.cpp's
// float entries (csrc/ops zeroes both grad-weight outputs of an empty batch itself).
template <typename H>
void conv2d_forward_half(const Conv2dShape& s, const H* x, const H* w, const H* b, H* y) {
  if (s.N * s.P * s.Q == 0 || s.K == 0) return;
  if constexpr (std::is_same_v<H, bfloat16>) plan(kForward, s, s.K / s.groups).fn(s, x, w, b, y);
  else float_forward(s, x, w, b, y);
}

template <typename H>
void conv2d_backward_input_half(const Conv2dShape& s, const H* gy, const H* w, H* gx) {
  const int64_t nx = s.N * s.C * s.H * s.W;
  if (nx == 0) return;
  if (s.N * s.P * s.Q == 0 || s.K == 0) {
    for (int64_t i = 0; i < nx; ++i) gx[i] = H{0};
    return;
  }
  if constexpr (std::is_same_v<H, bfloat16>) plan(kBackwardInput, s, s.C / s.groups).fn(s, gy, w, gx);
  else float_backward_input(s, gy, w, gx);
}

template <typename H>
void conv2d_backward_weight_half(const Conv2dShape& s, const H* x, const H* gy, H* gw, H* gb) {
  if (s.K * (s.C / s.groups) * s.R * s.S == 0) return grad_bias_half(s, gy, gb);
  // dot has no grad weight: CNNEXT_CONV2D_BF16=dot leaves it to the planner
  if constexpr (std::is_same_v<H, bfloat16>) plan(kBackwardWeight, s, s.K / s.groups, kForward).fn(s, x, gy, gw, gb);
  else float_backward_weight(s, x, gy, gw, gb);
}

#define CNNEXT_INSTANTIATE(H)                                                                                  \
  template void conv2d_forward_half<H>(const Conv2dShape&, const H*, const H*, const H*, H*);               \
  template void conv2d_backward_input_half<H>(const Conv2dShape&, const H*, const H*, H*);                  \
  template void conv2d_backward_weight_half<H>(const Conv2dShape&, const H*, const H*, H*, H*);
CNNEXT_INSTANTIATE(bfloat16)
CNNEXT_INSTANTIATE(float16)
#undef CNNEXT_INSTANTIATE

}  // namespace cnnext::cpu
