//! AVX-512 BF16 tiles: matrix products of bf16 operands with f32 sums, and the conversions
//! from f32 into the layouts they read.
//!
//! `vdpbf16ps` multiplies 16 pairs of bf16 values per vector and adds each pair's two
//! products to one f32 lane. The operands are therefore stored as pairs of consecutive `k`
//! elements in 32-bit words, the first element in the low half. A row of `k` values becomes
//! `⌈k/2⌉` words, with a zero after an odd last element. The tiles mirror the f32 ones in [`super::avx512`] and use
//! the same stores.
//!
//! As there, callers check bounds: every function reads and writes through raw pointers that
//! must stay inside the caller's slices for the shapes given.

use super::avx512::{lanes, reduce_16, BroadcastAcc, Store, BROADCAST_ROWS, BROADCAST_VECTORS};
use std::arch::x86_64::*;

/// Returns whether the CPU runs these kernels.
pub fn available() -> bool {
    super::avx512::available() && is_x86_feature_detected!("avx512bf16")
}

/// Loads 16 pair words as a bf16 vector, the lanes past `n` zero.
#[inline(always)]
unsafe fn load_pairs(p: *const u32, n: usize) -> __m512bh {
    let words = _mm512_maskz_loadu_epi32(lanes(n), p.cast());
    // SAFETY: both types are 512 bits of plain data.
    std::mem::transmute::<__m512i, __m512bh>(words)
}

/// Computes the 16 dot products of pair rows `a[r]` and `b[c]`, each `pairs` words long, and
/// returns them as [`super::avx512::dot_tile`] does: lane `4 r + c`.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512 BF16, and every pointer must be valid for
/// `pairs` reads.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn dot_tile(pairs: usize, a: [*const u32; 4], b: [*const u32; 4]) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); 16];
    let mut q = 0;
    while q < pairs {
        let n = (pairs - q).min(16);
        let av = [
            load_pairs(a[0].add(q), n),
            load_pairs(a[1].add(q), n),
            load_pairs(a[2].add(q), n),
            load_pairs(a[3].add(q), n),
        ];
        for c in 0..4 {
            let bv = load_pairs(b[c].add(q), n);
            for r in 0..4 {
                acc[4 * r + c] = _mm512_dpbf16_ps(acc[4 * r + c], av[r], bv);
            }
        }
        q += 16;
    }
    reduce_16(&acc)
}

/// Computes a tile of `op(A) B` over `pairs` pair rows, as [`super::avx512::broadcast_tile`]
/// does in f32. Row `r` of `op(A)` has pair word `q` at `a[r] + q * a_step`. Pair row `q`
/// of `B` starts at `b + q * ldb`, 16 words per vector and the last vector masked to `last`.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512 BF16; `a[r] + q * a_step` must be valid for
/// every `q < pairs`, and `b + q * ldb` for `16 (NV − 1) + last` reads.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn broadcast_tile<const NV: usize>(
    pairs: usize,
    a: [*const u32; BROADCAST_ROWS],
    a_step: usize,
    b: *const u32,
    ldb: usize,
    last: usize,
) -> BroadcastAcc {
    let mut acc = [[_mm512_setzero_ps(); BROADCAST_VECTORS]; BROADCAST_ROWS];
    let zero = load_pairs(b, 0);
    for q in 0..pairs {
        let row = b.add(q * ldb);
        let mut bv = [zero; BROADCAST_VECTORS];
        for (v, slot) in bv.iter_mut().enumerate().take(NV) {
            *slot = load_pairs(row.add(16 * v), if v + 1 == NV { last } else { 16 });
        }
        for r in 0..BROADCAST_ROWS {
            let word = _mm512_set1_epi32(*a[r].add(q * a_step) as i32);
            let s = std::mem::transmute::<__m512i, __m512bh>(word);
            for v in 0..NV {
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], s, bv[v]);
            }
        }
    }
    acc
}

/// Computes a tile as [`broadcast_tile`] does and stores its first `rows` rows at `c` (row
/// stride `ldb`) as [`super::avx512::store_broadcast_tile`] does. One function keeps the
/// accumulators in registers from the first product to the store, where a call to
/// [`broadcast_tile`] from code without these target features returns them through memory.
///
/// # Safety
///
/// As for [`broadcast_tile`] and [`super::avx512::store_broadcast_tile`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn broadcast_tile_and_store<const NV: usize>(
    pairs: usize,
    a: [*const u32; BROADCAST_ROWS],
    a_step: usize,
    b: *const u32,
    ldb: usize,
    last: usize,
    (rows, c): (usize, *mut f32),
    store: &Store,
) {
    let acc = broadcast_tile::<NV>(pairs, a, a_step, b, ldb, last);
    super::avx512::store_broadcast_tile::<NV>(&acc, rows, last, c, ldb, store);
}

