//! f32 matrix products on AVX-512 without heap allocation: cache blocking, threading and
//! bounds checks around the tiles in [`super::avx512`].
//!
//! The shapes are those of a dense layer's passes with row-major storage. `A B` and `Aᵀ B`
//! (the gradient products `dY W` and `dYᵀ X`) run on broadcast tiles. `A Bᵀ` (the forward
//! product `X Wᵀ`) runs on dot-product tiles for up to [`PACKED_MIN_ROWS`] rows, and on
//! broadcast tiles over panels of `Bᵀ` packed on the stack for more, where the packing pays
//! for itself. `Aᵀ Bᵀ` is not handled here.

use super::avx512::{self, Store, BROADCAST_COLS, BROADCAST_ROWS, DOT_SIDE};
use super::Transpose;
use std::ops::Range;

/// Rows of `A` (100 KB at k = 784) that one pass over `B` serves in a dot-tile product, so
/// that the block stays in L2 while 4-row tiles of `B` stream past it.
pub(super) const DOT_ROW_BLOCK: usize = 32;

/// Rows from which `A Bᵀ` packs `Bᵀ` for broadcast tiles. Below it the dot tiles are as
/// fast and skip the packing (measured on `X Wᵀ` with 784 × 256 and 256 × 128 weights).
const PACKED_MIN_ROWS: usize = 256;

/// Multiply-adds above which a product is left to the `gemm` crate, whose packing of both
/// operands wins there. On one EPYC core it ran 15 to 30 % faster than these tiles at
/// 1024³, and within 8 % either way on the products of a 784-256 layer at batch 512.
const MAX_PRODUCT: usize = 1 << 28;

/// Depth of one pass of broadcast tiles: a 128 × 64 block of `B` is 32 KB and stays in L1.
const BROADCAST_DEPTH: usize = 128;

/// A pointer to an output that several threads write at once, each to its own tiles.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);

// SAFETY: the products below hand each thread a disjoint range of tiles, so no two threads
// write the same element, and the output slice outlives the scoped threads that use it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

// SAFETY: as for `SharedOut`: the ReLU output in a `Store` is written tile by tile like `C`,
// and its bias is only read.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

/// Returns whether this CPU runs the kernels in this module.
pub fn available() -> bool {
    avx512::available()
}

/// The operands of `C = op(A) op(B)`: `op(A)` is `m × k`, `op(B)` is `k × n`, all row-major.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub(super) ta: Transpose,
    pub(super) tb: Transpose,
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
}

/// `C = alpha op(A) op(B) + beta C` for row-major f32 matrices on `parts` threads. Returns
/// `false`, leaving `C` untouched, for `Aᵀ Bᵀ`, for products above [`MAX_PRODUCT`], or when
/// the CPU lacks AVX-512.
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
    if !available() || (ta, tb) == (Transpose::Yes, Transpose::Yes) || m * n * k > MAX_PRODUCT {
        return false;
    }
    let (shape, store) = gemm_operands(ta, tb, (m, n, k), alpha, a, b, beta, c);
    product(parts, shape, a, b, c, store);
    true
}

/// Checks the operand lengths of `C = alpha op(A) op(B) + beta C` and returns the product's
/// shape and store.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_operands(
    ta: Transpose,
    tb: Transpose,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> (Shape, Store) {
    assert!(
        a.len() >= m * k,
        "A has {} elements, expected {m}x{k}",
        a.len()
    );
    assert!(
        b.len() >= k * n,
        "B has {} elements, expected {k}x{n}",
        b.len()
    );
    assert!(
        c.len() >= m * n,
        "C has {} elements, expected {m}x{n}",
        c.len()
    );
    let store = Store {
        alpha,
        beta,
        bias: std::ptr::null(),
        relu: std::ptr::null_mut(),
    };
    (Shape { ta, tb, m, n, k }, store)
}

