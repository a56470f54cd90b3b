// conv2d_im2col.h -- the on-the-fly im2col: tables of the unrolled input's rows and columns, and the
// packers that write GEMM B micro-panels straight from x (no col buffer is built).  Internal to
// csrc/cpu/conv2d_*.cpp (anonymous namespace, like conv2d_gemm.h).
//
// Notation: per group g, Cg = C/groups input channels, CRS = Cg*R*S rows (c, r, s) of the unrolled
// input, and the columns j = (n, p, q) run over every output pixel of the whole batch:
//   col[(c, r, s), (n, p, q)] = x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]   (0 in the padding)
//
// Row tables (RowTab), built two ways:
//   rows_im2col  rows (c, r, s) of an NCHW x, optionally segmented into runs (grad weight's lanes)
//   rows_planes  rows always in bounds at a fixed stride (the channels of gY: strided grad input)
// Column tables (ColTab, fill_cols): per output pixel its image, receptive field origin (h0, w0)
// and base offset, plus the runs of consecutive bases.
// B packers, one per layout of B:
//   pack_b_cols  [kc][NR] panel, rows = RowTab rows, lanes = columns (forward, grad input): per row
//                one masked load when the columns are contiguous in x (1x1 convs: always), a few
//                masked loads when they are a few runs (image rows), with stride 2 two masked loads
//                and an even-lane permute per run, else one masked gather; the padding is the mask.
//   pack_b_rows  [kc][NR] panel of col transposed, rows = columns j, lanes = rows (c, r, s) (grad
//                weight, NCHW x): masked runs of consecutive s, or a gather.
#pragma once
#include "conv2d_gemm.h"

