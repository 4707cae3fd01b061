//! Schedules made of schedules: a warm-up before another, a sequence, a chain.

use super::{Schedule, config};
use crate::Error;

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
        self.group_lr(step, 0, base_lr)
    }

    fn group_lr(&self, step: usize, group: usize, base_lr: f64) -> f64 {
        if step < self.warmup_steps {
            let f = self.start_factor;
            base_lr * (f + (1.0 - f) * step as f64 / self.warmup_steps as f64)
        } else {
            self.then.group_lr(step - self.warmup_steps, group, base_lr)
        }
    }

    fn group_momentum(&self, step: usize, group: usize) -> Option<f64> {
        step.checked_sub(self.warmup_steps)
            .and_then(|k| self.then.group_momentum(k, group))
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

/// A schedule boxed to sit in a [`Sequential`] or a [`Chain`] beside schedules of other
/// types.
pub type BoxedSchedule = Box<dyn Schedule + Send + Sync>;

/// Schedules one after another, each starting afresh (at its own step 0) at its
/// milestone: PyTorch's `SequentialLR(schedulers, milestones)`.
///
/// ```text
/// k < m₁:         s₀.lr(k, η)
/// m₁ ≤ k < m₂:    s₁.lr(k - m₁, η)
/// …
/// ```
///
/// ```
/// use descent_optim::{Constant, Cosine, Exponential, Schedule, Sequential};
/// // Hold for 3 steps, decay by half each step for 3, then a cosine over 10.
/// let s = Sequential::new(Constant)
///     .then(3, Exponential::new(0.5))
///     .then(6, Cosine::new(10, 0.0));
/// let lrs: Vec<f64> = (0..8).map(|k| s.lr(k, 1.0)).collect();
/// assert_eq!(&lrs[..6], [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]);
/// assert_eq!(lrs[6], 1.0); // the cosine starts at its own step 0
/// ```
pub struct Sequential {
    first: BoxedSchedule,
    then: Vec<(usize, BoxedSchedule)>,
}

impl Sequential {
    /// Starts with `first`.
    pub fn new(first: impl Schedule + Send + Sync + 'static) -> Self {
        Self {
            first: Box::new(first),
            then: Vec::new(),
        }
    }

    /// Switches to `next` at step `milestone` (milestones in increasing order).
    pub fn then(mut self, milestone: usize, next: impl Schedule + Send + Sync + 'static) -> Self {
        self.then.push((milestone, Box::new(next)));
        self
    }

    /// The schedule in force at `step`, and the step it started at.
    fn at(&self, step: usize) -> (&BoxedSchedule, usize) {
        let i = self.then.partition_point(|&(m, _)| m <= step);
        match i.checked_sub(1) {
            Some(j) => (&self.then[j].1, self.then[j].0),
            None => (&self.first, 0),
        }
    }
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let milestones: Vec<usize> = self.then.iter().map(|&(m, _)| m).collect();
        write!(f, "Sequential(milestones {milestones:?})")
    }
}

impl Schedule for Sequential {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        self.group_lr(step, 0, base_lr)
    }

    fn group_lr(&self, step: usize, group: usize, base_lr: f64) -> f64 {
        let (s, start) = self.at(step);
        s.group_lr(step - start, group, base_lr)
    }

    fn group_momentum(&self, step: usize, group: usize) -> Option<f64> {
        let (s, start) = self.at(step);
        s.group_momentum(step - start, group)
    }

    fn validate(&self) -> Result<(), Error> {
        config(
            "sequential",
            self.then.windows(2).all(|w| w[0].0 <= w[1].0),
            || "the milestones must be in increasing order".into(),
        )?;
        self.first.validate()?;
        self.then.iter().try_for_each(|(_, s)| s.validate())
    }
}

/// Schedules applied together, each to the rate the one before it gives:
/// `sₙ(k, … s₂(k, s₁(k, η)))`. For schedules that scale the rate by a factor (steps,
/// exponentials, lambdas, warm-ups, a cosine to 0), that is the product of their
/// factors: PyTorch's `ChainedScheduler`.
///
/// ```
/// use descent_optim::{Chain, Exponential, MultiStepLr, Schedule};
/// let s = Chain::new(Exponential::new(0.5)).and(MultiStepLr::new([2], 0.1));
/// assert_eq!(s.lr(1, 1.0), 0.5);
/// assert!((s.lr(2, 1.0) - 0.025).abs() < 1e-17);
/// ```
pub struct Chain {
    schedules: Vec<BoxedSchedule>,
}

impl Chain {
    /// Starts with `first`.
    pub fn new(first: impl Schedule + Send + Sync + 'static) -> Self {
        Self {
            schedules: vec![Box::new(first)],
        }
    }

    /// Applies `next` to the rate of the schedules before.
    pub fn and(mut self, next: impl Schedule + Send + Sync + 'static) -> Self {
        self.schedules.push(Box::new(next));
        self
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} schedules)", self.schedules.len())
    }
}

impl Schedule for Chain {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        self.group_lr(step, 0, base_lr)
    }

    fn group_lr(&self, step: usize, group: usize, base_lr: f64) -> f64 {
        self.schedules
            .iter()
            .fold(base_lr, |lr, s| s.group_lr(step, group, lr))
    }

    /// The last schedule's that sets one.
    fn group_momentum(&self, step: usize, group: usize) -> Option<f64> {
        self.schedules
            .iter()
            .rev()
            .find_map(|s| s.group_momentum(step, group))
    }

    fn validate(&self) -> Result<(), Error> {
        self.schedules.iter().try_for_each(|s| s.validate())
    }
}