/// Computes the dense forward product `Z = X Wᵀ + b` with `X` of shape `m × k`, `W` of
/// shape `n × k` and `b` of length `n`, and also `Y = max(Z, 0)` when `relu` is given. Bias and ReLU are
/// applied to each tile while it is in registers. Returns `false`, leaving the outputs
/// untouched, for products above [`MAX_PRODUCT`] or when the CPU lacks AVX-512.
pub fn dense_forward(
    parts: usize,
    (m, n, k): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    z: &mut [f32],
    relu: Option<&mut [f32]>,
) -> bool {
    if !available() || m * n * k > MAX_PRODUCT {
        return false;
    }
    let (shape, store) = dense_operands((m, n, k), x, w, bias, z, relu);
    product(parts, shape, x, w, z, store);
    true
}

/// Checks the operand lengths of a dense forward product and returns its shape and store.
pub(super) fn dense_operands(
    (m, n, k): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    z: &mut [f32],
    relu: Option<&mut [f32]>,
) -> (Shape, Store) {
    assert!(
        x.len() >= m * k,
        "X has {} elements, expected {m}x{k}",
        x.len()
    );
    assert!(
        w.len() >= n * k,
        "W has {} elements, expected {n}x{k}",
        w.len()
    );
    assert!(
        z.len() >= m * n,
        "Z has {} elements, expected {m}x{n}",
        z.len()
    );
    assert!(
        bias.len() >= n,
        "bias has {} elements, expected {n}",
        bias.len()
    );
    let relu = match relu {
        Some(y) => {
            assert!(
                y.len() >= m * n,
                "Y has {} elements, expected {m}x{n}",
                y.len()
            );
            y.as_mut_ptr()
        }
        None => std::ptr::null_mut(),
    };
    let store = Store {
        alpha: 1.0,
        beta: 0.0,
        bias: bias.as_ptr(),
        relu,
    };
    let shape = Shape {
        ta: Transpose::No,
        tb: Transpose::Yes,
        m,
        n,
        k,
    };
    (shape, store)
}

/// Splits `tiles` into `parts` contiguous ranges and runs `f` on each non-empty one, in
/// parallel through rayon's `join`, which allocates nothing.
pub(super) fn for_each_range(parts: usize, tiles: Range<usize>, f: &(dyn Fn(Range<usize>) + Sync)) {
    if tiles.is_empty() {
        return;
    }
    if parts <= 1 || tiles.len() <= 1 {
        f(tiles);
        return;
    }
    let left = parts / 2;
    let mid = tiles.start + tiles.len() * left / parts;
    rayon::join(
        || for_each_range(left, tiles.start..mid, f),
        || for_each_range(parts - left, mid..tiles.end, f),
    );
}

/// Runs a product whose operand lengths the caller has checked, splitting the dimension
/// with more tiles between `parts` threads.
fn product(parts: usize, shape: Shape, a: &[f32], b: &[f32], c: &mut [f32], store: Store) {
    let Shape { tb, m, n, .. } = shape;
    if m == 0 || n == 0 {
        return;
    }
    let dot = tb == Transpose::Yes && m < PACKED_MIN_ROWS;
    let (tile_rows, tile_cols) = if dot {
        (DOT_SIDE, DOT_SIDE)
    } else {
        (BROADCAST_ROWS, BROADCAST_COLS)
    };
    let out = SharedOut(c.as_mut_ptr());
    let run = |rows: Range<usize>, cols: Range<usize>| {
        // SAFETY: rows and columns lie inside the checked shapes, and each thread's block
        // is disjoint from the others'.
        unsafe {
            if dot {
                dot_block(&shape, rows, cols, a, b, out, &store);
            } else if tb == Transpose::Yes {
                let mut panel = Panel::zeroed();
                broadcast_block(&shape, rows, cols, a, b, Some(&mut panel), out, &store);
            } else {
                broadcast_block(&shape, rows, cols, a, b, None, out, &store);
            }
        }
    };
    for_each_block(parts, (m, n), (tile_rows, tile_cols), &run);
}