namespace cnnext::cpu {
namespace {


// ---------------------------------------------------------------------------------------------
// Tables for the on-the-fly im2col.  A "row" is (c, r, s): offset c*HW + r*dh*W + s*dw and the
// shifts rh = r*dh, rs = s*dw.  A "column" is an output pixel (n, p, q) of a block that starts at
// image n0: base = (n - n0)*img + h0*W + w0 with h0 = p*sh - ph, w0 = q*sw - pw.  Element (row, col)
// is X[base + off] when 0 <= h0 + rh < H and 0 <= w0 + rs < W, else 0.
struct RowTab {
  std::vector<int32_t> off, rh, rs;
  // per group of 16 rows used as lanes (grad weight): runs of consecutive offsets (lane mask,
  // offset - first lane), so a lane vector is a few masked loads instead of a gather
  std::vector<uint16_t> smask;
  std::vector<int32_t> soff;
  std::vector<uint8_t> nseg;
  void segment() {
    const int64_t n = int64_t(off.size());
    smask.assign(n + 16, 0); soff.assign(n + 16, 0); nseg.assign(n / 16 + 1, 0);
    for (int64_t v = 0; v * 16 < n; ++v) {
      int ns = 0;
      for (int64_t l = 0; l < 16 && v * 16 + l < n; ++l) {
        const int64_t i = v * 16 + l;
        if (l == 0 || (rh[i] != kInvalid && off[i] != off[i - 1] + 1)) {
          soff[v * 16 + ns] = off[i] - int32_t(l);
          ++ns;
        }
        smask[v * 16 + ns - 1] |= uint16_t(1u << l);
      }
      nseg[v] = uint8_t(ns);
    }
  }
};

// Stride 1: the grad input of s is the forward conv, of this shape, of gY with the flipped, transposed
// kernel, pad' = dil*(R-1) - pad (the transposed / amx grad-input variants).
inline Conv2dShape transposed_shape(const Conv2dShape& s) {
  Conv2dShape t = s;
  t.C = s.K, t.H = s.P, t.W = s.Q, t.K = s.C, t.P = s.H, t.Q = s.W;
  t.pad_h = s.dil_h * (s.R - 1) - s.pad_h, t.pad_w = s.dil_w * (s.S - 1) - s.pad_w;
  return t;
}

// rows (c, r, s) of the unrolled input; `pad_to` rows in all, the extra ones always out of bounds.
RowTab rows_im2col(const Conv2dShape& s, int64_t Cg, int64_t pad_to) {
  RowTab t;
  const int64_t CRS = Cg * s.R * s.S;
  t.off.assign(pad_to, 0);
  t.rh.assign(pad_to, kInvalid);
  t.rs.assign(pad_to, kInvalid);
  for (int64_t i = 0; i < CRS; ++i) {
    const int64_t c = i / (s.R * s.S), r = (i / s.S) % s.R, q = i % s.S;
    t.off[i] = int32_t(c * s.H * s.W + r * s.dil_h * s.W + q * s.dil_w);
    t.rh[i] = int32_t(r * s.dil_h);
    t.rs[i] = int32_t(q * s.dil_w);
  }
  return t;
}

// n rows that are always in bounds, row i at offset i*stride (rh = rs = 0, packed with H = W = 1).
RowTab rows_planes(int64_t n, int64_t stride) {
  RowTab t;
  t.off.resize(n);
  t.rh.assign(n, 0);
  t.rs.assign(n, 0);
  for (int64_t k = 0; k < n; ++k) t.off[k] = int32_t(k * stride);
  return t;
}

struct ColTab {
  std::vector<int32_t> base, h0, w0;
  std::vector<char> contig;  // per panel of NR: the valid columns' bases are consecutive
  // per group of 16 columns: the runs of bases in steps of `step` (1, or the stride 2) -- lane mask,
  // base - step*lane -- for the AVX-512 packing: one masked load (step 2: two and a permute) per run
  // instead of a gather
  std::vector<uint16_t> smask;
  std::vector<int32_t> soff;
  std::vector<uint8_t> nseg;
  int64_t step = 1;
  int64_t n0 = 0;            // first image of the block
  void resize(int64_t n) {
    base.resize(n); h0.resize(n); w0.resize(n); contig.resize(n);
    smask.resize(n + 16); soff.resize(n + 16); nseg.resize(n / 16 + 1);
  }
};

// Columns j0 .. j0+nc of the whole batch, padded to ncpad.  img: element stride of one image.
// conv = true: (h0, w0) of the receptive field; false: columns address a (K, P*Q) plane directly
// (base = (n - n0)*img + p*Q + q, always in bounds).
template <int64_t nr>
void fill_cols(ColTab& t, const Conv2dShape& s, int64_t j0, int64_t nc, int64_t ncpad, int64_t img, bool conv) {
  const int64_t PQ = s.P * s.Q;
  t.resize(ncpad);
  t.n0 = j0 / PQ;
  int64_t n = t.n0, pq = j0 - t.n0 * PQ;
  for (int64_t j = 0; j < ncpad; ++j) {
    if (j < nc) {
      const int64_t p = pq / s.Q, q = pq % s.Q;
      if (conv) {
        t.h0[j] = int32_t(p * s.stride_h - s.pad_h);
        t.w0[j] = int32_t(q * s.stride_w - s.pad_w);
        t.base[j] = int32_t((n - t.n0) * img + int64_t(t.h0[j]) * s.W + t.w0[j]);
      } else {
        t.h0[j] = t.w0[j] = 0;
        t.base[j] = int32_t((n - t.n0) * img + pq);
      }
      if (++pq == PQ) pq = 0, ++n;
    } else {
      t.h0[j] = t.w0[j] = kInvalid;
      t.base[j] = 0;
    }
  }
  for (int64_t jr = 0; jr < ncpad; jr += nr) {
    bool c = true;
    for (int64_t l = 1; l < nr && jr + l < nc; ++l) c &= t.base[jr + l] == t.base[jr] + l;
    t.contig[jr / nr] = c;
  }
  t.step = conv && s.stride_w == 2 ? 2 : 1;
  for (int64_t v = 0; v * 16 < ncpad; ++v) {
    int ns = 0;
    for (int64_t l = 0; l < 16 && v * 16 + l < ncpad; ++l) {
      const int64_t j = v * 16 + l;
      if (l == 0 || (j < nc && t.base[j] != t.base[j - 1] + t.step)) {
        t.smask[v * 16 + ns] = 0;
        t.soff[v * 16 + ns] = int32_t(t.base[j] - t.step * l);
        ++ns;
      }
      t.smask[v * 16 + ns - 1] |= uint16_t(1u << l);
    }
    t.nseg[v] = uint8_t(ns);
  }
}

// B panel [kc][NR] of rows r0..r0+kc (RowTab) and columns jr..jr+NR (ColTab) of the unrolled X.
template <typename T>
void pack_b_cols(T* __restrict__ out, const T* X, const ColTab& ct, int64_t jr, const RowTab& rt, int64_t r0,
                 int64_t kc, int64_t H, int64_t W) {
  constexpr int64_t nr = NR<T>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i Hv = _mm512_set1_epi32(int32_t(H)), Wv = _mm512_set1_epi32(int32_t(W));
    const __m512i h0a = _mm512_loadu_si512(ct.h0.data() + jr), h0b = _mm512_loadu_si512(ct.h0.data() + jr + 16);
    const __m512i w0a = _mm512_loadu_si512(ct.w0.data() + jr), w0b = _mm512_loadu_si512(ct.w0.data() + jr + 16);
    if (ct.contig[jr / nr]) {
      const float* xb = X + ct.base[jr];
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __mmask16 ma = in_bounds16(h0a, rh, Hv, w0a, rs, Wv);
        const __mmask16 mb = in_bounds16(h0b, rh, Hv, w0b, rs, Wv);
        const float* src = xb + rt.off[r0 + k];
        _mm512_store_ps(out + k * nr, _mm512_maskz_loadu_ps(ma, src));
        _mm512_store_ps(out + k * nr + 16, _mm512_maskz_loadu_ps(mb, src + 16));
      }
#if defined(__BMI2__)
    } else if (ct.step == 2 && ct.nseg[jr / 16] <= 4 && ct.nseg[jr / 16 + 1] <= 4) {
      // stride 2, a few runs: lane l of a run reads p[2l], the even elements of two masked loads
      const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      const int na = ct.nseg[jr / 16], nb = ct.nseg[jr / 16 + 1];
      const uint16_t* sma = ct.smask.data() + jr;
      const int32_t* soa = ct.soff.data() + jr;
      auto runs = [&](const float* src, __mmask16 m, const uint16_t* sm, const int32_t* so, int ns) {
        __m512 v = _mm512_setzero_ps();
        for (int i = 0; i < ns; ++i) {
          const __mmask16 mm = m & sm[i];
          const uint32_t lm = _pdep_u32(mm, 0x55555555u);
          const __m512 lo = _mm512_maskz_loadu_ps(__mmask16(lm), src + so[i]);
          const __m512 hi = _mm512_maskz_loadu_ps(__mmask16(lm >> 16), src + so[i] + 16);
          v = _mm512_mask_mov_ps(v, mm, _mm512_permutex2var_ps(lo, even, hi));
        }
        return v;
      };
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __mmask16 ma = in_bounds16(h0a, rh, Hv, w0a, rs, Wv);
        const __mmask16 mb = in_bounds16(h0b, rh, Hv, w0b, rs, Wv);
        const float* src = X + rt.off[r0 + k];
        _mm512_store_ps(out + k * nr, runs(src, ma, sma, soa, na));
        _mm512_store_ps(out + k * nr + 16, runs(src, mb, sma + 16, soa + 16, nb));
      }
#endif
    } else if (ct.step == 1 && ct.nseg[jr / 16] <= 8 && ct.nseg[jr / 16 + 1] <= 8) {  // a few runs: masked loads
      const int na = ct.nseg[jr / 16], nb = ct.nseg[jr / 16 + 1];
      const uint16_t* sma = ct.smask.data() + jr;
      const int32_t* soa = ct.soff.data() + jr;
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __mmask16 ma = in_bounds16(h0a, rh, Hv, w0a, rs, Wv);
        const __mmask16 mb = in_bounds16(h0b, rh, Hv, w0b, rs, Wv);
        const float* src = X + rt.off[r0 + k];
        __m512 va = _mm512_setzero_ps(), vb = _mm512_setzero_ps();
        for (int i = 0; i < na; ++i) va = _mm512_mask_loadu_ps(va, ma & sma[i], src + soa[i]);
        for (int i = 0; i < nb; ++i) vb = _mm512_mask_loadu_ps(vb, mb & sma[16 + i], src + soa[16 + i]);
        _mm512_store_ps(out + k * nr, va);
        _mm512_store_ps(out + k * nr + 16, vb);
      }
    } else {
      const __m512i ba = _mm512_loadu_si512(ct.base.data() + jr), bb = _mm512_loadu_si512(ct.base.data() + jr + 16);
      for (int64_t k = 0; k < kc; ++k) {
        const __m512i rh = _mm512_set1_epi32(rt.rh[r0 + k]), rs = _mm512_set1_epi32(rt.rs[r0 + k]);
        const __m512i off = _mm512_set1_epi32(rt.off[r0 + k]);
        const __mmask16 ma = in_bounds16(h0a, rh, Hv, w0a, rs, Wv);
        const __mmask16 mb = in_bounds16(h0b, rh, Hv, w0b, rs, Wv);
        _mm512_store_ps(out + k * nr,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ma, _mm512_add_epi32(ba, off), X, 4));
        _mm512_store_ps(out + k * nr + 16,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mb, _mm512_add_epi32(bb, off), X, 4));
      }
    }
    return;
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {  // NR = 16: two vectors of 8 lanes per row of the panel
    auto ld = [](const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
    const __m256i Hv = _mm256_set1_epi32(int32_t(H)), Wv = _mm256_set1_epi32(int32_t(W));
    const __m256i h0a = ld(ct.h0.data() + jr), h0b = ld(ct.h0.data() + jr + 8);
    const __m256i w0a = ld(ct.w0.data() + jr), w0b = ld(ct.w0.data() + jr + 8);
    const bool contig = ct.contig[jr / nr];
    const __m256i ba = ld(ct.base.data() + jr), bb = ld(ct.base.data() + jr + 8);
    for (int64_t k = 0; k < kc; ++k) {
      const __m256i rh = _mm256_set1_epi32(rt.rh[r0 + k]), rs = _mm256_set1_epi32(rt.rs[r0 + k]);
      const __m256i ma = in_bounds8(h0a, rh, Hv, w0a, rs, Wv), mb = in_bounds8(h0b, rh, Hv, w0b, rs, Wv);
      if (contig) {  // masked loads (a masked-off lane reads nothing, so it cannot fault)
        const float* src = X + ct.base[jr] + rt.off[r0 + k];
        _mm256_store_ps(out + k * nr, _mm256_maskload_ps(src, ma));
        _mm256_store_ps(out + k * nr + 8, _mm256_maskload_ps(src + 8, mb));
      } else {  // masked gathers
        const __m256i off = _mm256_set1_epi32(rt.off[r0 + k]);
        const __m256 z = _mm256_setzero_ps();
        _mm256_store_ps(out + k * nr, _mm256_mask_i32gather_ps(z, X, _mm256_add_epi32(ba, off),
                                                               _mm256_castsi256_ps(ma), 4));
        _mm256_store_ps(out + k * nr + 8, _mm256_mask_i32gather_ps(z, X, _mm256_add_epi32(bb, off),
                                                                   _mm256_castsi256_ps(mb), 4));
      }
    }
    return;
  }
#endif
  for (int64_t k = 0; k < kc; ++k) {
    const int32_t rh = rt.rh[r0 + k], rs = rt.rs[r0 + k];
    const int64_t off = rt.off[r0 + k];
    T* o = out + k * nr;
    for (int64_t l = 0; l < nr; ++l) {
      const int64_t j = jr + l;
      const bool ok = in_bounds(ct.h0[j] + rh, H, ct.w0[j] + rs, W);
      o[l] = ok ? X[ct.base[j] + off] : T(0);
    }
  }
}

