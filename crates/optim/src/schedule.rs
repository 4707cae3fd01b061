//! Learning-rate schedules, and [`Scheduled`], which runs any optimiser under one.
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

use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamGradients, ParamId, ParamStore};
use descent_tensor::Float;
use std::borrow::Cow;

/// A learning-rate schedule: the rate of each step from the optimiser's base rate.
pub trait Schedule {
    /// The learning rate of step `step` (0 for the first step) when the base rate is
    /// `base_lr`.
    fn lr(&self, step: usize, base_lr: f64) -> f64;

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

    fn validate(&self) -> Result<(), Error> {
        (**self).validate()
    }
}

impl<S: Schedule + ?Sized> Schedule for Box<S> {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        (**self).lr(step, base_lr)
    }

    fn validate(&self) -> Result<(), Error> {
        (**self).validate()
    }
}

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

/// A linear warm-up over the first `warmup_steps` steps, then another schedule, which
/// starts afresh (at its own step 0) when the warm-up ends:
///
/// ```text
/// k < W:   η (f + (1 - f) k / W)           (start factor f)
/// k ≥ W:   then.lr(k - W, η)
/// ```
///
/// This is PyTorch's `SequentialLR([LinearLR(opt, start_factor=f, total_iters=W), then],
/// milestones=[W])`. The start factor defaults to PyTorch's 1/3; it must be in (0, 1].
/// No warm-up steps (`W = 0`) is `then` alone.
///
/// ```
/// use descent_optim::{Exponential, LinearWarmup, Schedule};
/// let s = LinearWarmup::new(4, Exponential::new(0.5)).start_factor(0.2);
/// let lrs: Vec<f64> = (0..7).map(|k| s.lr(k, 1.0)).collect();
/// let expected = [0.2, 0.4, 0.6, 0.8, 1.0, 0.5, 0.25];
/// assert!(lrs.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearWarmup<S> {
    warmup_steps: usize,
    start_factor: f64,
    then: S,
}

impl<S: Schedule> LinearWarmup<S> {
    /// Warm up over `warmup_steps` steps from a third of the base rate, then follow
    /// `then`.
    pub fn new(warmup_steps: usize, then: S) -> Self {
        Self {
            warmup_steps,
            start_factor: 1.0 / 3.0,
            then,
        }
    }

    /// The fraction f of the base rate at step 0, in (0, 1].
    pub fn start_factor(mut self, start_factor: f64) -> Self {
        self.start_factor = start_factor;
        self
    }
}

impl<S: Schedule> Schedule for LinearWarmup<S> {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        if step < self.warmup_steps {
            let f = self.start_factor;
            base_lr * (f + (1.0 - f) * step as f64 / self.warmup_steps as f64)
        } else {
            self.then.lr(step - self.warmup_steps, base_lr)
        }
    }

    fn validate(&self) -> Result<(), Error> {
        config(
            "linear_warmup",
            self.start_factor > 0.0 && self.start_factor <= 1.0,
            || {
                format!(
                    "the start factor must be in (0, 1], got {}",
                    self.start_factor
                )
            },
        )?;
        self.then.validate()
    }
}

/// An optimiser run under a schedule: before each step it sets the inner optimiser's
/// learning rate to `schedule.lr(k, base)`, where `k` counts this wrapper's successful
/// steps and `base` is the learning rate the inner optimiser had when wrapped. A step
/// that fails (a non-finite gradient, say) changes nothing and does not advance `k`.
///
/// [`Optimizer::learning_rate`] is the rate the next step will use;
/// [`Optimizer::set_learning_rate`] sets the base rate. So one `Scheduled` can run under
/// another, the outer schedule setting the inner one's base.
#[derive(Clone, Debug)]
pub struct Scheduled<O, S> {
    inner: O,
    schedule: S,
    base_lr: f64,
    steps: usize,
}

impl<O, S: Schedule> Scheduled<O, S> {
    /// Runs `inner` under `schedule`, from its current learning rate as the base.
    pub fn new<T: Float>(inner: O, schedule: S) -> Self
    where
        O: Optimizer<T>,
    {
        let base_lr = inner.learning_rate();
        Self {
            inner,
            schedule,
            base_lr,
            steps: 0,
        }
    }

    /// The base learning rate the schedule scales.
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }

    /// How many steps have succeeded: the index of the next step in the schedule.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// The inner optimiser.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The inner optimiser, mutably.
    pub fn inner_mut(&mut self) -> &mut O {
        &mut self.inner
    }

    /// The inner optimiser, with the learning rate of the last step taken.
    pub fn into_inner(self) -> O {
        self.inner
    }
}

impl<T: Float, O: Optimizer<T>, S: Schedule> Optimizer<T> for Scheduled<O, S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// The rate the next step will use.
    fn learning_rate(&self) -> f64 {
        self.schedule.lr(self.steps, self.base_lr)
    }

    /// Sets the base rate the schedule scales.
    fn set_learning_rate(&mut self, lr: f64) {
        self.base_lr = lr;
    }

    fn validate(&self) -> Result<(), Error> {
        self.schedule.validate()?;
        self.inner.validate()
    }

    fn begin_step(&mut self) {
        self.inner.begin_step();
    }

    /// The inner optimiser's state, with the schedule's step count as the counter
    /// `"schedule_steps"` (first, so a `Scheduled` inside a `Scheduled` keeps its own).
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        let mut state = self.inner.state(params);
        state
            .counters
            .insert(0, (Cow::Borrowed("schedule_steps"), self.steps as u64));
        state
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        mut state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let steps = state
            .take_counter("schedule_steps")
            .ok_or_else(|| Error::State {
                op: self.inner.name(),
                reason: "the state has no 'schedule_steps' counter for the schedule".into(),
            })?;
        let steps = usize::try_from(steps).map_err(|_| Error::State {
            op: self.inner.name(),
            reason: format!("'schedule_steps' {steps} does not fit in usize"),
        })?;
        self.inner.load_state(params, state)?;
        self.steps = steps;
        Ok(())
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        self.inner.update(id, value, grad);
    }

    fn step(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &dyn ParamGradients<T>,
    ) -> Result<(), Error> {
        self.schedule.validate()?;
        let before = self.inner.learning_rate();
        self.inner
            .set_learning_rate(self.schedule.lr(self.steps, self.base_lr));
        match self.inner.step(params, grads) {
            Ok(()) => {
                self.steps += 1;
                Ok(())
            }
            Err(e) => {
                self.inner.set_learning_rate(before);
                Err(e)
            }
        }
    }
}
