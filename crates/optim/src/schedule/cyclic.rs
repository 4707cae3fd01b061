//! Schedules that rise and fall: the one-cycle policy and cosine annealing with warm
//! restarts.

use super::{Schedule, config};
use crate::Error;
use std::f64::consts::PI;

/// How [`OneCycle`] moves between two rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Anneal {
    /// Half a cosine: `end + (start - end) (1 + cos(π t)) / 2` (PyTorch's `"cos"`).
    #[default]
    Cos,
    /// A straight line: `start + (end - start) t` (PyTorch's `"linear"`).
    Linear,
}

impl Anneal {
    /// The rate a fraction `pct` of the way from `start` to `end`, in PyTorch's order
    /// of operations.
    fn at(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// The one-cycle policy (Smith and Topin, 2017) as PyTorch's
/// `torch.optim.lr_scheduler.OneCycleLR` computes it: from `η / div_factor` up to the
/// peak `η` over the first `pct_start` of `total_steps`, then down to
/// `η / (div_factor · final_div_factor)` by the last step. With
/// [`OneCycle::three_phase`], down to `η / div_factor` as it went up, then on down to
/// the final rate.
///
/// The peak is the optimiser's rate, per group: PyTorch's `max_lr` (a list of them,
/// for groups) is the rate you build the optimiser (or each group) with. As in
/// PyTorch, momentum (β₁ for the Adam family) cycles the other way, from `max_momentum`
/// down to `base_momentum` while the rate rises and back up while it falls (0.95 and
/// 0.85 by default, [`OneCycle::momentum_range`]); [`OneCycle::cycle_momentum`]`(false)`
/// leaves it alone, and an optimiser without momentum (Adagrad, Adadelta) needs that.
/// PyTorch refuses to step past `total_steps`; here the rate stays at the final rate
/// from step `total_steps - 1` on.
///
/// ```
/// use descent_optim::{Anneal, OneCycle, Schedule};
/// let s = OneCycle::new(100); // pct_start 0.3, div_factor 25, final_div_factor 1e4, cos
/// assert!((s.lr(0, 1.0) - 1.0 / 25.0).abs() < 1e-15); // cos rounds: 0.040000000000000036
/// assert!((s.lr(29, 1.0) - 1.0).abs() < 1e-15); // the peak, 30% of the way
/// assert!((s.lr(99, 1.0) - 1.0 / 25.0 / 1e4).abs() < 1e-18);
/// let linear = OneCycle::new(10).pct_start(0.5).anneal(Anneal::Linear);
/// assert!((linear.lr(2, 1.0) - (0.04 + 0.96 * 0.5)).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycle {
    total_steps: usize,
    pct_start: f64,
    anneal: Anneal,
    div_factor: f64,
    final_div_factor: f64,
    three_phase: bool,
    /// (base, max) momentum, or `None` not to cycle it.
    momentum: Option<(f64, f64)>,
}

impl OneCycle {
    /// One cycle over `total_steps` steps with PyTorch's defaults: `pct_start` 0.3,
    /// cosine, `div_factor` 25, `final_div_factor` 1e4, two phases.
    pub fn new(total_steps: usize) -> Self {
        Self {
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            momentum: Some((0.85, 0.95)),
        }
    }

    /// Whether to cycle momentum (PyTorch's `cycle_momentum`, on by default).
    pub fn cycle_momentum(mut self, cycle: bool) -> Self {
        self.momentum = cycle.then_some(self.momentum.unwrap_or((0.85, 0.95)));
        self
    }

    /// The momentum at the peak rate (`base`) and at the lowest rates (`max`): PyTorch's
    /// `base_momentum` and `max_momentum`; turns cycling on.
    pub fn momentum_range(mut self, base: f64, max: f64) -> Self {
        self.momentum = Some((base, max));
        self
    }

    /// The phase of `step`: its index and the fraction of it done.
    fn phase(&self, step: usize) -> (usize, f64) {
        let total = self.total_steps as f64;
        let up_end = self.pct_start * total - 1.0;
        let two = [up_end, total - 1.0];
        let three = [up_end, 2.0 * self.pct_start * total - 2.0, total - 1.0];
        let ends: &[f64] = if self.three_phase { &three } else { &two };
        let step = step.min(self.total_steps.saturating_sub(1)) as f64;
        let mut start_step = 0.0;
        for (i, &end_step) in ends.iter().enumerate() {
            if step <= end_step || i == ends.len() - 1 {
                return (i, (step - start_step) / (end_step - start_step));
            }
            start_step = end_step;
        }
        (ends.len() - 1, 1.0)
    }

    /// The fraction of the steps spent rising, in [0, 1].
    pub fn pct_start(mut self, pct_start: f64) -> Self {
        self.pct_start = pct_start;
        self
    }

    /// Cosine ([`Anneal::Cos`], the default) or linear steps between rates.
    pub fn anneal(mut self, anneal: Anneal) -> Self {
        self.anneal = anneal;
        self
    }

    /// The first rate is the peak over `div_factor` (> 0).
    pub fn div_factor(mut self, div_factor: f64) -> Self {
        self.div_factor = div_factor;
        self
    }

