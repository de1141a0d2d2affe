//! CPU kernels: f32 matrix products through the AVX-512 kernels where the CPU has them and
//! through the `gemm` crate otherwise, loops through rayon.

use super::{Kernels, Precision, Scalar, Transpose};
use rayon::prelude::*;
use std::any::TypeId;
use std::cell::Cell;

/// Below this many multiply-adds a matrix product runs on one thread. Such a product takes
/// under about 5 µs on one core (200 GFLOP/s), too little to pay for waking a second
/// thread. NOTE: an estimate; on the loaded 2-core VM where the kernels were written, two
/// threads ran no faster than one at any size from 2^18 to 2^23, so no crossover could be
/// measured.
const PARALLEL_GEMM_FLOPS: usize = 1 << 20;

/// Below this many elements an elementwise loop runs on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// The CPU backend.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    threads: usize,
    precision: Precision,
}

impl Cpu {
    /// Creates a CPU backend that uses up to `threads` threads (at least one) and computes
    /// f32 products in f32.
    pub fn new(threads: usize) -> Self {
        Cpu {
            threads: threads.max(1),
            precision: Precision::F32,
        }
    }

    /// Sets the precision of the operands of f32 products. [`Precision::Bf16`] takes effect
    /// where [`Precision::Bf16.is_supported()`](Precision::is_supported), and products
    /// stay f32 elsewhere.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Returns the precision set by [`Cpu::with_precision`].
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Returns the thread count.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Returns the number of threads for a product of `flops` multiply-adds.
    fn parts(&self, flops: usize) -> usize {
        if flops >= PARALLEL_GEMM_FLOPS {
            self.threads.min(thread_limit())
        } else {
            1
        }
    }

    fn parallelism(&self, flops: usize) -> gemm::Parallelism {
        match self.parts(flops) {
            1 => gemm::Parallelism::None,
            n => gemm::Parallelism::Rayon(n),
        }
    }
}

thread_local! {
    static THREAD_LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn thread_limit() -> usize {
    THREAD_LIMIT.with(Cell::get)
}

/// Runs `work` with the kernels that it calls on this thread split over at most `threads`
/// threads, for callers that already run several computations side by side. The split does
/// not change any result: each output element is computed the same way on any thread count.
pub fn with_thread_limit<R>(threads: usize, work: impl FnOnce() -> R) -> R {
    let previous = THREAD_LIMIT.with(|limit| limit.replace(threads.max(1)));
    // Restores the limit when `work` returns or unwinds.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_LIMIT.with(|limit| limit.set(self.0));
        }
    }
    let _restore = Restore(previous);
    work()
}

/// Returns `x` as an f32 slice when `T` is `f32`.
fn as_f32<T: Scalar>(x: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32, so the slice has exactly the layout of an f32 slice.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) })
}

/// Returns `x` as a mutable f32 slice when `T` is `f32`.
fn as_f32_mut<T: Scalar>(x: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as in `as_f32`, and the borrow of `x` moves into the result.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) })
}

/// Runs an f32 product on the AVX-512 kernels, from bf16 operands where `precision` asks
/// for them and the CPU has AVX-512 BF16; returns `false` where no kernel applies.
#[allow(clippy::too_many_arguments)]
fn fast_gemm(
    precision: Precision,
    parts: usize,
    ta: Transpose,
    tb: Transpose,
    shape: (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (precision == Precision::Bf16
            && super::matmul_bf16::gemm(parts, ta, tb, shape, alpha, a, b, beta, c))
            || super::matmul::gemm(parts, ta, tb, shape, alpha, a, b, beta, c)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (precision, parts, ta, tb, shape, alpha, a, b, beta, c);
        false
    }
}

/// Runs the f32 dense forward product on the AVX-512 kernels, from bf16 operands as
/// [`fast_gemm`] does; returns `false` where no kernel applies.
#[allow(clippy::too_many_arguments)]
fn fast_dense_forward(
    precision: Precision,
    parts: usize,
    shape: (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    z: &mut [f32],
    mut relu: Option<&mut [f32]>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let y = relu.as_deref_mut();
        (precision == Precision::Bf16
            && super::matmul_bf16::dense_forward(parts, shape, x, w, bias, z, y))
            || super::matmul::dense_forward(parts, shape, x, w, bias, z, relu)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (precision, parts, shape, x, w, bias, z, &mut relu);
        false
    }
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::new(rayon::current_num_threads())
    }
}

/// Row and column strides of `op(X)` when `X` is stored row-major with `cols` columns.
fn strides(t: Transpose, cols: usize) -> (isize, isize) {
    match t {
        Transpose::No => (cols as isize, 1),
        Transpose::Yes => (1, cols as isize),
    }
}

impl<T: Scalar> Kernels<T> for Cpu {
    fn gemm(
        &self,
        ta: Transpose,
        tb: Transpose,
        m: usize,
        n: usize,
        k: usize,
        alpha: T,
        a: &[T],
        b: &[T],
        beta: T,
        c: &mut [T],
    ) {
        assert_eq!(
            a.len(),
            m * k,
            "gemm: A has {} elements, expected {m}x{k}",
            a.len()
        );
        assert_eq!(
            b.len(),
            k * n,
            "gemm: B has {} elements, expected {k}x{n}",
            b.len()
        );
        assert_eq!(
            c.len(),
            m * n,
            "gemm: C has {} elements, expected {m}x{n}",
            c.len()
        );
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            c.iter_mut().for_each(|x| *x *= beta);
            return;
        }