/// Cuts the `m × n` output into `tile_rows × tile_cols` tiles, splits the dimension with
/// more tiles into `parts` ranges of whole tiles, and runs `f(rows, cols)` on each range in
/// parallel.
pub(super) fn for_each_block(
    parts: usize,
    (m, n): (usize, usize),
    (tile_rows, tile_cols): (usize, usize),
    f: &(dyn Fn(Range<usize>, Range<usize>) + Sync),
) {
    let (row_tiles, col_tiles) = (m.div_ceil(tile_rows), n.div_ceil(tile_cols));
    if col_tiles >= row_tiles {
        let columns = |t: Range<usize>| f(0..m, t.start * tile_cols..(t.end * tile_cols).min(n));
        for_each_range(parts, 0..col_tiles, &columns);
    } else {
        let rows = |t: Range<usize>| f(t.start * tile_rows..(t.end * tile_rows).min(m), 0..n);
        for_each_range(parts, 0..row_tiles, &rows);
    }
}

/// Computes the dot tiles of rows `rows` and columns `cols` of `C = A Bᵀ`.
///
/// # Safety
///
/// `a` must hold `m × k` and `b` `n × k` elements. `out` must point to the `m × n` matrix
/// `C` (and `store.relu` to another). `rows` and `cols` must be non-empty and lie inside
/// `m` and `n`, and no other thread may write these rows and columns.
unsafe fn dot_block(
    shape: &Shape,
    rows: Range<usize>,
    cols: Range<usize>,
    a: &[f32],
    b: &[f32],
    out: SharedOut,
    store: &Store,
) {
    let Shape { n: ldc, k, .. } = *shape;
    let (last_row, last_col) = (rows.end - 1, cols.end - 1);
    let mut block = rows.start;
    while block < rows.end {
        let block_end = (block + DOT_ROW_BLOCK).min(rows.end);
        for j in cols.clone().step_by(DOT_SIDE) {
            // Rows and columns past the edge repeat the last one, and their results are
            // dropped.
            let bj = std::array::from_fn(|c| b.as_ptr().add((j + c).min(last_col) * k));
            let c = (cols.end - j).min(DOT_SIDE);
            for i in (block..block_end).step_by(DOT_SIDE) {
                let ai = std::array::from_fn(|r| a.as_ptr().add((i + r).min(last_row) * k));
                let tile = avx512::dot_tile(k, ai, bj);
                let s = store.at(i, j, ldc);
                let r = (rows.end - i).min(DOT_SIDE);
                avx512::store_dot_tile(tile, r, c, out.0.add(i * ldc + j), ldc, &s);
            }
        }
        block = block_end;
    }
}

/// A [`BROADCAST_DEPTH`] × [`BROADCAST_COLS`] block of `Bᵀ` copied into the layout of `B`.
#[repr(align(64))]
struct Panel([f32; BROADCAST_DEPTH * BROADCAST_COLS]);

impl Panel {
    fn zeroed() -> Self {
        Panel([0.0; BROADCAST_DEPTH * BROADCAST_COLS])
    }

    /// Copies rows `p0..p0 + depth` and columns `j..j + width` of `op(B) = Bᵀ`, where `B`
    /// is `n × k`, so that row `p` of the block starts at `p * BROADCAST_COLS`.
    fn pack(&mut self, b: &[f32], k: usize, j: usize, width: usize, p0: usize, depth: usize) {
        for c in 0..width {
            let column = &b[(j + c) * k + p0..][..depth];
            for (p, &v) in column.iter().enumerate() {
                self.0[p * BROADCAST_COLS + c] = v;
            }
        }
    }
}

