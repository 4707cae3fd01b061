//! The `Optimizer` trait and the checks every step makes first.

use crate::{Error, OptimizerState};
use descent_tape::{ParamGradients, ParamId, ParamStore};
use descent_tensor::Float;

/// A gradient-descent method: it turns gradients into parameter updates, keeping any
/// state it needs (momentum buffers, moment estimates) in `slotmap::SecondaryMap`s
/// keyed by the parameters' `ParamId::key()`.
///
/// Implementors write [`Optimizer::update`] for one parameter; [`Optimizer::step`]
/// checks all gradients first (each names a parameter of the store, has its shape, and
/// is finite) and only then updates, so a failed step changes nothing.
///
/// A step reads the gradients where they are: the store a backward walk filled
/// (`descent_backprop::Gradients`) or owned [`descent_tape::ParamGrads`], anything that
/// is a [`ParamGradients`]. It copies nothing and, once the optimiser's state exists
/// (after the first step), allocates nothing.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_optim::{Optimizer, Sgd, clip_grad_norm};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0, -2.0]));
/// let mut sgd = Sgd::new(0.1);
/// let tape = Tape::new();
/// let loss = (tape.param(&store, w) * 3.0).sum();
/// let mut grads = loss.backward();                  // the walk's store
/// clip_grad_norm(&store, &mut grads, 10.0).unwrap(); // rescaled in place, if need be
/// sgd.step(&mut store, &grads).unwrap();            // read in place
/// assert_eq!(store.get(w).unwrap().data(), &[0.7, -2.3]);
/// ```
pub trait Optimizer<T: Float> {
    /// A short name (`"sgd"`, `"adam"`) for reports.
    fn name(&self) -> &'static str;

    /// The current learning rate.
    fn learning_rate(&self) -> f64;

    /// Sets the learning rate (schedules call this between steps).
    fn set_learning_rate(&mut self, lr: f64);

    /// The learning rate `lr` set, as a builder: `Adam::new(1e-3).with_lr(1e-4)`, or
    /// `|o| o.with_lr(1e-4)` to derive a parameter group from the defaults
    /// ([`ParamGroups::group`](crate::ParamGroups::group)).
    ///
    /// ```
    /// use descent_optim::{Adam, Optimizer};
    /// let adam = Adam::<f32>::new(1e-3).with_lr(1e-4);
    /// assert_eq!(Optimizer::<f32>::learning_rate(&adam), 1e-4);
    /// ```
    fn with_lr(mut self, lr: f64) -> Self
    where
        Self: Sized,
    {
        self.set_learning_rate(lr);
        self
    }

    /// The number of parameter groups, each with its own learning rate: 1 for an
    /// optimiser without groups, more for [`ParamGroups`](crate::ParamGroups)
    /// (PyTorch's `len(optimizer.param_groups)`). Schedules drive each group's rate.
    ///
    /// ```
    /// use descent_optim::{Optimizer, Sgd};
    /// assert_eq!(Optimizer::<f64>::group_count(&Sgd::<f64>::new(0.1)), 1);
    /// ```
    fn group_count(&self) -> usize {
        1
    }

    /// The learning rate of group `group` (`< group_count()`): PyTorch's
    /// `optimizer.param_groups[group]["lr"]`. The default, for one group, is
    /// [`Optimizer::learning_rate`].
    fn group_learning_rate(&self, group: usize) -> f64 {
        let _ = group;
        self.learning_rate()
    }

    /// Sets the learning rate of group `group` (`< group_count()`). The default, for
    /// one group, is [`Optimizer::set_learning_rate`].
    fn set_group_learning_rate(&mut self, group: usize, lr: f64) {
        let _ = group;
        self.set_learning_rate(lr);
    }

    /// The momentum of group `group`: SGD's and RMSprop's momentum, β₁ of the Adam
    /// family (PyTorch's `param_groups[group]["momentum"]` or `["betas"][0]`); `None`
    /// for an optimiser without one (the default). [`OneCycle`](crate::OneCycle) cycles
    /// it.
    ///
    /// ```
    /// use descent_optim::{Adagrad, Adam, Optimizer};
    /// assert_eq!(Optimizer::<f64>::group_momentum(&Adam::<f64>::new(1e-3), 0), Some(0.9));
    /// assert_eq!(Optimizer::<f64>::group_momentum(&Adagrad::<f64>::new(1e-2), 0), None);
    /// ```
    fn group_momentum(&self, group: usize) -> Option<f64> {
        let _ = group;
        None
    }

    /// Sets group `group`'s momentum (β₁ for the Adam family); an optimiser without
    /// one ignores it (the default).
    fn set_group_momentum(&mut self, group: usize, momentum: f64) {
        let _ = (group, momentum);
    }

