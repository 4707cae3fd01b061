//! [`Scheduled`]: any optimiser run under a schedule, group by group.

use super::Schedule;
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamGradients, ParamId, ParamStore};
use descent_tensor::Float;
use std::borrow::Cow;

/// An optimiser run under a schedule: before each step it sets the rate of each of the
/// inner optimiser's parameter groups to `schedule.group_lr(k, g, base_g)` (and, for a
/// schedule that cycles momentum, the group's momentum), where `k`
/// counts this wrapper's successful steps and `base_g` is the rate group `g` had when
/// wrapped (PyTorch's per-group `initial_lr`). A step that fails (a non-finite gradient,
/// say) changes nothing and does not advance `k`.
///
/// [`Optimizer::learning_rate`] is the rate the next step will use (group 0's);
/// [`Optimizer::set_learning_rate`] sets the base rate (group 0's;
/// [`Optimizer::set_group_learning_rate`] any group's). So one `Scheduled` can run
/// under another, the outer schedule setting the inner one's base, and
/// [`ReduceLrOnPlateau`](crate::ReduceLrOnPlateau) lowers the bases a schedule scales.
///
/// ```
/// use descent_optim::{Cosine, Optimizer, ParamGroups, Scheduled, Sgd};
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let (body, head) = (store.insert("body", Tensor::from([0.0])), store.insert("head", Tensor::from([0.0])));
/// let groups = ParamGroups::new(Sgd::new(0.1)).group([body], |o| o.with_lr(0.01));
/// let mut opt = Scheduled::new(groups, Cosine::new(10, 0.0));
/// let grads: ParamGrads<f64> = [(body, Tensor::from([1.0])), (head, Tensor::from([1.0]))].into_iter().collect();
/// for _ in 0..5 {
///     opt.step(&mut store, &grads).unwrap();
/// }
/// // Half way down the cosine, each group at half its own base rate.
/// assert!((opt.group_learning_rate(0) - 0.05).abs() < 1e-15);
/// assert!((opt.group_learning_rate(1) - 0.005).abs() < 1e-15);
/// assert_eq!(opt.base_lrs(), [0.1, 0.01]);
/// ```
#[derive(Clone, Debug)]
pub struct Scheduled<O, S> {
    inner: O,
    schedule: S,
    base_lrs: Vec<f64>,
    /// The inner rates and momenta before a step, restored if it fails (kept to
    /// allocate nothing).
    before: Vec<(f64, Option<f64>)>,
    steps: usize,
}

impl<O, S: Schedule> Scheduled<O, S> {
    /// Runs `inner` under `schedule`, from its current learning rates (one per group)
    /// as the bases.
    pub fn new<T: Float>(inner: O, schedule: S) -> Self
    where
        O: Optimizer<T>,
    {
        let base_lrs: Vec<f64> = (0..inner.group_count())
            .map(|g| inner.group_learning_rate(g))
            .collect();
        Self {
            inner,
            schedule,
            before: vec![(0.0, None); base_lrs.len()],
            base_lrs,
            steps: 0,
        }
    }

    /// The base learning rate the schedule scales (group 0's).
    pub fn base_lr(&self) -> f64 {
        self.base_lrs[0]
    }

    /// The base learning rate of each parameter group.
    pub fn base_lrs(&self) -> &[f64] {
        &self.base_lrs
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

    /// The inner optimiser, with the learning rates of the last step taken.
    pub fn into_inner(self) -> O {
        self.inner
    }
}

impl<T: Float, O: Optimizer<T>, S: Schedule> Optimizer<T> for Scheduled<O, S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// The rate the next step will use (group 0's).
    fn learning_rate(&self) -> f64 {
        self.group_learning_rate(0)
    }

    /// Sets the base rate the schedule scales (group 0's).
    fn set_learning_rate(&mut self, lr: f64) {
        self.base_lrs[0] = lr;
    }

    fn group_count(&self) -> usize {
        self.inner.group_count()
    }

    /// The rate group `group`'s next step will use.
    fn group_momentum(&self, group: usize) -> Option<f64> {
        self.inner.group_momentum(group)
    }

    fn set_group_momentum(&mut self, group: usize, momentum: f64) {
        self.inner.set_group_momentum(group, momentum);
    }

    fn group_learning_rate(&self, group: usize) -> f64 {
        let base = match self.base_lrs.get(group) {
            Some(&b) => b,
            // A group added to the inner optimiser since: its own rate is its base.
            None => self.inner.group_learning_rate(group),
        };
        self.schedule.group_lr(self.steps, group, base)
    }

    /// Sets group `group`'s base rate.
    fn set_group_learning_rate(&mut self, group: usize, lr: f64) {
        self.sync_groups::<T>();
        self.base_lrs[group] = lr;
    }

    /// The schedule's and the inner optimiser's checks, and, for a schedule that
    /// cycles momentum, that every group has one.
    fn validate(&self) -> Result<(), Error> {
        self.schedule.validate()?;
        for g in 0..self.inner.group_count() {
            if self.schedule.group_momentum(self.steps, g).is_some()
                && self.inner.group_momentum(g).is_none()
            {
                return Err(Error::Config {
                    op: self.inner.name(),
                    reason: format!(
                        "the schedule cycles momentum but {} has none (group {g}); \
                         turn cycling off (OneCycle::cycle_momentum(false))",
                        self.inner.name()
                    ),
                });
            }
        }
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
        self.sync_groups::<T>();
        Optimizer::<T>::validate(self)?;
        for g in 0..self.base_lrs.len() {
            self.before[g] = (
                self.inner.group_learning_rate(g),
                self.inner.group_momentum(g),
            );
            let lr = self.schedule.group_lr(self.steps, g, self.base_lrs[g]);
            self.inner.set_group_learning_rate(g, lr);
            if let Some(m) = self.schedule.group_momentum(self.steps, g) {
                self.inner.set_group_momentum(g, m);
            }
        }
        match self.inner.step(params, grads) {
            Ok(()) => {
                self.steps += 1;
                Ok(())
            }
            Err(e) => {
                for g in 0..self.base_lrs.len() {
                    let (lr, momentum) = self.before[g];
                    self.inner.set_group_learning_rate(g, lr);
                    if let Some(m) = momentum {
                        self.inner.set_group_momentum(g, m);
                    }
                }
                Err(e)
            }
        }
    }
}

impl<O, S> Scheduled<O, S> {
    /// Takes the current rate of any group added to the inner optimiser since it was
    /// wrapped as that group's base (allocating only then).
    fn sync_groups<T: Float>(&mut self)
    where
        O: Optimizer<T>,
    {
        for g in self.base_lrs.len()..self.inner.group_count() {
            self.base_lrs.push(self.inner.group_learning_rate(g));
            self.before.push((0.0, None));
        }
    }
}