/// Computes the broadcast tiles of rows `rows` and columns `cols` of `C = op(A) op(B)`.
/// `op(B)` is read in place when it is `B`, and through `panel` when it is `Bᵀ`.
///
/// # Safety
///
/// `a` and `b` must hold the operands of `shape`, and `out` must point to its `m × n`
/// output (and `store.relu` to another). `rows` and `cols` must be non-empty and lie inside
/// `m` and `n`, and no other thread may write these rows and columns. `panel` must be given
/// when `shape.tb` is `Yes`.
#[allow(clippy::too_many_arguments)]
unsafe fn broadcast_block(
    shape: &Shape,
    rows: Range<usize>,
    cols: Range<usize>,
    a: &[f32],
    b: &[f32],
    mut panel: Option<&mut Panel>,
    out: SharedOut,
    store: &Store,
) {
    let Shape { ta, m, n, k, .. } = *shape;
    // Element (i, p) of op(A) sits at i * row_step + p * a_step.
    let (row_step, a_step) = match ta {
        Transpose::No => (k, 1),
        Transpose::Yes => (1, m),
    };
    let last_row = rows.end - 1;
    for j in cols.clone().step_by(BROADCAST_COLS) {
        let width = (cols.end - j).min(BROADCAST_COLS);
        let vectors = width.div_ceil(16);
        let last = width - 16 * (vectors - 1);
        // One pass per BROADCAST_DEPTH slice of k; an empty k still takes one pass to scale
        // C and add the bias.
        let mut p0 = 0;
        loop {
            let depth = BROADCAST_DEPTH.min(k - p0);
            let last_pass = p0 + depth == k;
            let (bj, ldb) = match panel.as_deref_mut() {
                Some(panel) => {
                    panel.pack(b, k, j, width, p0, depth);
                    (panel.0.as_ptr(), BROADCAST_COLS)
                }
                None => (b.as_ptr().add(p0 * n + j), n),
            };
            let pass = store.pass(p0 == 0, last_pass);
            for i in rows.clone().step_by(BROADCAST_ROWS) {
                let ai = std::array::from_fn(|r| {
                    let row = (i + r).min(last_row);
                    a.as_ptr().add(row * row_step + p0 * a_step)
                });
                let tile = Tile {
                    rows: (rows.end - i).min(BROADCAST_ROWS),
                    last,
                    c: out.0.add(i * n + j),
                    ldc: n,
                    store: pass.at(i, j, n),
                };
                match vectors {
                    1 => tile.compute::<1>(depth, ai, a_step, bj, ldb),
                    2 => tile.compute::<2>(depth, ai, a_step, bj, ldb),
                    3 => tile.compute::<3>(depth, ai, a_step, bj, ldb),
                    _ => tile.compute::<4>(depth, ai, a_step, bj, ldb),
                }
            }
            p0 += depth;
            if last_pass {
                break;
            }
        }
    }
}

/// Destination of one broadcast tile.
struct Tile {
    rows: usize,
    last: usize,
    c: *mut f32,
    ldc: usize,
    store: Store,
}

impl Tile {
    /// Computes the tile from `depth` rows of `op(A)` and `B` and stores it.
    ///
    /// # Safety
    ///
    /// As for [`avx512::broadcast_tile_and_store`].
    #[inline(always)]
    unsafe fn compute<const NV: usize>(
        &self,
        depth: usize,
        a: [*const f32; BROADCAST_ROWS],
        a_step: usize,
        b: *const f32,
        ldb: usize,
    ) {
        let out = (self.rows, self.c, self.ldc);
        avx512::broadcast_tile_and_store::<NV>(
            depth,
            a,
            a_step,
            (b, ldb),
            self.last,
            out,
            &self.store,
        );
    }
}

impl Store {
    /// Returns the store of one pass over a slice of `k`. The first pass scales the old `C` and
    /// adds the bias, later ones add to `C`, and only the last writes the ReLU.
    pub(super) fn pass(&self, first: bool, last: bool) -> Store {
        Store {
            beta: if first { self.beta } else { 1.0 },
            bias: if first { self.bias } else { std::ptr::null() },
            relu: if last {
                self.relu
            } else {
                std::ptr::null_mut()
            },
            ..*self
        }
    }

