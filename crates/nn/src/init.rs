//! Initialisers: the formulas of `torch.nn.init`, drawn from a seeded, portable stream.
//!
//! Every initialiser draws its numbers in `f64` and rounds them to the element type, so
//! `Init::tensor::<f32>` is `Init::tensor::<f64>` rounded to `f32`, element by element,
//! for the same generator state. Pass a [`ChaCha8Rng`] (see [`rng`]): ChaCha is
//! specified bit for bit, so the same seed gives the same stream on every machine and
//! with every compiler, unlike `rand`'s `StdRng`, whose algorithm may change between
//! releases. Uniform draws are pure arithmetic on that stream. Normal draws use
//! `rand_distr`'s ziggurat sampler, which is arithmetic too except for its rare tail
//! and wedge draws, which call `exp`/`ln`.
//!
//! # Fans
//!
//! A weight is laid out `[out, in]` as in PyTorch (`[out, in, k...]` for a convolution
//! kernel), and, as `torch.nn.init._calculate_fan_in_and_fan_out` computes them:
//!
//! - `fan_in  = shape[1] · Π shape[2..]` (the inputs each output sums over),
//! - `fan_out = shape[0] · Π shape[2..]`.
//!
//! So for a `Linear` weight `[out, in]`, `fan_in = in` and `fan_out = out`. The
//! fan-based initialisers need at least 2 axes (a bias `[out]` has no fan; use
//! [`Init::Uniform`] or [`Init::Zeros`] for it), as in PyTorch.
//!
//! ```
//! use descent_nn::init::{self, Init, Nonlinearity};
//! let mut rng = init::rng(42);
//! let w = Init::XavierUniform { gain: 1.0 }.tensor::<f32>(&[64, 32], &mut rng);
//! let bound = (6.0f64 / (64.0 + 32.0)).sqrt() as f32;
//! assert!(w.data().iter().all(|x| x.abs() <= bound));
//! let he = Init::KaimingNormal { gain: Nonlinearity::Relu.gain() };
//! assert_eq!(he.std(&[64, 32]).unwrap(), (2.0f64 / 32.0).sqrt());
//! ```

use descent_tensor::{Float, ShapeDisplay, Tensor};
use rand::{Rng, SeedableRng};
pub use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// The generator to pass to initialisers: ChaCha with 8 rounds, seeded from `seed`
/// (`ChaCha8Rng::seed_from_u64`). Portable: the same seed gives the same numbers on
/// every machine.
///
/// ```
/// use descent_nn::init::{Init, rng};
/// let a = Init::Normal { mean: 0.0, std: 1.0 }.tensor::<f64>(&[3], &mut rng(7));
/// let b = Init::Normal { mean: 0.0, std: 1.0 }.tensor::<f64>(&[3], &mut rng(7));
/// assert_eq!(a, b);
/// ```
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// What an initialiser can refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A fan-based initialiser got a shape with fewer than 2 axes.
    #[error(
        "{init}: needs a weight of at least 2 axes ([out, in]) to compute fan_in and fan_out, got shape {}", ShapeDisplay(.shape)
    )]
    NoFan {
        /// The initialiser.
        init: &'static str,
        /// The shape it was given.
        shape: Vec<usize>,
    },
    /// A fan is zero (a shape with a zero extent), so the scale would divide by zero.
    #[error("{init}: {fan} is 0 for shape {}", ShapeDisplay(.shape))]
    ZeroFan {
        /// The initialiser.
        init: &'static str,
        /// `"fan_in"` or `"fan_in + fan_out"`.
        fan: &'static str,
        /// The shape it was given.
        shape: Vec<usize>,
    },
    /// A parameter is out of range (a negative or non-finite standard deviation or
    /// gain, `low > high`, a non-finite bound or mean).
    #[error("{init}: {reason}")]
    Param {
        /// The initialiser.
        init: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The recommended gain for a nonlinearity, as `torch.nn.init.calculate_gain` gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// Identity (and convolutions without activation): 1.
    Linear,
    /// Sigmoid: 1.
    Sigmoid,
    /// Tanh: 5/3.
    Tanh,
    /// ReLU: √2.
    Relu,
    /// Leaky ReLU with this negative slope: √(2 / (1 + slope²)).
    LeakyRelu(f64),
    /// SELU: 3/4.
    Selu,
}