/// Converts `cols` f32 values at `src` to bf16 pair words at `dst` (`⌈cols/2⌉` words),
/// rounding to nearest even.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512 BF16, `src` must be valid for `cols` reads and
/// `dst` for `⌈cols/2⌉` writes.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn row_to_pairs(src: *const f32, cols: usize, dst: *mut u32) {
    let mut j = 0;
    while j < cols {
        let lo = _mm512_maskz_loadu_ps(lanes(cols - j), src.add(j));
        let hi_count = (cols - j).saturating_sub(16);
        let hi = _mm512_maskz_loadu_ps(lanes(hi_count), src.add(j + 16.min(cols - j)));
        // The low 16 bf16 values come from the second operand.
        let packed = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        let words = (cols - j).min(32).div_ceil(2);
        _mm512_mask_storeu_epi32(dst.add(j / 2).cast(), lanes(words), packed);
        j += 32;
    }
}

/// Interleaves rows `even` and `odd` (`cols` f32 values each, `odd` null for a zero row)
/// into `cols` pair words at `dst`. Word `j` contains `even[j]` in its low half and
/// `odd[j]` in its high half, both rounded to bf16.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512 BF16, `even` (and `odd` unless null) must be
/// valid for `cols` reads, and `dst` for `cols` writes.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn interleave_rows(even: *const f32, odd: *const f32, cols: usize, dst: *mut u32) {
    let mut j = 0;
    while j < cols {
        let m = lanes(cols - j);
        let e = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, even.add(j)));
        let o = if odd.is_null() {
            _mm512_cvtneps_pbh(_mm512_setzero_ps())
        } else {
            _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, odd.add(j)))
        };
        let e = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(e));
        let o = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(o));
        let words = _mm512_or_si512(e, _mm512_slli_epi32::<16>(o));
        _mm512_mask_storeu_epi32(dst.add(j).cast(), m, words);
        j += 16;
    }
}

/// Converts a block of `B`, up to 16 rows `j` (each at `src + j * k`, `rows` of them) by
/// the pairs `q0..q0 + 16` of their `k` values, into the transposed layout: word `(q, j)` at
/// `dst + (q − q0) * ldd + j` contains `bf16(B[j][2q])` and `bf16(B[j][2q + 1])`. Pairs past
/// `⌈k/2⌉` are not written.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512 BF16. Rows `0..rows` (at most 16) of `src`
/// must be valid for `k` reads, and `dst` for the words written.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn transpose_to_pairs(
    src: *const f32,
    rows: usize,
    k: usize,
    q0: usize,
    dst: *mut u32,
    ldd: usize,
) {
    let p0 = 2 * q0;
    let (lo_count, hi_count) = ((k - p0).min(16), (k - p0).saturating_sub(16).min(16));
    let mut r = [_mm512_setzero_si512(); 16];
    for (j, slot) in r.iter_mut().enumerate().take(rows) {
        let row = src.add(j * k + p0);
        let lo = _mm512_maskz_loadu_ps(lanes(lo_count), row);
        let hi = _mm512_maskz_loadu_ps(lanes(hi_count), row.add(lo_count));
        *slot = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
    }
    let out = transpose_16(&r);
    let pairs = (k - p0).min(32).div_ceil(2);
    for (q, words) in out.iter().enumerate().take(pairs) {
        _mm512_mask_storeu_epi32(dst.add(q * ldd).cast(), lanes(rows), *words);
    }
}

/// Transposes a 16 × 16 matrix of 32-bit words held one row per vector.
#[inline(always)]
unsafe fn transpose_16(r: &[__m512i; 16]) -> [__m512i; 16] {
    // Within 128-bit lanes: interleave row pairs by 32 bits, then by 64 bits, so that
    // u[4 g + s] contains, in lane l, rows 4 g .. 4 g + 3 of column 4 l + s.
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    // Across lanes: column 4 l + s gathers lane l of u[s], u[4 + s], u[8 + s], u[12 + s].
    const LOW: i32 = 0b01_00_01_00;
    const HIGH: i32 = 0b11_10_11_10;
    const EVEN: i32 = 0b10_00_10_00;
    const ODD: i32 = 0b11_01_11_01;
    let mut out = [_mm512_setzero_si512(); 16];
    for s in 0..4 {
        let p_low = _mm512_shuffle_i32x4::<LOW>(u[s], u[4 + s]);
        let p_high = _mm512_shuffle_i32x4::<HIGH>(u[s], u[4 + s]);
        let q_low = _mm512_shuffle_i32x4::<LOW>(u[8 + s], u[12 + s]);
        let q_high = _mm512_shuffle_i32x4::<HIGH>(u[8 + s], u[12 + s]);
        out[s] = _mm512_shuffle_i32x4::<EVEN>(p_low, q_low);
        out[4 + s] = _mm512_shuffle_i32x4::<ODD>(p_low, q_low);
        out[8 + s] = _mm512_shuffle_i32x4::<EVEN>(p_high, q_high);
        out[12 + s] = _mm512_shuffle_i32x4::<ODD>(p_high, q_high);
    }
    out
}