    /// The last rate is the first over `final_div_factor` (> 0).
    pub fn final_div_factor(mut self, final_div_factor: f64) -> Self {
        self.final_div_factor = final_div_factor;
        self
    }

    /// Three phases: up, back down to the first rate as symmetrically, then on down to
    /// the last (fast.ai's original schedule).
    pub fn three_phase(mut self, three_phase: bool) -> Self {
        self.three_phase = three_phase;
        self
    }
}

impl Schedule for OneCycle {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        // PyTorch's `_schedule_phases`: (start, end) rates of each phase.
        let max_lr = base_lr;
        let initial = max_lr / self.div_factor;
        let min_lr = initial / self.final_div_factor;
        let (i, pct) = self.phase(step);
        let (start, end) = match (self.three_phase, i) {
            (_, 0) => (initial, max_lr),
            (true, 1) => (max_lr, initial),
            (true, _) => (initial, min_lr),
            (false, _) => (max_lr, min_lr),
        };
        self.anneal.at(start, end, pct)
    }

    fn group_momentum(&self, step: usize, _group: usize) -> Option<f64> {
        let (base, max) = self.momentum?;
        let (i, pct) = self.phase(step);
        let (start, end) = match (self.three_phase, i) {
            (_, 0) => (max, base),
            (true, 1) => (base, max),
            (true, _) => (max, max),
            (false, _) => (base, max),
        };
        Some(self.anneal.at(start, end, pct))
    }

    fn validate(&self) -> Result<(), Error> {
        config("one_cycle", self.total_steps > 0, || {
            "total_steps must be > 0".into()
        })?;
        config("one_cycle", (0.0..=1.0).contains(&self.pct_start), || {
            format!("pct_start must be in [0, 1], got {}", self.pct_start)
        })?;
        config(
            "one_cycle",
            self.div_factor > 0.0 && self.final_div_factor > 0.0,
            || {
                format!(
                    "div_factor and final_div_factor must be > 0, got {} and {}",
                    self.div_factor, self.final_div_factor
                )
            },
        )
    }
}

/// Cosine annealing with warm restarts (SGDR, Loshchilov and Hutter, 2017) as PyTorch's
/// `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` computes it: a cosine from
/// the base rate η down towards `eta_min` over `T_0` steps, then a restart at η, the
/// next cycle `T_mult` times longer:
///
/// ```text
/// η_k = η_min + (η - η_min) (1 + cos(π T_cur / T_i)) / 2
/// ```
///
/// where `T_i` is the current cycle's length and `T_cur` the steps since its start.
///
/// ```
/// use descent_optim::{CosineWarmRestarts, Schedule};
/// let s = CosineWarmRestarts::new(4).t_mult(2);
/// assert_eq!(s.lr(0, 1.0), 1.0);
/// assert!((s.lr(2, 1.0) - 0.5).abs() < 1e-15);
/// assert_eq!(s.lr(4, 1.0), 1.0);                  // restart; the cycle is 8 long
/// assert!((s.lr(8, 1.0) - 0.5).abs() < 1e-15);
/// assert_eq!(s.lr(12, 1.0), 1.0);                 // restart; 16 long
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineWarmRestarts {
    t_0: usize,
    t_mult: usize,
    eta_min: f64,
}

impl CosineWarmRestarts {
    /// Restarts every `t_0` (> 0) steps (`T_mult` 1, `eta_min` 0).
    pub fn new(t_0: usize) -> Self {
        Self {
            t_0,
            t_mult: 1,
            eta_min: 0.0,
        }
    }

    /// Each cycle `t_mult` (≥ 1) times as long as the one before.
    pub fn t_mult(mut self, t_mult: usize) -> Self {
        self.t_mult = t_mult;
        self
    }

    /// The rate each cycle anneals towards.
    pub fn eta_min(mut self, eta_min: f64) -> Self {
        self.eta_min = eta_min;
        self
    }

    /// (steps since the current cycle began, its length) at step `step`.
    fn position(&self, step: usize) -> (usize, usize) {
        let t_0 = self.t_0.max(1);
        if self.t_mult <= 1 {
            return (step % t_0, t_0);
        }
        let (mut start, mut len) = (0usize, t_0);
        while step - start >= len {
            start += len;
            len = len.saturating_mul(self.t_mult);
        }
        (step - start, len)
    }
}

impl Schedule for CosineWarmRestarts {
    fn lr(&self, step: usize, base_lr: f64) -> f64 {
        let (t_cur, t_i) = self.position(step);
        self.eta_min
            + (base_lr - self.eta_min) * (1.0 + (PI * t_cur as f64 / t_i as f64).cos()) / 2.0
    }

    fn validate(&self) -> Result<(), Error> {
        config("cosine_warm_restarts", self.t_0 > 0, || {
            "T_0 must be > 0".into()
        })?;
        config("cosine_warm_restarts", self.t_mult >= 1, || {
            "T_mult must be >= 1".into()
        })?;
        config("cosine_warm_restarts", self.eta_min.is_finite(), || {
            format!("eta_min must be finite, got {}", self.eta_min)
        })
    }
}