    /// Checks the hyper-parameters; `step` calls it first. The default accepts all.
    fn validate(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Called once per step, before the updates (for step counts and bias correction).
    /// [`Optimizer::step`] calls it; call `step`, which checks the gradients first.
    fn begin_step(&mut self) {}

    /// Updates one parameter in place from its gradient: the rule an implementor
    /// writes. [`Optimizer::step`] calls it for each parameter once every gradient has
    /// been checked; call `step`.
    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]);

    /// The optimiser's state (momentum buffers, moment estimates, step counts) by
    /// parameter of `params`, for a checkpoint. The default, for an optimiser that
    /// keeps no state, is empty.
    ///
    /// ```
    /// use descent_tape::ParamGrads;
    /// use descent_optim::{Adam, Optimizer};
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([1.0, 2.0]));
    /// let mut adam = Adam::new(0.1);
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([0.5, -0.5]))].into_iter().collect();
    /// adam.step(&mut store, &grads).unwrap();
    /// let state = adam.state(&store);
    /// let slots: Vec<&str> = state.buffers.iter().map(|(_, s, _)| s.as_ref()).collect();
    /// assert_eq!(slots, ["exp_avg", "exp_avg_sq"]);
    /// assert_eq!(state.scalars[0].1, "step");
    /// assert_eq!(state.scalars[0].2, 1.0);
    ///
    /// // A fresh optimiser given this state steps exactly as `adam` does.
    /// let mut resumed = Adam::new(0.1);
    /// resumed.load_state(&store, state).unwrap();
    /// assert_eq!(resumed.step_count(w), 1);
    /// ```
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        let _ = params;
        OptimizerState::default()
    }

    /// Replaces the optimiser's state with `state` (from [`Optimizer::state`], perhaps
    /// through a checkpoint), whose ids name parameters of `params`. Everything is
    /// checked first: a parameter of another store or removed, a buffer whose shape
    /// is not its parameter's, a missing or unknown slot, or a step count that is not a
    /// whole number `>= 1` is an error and leaves the optimiser unchanged.
    ///
    /// The default, for an optimiser that keeps no state, accepts only an empty state.
    ///
    /// # Errors
    /// [`Error::State`], naming the parameter and slot at fault.
    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let _ = params;
        if state.is_empty() {
            Ok(())
        } else {
            Err(Error::State {
                op: self.name(),
                reason: format!("{} keeps no state, but state was given", self.name()),
            })
        }
    }

    /// One step over every parameter that has a gradient in `grads`, read in place.
    ///
    /// A parameter a live tape still holds (bound with `tape.param` and not released
    /// by `tape.reset()` or dropping the tape) is copied before it changes, so that
    /// the tape keeps its values ([`ParamStore::copies`] counts these copies). Reset
    /// the tape first, once its loss and outputs are read, to step in place.
    ///
    /// ```
    /// use descent_optim::{Optimizer, Sgd};
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([1.0, 2.0]));
    /// let tape = Tape::new();
    /// let loss = (tape.param(&store, w) * tape.param(&store, w)).sum();
    /// let grads = descent_backprop::backward(loss).unwrap();
    /// let value = loss.item();
    /// tape.reset();
    /// Sgd::new(0.1).step(&mut store, &grads).unwrap();
    /// assert_eq!(value, 5.0);
    /// assert_eq!(store.get(w).unwrap().data(), &[0.8, 1.6]);
    /// assert_eq!(store.copies().count, 0);
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::UnknownParam`], [`Error::Shape`] or
    /// [`Error::NonFinite`], found before any parameter is touched.
    fn step(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &dyn ParamGradients<T>,
    ) -> Result<(), Error> {
        self.validate()?;
        check_grads(self.name(), params, grads)?;
        self.begin_step();
        for i in 0..grads.count() {
            let (id, g) = grads.entry(i);
            let value = params.get_mut(id).expect("checked above");
            self.update(id, value.data_mut(), g.data());
        }
        Ok(())
    }
}

/// The checks a step (or a clipping) makes before touching anything: every gradient
/// names a parameter of `params`, has its shape, and holds only finite numbers. Each
/// lookup is O(1); the finite check is one pass over the gradients at the speed of
/// memory.
///
/// # Errors
/// [`Error::UnknownParam`], [`Error::Shape`] or [`Error::NonFinite`], naming `op` and
/// the parameter.
///
/// ```
/// use descent_optim::{Error, check_grads};
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0, 2.0]));
/// let bad: ParamGrads<f64> = [(w, Tensor::from([0.5, f64::NAN]))].into_iter().collect();
/// let err = check_grads("sgd", &store, &bad).unwrap_err();
/// assert!(matches!(err, Error::NonFinite { index: 1, .. }));
/// assert!(err.to_string().contains("'w'"));
/// ```
pub fn check_grads<T: Float>(
    op: &'static str,
    params: &ParamStore<T>,
    grads: &dyn ParamGradients<T>,
) -> Result<(), Error> {
    // Last entry first, so that the gradients read last, which a step then updates
    // first, are still in cache when it does: a walk leaves the first layer's
    // gradient, usually the largest, hot; the check ends there and the step starts
    // there. The error reported is still the first entry's in order.
    let mut first_error = None;
    for i in (0..grads.count()).rev() {
        let (id, g) = grads.entry(i);
        if let Err(e) = check_entry(op, params, id, g.shape()) {
            first_error = Some(e);
        } else if let Some((index, value)) = descent_tape::non_finite_at(g.data()) {
            first_error = Some(Error::NonFinite {
                op,
                name: param_name(params, id),
                index,
                value,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The checks of [`check_grads`] but the finite one: the parameter is known and the
/// gradient has its shape.
pub(crate) fn check_entry<T: Float>(
    op: &'static str,
    params: &ParamStore<T>,
    id: ParamId,
    shape: &[usize],
) -> Result<(), Error> {
    params.check(op, id).map_err(|source| Error::UnknownParam {
        op,
        source: Box::new(source),
    })?;
    let value = params.get(id).expect("checked above");
    if value.shape() != shape {
        return Err(Error::Shape {
            op,
            name: param_name(params, id),
            expected: value.shape().into(),
            found: shape.into(),
        });
    }
    Ok(())
}

/// The parameter's name, for an error.
pub(crate) fn param_name<T: Float>(params: &ParamStore<T>, id: ParamId) -> String {
    params.name(id).unwrap_or("(unknown)").to_owned()
}

/// An error unless `value` is a number `>= 0` (NaN is refused).
pub(crate) fn non_negative(op: &'static str, what: &str, value: f64) -> Result<(), Error> {
    if value >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config {
            op,
            reason: format!("{what} must be >= 0, got {value}"),
        })
    }
}

/// An error unless `0 <= value < 1` (PyTorch's range for betas).
pub(crate) fn unit_interval(op: &'static str, what: &str, value: f64) -> Result<(), Error> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config {
            op,
            reason: format!("{what} must be in [0, 1), got {value}"),
        })
    }
}

