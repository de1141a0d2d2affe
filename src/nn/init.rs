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
}

impl std::str::FromStr for Init {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "auto" => Ok(Init::Auto),
            "glorot-uniform" => Ok(Init::GlorotUniform),
            "glorot-normal" => Ok(Init::GlorotNormal),
            "he-uniform" => Ok(Init::HeUniform),
            "he-normal" => Ok(Init::HeNormal),
            _ => Err(crate::Error::setting(
                "init",
                s,
                "expected auto, glorot-uniform, glorot-normal, he-uniform or he-normal",
            )),
        }
    }
}

/// Fills `weights` for a layer with the given fans. `Init::Auto` must be resolved first; it
/// falls back to Glorot uniform here.
pub fn fill<T: Scalar>(
    weights: &mut [T],
    init: Init,
    fan_in: usize,
    fan_out: usize,
    rng: &mut Rng,
) {
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
        };
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
    fn same_seed_gives_same_weights() {
        let mut a = vec![0.0f32; 50];
        let mut b = vec![0.0f32; 50];
        fill(&mut a, Init::HeNormal, 10, 5, &mut Rng::seed_from_u64(3));
        fill(&mut b, Init::HeNormal, 10, 5, &mut Rng::seed_from_u64(3));
        assert_eq!(a, b);
    }
}
