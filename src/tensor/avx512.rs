//! AVX-512 f32 matrix-product tiles, without packing.
//!
//! Two tile shapes cover the products of a dense layer stored row-major:
//!
//! - [`dot_tile`] computes a 4 × 4 block of `A Bᵀ` as 16 dot products along `k`, for the
//!   forward product `X Wᵀ`, where both operands are contiguous along `k`;
//! - [`broadcast_tile`] computes a 6 × 64 block of `op(A) B` by broadcasting elements of `A`
//!   against rows of `B`, for the gradient products `dYᵀ X` and `dY W`.
//!
//! Callers check bounds: every function here is `unsafe` and reads and writes through raw
//! pointers that must stay inside the caller's slices for the shapes given.

use std::arch::x86_64::*;

/// Rows of a broadcast tile.
pub const BROADCAST_ROWS: usize = 6;
/// Vectors of 16 columns in a broadcast tile.
pub const BROADCAST_VECTORS: usize = 4;
/// Columns of a full broadcast tile.
pub const BROADCAST_COLS: usize = 16 * BROADCAST_VECTORS;
/// Rows and columns of a dot tile.
pub const DOT_SIDE: usize = 4;

/// Returns whether the CPU runs these kernels.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}

/// Returns the mask of the first `n` of 16 lanes.
#[inline(always)]
pub(super) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Computes the 16 dot products `a[r] · b[c]` over `k` elements and returns them in one
/// vector, lane `4 r + c`, so that 128-bit block `r` holds row `r` of the tile.
///
/// # Safety
///
/// The CPU must support AVX-512F, and every pointer must be valid for `k` reads.
#[inline]
#[target_feature(enable = "avx512f")]
pub unsafe fn dot_tile(k: usize, a: [*const f32; 4], b: [*const f32; 4]) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); 16];
    let mut p = 0;
    while p + 16 <= k {
        let av = [
            _mm512_loadu_ps(a[0].add(p)),
            _mm512_loadu_ps(a[1].add(p)),
            _mm512_loadu_ps(a[2].add(p)),
            _mm512_loadu_ps(a[3].add(p)),
        ];
        for c in 0..4 {
            let bv = _mm512_loadu_ps(b[c].add(p));
            for r in 0..4 {
                acc[4 * r + c] = _mm512_fmadd_ps(av[r], bv, acc[4 * r + c]);
            }
        }
        p += 16;
    }
    if p < k {
        // Masked loads read nothing past the end of a row, so the tail needs no padding.
        let m = lanes(k - p);
        let av = [
            _mm512_maskz_loadu_ps(m, a[0].add(p)),
            _mm512_maskz_loadu_ps(m, a[1].add(p)),
            _mm512_maskz_loadu_ps(m, a[2].add(p)),
            _mm512_maskz_loadu_ps(m, a[3].add(p)),
        ];
        for c in 0..4 {
            let bv = _mm512_maskz_loadu_ps(m, b[c].add(p));
            for r in 0..4 {
                acc[4 * r + c] = _mm512_fmadd_ps(av[r], bv, acc[4 * r + c]);
            }
        }
    }
    reduce_16(&acc)
}

/// Returns the vector whose lane `l` is the sum of the lanes of `v[l]`, with 45 shuffles
/// and additions where 16 separate reductions would take about 130.
#[inline(always)]
pub(super) unsafe fn reduce_16(v: &[__m512; 16]) -> __m512 {
    // Within each 128-bit block, interleave pairs of vectors and add: block lanes become
    // partial sums [x, y, x, y] of the pair (x, y).
    let mut u = [_mm512_setzero_ps(); 8];
    for q in 0..8 {
        let (x, y) = (v[2 * q], v[2 * q + 1]);
        u[q] = _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
    }
    // Interleave pairs by 64 bits and add: block lanes become partial sums of four vectors.
    let mut w = [_mm512_setzero_ps(); 4];
    for q in 0..4 {
        let (x, y) = (_mm512_castps_pd(u[2 * q]), _mm512_castps_pd(u[2 * q + 1]));
        let lo = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
        let hi = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
        w[q] = _mm512_add_ps(lo, hi);
    }
    // Add the four 128-bit blocks of each w[q] in two rounds of block shuffles, which leave
    // the totals of w[q] in block q.
    const EVEN: i32 = 0b10_00_10_00;
    const ODD: i32 = 0b11_01_11_01;
    let p = _mm512_add_ps(
        _mm512_shuffle_f32x4::<EVEN>(w[0], w[1]),
        _mm512_shuffle_f32x4::<ODD>(w[0], w[1]),
    );
    let q = _mm512_add_ps(
        _mm512_shuffle_f32x4::<EVEN>(w[2], w[3]),
        _mm512_shuffle_f32x4::<ODD>(w[2], w[3]),
    );
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<EVEN>(p, q),
        _mm512_shuffle_f32x4::<ODD>(p, q),
    )
}

