//! f32 matrix products computed from bf16 roundings of their operands with f32 sums, on
//! AVX-512 BF16: the operands are converted into per-thread buffers, then tiled and split
//! across threads as in [`super::matmul`].
//!
//! Each product element is `Σ_p bf16(a_ip) bf16(b_pj)` summed in f32. It therefore carries
//! the relative rounding error of bf16 (up to 2⁻⁹) on each operand, while the output and any
//! bias and ReLU stay f32. `A B`, `Aᵀ B` and `A Bᵀ` run on broadcast tiles over `op(B)` converted to pairs
//! of rows, interleaved (for `B`) or transposed (for `Bᵀ`). An `A Bᵀ` of fewer than 64
//! columns, where a broadcast tile would be mostly empty, runs on dot tiles over bf16 rows
//! of both operands instead. `Aᵀ Bᵀ` is not handled here.

use super::avx512::{Store, BROADCAST_COLS, BROADCAST_ROWS, DOT_SIDE};
use super::avx512_bf16 as kernel;
use super::matmul::DOT_ROW_BLOCK;
use super::matmul::{dense_operands, for_each_block, for_each_range, gemm_operands};
use super::matmul::{Shape, SharedOut};
use super::Transpose;
use std::cell::RefCell;
use std::ops::Range;

/// Pair rows of `B` per pass of broadcast tiles: 128 × 64 words (32 KB) stay in L1.
const BROADCAST_PAIRS: usize = 128;

/// Operands converted to bf16 pair words, one buffer per operand.
#[derive(Default)]
struct Scratch {
    a: Vec<u32>,
    b: Vec<u32>,
}

/// Returns the first `len` words of `buffer`, growing it first if it is shorter. It never
/// shrinks, so that products of varying sizes fill zeros only when a size is new.
fn words(buffer: &mut Vec<u32>, len: usize) -> &mut [u32] {
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    &mut buffer[..len]
}