    /// Returns the store of the tile at row `i` and column `j` of an output with `ldc` columns.
    ///
    /// # Safety
    ///
    /// `(i, j)` must lie inside the output that `relu` points to and `j` inside `bias`.
    pub(super) unsafe fn at(&self, i: usize, j: usize, ldc: usize) -> Store {
        Store {
            bias: if self.bias.is_null() {
                self.bias
            } else {
                self.bias.add(j)
            },
            relu: if self.relu.is_null() {
                self.relu
            } else {
                self.relu.add(i * ldc + j)
            },
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference `alpha op(A) op(B) + beta C` in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        ta: Transpose,
        tb: Transpose,
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: &[f32],
        b: &[f32],
        beta: f32,
        c: &[f32],
    ) -> Vec<f32> {
        let at = |i: usize, p: usize| match ta {
            Transpose::No => a[i * k + p],
            Transpose::Yes => a[p * m + i],
        };
        let bt = |p: usize, j: usize| match tb {
            Transpose::No => b[p * n + j],
            Transpose::Yes => b[j * k + p],
        };
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
                out[i * n + j] = (alpha as f64 * dot + beta as f64 * c[i * n + j] as f64) as f32;
            }
        }
        out
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 + seed) * 0.618).sin())
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32], k: usize, label: &str) {
        // Each element is a sum of k products of values in [-1, 1].
        let tolerance = 1e-6 * (k as f32 + 1.0) * 4.0;
        for (index, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tolerance,
                "{label}: element {index} is {g}, expected {w}"
            );
        }
    }

    /// Shapes with every remainder of the tile sizes, depths past one broadcast pass, and
    /// row counts on both sides of the packing threshold.
    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (4, 4, 16),
        (7, 5, 3),
        (13, 70, 33),
        (32, 130, 17),
        (9, 10, 300),
        (25, 66, 129),
        (PACKED_MIN_ROWS, 20, 5),
        (PACKED_MIN_ROWS + 3, 70, 150),
    ];

    #[test]
    fn products_match_reference_for_all_transposes() {
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
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (2.0, -0.25)] {
                        let a = values(m * k, 1.0);
                        let b = values(k * n, 2.0);
                        let c0 = values(m * n, 3.0);
                        let want = reference(ta, tb, (m, n, k), alpha, &a, &b, beta, &c0);
                        let mut c = c0.clone();
                        let shape = (m, n, k);
                        assert!(gemm(parts, ta, tb, shape, alpha, &a, &b, beta, &mut c));
                        let label = format!("{ta:?}{tb:?} {m}x{n}x{k} parts {parts} beta {beta}");
                        assert_close(&c, &want, k, &label);
                    }
                }
            }
        }
    }

    #[test]
    fn zero_beta_ignores_nan_in_output() {
        if !available() {
            return;
        }
        for (ta, tb) in [
            (Transpose::No, Transpose::Yes),
            (Transpose::Yes, Transpose::No),
        ] {
            let mut c = vec![f32::NAN; 35];
            let (a, b) = (values(7 * 3, 1.0), values(3 * 5, 2.0));
            assert!(gemm(1, ta, tb, (7, 5, 3), 1.0, &a, &b, 0.0, &mut c));
            assert!(c.iter().all(|v| v.is_finite()), "{ta:?}{tb:?}: {c:?}");
        }
    }

    #[test]
    fn transposed_both_is_declined() {
        let mut c = vec![0.0; 4];
        let ok = gemm(
            1,
            Transpose::Yes,
            Transpose::Yes,
            (2, 2, 2),
            1.0,
            &[1.0; 4],
            &[1.0; 4],
            0.0,
            &mut c,
        );
        assert!(!ok);
    }

    #[test]
    fn dense_forward_adds_bias_and_relu() {
        if !available() {
            return;
        }
        for (m, n, k) in SHAPES {
            for parts in [1, 2] {
                let x = values(m * k, 1.0);
                let w = values(n * k, 2.0);
                let bias = values(n, 4.0);
                let zeros = vec![0.0; m * n];
                let product = reference(
                    Transpose::No,
                    Transpose::Yes,
                    (m, n, k),
                    1.0,
                    &x,
                    &w,
                    0.0,
                    &zeros,
                );
                let want: Vec<f32> = product
                    .iter()
                    .enumerate()
                    .map(|(index, v)| v + bias[index % n])
                    .collect();
                let (mut z, mut y) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                assert!(dense_forward(
                    parts,
                    (m, n, k),
                    &x,
                    &w,
                    &bias,
                    &mut z,
                    Some(&mut y)
                ));
                let label = format!("{m}x{n}x{k} parts {parts}");
                assert_close(&z, &want, k, &label);
                let relu: Vec<f32> = z.iter().map(|v| v.max(0.0)).collect();
                assert_eq!(y, relu, "{label}: ReLU output");
            }
        }
    }
}