/// The scaling, bias and ReLU that a tile applies to its product `P` when storing it in `C`.
#[derive(Clone, Copy)]
pub struct Store {
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the previous contents of `C`; `C` is not read when it is zero.
    pub beta: f32,
    /// Bias added to every row, indexed by column, or null.
    pub bias: *const f32,
    /// Second output for `max(C, 0)`, with the layout of `C`, or null.
    pub relu: *mut f32,
}

/// Stores rows `0..rows` and columns `0..cols` of a dot tile `t` into `c` (row stride
/// `ldc`) as `alpha t + beta c + bias`, and their ReLU where requested.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512VL. `c` (and `relu`, if not null) must be
/// valid for the rows and columns stored, `bias` (if not null) for `cols` reads.
#[inline]
#[target_feature(enable = "avx512f,avx512vl")]
pub unsafe fn store_dot_tile(
    t: __m512,
    rows: usize,
    cols: usize,
    c: *mut f32,
    ldc: usize,
    s: &Store,
) {
    let m = lanes(cols) as __mmask8;
    let mut t = _mm512_mul_ps(t, _mm512_set1_ps(s.alpha));
    if !s.bias.is_null() {
        let b = _mm_maskz_loadu_ps(m, s.bias);
        t = _mm512_add_ps(t, _mm512_broadcast_f32x4(b));
    }
    for r in 0..rows.min(4) {
        let row = c.add(r * ldc);
        let mut v = match r {
            0 => _mm512_extractf32x4_ps::<0>(t),
            1 => _mm512_extractf32x4_ps::<1>(t),
            2 => _mm512_extractf32x4_ps::<2>(t),
            _ => _mm512_extractf32x4_ps::<3>(t),
        };
        if s.beta != 0.0 {
            let old = _mm_maskz_loadu_ps(m, row);
            v = _mm_fmadd_ps(old, _mm_set1_ps(s.beta), v);
        }
        _mm_mask_storeu_ps(row, m, v);
        if !s.relu.is_null() {
            _mm_mask_storeu_ps(s.relu.add(r * ldc), m, _mm_max_ps(v, _mm_setzero_ps()));
        }
    }
}

/// Accumulators of one broadcast tile.
pub type BroadcastAcc = [[__m512; BROADCAST_VECTORS]; BROADCAST_ROWS];

/// Computes a tile of `op(A) B` over `k`: `NV` vectors of 16 columns (the last one masked
/// to `last` lanes) by [`BROADCAST_ROWS`] rows. Row `r` of `op(A)` has element `p` at
/// `a[r] + p * a_step`; row `p` of `B` starts at `b + p * ldb`.
///
/// # Safety
///
/// The CPU must support AVX-512F; `a[r] + p * a_step` must be valid for every `p < k`, and
/// `b + p * ldb` for `16 (NV − 1) + last` reads.
#[inline]
#[target_feature(enable = "avx512f")]
pub unsafe fn broadcast_tile<const NV: usize>(
    k: usize,
    a: [*const f32; BROADCAST_ROWS],
    a_step: usize,
    b: *const f32,
    ldb: usize,
    last: usize,
) -> BroadcastAcc {
    let mut acc = [[_mm512_setzero_ps(); BROADCAST_VECTORS]; BROADCAST_ROWS];
    let m = lanes(last);
    for p in 0..k {
        let row = b.add(p * ldb);
        let mut bv = [_mm512_setzero_ps(); BROADCAST_VECTORS];
        for (v, slot) in bv.iter_mut().enumerate().take(NV) {
            *slot = if v + 1 == NV {
                _mm512_maskz_loadu_ps(m, row.add(16 * v))
            } else {
                _mm512_loadu_ps(row.add(16 * v))
            };
        }
        for r in 0..BROADCAST_ROWS {
            let s = _mm512_set1_ps(*a[r].add(p * a_step));
            for v in 0..NV {
                acc[r][v] = _mm512_fmadd_ps(s, bv[v], acc[r][v]);
            }
        }
    }
    acc
}

