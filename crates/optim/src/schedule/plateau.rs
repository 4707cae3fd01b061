//! Lowering the learning rate when a metric stops improving.

use crate::{Error, Optimizer};
use descent_tensor::Float;

/// Whether a smaller or a larger metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlateauMode {
    /// A loss: smaller is better (PyTorch's `"min"`).
    #[default]
    Min,
    /// An accuracy: larger is better (PyTorch's `"max"`).
    Max,
}

/// How the threshold of a significant improvement is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThresholdMode {
    /// Relative: better than `best · (1 ∓ threshold)` (PyTorch's `"rel"`).
    #[default]
    Rel,
    /// Absolute: better than `best ∓ threshold` (PyTorch's `"abs"`).
    Abs,
}

/// Lowers every group's learning rate by `factor` when a metric has not improved for
/// more than `patience` evaluations: PyTorch's
/// `torch.optim.lr_scheduler.ReduceLROnPlateau`, call for call. Each
/// [`ReduceLrOnPlateau::step`] takes the metric (a validation loss, say, once per
/// epoch) and the optimiser whose rates it lowers:
///
/// ```text
/// better(a)  = a < best (1 - threshold)   (min, rel)     a < best - threshold  (min, abs)
///              a > best (1 + threshold)   (max, rel)     a > best + threshold  (max, abs)
/// each step:   better → best = a, bad = 0;  else bad += 1
///              in cool-down → cool-down -= 1, bad = 0
///              bad > patience → lr_g ← max(lr_g · factor, min_lr_g) where that lowers it
///                               by more than eps; cool-down = cooldown, bad = 0
/// ```
///
/// It sets the optimiser's rates with [`Optimizer::set_group_learning_rate`], so under
/// a [`Scheduled`](crate::Scheduled) it lowers the base rates the schedule scales.
///
/// ```
/// use descent_optim::{Optimizer, ReduceLrOnPlateau, Sgd};
/// let mut opt = Sgd::<f64>::new(0.1);
/// let mut plateau = ReduceLrOnPlateau::new().patience(2).factor(0.5);
/// for loss in [1.0, 0.9, 0.9, 0.9] {
///     plateau.step(loss, &mut opt).unwrap();
/// }
/// assert_eq!(opt.learning_rate(), 0.1); // two bad epochs: within patience
/// assert!(plateau.step(0.95, &mut opt).unwrap()); // the third: lowered
/// assert_eq!(opt.learning_rate(), 0.05);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceLrOnPlateau {
    mode: PlateauMode,
    factor: f64,
    patience: usize,
    threshold: f64,
    threshold_mode: ThresholdMode,
    cooldown: usize,
    min_lrs: Vec<f64>,
    eps: f64,
    best: f64,
    num_bad: usize,
    cooldown_counter: usize,
}

impl Default for ReduceLrOnPlateau {
    fn default() -> Self {
        Self::new()
    }
}

impl ReduceLrOnPlateau {
    /// PyTorch's defaults: mode min, factor 0.1, patience 10, threshold 1e-4 relative,
    /// no cool-down, min_lr 0, eps 1e-8.
    pub fn new() -> Self {
        Self {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lrs: vec![0.0],
            eps: 1e-8,
            best: f64::INFINITY,
            num_bad: 0,
            cooldown_counter: 0,
        }
    }

    /// Whether a smaller ([`PlateauMode::Min`]) or larger metric is better.
    pub fn mode(mut self, mode: PlateauMode) -> Self {
        self.mode = mode;
        self.best = self.worst();
        self
    }

    /// The factor (in [0, 1)) each reduction multiplies the rate by.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// How many evaluations without improvement are tolerated before a reduction.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// The least improvement that counts, and how it is measured.
    pub fn threshold(mut self, threshold: f64, mode: ThresholdMode) -> Self {
        self.threshold = threshold;
        self.threshold_mode = mode;
        self
    }

    /// How many evaluations to wait after a reduction before counting bad ones again.
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The lowest rate of every group.
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lrs = vec![min_lr];
        self
    }

    /// The lowest rate of each group (PyTorch's list `min_lr`); a group past the end
    /// takes the last.
    pub fn min_lrs(mut self, min_lrs: impl IntoIterator<Item = f64>) -> Self {
        self.min_lrs = min_lrs.into_iter().collect();
        self
    }

    /// A reduction smaller than `eps` is not made.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The best metric seen so far.
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Evaluations since the last improvement (reset by a reduction and in cool-down).
    pub fn num_bad_epochs(&self) -> usize {
        self.num_bad
    }

    fn worst(&self) -> f64 {
        match self.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        }
    }

    fn is_better(&self, a: f64) -> bool {
        let (best, t) = (self.best, self.threshold);
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - t),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - t,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (t + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + t,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| {
            Err(Error::Config {
                op: "reduce_lr_on_plateau",
                reason,
            })
        };
        if !(0.0..1.0).contains(&self.factor) {
            return bad(format!("the factor must be in [0, 1), got {}", self.factor));
        }
        if self.min_lrs.is_empty() || self.min_lrs.iter().any(|m| m.is_nan() || *m < 0.0) {
            return bad(format!(
                "min_lr must be given and >= 0, got {:?}",
                self.min_lrs
            ));
        }
        if self.threshold.is_nan() || self.threshold < 0.0 {
            return bad(format!(
                "the threshold must be >= 0, got {}",
                self.threshold
            ));
        }
        Ok(())
    }

    /// Records `metric` and lowers `opt`'s rates if it has plateaued; returns whether
    /// it did. A NaN metric counts as no improvement.
    ///
    /// # Errors
    /// [`Error::Config`] for a factor outside [0, 1), a negative threshold or min_lr;
    /// nothing is recorded then.
    pub fn step<T: Float>(
        &mut self,
        metric: f64,
        opt: &mut (impl Optimizer<T> + ?Sized),
    ) -> Result<bool, Error> {
        self.validate()?;
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad = 0;
        } else {
            self.num_bad += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad = 0;
        }
        if self.num_bad <= self.patience {
            return Ok(false);
        }
        for g in 0..opt.group_count() {
            let min_lr = self.min_lrs[g.min(self.min_lrs.len() - 1)];
            let old = opt.group_learning_rate(g);
            let new = (old * self.factor).max(min_lr);
            if old - new > self.eps {
                opt.set_group_learning_rate(g, new);
            }
        }
        self.cooldown_counter = self.cooldown;
        self.num_bad = 0;
        Ok(true)
    }
}