/// An error unless `0 <= value <= 1`.
pub(crate) fn closed_unit_interval(op: &'static str, what: &str, value: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config {
            op,
            reason: format!("{what} must be in [0, 1], got {value}"),
        })
    }
}

/// Parameters with fewer elements than this update on the calling thread: below it,
/// handing chunks to rayon costs more than the arithmetic. At 2^16, W8's recurrent
/// weight (512 × 128) was updated on two threads, and W8 on two threads was 10-15%
/// slower than on one; with every other split disabled as well it was not
/// (`docs/PERFORMANCE.md`, "W8 with the LSTM cell fused"). The bits of an update do
/// not depend on which side of it a parameter falls.
///
/// ```
/// assert_eq!(descent_optim::PARALLEL_UPDATE_LEN, 1 << 18);
/// ```
pub const PARALLEL_UPDATE_LEN: usize = 1 << 18;
/// The piece of a large parameter one rayon task updates.
const UPDATE_CHUNK: usize = 1 << 14;

/// Runs an element-wise update `f(value, grad, state)` over matching pieces of a
/// parameter, its gradient and one state buffer (empty for none), in parallel for a
/// large parameter. Each element's arithmetic is the same wherever its piece runs, so
/// the result does not depend on the number of threads.
pub(crate) fn for_chunks<T: Float>(
    value: &mut [T],
    grad: &[T],
    state: &mut [T],
    f: impl Fn(&mut [T], &[T], &mut [T]) + Sync,
) {
    use descent_tensor::vectorized;
    use rayon::prelude::*;
    // `vectorized`: the rules are fused multiply-adds (PyTorch's roundings), which
    // need the processor's FMA instructions to run at vector speed rather than as a
    // call to `fmaf` per element. Only code inlined into the closure gains, so `f`
    // and the rules it calls must be `#[inline(always)]` (W3's update took 4x longer
    // with `f` left out of line).
    if value.len() < PARALLEL_UPDATE_LEN || rayon::current_num_threads() == 1 {
        vectorized(
            #[inline(always)]
            || f(value, grad, state),
        );
    } else if state.is_empty() {
        value
            .par_chunks_mut(UPDATE_CHUNK)
            .zip(grad.par_chunks(UPDATE_CHUNK))
            .for_each(|(p, g)| {
                vectorized(
                    #[inline(always)]
                    || f(p, g, &mut []),
                )
            });
    } else {
        value
            .par_chunks_mut(UPDATE_CHUNK)
            .zip(grad.par_chunks(UPDATE_CHUNK))
            .zip(state.par_chunks_mut(UPDATE_CHUNK))
            .for_each(|((p, g), b)| {
                vectorized(
                    #[inline(always)]
                    || f(p, g, b),
                )
            });
    }
}
