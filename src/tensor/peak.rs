//! The multiply-add rate of one core's vector units, measured with a loop of independent
//! instructions and no memory traffic: the ceiling that no matrix product on that core can
//! pass. Comparing the f32 and bf16 ceilings shows how much faster bf16 products can be.

use super::Precision;
use std::time::Instant;

/// Independent accumulators per loop, more than the instructions in flight, so that the
/// loop waits on throughput and not on latency.
const CHAINS: usize = 24;
/// Loop iterations per timed run.
const ITERATIONS: usize = 400_000;
/// Timed runs. The fastest counts, because other work on the machine only slows a run.
const RUNS: usize = 5;

/// Measures the peak rate of `precision` multiply-adds on the calling thread in GFLOP/s,
/// counting a multiply and an add as two operations: f32 fused multiply-add (`vfmadd231ps`)
/// or bf16 pair dot product (`vdpbf16ps`) on 512-bit vectors. Returns `None` when the CPU
/// lacks the instructions.
pub fn core_peak_gflops(precision: Precision) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let run: unsafe fn() -> f32 = match precision {
            Precision::F32 if super::avx512::available() => f32_chains,
            Precision::Bf16 if super::avx512_bf16::available() => bf16_chains,
            _ => return None,
        };
        // Each instruction does 16 lanes of one (f32) or two (bf16) multiply-adds.
        let per_instruction = match precision {
            Precision::F32 => 32.0,
            Precision::Bf16 => 64.0,
        };
        let mut best = f64::INFINITY;
        for _ in 0..RUNS {
            let started = Instant::now();
            // SAFETY: the CPU has the instructions, checked above.
            std::hint::black_box(unsafe { run() });
            best = best.min(started.elapsed().as_secs_f64());
        }
        let operations = per_instruction * (CHAINS * ITERATIONS) as f64;
        Some(operations / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = precision;
        None
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn f32_chains() -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(std::hint::black_box(0.999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-3));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..ITERATIONS {
        for chain in acc.iter_mut() {
            *chain = _mm512_fmadd_ps(*chain, a, b);
        }
    }
    let total = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
    _mm512_reduce_add_ps(total)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_chains() -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_cvtne2ps_pbh(
        _mm512_set1_ps(std::hint::black_box(0.5)),
        _mm512_set1_ps(std::hint::black_box(0.25)),
    );
    let b = _mm512_cvtne2ps_pbh(
        _mm512_set1_ps(std::hint::black_box(1e-3)),
        _mm512_set1_ps(std::hint::black_box(-1e-3)),
    );
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..ITERATIONS {
        for chain in acc.iter_mut() {
            *chain = _mm512_dpbf16_ps(*chain, a, b);
        }
    }
    let total = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
    _mm512_reduce_add_ps(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_positive_where_supported() {
        for precision in [Precision::F32, Precision::Bf16] {
            match core_peak_gflops(precision) {
                Some(rate) => assert!(rate.is_finite() && rate > 0.0, "{precision}: {rate}"),
                None => eprintln!("{precision}: this CPU lacks the instructions"),
            }
        }
    }
}
