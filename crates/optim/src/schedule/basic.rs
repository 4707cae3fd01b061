//! Schedules of one formula: constant, step, exponential, cosine, multi-step, lambda.

use super::{Schedule, config};
use crate::Error;

/// The base rate at every step.
///
/// ```
/// use descent_optim::{Constant, Schedule};
/// assert_eq!(Constant.lr(1000, 0.1), 0.1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Constant;

impl Schedule for Constant {
    fn lr(&self, _step: usize, base_lr: f64) -> f64 {
        base_lr
    }
}

/// The base rate times γ every `step_size` steps: `η γ^⌊k / step_size⌋`
/// (`torch.optim.lr_scheduler.StepLR`).
///
/// ```
/// use descent_optim::{Schedule, StepLr};
/// let s = StepLr::new(10, 0.5);
/// assert_eq!(s.lr(9, 1.0), 1.0);
/// assert_eq!(s.lr(10, 1.0), 0.5);
/// assert_eq!(s.lr(25, 1.0), 0.25);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    step_size: usize,
    gamma: f64,
}

impl StepLr {
    /// Decay by `gamma` every `step_size` steps (`step_size` > 0, `gamma` ≥ 0).
    pub fn new(step_size: usize, gamma: f64) -> Self {
        Self { step_size, gamma }
    }
}

impl Schedule for StepLr {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        base_lr * self.gamma.powf((step / self.step_size.max(1)) as f64)
    }

    fn validate(&self) -> Result<(), Error> {
        config("step_lr", self.step_size > 0, || {
            "the step size must be > 0".into()
        })?;
        config(
            "step_lr",
            self.gamma >= 0.0 && self.gamma.is_finite(),
            || format!("gamma must be finite and >= 0, got {}", self.gamma),
        )
    }
}

/// The base rate times γ every step: `η γ^k` (`torch.optim.lr_scheduler.ExponentialLR`).
///
/// ```
/// use descent_optim::{Exponential, Schedule};
/// let s = Exponential::new(0.5);
/// assert_eq!(s.lr(0, 1.0), 1.0);
/// assert_eq!(s.lr(3, 1.0), 0.125);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exponential {
    gamma: f64,
}

impl Exponential {
    /// Decay by `gamma` (≥ 0) every step.
    pub fn new(gamma: f64) -> Self {
        Self { gamma }
    }
}

impl Schedule for Exponential {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        base_lr * self.gamma.powf(step as f64)
    }

    fn validate(&self) -> Result<(), Error> {
        config(
            "exponential",
            self.gamma >= 0.0 && self.gamma.is_finite(),
            || format!("gamma must be finite and >= 0, got {}", self.gamma),
        )
    }
}

/// Cosine annealing from the base rate η down to `eta_min` over `t_max` steps,
/// `η_min + (η - η_min) (1 + cos(π k / t_max)) / 2`
/// (`torch.optim.lr_scheduler.CosineAnnealingLR`'s closed form). As in PyTorch, the
/// cosine goes on past `t_max`: the rate climbs back to η at `2 t_max`, and so on. Make
/// `t_max` the number of steps (after any warm-up) to anneal once.
///
/// ```
/// use descent_optim::{Cosine, Schedule};
/// let s = Cosine::new(10, 0.1);
/// assert_eq!(s.lr(0, 1.0), 1.0);
/// assert!((s.lr(5, 1.0) - 0.55).abs() < 1e-15);
/// assert!((s.lr(10, 1.0) - 0.1).abs() < 1e-15);
/// assert!((s.lr(20, 1.0) - 1.0).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cosine {
    t_max: usize,
    eta_min: f64,
}

impl Cosine {
    /// Anneal to `eta_min` (finite) over `t_max` (> 0) steps.
    pub fn new(t_max: usize, eta_min: f64) -> Self {
        Self { t_max, eta_min }
    }
}

impl Schedule for Cosine {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        let phase = std::f64::consts::PI * step as f64 / self.t_max.max(1) as f64;
        self.eta_min + (base_lr - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }

