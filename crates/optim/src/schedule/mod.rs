//! Learning-rate schedules, and [`Scheduled`], which runs any optimiser under one.
//!
//! One file per idea: `basic.rs` (one formula each: [`Constant`], [`StepLr`],
//! [`MultiStepLr`], [`Exponential`], [`Cosine`], [`LambdaLr`]), `cyclic.rs` ([`OneCycle`],
//! [`CosineWarmRestarts`]), `compose.rs` ([`LinearWarmup`], [`Sequential`], [`Chain`]),
//! `scheduled.rs` ([`Scheduled`]) and `plateau.rs` ([`ReduceLrOnPlateau`], which follows
//! a metric rather than the step count).
//!
//! A [`Schedule`] maps a step index and a base learning rate to the rate of that step.
//! Step `k` is the `k`-th optimiser step, counting from 0: it is PyTorch's
//! `scheduler.last_epoch` for the usual loop that calls `optimizer.step()` and then
//! `scheduler.step()`. Each schedule is the closed form of its `torch.optim.lr_scheduler`
//! counterpart ([`StepLr`]: `StepLR`, [`Exponential`]: `ExponentialLR`, [`Cosine`]:
//! `CosineAnnealingLR`, [`LinearWarmup`]: `LinearLR` followed by another schedule in a
//! `SequentialLR`). PyTorch's schedulers step recursively (`lr ← lr · factor`), so their
//! rates differ from the closed forms by rounding, about 1e-16 relative.
//!
//! ```
//! use descent_tape::ParamGrads;
//! use descent_optim::{Adam, Cosine, LinearWarmup, Optimizer, Scheduled};
//! use descent_tape::ParamStore;
//! use descent_tensor::Tensor;
//! let mut store = ParamStore::<f64>::new();
//! let w = store.insert("w", Tensor::from([1.0]));
//! // Warm up over 5 steps from 0.1·η, then anneal over 95 steps.
//! let schedule = LinearWarmup::new(5, Cosine::new(95, 0.0)).start_factor(0.1);
//! let mut opt = Scheduled::new(Adam::new(1e-2), schedule);
//! assert!((opt.learning_rate() - 1e-3).abs() < 1e-15);
//! let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
//! for _ in 0..5 {
//!     opt.step(&mut store, &grads).unwrap();
//! }
//! assert_eq!(opt.steps(), 5);
//! assert_eq!(opt.learning_rate(), 1e-2); // the peak
//! ```

mod basic;
mod compose;
mod cyclic;
mod plateau;
mod scheduled;

pub use basic::{Constant, Cosine, Exponential, LambdaLr, LrLambda, MultiStepLr, StepLr};
pub use compose::{BoxedSchedule, Chain, LinearWarmup, Sequential};
pub use cyclic::{Anneal, CosineWarmRestarts, OneCycle};
pub use plateau::{PlateauMode, ReduceLrOnPlateau, ThresholdMode};
pub use scheduled::Scheduled;

use crate::Error;

/// A learning-rate schedule: the rate of each step from the optimiser's base rate.
///
/// With parameter groups each group has its own base rate (PyTorch's per-group
/// `initial_lr`), and [`Scheduled`] asks the schedule for each group's rate with
/// [`Schedule::group_lr`]; a schedule that treats groups alike needs only
/// [`Schedule::lr`].
///
/// ```
/// use descent_optim::{Schedule, StepLr};
/// let s = StepLr::new(2, 0.5);
/// assert_eq!(s.lr(2, 0.1), 0.05);
/// assert_eq!(s.group_lr(2, 1, 0.01), 0.005); // group 1's base 0.01, same rule
/// ```
pub trait Schedule {
    /// The learning rate of step `step` (0 for the first step) when the base rate is
    /// `base_lr`.
    fn lr(&self, step: usize, base_lr: f64) -> f64;

    /// The learning rate of parameter group `group` at step `step`, when that group's
    /// base rate is `base_lr`. The default ignores the group: `lr(step, base_lr)`.
    /// [`LambdaLr::per_group`] gives each group its own factor.
    fn group_lr(&self, step: usize, group: usize, base_lr: f64) -> f64 {
        let _ = group;
        self.lr(step, base_lr)
    }

    /// The momentum (β₁ for the Adam family) of group `group` at step `step`, for a
    /// schedule that cycles it ([`OneCycle`]); `None`, the default, leaves the
    /// optimiser's momentum alone.
    fn group_momentum(&self, step: usize, group: usize) -> Option<f64> {
        let _ = (step, group);
        None
    }

    /// Checks the schedule's parameters; [`Scheduled`] calls it before every step. The
    /// default accepts all.
    fn validate(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl<S: Schedule + ?Sized> Schedule for &S {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        (**self).lr(step, base_lr)
    }

    fn group_lr(&self, step: usize, group: usize, base_lr: f64) -> f64 {
        (**self).group_lr(step, group, base_lr)
    }

    fn group_momentum(&self, step: usize, group: usize) -> Option<f64> {
        (**self).group_momentum(step, group)
    }

    fn validate(&self) -> Result<(), Error> {
        (**self).validate()
    }
}

impl<S: Schedule + ?Sized> Schedule for Box<S> {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        (**self).lr(step, base_lr)
    }

    fn group_lr(&self, step: usize, group: usize, base_lr: f64) -> f64 {
        (**self).group_lr(step, group, base_lr)
    }

    fn group_momentum(&self, step: usize, group: usize) -> Option<f64> {
        (**self).group_momentum(step, group)
    }

    fn validate(&self) -> Result<(), Error> {
        (**self).validate()
    }
}

/// `Ok` if `ok`, else a configuration error of `op`.
fn config(op: &'static str, ok: bool, reason: impl FnOnce() -> String) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            op,
            reason: reason(),
        })
    }
}