        if let (Some(a32), Some(b32), Some(c32)) = (as_f32(a), as_f32(b), as_f32_mut(c)) {
            let (alpha32, beta32) = (alpha.as_f64() as f32, beta.as_f64() as f32);
            let parts = self.parts(m * n * k);
            if fast_gemm(
                self.precision,
                parts,
                ta,
                tb,
                (m, n, k),
                alpha32,
                a32,
                b32,
                beta32,
                c32,
            ) {
                return;
            }
        }

        let a_cols = if ta == Transpose::No { k } else { m };
        let b_cols = if tb == Transpose::No { n } else { k };
        let (a_rs, a_cs) = strides(ta, a_cols);
        let (b_rs, b_cs) = strides(tb, b_cols);
        let read_c = beta != T::zero();
        // SAFETY: the asserts above guarantee that every index reached through these strides
        // lies inside its slice, and `c` does not alias `a` or `b` because it is borrowed
        // mutably. The gemm crate computes dst = alpha_dst * dst + beta_prod * lhs * rhs, so
        // our beta goes in its first scalar and our alpha in its second.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                read_c,
                a.as_ptr(),
                a_cs,
                a_rs,
                b.as_ptr(),
                b_cs,
                b_rs,
                beta,
                alpha,
                false,
                false,
                false,
                self.parallelism(m * n * k),
            );
        }
    }

    fn dense_forward(
        &self,
        m: usize,
        n: usize,
        k: usize,
        x: &[T],
        w: &[T],
        bias: &[T],
        z: &mut [T],
        mut relu: Option<&mut [T]>,
    ) {
        assert_eq!(
            x.len(),
            m * k,
            "dense_forward: X has {} elements, expected {m}x{k}",
            x.len()
        );
        assert_eq!(
            w.len(),
            n * k,
            "dense_forward: W has {} elements, expected {n}x{k}",
            w.len()
        );
        assert_eq!(
            bias.len(),
            n,
            "dense_forward: bias has {} elements, expected {n}",
            bias.len()
        );
        assert_eq!(
            z.len(),
            m * n,
            "dense_forward: Z has {} elements, expected {m}x{n}",
            z.len()
        );
        if let Some(y) = relu.as_deref() {
            assert_eq!(
                y.len(),
                m * n,
                "dense_forward: Y has {} elements, expected {m}x{n}",
                y.len()
            );
        }
        let parts = self.parts(m * n * k);
        let relu32 = relu.as_deref_mut().map(as_f32_mut);
        let fast = match (as_f32(x), as_f32(w), as_f32(bias), as_f32_mut(z), relu32) {
            (Some(x), Some(w), Some(b), Some(z), None) => {
                fast_dense_forward(self.precision, parts, (m, n, k), x, w, b, z, None)
            }
            (Some(x), Some(w), Some(b), Some(z), Some(Some(y))) => {
                fast_dense_forward(self.precision, parts, (m, n, k), x, w, b, z, Some(y))
            }
            _ => false,
        };
        if !fast {
            super::dense_forward_in_passes(self, (m, n, k), x, w, bias, z, relu);
        }
    }

    fn add_row_vector(&self, c: &mut [T], bias: &[T]) {
        let n = bias.len();
        if self.threads.min(thread_limit()) > 1 && c.len() >= PARALLEL_ELEMENTS {
            c.par_chunks_mut(n).for_each(|row| add_assign(row, bias));
        } else {
            c.chunks_mut(n).for_each(|row| add_assign(row, bias));
        }
    }

    fn column_sums(&self, x: &[T], out: &mut [T], beta: T) {
        let n = out.len();
        out.iter_mut().for_each(|o| *o *= beta);
        for row in x.chunks(n) {
            add_assign(out, row);
        }
    }

    fn axpy(&self, a: T, x: &[T], y: &mut [T]) {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
    }

    fn dot(&self, x: &[T], y: &[T]) -> T {
        x.iter().zip(y).map(|(&a, &b)| a * b).sum()
    }
}

fn add_assign<T: Scalar>(y: &mut [T], x: &[T]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += x);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference product of row-major matrices with explicit transposes.
    fn naive(
        ta: Transpose,
        tb: Transpose,
        m: usize,
        n: usize,
        k: usize,
        a: &[f64],
        b: &[f64],
    ) -> Vec<f64> {
        let at = |i: usize, p: usize| {
            if ta == Transpose::No {
                a[i * k + p]
            } else {
                a[p * m + i]
            }
        };
        let bt = |p: usize, j: usize| {
            if tb == Transpose::No {
                b[p * n + j]
            } else {
                b[j * k + p]
            }
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_for_all_transposes() {
        let (m, n, k) = (7, 5, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        let cpu = Cpu::new(2);
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                let expected = naive(ta, tb, m, n, k, &a, &b);
                let mut c = vec![1.0; m * n];
                cpu.gemm(ta, tb, m, n, k, 2.0, &a, &b, 0.5, &mut c);
                for (got, want) in c.iter().zip(&expected) {
                    assert!((got - (2.0 * want + 0.5)).abs() < 1e-12, "{ta:?} {tb:?}");
                }
            }
        }
    }

    #[test]
    fn gemm_with_zero_beta_ignores_nan_in_output() {
        let cpu = Cpu::new(1);
        let mut c = vec![f32::NAN; 4];
        cpu.gemm(
            Transpose::No,
            Transpose::No,
            2,
            2,
            1,
            1.0,
            &[1.0, 2.0],
            &[3.0, 4.0],
            0.0,
            &mut c,
        );
        assert_eq!(c, vec![3.0, 4.0, 6.0, 8.0]);
    }
}