/// Computes a tile as [`broadcast_tile`] does and stores its first `rows` rows at `c` (row
/// stride `ldc`) as [`store_broadcast_tile`] does. One function keeps the accumulators in
/// registers from the first product to the store, where a call to [`broadcast_tile`] from
/// code without this target feature returns them through memory.
///
/// # Safety
///
/// As for [`broadcast_tile`] and [`store_broadcast_tile`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub unsafe fn broadcast_tile_and_store<const NV: usize>(
    k: usize,
    a: [*const f32; BROADCAST_ROWS],
    a_step: usize,
    (b, ldb): (*const f32, usize),
    last: usize,
    (rows, c, ldc): (usize, *mut f32, usize),
    store: &Store,
) {
    let acc = broadcast_tile::<NV>(k, a, a_step, b, ldb, last);
    store_broadcast_tile::<NV>(&acc, rows, last, c, ldc, store);
}

/// Stores rows `0..rows` of a broadcast tile into `c` (row stride `ldc`) as
/// `alpha P + beta C + bias`, and their ReLU where requested, `NV` vectors per row with the
/// last masked to `last` lanes.
///
/// # Safety
///
/// The CPU must support AVX-512F. `c` (and `relu`, if not null) must be valid for the rows
/// and lanes stored, `bias` (if not null) for the lanes of one row.
///
/// The function has no target features of its own, so that it is inlined into the tile
/// functions that call it and the accumulators stay in registers. Callers without AVX-512F
/// enabled would run each intrinsic as a call.
#[inline(always)]
pub unsafe fn store_broadcast_tile<const NV: usize>(
    acc: &BroadcastAcc,
    rows: usize,
    last: usize,
    c: *mut f32,
    ldc: usize,
    s: &Store,
) {
    let alpha = _mm512_set1_ps(s.alpha);
    let beta = _mm512_set1_ps(s.beta);
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        let row = c.add(r * ldc);
        for (v, &sum) in acc_row.iter().enumerate().take(NV) {
            let m = if v + 1 == NV { lanes(last) } else { 0xFFFF };
            let mut x = _mm512_mul_ps(sum, alpha);
            if s.beta != 0.0 {
                x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row.add(16 * v)), beta, x);
            }
            if !s.bias.is_null() {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, s.bias.add(16 * v)));
            }
            _mm512_mask_storeu_ps(row.add(16 * v), m, x);
            if !s.relu.is_null() {
                let y = _mm512_max_ps(x, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(s.relu.add(r * ldc + 16 * v), m, y);
            }
        }
    }
}

/// Returns the sum of the squares of `x`, each square and sum in f64, over four vectors of
/// eight partial sums.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512VL.
#[target_feature(enable = "avx512f,avx512vl")]
pub unsafe fn sum_of_squares(x: &[f32]) -> f64 {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = [_mm512_setzero_pd(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let v = _mm512_cvtps_pd(_mm256_loadu_ps(p.add(i + 8 * j)));
            *acc = _mm512_fmadd_pd(v, v, *acc);
        }
        i += 32;
    }
    while i < n {
        let m = ((1u32 << (n - i).min(8)) - 1) as __mmask8;
        let v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, p.add(i)));
        acc[0] = _mm512_fmadd_pd(v, v, acc[0]);
        i += 8;
    }
    let sum = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
    _mm512_reduce_add_pd(sum)
}