impl Nonlinearity {
    /// The gain.
    ///
    /// ```
    /// use descent_nn::init::Nonlinearity;
    /// assert_eq!(Nonlinearity::Relu.gain(), 2f64.sqrt());
    /// assert_eq!(Nonlinearity::Tanh.gain(), 5.0 / 3.0);
    /// assert_eq!(Nonlinearity::LeakyRelu(0.0).gain(), 2f64.sqrt());
    /// ```
    pub fn gain(self) -> f64 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => 2f64.sqrt(),
            Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
            Nonlinearity::Selu => 0.75,
        }
    }
}

/// `(fan_in, fan_out)` of a weight of this shape, as PyTorch computes them:
/// `fan_in = shape[1]·Π shape[2..]`, `fan_out = shape[0]·Π shape[2..]`; `None` for
/// fewer than 2 axes.
///
/// ```
/// assert_eq!(descent_nn::init::fans(&[10, 3]), Some((3, 10)));      // Linear [out, in]
/// assert_eq!(descent_nn::init::fans(&[16, 3, 5, 5]), Some((75, 400))); // conv kernel
/// assert_eq!(descent_nn::init::fans(&[10]), None);
/// ```
pub fn fans(shape: &[usize]) -> Option<(usize, usize)> {
    if shape.len() < 2 {
        return None;
    }
    let receptive: usize = shape[2..].iter().product();
    Some((shape[1] * receptive, shape[0] * receptive))
}

/// An initialiser: how to fill a tensor of a given shape. The formulas are PyTorch's
/// (`torch.nn.init`); fans are described in the [module docs](self).
///
/// | variant | distribution |
/// |---|---|
/// | `Zeros`, `Ones`, `Constant(c)` | the constant |
/// | `Uniform { low, high }` | U(low, high) |
/// | `Normal { mean, std }` | N(mean, std²) |
/// | `XavierUniform { gain }` | U(-a, a), a = gain·√(6 / (fan_in + fan_out)) |
/// | `XavierNormal { gain }` | N(0, σ²), σ = gain·√(2 / (fan_in + fan_out)) |
/// | `KaimingUniform { gain }` | U(-a, a), a = gain·√(3 / fan_in) |
/// | `KaimingNormal { gain }` | N(0, σ²), σ = gain / √fan_in |
///
/// Xavier is also called Glorot, Kaiming is also called He. The Kaiming variants use
/// PyTorch's default `mode="fan_in"` (which preserves the forward pass's variance);
/// pass `gain: Nonlinearity::Relu.gain()` (√2) for He initialisation of a ReLU layer,
/// or [`Nonlinearity::LeakyRelu`]`(a).gain()` for PyTorch's `a` argument.
/// PyTorch's default `nn.Linear` weight, `kaiming_uniform_(a=√5)`, is
/// `KaimingUniform { gain: √(1/3) }`, i.e. U(-1/√fan_in, 1/√fan_in).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every element `c`.
    Constant(f64),
    /// Uniform on `[low, high)` (drawn in `f64`; rounding to `f32` can reach `high`).
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Normal with this mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation (≥ 0).
        std: f64,
    },
    /// Xavier/Glorot uniform: U(-a, a), a = gain·√(6 / (fan_in + fan_out)).
    XavierUniform {
        /// Scale factor (see [`Nonlinearity::gain`]).
        gain: f64,
    },
    /// Xavier/Glorot normal: N(0, σ²), σ = gain·√(2 / (fan_in + fan_out)).
    XavierNormal {
        /// Scale factor (see [`Nonlinearity::gain`]).
        gain: f64,
    },
    /// Kaiming/He uniform, fan_in mode: U(-a, a), a = gain·√(3 / fan_in).
    KaimingUniform {
        /// Scale factor: √2 for ReLU (see [`Nonlinearity::gain`]).
        gain: f64,
    },
    /// Kaiming/He normal, fan_in mode: N(0, σ²), σ = gain / √fan_in.
    KaimingNormal {
        /// Scale factor: √2 for ReLU (see [`Nonlinearity::gain`]).
        gain: f64,
    },
}

/// What an [`Init`] reduces to once the shape is known.
enum Resolved {
    Constant(f64),
    Uniform(f64, f64),
    Normal(f64, f64),
}

