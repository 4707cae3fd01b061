//! The `Optimizer` trait and the checks every step makes first.

use crate::{Error, OptimizerState};
use descent_backprop::ParamGrads;
use descent_tape::{ParamId, ParamStore};
use descent_tensor::Float;

/// A gradient-descent method: it turns gradients into parameter updates, keeping any
/// state it needs (momentum buffers, moment estimates) in `slotmap::SecondaryMap`s
/// keyed by the parameters' `ParamId::key()`.
///
/// Implementors write [`Optimizer::update`] for one parameter; [`Optimizer::step`]
/// checks all gradients first (each names a parameter of the store, has its shape, and
/// is finite) and only then updates, so a failed step changes nothing.
pub trait Optimizer<T: Float> {
    /// A short name (`"sgd"`, `"adam"`) for reports.
    fn name(&self) -> &'static str;

    /// The current learning rate.
    fn learning_rate(&self) -> f64;

    /// Sets the learning rate (schedules call this between steps).
    fn set_learning_rate(&mut self, lr: f64);

    /// Checks the hyper-parameters; `step` calls it first. The default accepts all.
    fn validate(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Called once per step, before the updates (for step counts and bias correction).
    fn begin_step(&mut self) {}

    /// Updates one parameter in place from its gradient.
    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]);

    /// The optimiser's state (momentum buffers, moment estimates, step counts) by
    /// parameter of `params`, for a checkpoint. The default, for an optimiser that
    /// keeps no state, is empty.
    ///
    /// ```
    /// use descent_backprop::ParamGrads;
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

    /// One step over every parameter that has a gradient in `grads`.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::UnknownParam`], [`Error::Shape`] or
    /// [`Error::NonFinite`], found before any parameter is touched.
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>) -> Result<(), Error> {
        self.validate()?;
        check_grads(self.name(), params, grads)?;
        self.begin_step();
        for (id, g) in grads.iter() {
            let value = params.get_mut(id).expect("checked above");
            self.update(id, value.data_mut(), g.data());
        }
        Ok(())
    }
}

/// The checks a step makes before touching anything: every gradient names a parameter
/// of `params`, has its shape, and holds only finite numbers.
pub fn check_grads<T: Float>(
    op: &'static str,
    params: &ParamStore<T>,
    grads: &ParamGrads<T>,
) -> Result<(), Error> {
    for (id, g) in grads.iter() {
        if let Err(e) = params.check(op, id) {
            return Err(Error::UnknownParam {
                op,
                reason: e.to_string(),
            });
        }
        let value = params.get(id).expect("checked above");
        let name = params.name(id).unwrap_or_default().to_owned();
        if value.shape() != g.shape() {
            return Err(Error::Shape {
                op,
                name,
                expected: value.shape().into(),
                found: g.shape().into(),
            });
        }
        if let Some((index, v)) = g.data().iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                op,
                name,
                index,
                value: v.as_f64(),
            });
        }
    }
    Ok(())
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
/// handing chunks to rayon costs more than the arithmetic.
const PARALLEL_UPDATE_LEN: usize = 1 << 16;
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
    use rayon::prelude::*;
    if value.len() < PARALLEL_UPDATE_LEN || rayon::current_num_threads() == 1 {
        f(value, grad, state);
    } else if state.is_empty() {
        value
            .par_chunks_mut(UPDATE_CHUNK)
            .zip(grad.par_chunks(UPDATE_CHUNK))
            .for_each(|(p, g)| f(p, g, &mut []));
    } else {
        value
            .par_chunks_mut(UPDATE_CHUNK)
            .zip(grad.par_chunks(UPDATE_CHUNK))
            .zip(state.par_chunks_mut(UPDATE_CHUNK))
            .for_each(|((p, g), b)| f(p, g, b));
    }
}
