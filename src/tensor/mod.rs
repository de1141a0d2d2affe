//! Scalars, the kernel interface and the CPU kernels.
//!
//! Buffers are plain slices in row-major order: a batch of `n` samples with `d` features is a
//! slice of length `n * d` where sample `i` occupies `i * d .. (i + 1) * d`.

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
mod cpu;
#[cfg(target_arch = "x86_64")]
mod matmul;
#[cfg(target_arch = "x86_64")]
mod matmul_bf16;
mod peak;

pub use cpu::{with_thread_limit, Cpu};
pub use peak::core_peak_gflops;

use serde::{Deserialize, Serialize};
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A floating-point element type: `f32` for training speed, `f64` for derivative checks.
pub trait Scalar:
    num_traits::Float
    + num_traits::FloatConst
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// The type's name in files and messages (`f32`, `f64`).
    const NAME: &'static str;

    /// Converts from `f64`, rounding to the nearest representable value.
    fn of(x: f64) -> Self;

    /// Converts to `f64` exactly.
    fn as_f64(self) -> f64;

    /// Converts from `usize`.
    fn of_usize(n: usize) -> Self {
        Self::of(n as f64)
    }
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";

    fn of(x: f64) -> Self {
        x as f32
    }

    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";

    fn of(x: f64) -> Self {
        x
    }

    fn as_f64(self) -> f64 {
        self
    }
}

/// The element type that f32 matrix products round their operands to. Sums, outputs and
/// everything outside the products stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// f32 operands.
    #[default]
    F32,
    /// bf16 operands (8-bit significand) with f32 sums, on CPUs with AVX-512 BF16.
    Bf16,
}

impl Precision {
    /// Returns whether this CPU computes products in this precision; f32 always.
    pub fn is_supported(self) -> bool {
        match self {
            Precision::F32 => true,
            #[cfg(target_arch = "x86_64")]
            Precision::Bf16 => matmul_bf16::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Precision::Bf16 => false,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(crate::Error::setting(
                "precision",
                s,
                "expected f32 or bf16",
            )),
        }
    }
}

impl Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Whether a matrix operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// Use the matrix as stored.
    No,
    /// Use its transpose.
    Yes,
}

/// The kernels that layers call. A backend for another device implements this trait for the
/// element types it supports; layers and methods do not change.
///
/// Matrices are row-major slices. `op(X)` is `X` or `Xᵀ` as the [`Transpose`] flag selects.
pub trait Kernels<T: Scalar>: Send + Sync {
    /// Computes `C = alpha * op(A) * op(B) + beta * C`, with `op(A)` of shape `m × k`,
    /// `op(B)` of shape `k × n` and `C` of shape `m × n`. When `beta` is zero, `C` is not read.
    #[allow(clippy::too_many_arguments)]
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
    );

    /// Computes a dense layer's output `Z = X Wᵀ + b` for `X` of shape `m × k`, `W` of shape
    /// `n × k` and `b` of length `n` (added to every row), and when `relu` is given also
    /// `Y = max(Z, 0)` into it. The default runs [`Kernels::gemm`] and then one pass.
    #[allow(clippy::too_many_arguments)]
    fn dense_forward(
        &self,
        m: usize,
        n: usize,
        k: usize,
        x: &[T],
        w: &[T],
        bias: &[T],
        z: &mut [T],
        relu: Option<&mut [T]>,
    ) {
        dense_forward_in_passes(self, (m, n, k), x, w, bias, z, relu);
    }

    /// Adds `bias` (length `n`) to every row of the `m × n` matrix `c`.
    fn add_row_vector(&self, c: &mut [T], bias: &[T]);

    /// Computes `out = beta * out + Σ_rows x`, the column sums of the `m × n` matrix `x`.
    fn column_sums(&self, x: &[T], out: &mut [T], beta: T);

    /// Computes `y = a * x + y` elementwise.
    fn axpy(&self, a: T, x: &[T], y: &mut [T]);

    /// Returns the dot product of `x` and `y`.
    fn dot(&self, x: &[T], y: &[T]) -> T;
}

/// Computes [`Kernels::dense_forward`] as a product followed by one pass over the output.
#[allow(clippy::too_many_arguments)]
fn dense_forward_in_passes<T: Scalar, K: Kernels<T> + ?Sized>(
    kernels: &K,
    (m, n, k): (usize, usize, usize),
    x: &[T],
    w: &[T],
    bias: &[T],
    z: &mut [T],
    relu: Option<&mut [T]>,
) {
    let (one, zero) = (T::one(), T::zero());
    kernels.gemm(Transpose::No, Transpose::Yes, m, n, k, one, x, w, zero, z);
    match relu {
        Some(y) => {
            for (z, y) in z.chunks_mut(n).zip(y.chunks_mut(n)) {
                for ((z, y), &b) in z.iter_mut().zip(y).zip(bias) {
                    *z += b;
                    *y = z.max(zero);
                }
            }
        }
        None => kernels.add_row_vector(z, bias),
    }
}

/// Partial sums that [`norm`] keeps apart. One running sum makes every addition wait for the
/// previous one (about 4 cycles each); 16 let the compiler vectorise the loop.
const NORM_LANES: usize = 16;

/// Returns the Euclidean norm of `x`, accumulated in `f64`.
pub fn norm<T: Scalar>(x: &[T]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && avx512::available() {
        // SAFETY: T is f32, so the slice has the layout of an f32 slice, and the CPU has
        // AVX-512F (and VL, checked by `available`).
        let x = unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) };
        return unsafe { avx512::sum_of_squares(x) }.sqrt();
    }
    let mut sums = [0.0f64; NORM_LANES];
    let chunks = x.chunks_exact(NORM_LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (sum, v) in sums.iter_mut().zip(chunk) {
            *sum += v.as_f64() * v.as_f64();
        }
    }
    for (sum, v) in sums.iter_mut().zip(tail) {
        *sum += v.as_f64() * v.as_f64();
    }
    sums.iter().sum::<f64>().sqrt()
}

/// Returns the dot product of `x` and `y`, accumulated in `f64`.
pub fn dot<T: Scalar>(x: &[T], y: &[T]) -> f64 {
    debug_assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| a.as_f64() * b.as_f64()).sum()
}

/// Sets flush-to-zero and denormals-are-zero on the calling thread, so that tiny values in
/// optimizer state cost no more than normal ones. Returns whether the CPU supports it.
pub fn flush_denormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // MXCSR bit 15 is flush-to-zero and bit 6 is denormals-are-zero (Intel SDM vol. 1,
        // 10.2.3). Both only change results for values below f32::MIN_POSITIVE.
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr and ldmxcsr read and write the SSE control register of this thread
        // only. SSE is part of the x86_64 baseline, and the bits set are defined on every
        // x86_64 CPU.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