impl Init {
    /// PyTorch's `nn.Linear` default for the weight: U(-1/√fan_in, 1/√fan_in)
    /// (`kaiming_uniform_(a=√5)`).
    pub const LINEAR_DEFAULT: Init = Init::KaimingUniform {
        gain: 0.577_350_269_189_625_8, // √(1/3)
    };

    /// The initialiser's name as in error messages (`"xavier_uniform"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Init::Zeros => "zeros",
            Init::Ones => "ones",
            Init::Constant(_) => "constant",
            Init::Uniform { .. } => "uniform",
            Init::Normal { .. } => "normal",
            Init::XavierUniform { .. } => "xavier_uniform",
            Init::XavierNormal { .. } => "xavier_normal",
            Init::KaimingUniform { .. } => "kaiming_uniform",
            Init::KaimingNormal { .. } => "kaiming_normal",
        }
    }

    /// A tensor of this shape filled by the initialiser.
    ///
    /// # Panics
    /// With the message of [`Init::try_tensor`]'s error.
    pub fn tensor<T: Float>(&self, shape: &[usize], rng: &mut impl Rng) -> Tensor<T> {
        match self.try_tensor(shape, rng) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Init::tensor`]: an error for a fan-based initialiser on
    /// fewer than 2 axes or with a zero fan, and for parameters out of range. Draws
    /// nothing from `rng` when it fails, and nothing for the constant initialisers.
    ///
    /// ```
    /// use descent_nn::init::{rng, Init};
    /// let err = Init::XavierUniform { gain: 1.0 }.try_tensor::<f32>(&[5], &mut rng(0));
    /// assert!(err.unwrap_err().to_string().contains("at least 2 axes"));
    /// ```
    pub fn try_tensor<T: Float>(
        &self,
        shape: &[usize],
        rng: &mut impl Rng,
    ) -> Result<Tensor<T>, InitError> {
        let n: usize = shape.iter().product();
        let data: Vec<T> = match self.resolve(shape)? {
            Resolved::Constant(c) => vec![T::from_f64(c); n],
            Resolved::Uniform(low, high) if low == high => vec![T::from_f64(low); n],
            Resolved::Uniform(low, high) => {
                let d = Uniform::new(low, high).map_err(|e| self.param(e.to_string()))?;
                (0..n).map(|_| T::from_f64(d.sample(rng))).collect()
            }
            Resolved::Normal(mean, std) => {
                let d = Normal::new(mean, std).map_err(|e| self.param(e.to_string()))?;
                (0..n).map(|_| T::from_f64(d.sample(rng))).collect()
            }
        };
        Ok(Tensor::new(shape, data).expect("as many elements as the shape holds"))
    }

    /// The standard deviation of the distribution for a weight of this shape (0 for
    /// the constants; `(high - low)/√12` for a uniform).
    ///
    /// ```
    /// use descent_nn::init::Init;
    /// let s = Init::XavierNormal { gain: 1.0 }.std(&[30, 20]).unwrap();
    /// assert!((s - (2.0f64 / 50.0).sqrt()).abs() < 1e-15);
    /// ```
    pub fn std(&self, shape: &[usize]) -> Result<f64, InitError> {
        Ok(match self.resolve(shape)? {
            Resolved::Constant(_) => 0.0,
            Resolved::Uniform(low, high) => (high - low) / 12f64.sqrt(),
            Resolved::Normal(_, std) => std,
        })
    }

    /// The bound `a` of a uniform initialiser (`U(-a, a)` for Xavier and Kaiming, and
    /// `max(|low|, |high|)` for `Uniform`); `None` for the others.
    ///
    /// ```
    /// use descent_nn::init::Init;
    /// let a = Init::KaimingUniform { gain: 2f64.sqrt() }.bound(&[10, 6]).unwrap();
    /// assert_eq!(a, Some(1.0)); // √2·√(3/6)
    /// ```
    pub fn bound(&self, shape: &[usize]) -> Result<Option<f64>, InitError> {
        Ok(match self.resolve(shape)? {
            Resolved::Uniform(low, high) => Some(low.abs().max(high.abs())),
            _ => None,
        })
    }

    fn param(&self, reason: String) -> InitError {
        InitError::Param {
            init: self.name(),
            reason,
        }
    }

    fn resolve(&self, shape: &[usize]) -> Result<Resolved, InitError> {
        let finite = |what: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(self.param(format!("{what} must be finite, got {v}")))
            }
        };
        let gain_ok = |gain: f64| {
            finite("gain", gain)?;
            if gain < 0.0 {
                return Err(self.param(format!("gain must be >= 0, got {gain}")));
            }
            Ok(())
        };
        let fans = || {
            fans(shape).ok_or_else(|| InitError::NoFan {
                init: self.name(),
                shape: shape.to_vec(),
            })
        };
        let zero_fan = |fan| InitError::ZeroFan {
            init: self.name(),
            fan,
            shape: shape.to_vec(),
        };
        Ok(match *self {
            Init::Zeros => Resolved::Constant(0.0),
            Init::Ones => Resolved::Constant(1.0),
            Init::Constant(c) => {
                finite("the constant", c)?;
                Resolved::Constant(c)
            }
            Init::Uniform { low, high } => {
                finite("low", low)?;
                finite("high", high)?;
                if low > high {
                    return Err(self.param(format!("low must be <= high, got {low} > {high}")));
                }
                Resolved::Uniform(low, high)
            }
            Init::Normal { mean, std } => {
                finite("mean", mean)?;
                finite("std", std)?;
                if std < 0.0 {
                    return Err(self.param(format!("std must be >= 0, got {std}")));
                }
                Resolved::Normal(mean, std)
            }
            Init::XavierUniform { gain } | Init::XavierNormal { gain } => {
                gain_ok(gain)?;
                let (fi, fo) = fans()?;
                if fi + fo == 0 {
                    return Err(zero_fan("fan_in + fan_out"));
                }
                let std = gain * (2.0 / (fi + fo) as f64).sqrt();
                if matches!(self, Init::XavierUniform { .. }) {
                    let a = 3f64.sqrt() * std;
                    Resolved::Uniform(-a, a)
                } else {
                    Resolved::Normal(0.0, std)
                }
            }
            Init::KaimingUniform { gain } | Init::KaimingNormal { gain } => {
                gain_ok(gain)?;
                let (fi, _) = fans()?;
                if fi == 0 {
                    return Err(zero_fan("fan_in"));
                }
                let std = gain / (fi as f64).sqrt();
                if matches!(self, Init::KaimingUniform { .. }) {
                    let a = 3f64.sqrt() * std;
                    Resolved::Uniform(-a, a)
                } else {
                    Resolved::Normal(0.0, std)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(t: &Tensor<f64>) -> (f64, f64) {
        let n = t.len() as f64;
        let mean = t.data().iter().sum::<f64>() / n;
        let var = t
            .data()
            .iter()
            .map(|x| (x - mean) * (x - mean))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    /// Mean within 5 standard errors of the expected mean, std within 2%.
    fn check_stats(init: Init, shape: &[usize], mean: f64, std: f64) {
        let t = init.tensor::<f64>(shape, &mut rng(1));
        let (m, s) = stats(&t);
        let n = t.len() as f64;
        assert!(
            (m - mean).abs() < 5.0 * std / n.sqrt(),
            "{init:?}: mean {m}, expected {mean}"
        );
        assert!(
            (s - std).abs() < 0.02 * std,
            "{init:?}: std {s}, expected {std}"
        );
        assert!((init.std(shape).unwrap() - std).abs() < 1e-12 * std);
    }

    #[test]
    fn uniform_statistics_and_bounds() {
        let init = Init::Uniform {
            low: -2.0,
            high: 3.0,
        };
        check_stats(init, &[400, 500], 0.5, 5.0 / 12f64.sqrt());
        let t = init.tensor::<f32>(&[400, 500], &mut rng(2));
        assert!(t.data().iter().all(|&x| (-2.0..=3.0).contains(&x)));
        // Both ends are approached.
        assert!(t.data().iter().any(|&x| x < -1.99));
        assert!(t.data().iter().any(|&x| x > 2.99));
    }

    #[test]
    fn normal_statistics() {
        check_stats(
            Init::Normal {
                mean: 1.5,
                std: 0.25,
            },
            &[200_000],
            1.5,
            0.25,
        );
    }

    #[test]
    fn xavier_uniform_matches_torch_formula() {
        let (out, inp) = (300, 500);
        let gain = 5.0 / 3.0;
        let a = gain * (6.0f64 / (out + inp) as f64).sqrt();
        let init = Init::XavierUniform { gain };
        assert!((init.bound(&[out, inp]).unwrap().unwrap() - a).abs() < 1e-15);
        check_stats(init, &[out, inp], 0.0, a / 3f64.sqrt());
        let t = init.tensor::<f64>(&[out, inp], &mut rng(3));
        assert!(t.data().iter().all(|&x| x.abs() <= a));
        assert!(t.data().iter().any(|&x| x.abs() > 0.999 * a));
    }

    #[test]
    fn xavier_normal_matches_torch_formula() {
        let (out, inp) = (300, 500);
        let std = 2.0 * (2.0f64 / 800.0).sqrt();
        check_stats(Init::XavierNormal { gain: 2.0 }, &[out, inp], 0.0, std);
    }

    #[test]
    fn kaiming_uses_fan_in_of_an_out_in_weight() {
        // [out, in] = [100, 2000]: fan_in = 2000 (not 100).
        let relu = Nonlinearity::Relu.gain();
        let std = (2.0f64 / 2000.0).sqrt();
        check_stats(Init::KaimingNormal { gain: relu }, &[100, 2000], 0.0, std);
        let init = Init::KaimingUniform { gain: relu };
        let a = (6.0f64 / 2000.0).sqrt();
        assert!((init.bound(&[100, 2000]).unwrap().unwrap() - a).abs() < 1e-15);
        check_stats(init, &[100, 2000], 0.0, std);
        let t = init.tensor::<f32>(&[100, 2000], &mut rng(4));
        assert!(t.data().iter().all(|&x| x.abs() <= a as f32));
    }

    #[test]
    fn kaiming_fans_of_a_convolution_kernel() {
        // [out, in, kh, kw] = [8, 4, 3, 3]: fan_in = 4·9 = 36.
        let s = Init::KaimingNormal { gain: 1.0 }
            .std(&[8, 4, 3, 3])
            .unwrap();
        assert_eq!(s, 1.0 / 6.0);
    }

    #[test]
    fn linear_default_is_one_over_sqrt_fan_in() {
        let a = Init::LINEAR_DEFAULT.bound(&[7, 16]).unwrap().unwrap();
        assert!((a - 0.25).abs() < 1e-15, "{a}");
    }

    #[test]
    fn constants() {
        let mut r = rng(0);
        assert_eq!(
            Init::Zeros.tensor::<f32>(&[2, 3], &mut r),
            Tensor::zeros(&[2, 3])
        );
        assert_eq!(Init::Ones.tensor::<f64>(&[4], &mut r), Tensor::ones(&[4]));
        assert_eq!(
            Init::Constant(0.5).tensor::<f64>(&[2], &mut r).data(),
            &[0.5, 0.5]
        );
        // Constants draw nothing: the stream is where it started.
        assert_eq!(r.random::<u64>(), rng(0).random::<u64>());
        // A zero gain or std gives zeros / the mean, drawing nothing either.
        let z = Init::XavierUniform { gain: 0.0 }.tensor::<f64>(&[3, 3], &mut r);
        assert!(z.data().iter().all(|&x| x == 0.0));
        let c = Init::Normal {
            mean: 2.0,
            std: 0.0,
        }
        .tensor::<f64>(&[3], &mut r);
        assert_eq!(c.data(), &[2.0, 2.0, 2.0]);
    }

    #[test]
    fn same_seed_same_bits_different_seed_different() {
        for init in [
            Init::Uniform {
                low: -1.0,
                high: 1.0,
            },
            Init::Normal {
                mean: 0.0,
                std: 1.0,
            },
            Init::XavierUniform { gain: 1.0 },
            Init::XavierNormal { gain: 1.0 },
            Init::KaimingUniform { gain: 1.0 },
            Init::KaimingNormal { gain: 1.0 },
        ] {
            let a = init.tensor::<f32>(&[16, 8], &mut rng(9));
            let b = init.tensor::<f32>(&[16, 8], &mut rng(9));
            let c = init.tensor::<f32>(&[16, 8], &mut rng(10));
            let bits = |t: &Tensor<f32>| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{init:?}");
            assert_ne!(bits(&a), bits(&c), "{init:?}");
            // f32 is the f64 draw rounded.
            let d = init.tensor::<f64>(&[16, 8], &mut rng(9));
            assert_eq!(a, d.cast::<f32>(), "{init:?}");
        }
    }

    #[test]
    fn consecutive_draws_continue_the_stream() {
        let init = Init::Normal {
            mean: 0.0,
            std: 1.0,
        };
        let mut r = rng(5);
        let a = init.tensor::<f64>(&[3], &mut r);
        let b = init.tensor::<f64>(&[3], &mut r);
        let both = init.tensor::<f64>(&[6], &mut rng(5));
        assert_eq!([a.data(), b.data()].concat(), both.data());
    }

    /// Pins the stream: a change of generator, seeding or sampling algorithm (a new
    /// `rand`/`rand_chacha`/`rand_distr` release, say) shows up here first.
    #[test]
    fn golden_values_for_seed_2024() {
        let u = Init::Uniform {
            low: 0.0,
            high: 1.0,
        }
        .tensor::<f64>(&[4], &mut rng(2024));
        let n = Init::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .tensor::<f64>(&[4], &mut rng(2024));
        let x = Init::XavierUniform { gain: 1.0 }.tensor::<f32>(&[2, 2], &mut rng(2024));
        assert_eq!(u.data(), &GOLDEN_UNIFORM, "{:?}", u.data());
        assert_eq!(n.data(), &GOLDEN_NORMAL, "{:?}", n.data());
        assert_eq!(x.data(), &GOLDEN_XAVIER, "{:?}", x.data());
    }

    const GOLDEN_UNIFORM: [f64; 4] = [
        0.167019154818683,
        0.9824740763209951,
        0.6857166294171289,
        0.9078617362307355,
    ];
    const GOLDEN_NORMAL: [f64; 4] = [
        -0.6944943615633552,
        1.3842309356194527,
        0.4394312270914235,
        1.5123619710948333,
    ];
    /// U(-a, a) with a = √(6/4): the uniform draws above, as `u·2a - a`, in f32.
    const GOLDEN_XAVIER: [f32; 4] = [-0.8156332, 1.1818153, 0.454911, 0.9990531];

    #[test]
    fn errors_name_the_initialiser_and_the_problem() {
        let mut r = rng(0);
        let msg = |init: Init, shape: &[usize]| {
            init.try_tensor::<f32>(shape, &mut rng(0))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            msg(Init::KaimingNormal { gain: 1.0 }, &[5]),
            "kaiming_normal: needs a weight of at least 2 axes ([out, in]) to compute fan_in and fan_out, got shape [5]"
        );
        assert_eq!(
            msg(Init::KaimingUniform { gain: 1.0 }, &[5, 0]),
            "kaiming_uniform: fan_in is 0 for shape [5, 0]"
        );
        assert_eq!(
            msg(
                Init::Uniform {
                    low: 1.0,
                    high: 0.0
                },
                &[2]
            ),
            "uniform: low must be <= high, got 1 > 0"
        );
        assert_eq!(
            msg(
                Init::Normal {
                    mean: 0.0,
                    std: -1.0
                },
                &[2]
            ),
            "normal: std must be >= 0, got -1"
        );
        assert_eq!(
            msg(Init::XavierNormal { gain: f64::NAN }, &[2, 2]),
            "xavier_normal: gain must be finite, got NaN"
        );
        assert_eq!(
            msg(Init::XavierUniform { gain: -1.0 }, &[2, 2]),
            "xavier_uniform: gain must be >= 0, got -1"
        );
        // A failed call draws nothing.
        let _ = Init::XavierUniform { gain: 1.0 }.try_tensor::<f32>(&[5], &mut r);
        assert_eq!(r.random::<u64>(), rng(0).random::<u64>());
    }

    #[test]
    #[should_panic(expected = "xavier_uniform: needs a weight of at least 2 axes")]
    fn tensor_panics_with_the_message() {
        let _ = Init::XavierUniform { gain: 1.0 }.tensor::<f32>(&[3], &mut rng(0));
    }

    #[test]
    fn fans_of_shapes() {
        assert_eq!(fans(&[3, 5]), Some((5, 3)));
        assert_eq!(fans(&[2, 3, 4]), Some((12, 8)));
        assert_eq!(fans(&[]), None);
    }
}
