//! Seeded weight initialisation.

use super::Rng;
use crate::tensor::Scalar;
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Weight initialisation schemes. Biases start at zero.
///
/// - Glorot and Bengio (2010), "Understanding the difficulty of training deep feedforward
///   neural networks": variance `2 / (fan_in + fan_out)`.
/// - He et al. (2015), "Delving deep into rectifiers": variance `2 / fan_in`, for ReLU-like
///   activations.
/// - Martens (2010), "Deep learning via Hessian-free optimization": sparse initialisation,
///   which gives each unit a fixed number of nonzero incoming weights so that the scale of
///   its input does not shrink with the fan-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// He uniform before ReLU-like activations, Glorot uniform otherwise.
    Auto,
    /// Uniform on `±sqrt(6 / (fan_in + fan_out))`.
    GlorotUniform,
    /// Normal with standard deviation `sqrt(2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// Uniform on `±sqrt(6 / fan_in)`.
    HeUniform,
    /// Normal with standard deviation `sqrt(2 / fan_in)`.
    HeNormal,
    /// Each unit gets [`SPARSE_CONNECTIONS`] nonzero incoming weights from a standard normal,
    /// at inputs drawn without replacement (all of them when the fan-in is smaller), and
    /// zero elsewhere.
    Sparse,
}

/// Nonzero incoming weights per unit of [`Init::Sparse`], the count Martens (2010) used.
pub const SPARSE_CONNECTIONS: usize = 15;

impl std::str::FromStr for Init {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "auto" => Ok(Init::Auto),
            "glorot-uniform" => Ok(Init::GlorotUniform),
            "glorot-normal" => Ok(Init::GlorotNormal),
            "he-uniform" => Ok(Init::HeUniform),
            "he-normal" => Ok(Init::HeNormal),
            "sparse" => Ok(Init::Sparse),
            _ => Err(crate::Error::setting(
                "init",
                s,
                "expected auto, glorot-uniform, glorot-normal, he-uniform, he-normal or sparse",
            )),
        }
    }
}

/// Fills `weights` for a layer with the given fans. The weights are laid out one unit after
/// another, each unit's `fan_in` incoming weights contiguous. `Init::Auto` must be resolved
/// first; it falls back to Glorot uniform here.
pub fn fill<T: Scalar>(
    weights: &mut [T],
    init: Init,
    fan_in: usize,
    fan_out: usize,
    rng: &mut Rng,
) {
    if init == Init::Sparse {
        fill_sparse(weights, fan_in, rng);
        return;
    }
    let fan_in = fan_in.max(1) as f64;
    let fan_out = fan_out.max(1) as f64;
    let uniform = |limit: f64, rng: &mut Rng| T::of(rng.random_range(-limit..limit));
    let normal = |std: f64, rng: &mut Rng| {
        let z: f64 = StandardNormal.sample(rng);
        T::of(std * z)
    };
    for w in weights.iter_mut() {
        *w = match init {
            Init::Auto | Init::GlorotUniform => uniform((6.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::GlorotNormal => normal((2.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::HeUniform => uniform((6.0 / fan_in).sqrt(), rng),
            Init::HeNormal => normal((2.0 / fan_in).sqrt(), rng),
            Init::Sparse => unreachable!("sparse initialisation returned above"),
        };
    }
}

/// Fills each unit's `fan_in` incoming weights with [`SPARSE_CONNECTIONS`] standard normal
/// values at random positions and zeros elsewhere.
fn fill_sparse<T: Scalar>(weights: &mut [T], fan_in: usize, rng: &mut Rng) {
    let fan_in = fan_in.max(1);
    let connections = SPARSE_CONNECTIONS.min(fan_in);
    for unit in weights.chunks_mut(fan_in) {
        unit.fill(T::zero());
        let inputs = rand::seq::index::sample(rng, unit.len(), connections.min(unit.len()));
        for i in inputs {
            let z: f64 = StandardNormal.sample(rng);
            unit[i] = T::of(z);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn moments(init: Init, fan_in: usize, fan_out: usize) -> (f64, f64) {
        let mut rng = Rng::seed_from_u64(7);
        let mut w = vec![0.0f64; 200_000];
        fill(&mut w, init, fan_in, fan_out, &mut rng);
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / w.len() as f64;
        (mean, var)
    }

    #[test]
    fn variances_match_their_formulas() {
        let cases = [
            (Init::GlorotUniform, 2.0 / 300.0),
            (Init::GlorotNormal, 2.0 / 300.0),
            (Init::HeUniform, 2.0 / 100.0),
            (Init::HeNormal, 2.0 / 100.0),
        ];
        for (init, expected) in cases {
            let (mean, var) = moments(init, 100, 200);
            assert!(mean.abs() < 1e-3, "{init:?} mean {mean}");
            assert!(
                (var / expected - 1.0).abs() < 0.02,
                "{init:?} var {var} vs {expected}"
            );
        }
    }

    #[test]
    fn sparse_init_connects_fifteen_inputs() {
        let (fan_in, units) = (100, 40);
        let mut w = vec![0.0f64; fan_in * units];
        fill(
            &mut w,
            Init::Sparse,
            fan_in,
            units,
            &mut Rng::seed_from_u64(5),
        );
        for (unit, row) in w.chunks(fan_in).enumerate() {
            let nonzero = row.iter().filter(|&&x| x != 0.0).count();
            assert_eq!(nonzero, SPARSE_CONNECTIONS, "unit {unit}");
        }
        let values: Vec<f64> = w.iter().copied().filter(|&x| x != 0.0).collect();
        let var = values.iter().map(|x| x * x).sum::<f64>() / values.len() as f64;
        assert!(
            (var - 1.0).abs() < 0.25,
            "variance of nonzero weights {var}"
        );
    }

    #[test]
    fn sparse_init_fills_small_fan_in() {
        let mut w = vec![0.0f64; 8 * 3];
        fill(&mut w, Init::Sparse, 8, 3, &mut Rng::seed_from_u64(5));
        assert!(w.iter().all(|&x| x != 0.0), "{w:?}");
    }

    #[test]
    fn same_seed_gives_same_weights() {
        let mut a = vec![0.0f32; 50];
        let mut b = vec![0.0f32; 50];
        fill(&mut a, Init::HeNormal, 10, 5, &mut Rng::seed_from_u64(3));
        fill(&mut b, Init::HeNormal, 10, 5, &mut Rng::seed_from_u64(3));
        assert_eq!(a, b);
    }
}