thread_local! {
    /// The calling thread's conversion buffers, kept between products, so that they only
    /// allocate when a product needs more room than any product before it on this thread.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A pointer to a buffer of pair words that several threads fill at once, each its own rows.
#[derive(Clone, Copy)]
struct SharedWords(*mut u32);

// SAFETY: the conversions below hand each thread a disjoint range of rows, and the buffer
// outlives the scoped threads that use it.
unsafe impl Send for SharedWords {}
unsafe impl Sync for SharedWords {}

impl SharedWords {
    /// Returns the pointer to word `offset`; a method, so that closures capture the
    /// wrapper and not the bare pointer.
    fn at(self, offset: usize) -> *mut u32 {
        self.0.wrapping_add(offset)
    }
}

/// Returns whether this CPU runs the kernels in this module.
pub fn available() -> bool {
    kernel::available()
}

/// `C = alpha op(A) op(B) + beta C` from bf16 operands, for row-major f32 matrices on
/// `parts` threads. Returns `false`, leaving `C` untouched, for `Aᵀ Bᵀ`, when the CPU lacks
/// AVX-512 BF16, or when this thread's buffers are in use by a product that is waiting for
/// this one.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    parts: usize,
    ta: Transpose,
    tb: Transpose,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> bool {
    if !available() || (ta, tb) == (Transpose::Yes, Transpose::Yes) {
        return false;
    }
    let (shape, store) = gemm_operands(ta, tb, (m, n, k), alpha, a, b, beta, c);
    product(parts, shape, a, b, c, store)
}

/// Computes the dense forward product `Z = X Wᵀ + b` from bf16 roundings of `X` and `W`,
/// and `Y = max(Z, 0)` when `relu` is given, as [`super::matmul::dense_forward`] does in
/// f32. Returns `false`, leaving the outputs untouched, where [`gemm`] would.
pub fn dense_forward(
    parts: usize,
    (m, n, k): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    z: &mut [f32],
    relu: Option<&mut [f32]>,
) -> bool {
    if !available() {
        return false;
    }
    let (shape, store) = dense_operands((m, n, k), x, w, bias, z, relu);
    product(parts, shape, x, w, z, store)
}

/// Converts the operands and runs the product; the caller has checked the lengths.
fn product(parts: usize, shape: Shape, a: &[f32], b: &[f32], c: &mut [f32], store: Store) -> bool {
    SCRATCH.with(|cell| {
        // A product that waits in `join` may run another product's half on this thread,
        // which then finds the buffers taken and declines.
        let Ok(mut scratch) = cell.try_borrow_mut() else {
            return false;
        };
        let Scratch {
            a: a_words,
            b: b_words,
        } = &mut *scratch;
        let Shape { ta, tb, m, n, k } = shape;
        if m == 0 || n == 0 {
            return true;
        }
        let pairs = k.div_ceil(2);
        if tb == Transpose::Yes && n < BROADCAST_COLS {
            pairs_along_rows(parts, a, m, k, a_words);
            pairs_along_rows(parts, b, n, k, b_words);
            dot_product(parts, shape, a_words, b_words, c, store);
        } else if tb == Transpose::Yes {
            pairs_along_rows(parts, a, m, k, a_words);
            pairs_transposed(parts, b, n, k, b_words);
            let layout = PairLayout {
                row_step: pairs,
                a_step: 1,
                pairs,
            };
            broadcast_product(parts, shape, &layout, a_words, b_words, c, store);
        } else {
            // Element (i, q) of the pairs of op(A) sits at i * row_step + q * a_step.
            let (row_step, a_step) = match ta {
                Transpose::No => {
                    pairs_along_rows(parts, a, m, k, a_words);
                    (pairs, 1)
                }
                Transpose::Yes => {
                    pairs_down_columns(parts, a, k, m, a_words);
                    (1, m)
                }
            };
            pairs_down_columns(parts, b, k, n, b_words);
            let layout = PairLayout {
                row_step,
                a_step,
                pairs,
            };
            broadcast_product(parts, shape, &layout, a_words, b_words, c, store);
        }
        true
    })
}

/// Converts each of the `rows` rows of `cols` values in `src` to `⌈cols/2⌉` pair words.
fn pairs_along_rows(parts: usize, src: &[f32], rows: usize, cols: usize, dst: &mut Vec<u32>) {
    let pairs = cols.div_ceil(2);
    let out = SharedWords(words(dst, rows * pairs).as_mut_ptr());
    let convert = |range: Range<usize>| {
        for row in range {
            // SAFETY: row < rows, so the source row lies inside the `rows × cols` values the
            // caller checked and the output row inside `dst`; each thread has its own rows.
            unsafe {
                kernel::row_to_pairs(src.as_ptr().add(row * cols), cols, out.at(row * pairs))
            };
        }
    };
    for_each_range(parts, 0..rows, &convert);
}

/// Converts the `rows × cols` values in `src` to `⌈rows/2⌉ × cols` pair words, word
/// `(q, j)` holding rows `2q` and `2q + 1` of column `j`.
fn pairs_down_columns(parts: usize, src: &[f32], rows: usize, cols: usize, dst: &mut Vec<u32>) {
    let pairs = rows.div_ceil(2);
    let out = SharedWords(words(dst, pairs * cols).as_mut_ptr());
    let convert = |range: Range<usize>| {
        for q in range {
            let even = src[2 * q * cols..][..cols].as_ptr();
            let odd = if 2 * q + 1 < rows {
                src[(2 * q + 1) * cols..][..cols].as_ptr()
            } else {
                std::ptr::null()
            };
            // SAFETY: the slices above bound both source rows, q < pairs bounds the output
            // row, and each thread has its own rows.
            unsafe { kernel::interleave_rows(even, odd, cols, out.at(q * cols)) };
        }
    };
    for_each_range(parts, 0..pairs, &convert);
}

/// Converts the `n × k` values in `src` to the `⌈k/2⌉ × n` pair words of its transpose, word
/// `(q, j)` holding elements `2q` and `2q + 1` of row `j`.
fn pairs_transposed(parts: usize, src: &[f32], n: usize, k: usize, dst: &mut Vec<u32>) {
    let pairs = k.div_ceil(2);
    let out = SharedWords(words(dst, pairs * n).as_mut_ptr());
    let convert = |range: Range<usize>| {
        for block in range {
            let j = 16 * block;
            let rows = (n - j).min(16);
            let src = src[j * k..(j + rows) * k].as_ptr();
            for q0 in (0..pairs).step_by(16) {
                // SAFETY: the slice above bounds the source rows, the words written lie in
                // rows q0..q0 + 16 (at most `pairs`) and columns j..j + rows of `dst`, and
                // each thread has its own columns.
                unsafe { kernel::transpose_to_pairs(src, rows, k, q0, out.at(q0 * n + j), n) };
            }
        }
    };
    for_each_range(parts, 0..n.div_ceil(16), &convert);
}

/// `C = alpha A Bᵀ + beta C (+ bias, ReLU)` on bf16 dot tiles over pair rows of `A` and `B`.
fn dot_product(parts: usize, shape: Shape, a: &[u32], b: &[u32], c: &mut [f32], store: Store) {
    let Shape { m, n, k, .. } = shape;
    let pairs = k.div_ceil(2);
    let out = SharedOut(c.as_mut_ptr());
    let run = |rows: Range<usize>, cols: Range<usize>| {
        // SAFETY: `a` and `b` hold m and n pair rows, rows and columns lie inside the
        // checked shapes, and each thread's block is disjoint from the others'.
        unsafe { dot_block(rows, cols, (n, pairs), a, b, out, &store) };
    };
    for_each_block(parts, (m, n), (DOT_SIDE, DOT_SIDE), &run);
}

/// Computes the bf16 dot tiles of rows `rows` and columns `cols` of `C`.
///
/// # Safety
///
/// As for `super::matmul::dot_block`, with `a` and `b` holding `pairs` words per row.
unsafe fn dot_block(
    rows: Range<usize>,
    cols: Range<usize>,
    (ldc, pairs): (usize, usize),
    a: &[u32],
    b: &[u32],
    out: SharedOut,
    store: &Store,
) {
    let (last_row, last_col) = (rows.end - 1, cols.end - 1);
    let mut block = rows.start;
    while block < rows.end {
        let block_end = (block + DOT_ROW_BLOCK).min(rows.end);
        for j in cols.clone().step_by(DOT_SIDE) {
            let bj = std::array::from_fn(|c| b.as_ptr().add((j + c).min(last_col) * pairs));
            let c = (cols.end - j).min(DOT_SIDE);
            for i in (block..block_end).step_by(DOT_SIDE) {
                let ai = std::array::from_fn(|r| a.as_ptr().add((i + r).min(last_row) * pairs));
                let tile = kernel::dot_tile(pairs, ai, bj);
                let s = store.at(i, j, ldc);
                let r = (rows.end - i).min(DOT_SIDE);
                super::avx512::store_dot_tile(tile, r, c, out.0.add(i * ldc + j), ldc, &s);
            }
        }
        block = block_end;
    }
}

/// Layout of the pair words of `op(A)`: element `(i, q)` at `i * row_step + q * a_step`,
/// for `pairs` pairs along `k`.
struct PairLayout {
    row_step: usize,
    a_step: usize,
    pairs: usize,
}

/// `C = alpha op(A) B + beta C` on bf16 broadcast tiles.
fn broadcast_product(
    parts: usize,
    shape: Shape,
    layout: &PairLayout,
    a: &[u32],
    b: &[u32],
    c: &mut [f32],
    store: Store,
) {
    let Shape { m, n, .. } = shape;
    let out = SharedOut(c.as_mut_ptr());
    let run = |rows: Range<usize>, cols: Range<usize>| {
        // SAFETY: `a` contains the pairs of op(A) in `layout` and `b` those of B, rows and
        // columns lie inside the checked shapes, and each thread's block is its own.
        unsafe { broadcast_block(n, layout, rows, cols, a, b, out, &store) };
    };
    for_each_block(parts, (m, n), (BROADCAST_ROWS, BROADCAST_COLS), &run);
}

/// Computes the bf16 broadcast tiles of rows `rows` and columns `cols` of the `· × n`
/// output `C`.
///
/// # Safety
///
/// `a` must contain the pairs of `op(A)` in `layout`, and `b` the `layout.pairs × n` pair
/// words of `B`. `out` must point to `C` (and `store.relu` to another matrix like it),
/// `rows` and `cols` must be non-empty and lie inside it, and no other thread may write
/// these rows and columns.
#[allow(clippy::too_many_arguments)]
unsafe fn broadcast_block(
    n: usize,
    layout: &PairLayout,
    rows: Range<usize>,
    cols: Range<usize>,
    a: &[u32],
    b: &[u32],
    out: SharedOut,
    store: &Store,
) {
    let PairLayout {
        row_step,
        a_step,
        pairs,
    } = *layout;
    let last_row = rows.end - 1;
    for j in cols.clone().step_by(BROADCAST_COLS) {
        let width = (cols.end - j).min(BROADCAST_COLS);
        let vectors = width.div_ceil(16);
        let last = width - 16 * (vectors - 1);
        // One pass per BROADCAST_PAIRS slice; an empty k still takes one pass to scale C
        // and add the bias.
        let mut q0 = 0;
        loop {
            let depth = BROADCAST_PAIRS.min(pairs - q0);
            let last_pass = q0 + depth == pairs;
            let bj = b.as_ptr().add(q0 * n + j);
            let pass = store.pass(q0 == 0, last_pass);
            for i in rows.clone().step_by(BROADCAST_ROWS) {
                let ai = std::array::from_fn(|r| {
                    let row = (i + r).min(last_row);
                    a.as_ptr().add(row * row_step + q0 * a_step)
                });
                let tile_rows = (rows.end - i).min(BROADCAST_ROWS);
                let c = out.0.add(i * n + j);
                let s = pass.at(i, j, n);
                let tile = Tile {
                    depth,
                    a: ai,
                    a_step,
                    b: bj,
                    ldb: n,
                    last,
                };
                match vectors {
                    1 => tile.compute_and_store::<1>(tile_rows, c, &s),
                    2 => tile.compute_and_store::<2>(tile_rows, c, &s),
                    3 => tile.compute_and_store::<3>(tile_rows, c, &s),
                    _ => tile.compute_and_store::<4>(tile_rows, c, &s),
                }
            }
            q0 += depth;
            if last_pass {
                break;
            }
        }
    }
}

/// Inputs of one bf16 broadcast tile.
struct Tile {
    depth: usize,
    a: [*const u32; BROADCAST_ROWS],
    a_step: usize,
    b: *const u32,
    ldb: usize,
    last: usize,
}

impl Tile {
    /// Computes the tile and stores its first `rows` rows at `c` (row stride `ldb`).
    ///
    /// # Safety
    ///
    /// As for [`kernel::broadcast_tile_and_store`].
    #[inline(always)]
    unsafe fn compute_and_store<const NV: usize>(&self, rows: usize, c: *mut f32, s: &Store) {
        let (a, b, ldb, last) = (self.a, self.b, self.ldb, self.last);
        let out = (rows, c);
        kernel::broadcast_tile_and_store::<NV>(self.depth, a, self.a_step, b, ldb, last, out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds to the nearest bf16 value, ties to even, as `vcvtne2ps2bf16` does for the
    /// finite normal values these tests use.
    fn round_to_bf16(x: f32) -> f32 {
        let bits = x.to_bits();
        let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1));
        f32::from_bits(rounded & 0xFFFF_0000)
    }

    /// `alpha op(A) op(B) + beta C` in f64, with the operands rounded to bf16 first when
    /// `bf16` is set. Also returns `Σ |op(A)| |op(B)|` for each element.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        (ta, tb): (Transpose, Transpose),
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: &[f32],
        b: &[f32],
        beta: f32,
        c: &[f32],
        bf16: bool,
    ) -> (Vec<f32>, Vec<f64>) {
        let round = |x: f32| if bf16 { round_to_bf16(x) } else { x } as f64;
        let at = |i: usize, p: usize| match ta {
            Transpose::No => round(a[i * k + p]),
            Transpose::Yes => round(a[p * m + i]),
        };
        let bt = |p: usize, j: usize| match tb {
            Transpose::No => round(b[p * n + j]),
            Transpose::Yes => round(b[j * k + p]),
        };
        let mut out = vec![0.0; m * n];
        let mut magnitude = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
                magnitude[i * n + j] = (0..k).map(|p| (at(i, p) * bt(p, j)).abs()).sum();
                out[i * n + j] = (alpha as f64 * dot + beta as f64 * c[i * n + j] as f64) as f32;
            }
        }
        (out, magnitude)
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 + seed) * 0.618).sin())
            .collect()
    }

    /// Shapes with every remainder of the tile sizes, odd depths, and depths past one pass.
    const SHAPES: [(usize, usize, usize); 8] = [
        (1, 1, 1),
        (4, 4, 32),
        (7, 5, 3),
        (13, 70, 33),
        (32, 130, 17),
        (9, 10, 301),
        (25, 66, 129),
        (260, 20, 5),
    ];

    #[test]
    fn products_match_bf16_reference() {
        if !available() {
            return;
        }
        let cases = [
            (Transpose::No, Transpose::No),
            (Transpose::No, Transpose::Yes),
            (Transpose::Yes, Transpose::No),
        ];
        for (m, n, k) in SHAPES {
            for (ta, tb) in cases {
                for parts in [1, 2, 3] {
                    let (alpha, beta) = (0.5, -0.25);
                    let (a, b, c0) = (values(m * k, 1.0), values(k * n, 2.0), values(m * n, 3.0));
                    let transposes = (ta, tb);
                    let (want, magnitude) =
                        reference(transposes, (m, n, k), alpha, &a, &b, beta, &c0, true);
                    let (exact, _) =
                        reference(transposes, (m, n, k), alpha, &a, &b, beta, &c0, false);
                    let mut c = c0.clone();
                    let shape = (m, n, k);
                    assert!(gemm(parts, ta, tb, shape, alpha, &a, &b, beta, &mut c));
                    let label = format!("{ta:?}{tb:?} {m}x{n}x{k} parts {parts}");
                    for index in 0..m * n {
                        // The kernel sums the bf16 products in f32.
                        let sum_error = 1e-6 * (magnitude[index] + 1.0) as f32;
                        let got = c[index];
                        assert!(
                            (got - want[index]).abs() <= sum_error,
                            "{label}: element {index} is {got}, bf16 reference {}",
                            want[index]
                        );
                        // Each operand's rounding moves a product by at most 2⁻⁸ of it.
                        let bf16_error = alpha * (magnitude[index] as f32) / 128.0 + sum_error;
                        assert!(
                            (got - exact[index]).abs() <= bf16_error,
                            "{label}: element {index} is {got}, f32 result {}",
                            exact[index]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn transposed_both_is_declined() {
        let mut c = vec![0.0; 4];
        let (a, b) = ([1.0; 4], [1.0; 4]);
        let both = (Transpose::Yes, Transpose::Yes);
        assert!(!gemm(
            1,
            both.0,
            both.1,
            (2, 2, 2),
            1.0,
            &a,
            &b,
            0.0,
            &mut c
        ));
    }

    #[test]
    fn dense_forward_adds_bias_and_relu() {
        if !available() {
            return;
        }
        for (m, n, k) in SHAPES {
            let (x, w, bias) = (values(m * k, 1.0), values(n * k, 2.0), values(n, 4.0));
            let zeros = vec![0.0; m * n];
            let nt = (Transpose::No, Transpose::Yes);
            let (product, magnitude) = reference(nt, (m, n, k), 1.0, &x, &w, 0.0, &zeros, true);
            let (mut z, mut y) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
            assert!(dense_forward(
                2,
                (m, n, k),
                &x,
                &w,
                &bias,
                &mut z,
                Some(&mut y)
            ));
            for index in 0..m * n {
                let want = product[index] + bias[index % n];
                let tolerance = 1e-6 * (magnitude[index] + 1.0) as f32;
                let label = format!("{m}x{n}x{k} element {index}");
                assert!(
                    (z[index] - want).abs() <= tolerance,
                    "{label}: {} vs {want}",
                    z[index]
                );
                assert_eq!(y[index], z[index].max(0.0), "{label}: ReLU output");
            }
        }
    }
}