// B panel [kc][NR] of the transposed unrolled X: rows are columns j (ColTab, jrow0..jrow0+kc), lanes
// are rows (c, r, s) lane0..lane0+NR of the RowTab.
template <typename T>
void pack_b_rows(T* __restrict__ out, const T* X, const ColTab& ct, int64_t jrow0, int64_t kc, const RowTab& rt,
                 int64_t lane0, int64_t H, int64_t W) {
  constexpr int64_t nr = NR<T>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i Hv = _mm512_set1_epi32(int32_t(H)), Wv = _mm512_set1_epi32(int32_t(W));
    const __m512i rha = _mm512_loadu_si512(rt.rh.data() + lane0), rhb = _mm512_loadu_si512(rt.rh.data() + lane0 + 16);
    const __m512i rsa = _mm512_loadu_si512(rt.rs.data() + lane0), rsb = _mm512_loadu_si512(rt.rs.data() + lane0 + 16);
    const __m512i oa = _mm512_loadu_si512(rt.off.data() + lane0), ob = _mm512_loadu_si512(rt.off.data() + lane0 + 16);
    const int na = rt.nseg[lane0 / 16], nb = rt.nseg[lane0 / 16 + 1];
    if (na <= 6 && nb <= 6) {  // a few runs of consecutive addresses: masked loads
      const uint16_t* sm = rt.smask.data() + lane0;
      const int32_t* so = rt.soff.data() + lane0;
      for (int64_t k = 0; k < kc; ++k) {
        const int64_t j = jrow0 + k;
        const __m512i h0 = _mm512_set1_epi32(ct.h0[j]), w0 = _mm512_set1_epi32(ct.w0[j]);
        const __mmask16 ma = in_bounds16(h0, rha, Hv, w0, rsa, Wv);
        const __mmask16 mb = in_bounds16(h0, rhb, Hv, w0, rsb, Wv);
        const float* src = X + ct.base[j];
        __m512 va = _mm512_setzero_ps(), vb = _mm512_setzero_ps();
        for (int i = 0; i < na; ++i) va = _mm512_mask_loadu_ps(va, ma & sm[i], src + so[i]);
        for (int i = 0; i < nb; ++i) vb = _mm512_mask_loadu_ps(vb, mb & sm[16 + i], src + so[16 + i]);
        _mm512_store_ps(out + k * nr, va);
        _mm512_store_ps(out + k * nr + 16, vb);
      }
      return;
    }
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t j = jrow0 + k;
      const __m512i h0 = _mm512_set1_epi32(ct.h0[j]), w0 = _mm512_set1_epi32(ct.w0[j]);
      const __m512i b = _mm512_set1_epi32(ct.base[j]);
      const __mmask16 ma = in_bounds16(h0, rha, Hv, w0, rsa, Wv);
      const __mmask16 mb = in_bounds16(h0, rhb, Hv, w0, rsb, Wv);
      _mm512_store_ps(out + k * nr, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ma, _mm512_add_epi32(b, oa), X, 4));
      _mm512_store_ps(out + k * nr + 16,
                      _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mb, _mm512_add_epi32(b, ob), X, 4));
    }
    return;
  }
#endif
  for (int64_t k = 0; k < kc; ++k) {
    const int64_t j = jrow0 + k;
    T* o = out + k * nr;
    for (int64_t l = 0; l < nr; ++l) {
      const int64_t i = lane0 + l;
      const bool ok = in_bounds(ct.h0[j] + rt.rh[i], H, ct.w0[j] + rt.rs[i], W);
      o[l] = ok ? X[int64_t(ct.base[j]) + rt.off[i]] : T(0);
    }
  }
}

}  // namespace
}  // namespace cnnext::cpu