    fn validate(&self) -> Result<(), Error> {
        config("cosine", self.t_max > 0, || "t_max must be > 0".into())?;
        config("cosine", self.eta_min.is_finite(), || {
            format!("eta_min must be finite, got {}", self.eta_min)
        })
    }
}

/// The base rate times γ at each milestone passed: `η γ^m(k)`, where `m(k)` counts
/// the milestones `≤ k` (`torch.optim.lr_scheduler.MultiStepLR`; a milestone given
/// twice counts twice, as there).
///
/// ```
/// use descent_optim::{MultiStepLr, Schedule};
/// let s = MultiStepLr::new([3, 6], 0.1);
/// assert_eq!(s.lr(2, 1.0), 1.0);
/// assert_eq!(s.lr(3, 1.0), 0.1);
/// assert!((s.lr(6, 1.0) - 0.01).abs() < 1e-17);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MultiStepLr {
    milestones: Vec<usize>,
    gamma: f64,
}

impl MultiStepLr {
    /// Decay by `gamma` (≥ 0) at each of `milestones` (step indices, in increasing
    /// order).
    pub fn new(milestones: impl IntoIterator<Item = usize>, gamma: f64) -> Self {
        Self {
            milestones: milestones.into_iter().collect(),
            gamma,
        }
    }
}

impl Schedule for MultiStepLr {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        let passed = self.milestones.partition_point(|&m| m <= step);
        base_lr * self.gamma.powf(passed as f64)
    }

    fn validate(&self) -> Result<(), Error> {
        config("multi_step_lr", self.milestones.is_sorted(), || {
            format!(
                "the milestones must be in increasing order, got {:?}",
                self.milestones
            )
        })?;
        config(
            "multi_step_lr",
            self.gamma >= 0.0 && self.gamma.is_finite(),
            || format!("gamma must be finite and >= 0, got {}", self.gamma),
        )
    }
}

/// A factor of a step: the function of a [`LambdaLr`].
pub type LrLambda = Box<dyn Fn(usize) -> f64 + Send + Sync>;

/// The base rate times a function of the step: `η λ(k)`
/// (`torch.optim.lr_scheduler.LambdaLR`), one function for every group or one per
/// group ([`LambdaLr::per_group`], PyTorch's list of lambdas).
///
/// ```
/// use descent_optim::{LambdaLr, Schedule};
/// let s = LambdaLr::new(|k| 1.0 / (1.0 + k as f64));
/// assert_eq!(s.lr(3, 1.0), 0.25);
/// let per_group = LambdaLr::per_group(vec![Box::new(|_| 1.0), Box::new(|k| 0.5f64.powi(k as i32))]);
/// assert_eq!(per_group.group_lr(2, 0, 0.1), 0.1);
/// assert_eq!(per_group.group_lr(2, 1, 0.1), 0.025);
/// ```
pub struct LambdaLr {
    lambdas: Vec<LrLambda>,
}

impl LambdaLr {
    /// `η λ(k)` for every group.
    pub fn new(lambda: impl Fn(usize) -> f64 + Send + Sync + 'static) -> Self {
        Self {
            lambdas: vec![Box::new(lambda)],
        }
    }

    /// Group `g`'s rate is `η_g λ_g(k)`; a group past the last function uses the last.
    pub fn per_group(lambdas: Vec<LrLambda>) -> Self {
        Self { lambdas }
    }
}

impl std::fmt::Debug for LambdaLr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LambdaLr({} function(s))", self.lambdas.len())
    }
}

impl Schedule for LambdaLr {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        self.group_lr(step, 0, base_lr)
    }

    fn group_lr(&self, step: usize, group: usize, base_lr: f64) -> f64 {
        match self.lambdas.get(group).or(self.lambdas.last()) {
            Some(f) => base_lr * f(step),
            None => base_lr,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        config("lambda_lr", !self.lambdas.is_empty(), || {
            "no function given".into()
        })
    }
}
