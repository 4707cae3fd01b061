//! An optimiser's state, exported and imported by parameter: what a checkpoint saves
//! so that training resumes exactly where it stopped.

use crate::Error;
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use slotmap::SecondaryMap;
use std::borrow::Cow;

/// An optimiser's state, keyed by parameter: what [`Optimizer::state`] exports and
/// [`Optimizer::load_state`] imports.
///
/// Slots are named as PyTorch's optimisers name them in their `state_dict()`
/// (`"momentum_buffer"`, `"exp_avg"`, `"exp_avg_sq"`, `"max_exp_avg_sq"`, `"sum"`,
/// `"square_avg"`, …) and never contain a `.`, so `"<parameter name>.<slot>"` names a
/// slot unambiguously even when parameter names contain dots.
///
/// A parameter that has not been stepped yet has no entry. Hyper-parameters (learning
/// rate, betas) are not state: they come from the optimiser the state is loaded into.
///
/// [`Optimizer::state`]: crate::Optimizer::state
/// [`Optimizer::load_state`]: crate::Optimizer::load_state
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState<T: Float> {
    /// Per-parameter buffers, each shaped like its parameter: `(parameter, slot, value)`.
    pub buffers: Vec<(ParamId, Cow<'static, str>, Tensor<T>)>,
    /// Per-parameter numbers, in `f64` whatever `T` is: the step count `"step"` (exact
    /// up to 2⁵³) and scalar state such as NAdam's `"mu_product"`.
    pub scalars: Vec<(ParamId, Cow<'static, str>, f64)>,
    /// Optimiser-wide counters: `(name, value)`, such as a schedule's step count
    /// (`"schedule_steps"` of [`Scheduled`](crate::Scheduled)).
    pub counters: Vec<(Cow<'static, str>, u64)>,
}

impl<T: Float> OptimizerState<T> {
    /// True when there is no state at all (a fresh optimiser, or one that keeps none).
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty() && self.scalars.is_empty() && self.counters.is_empty()
    }

    /// Removes and returns the counter `name`, if present.
    pub fn take_counter(&mut self, name: &str) -> Option<u64> {
        let i = self.counters.iter().position(|(n, _)| n == name)?;
        Some(self.counters.remove(i).1)
    }

    /// Adds a buffer from a slice.
    pub(crate) fn buffer(&mut self, id: ParamId, slot: &'static str, shape: &[usize], v: &[T]) {
        let t = Tensor::new(shape, v.to_vec()).expect("a buffer is shaped like its parameter");
        self.buffers.push((id, Cow::Borrowed(slot), t));
    }

    /// Adds a scalar.
    pub(crate) fn scalar(&mut self, id: ParamId, slot: &'static str, v: f64) {
        self.scalars.push((id, Cow::Borrowed(slot), v));
    }
}

/// Exports per-parameter state: `each` is called with the id, the parameter's shape and
/// the state, and adds its slots. Parameters are visited in the store's order so the
/// export is deterministic; state of parameters the store no longer holds is skipped.
pub(crate) fn export<T: Float, S>(
    params: &ParamStore<T>,
    state: &SecondaryMap<ParamKey, S>,
    mut each: impl FnMut(&mut OptimizerState<T>, ParamId, &[usize], &S),
) -> OptimizerState<T> {
    let mut out = OptimizerState::default();
    for (id, _, value) in params.iter() {
        if let Some(s) = state.get(id.key()) {
            each(&mut out, id, value.shape(), s);
        }
    }
    out
}

/// The imported state of one parameter, slot by slot; each optimiser takes the slots
/// it knows and [`Entry::finish`] refuses any left over.
pub(crate) struct Entry<T> {
    op: &'static str,
    name: String,
    buffers: Vec<(Cow<'static, str>, Vec<T>)>,
    scalars: Vec<(Cow<'static, str>, f64)>,
}

impl<T: Float> Entry<T> {
    fn error(&self, reason: String) -> Error {
        Error::State {
            op: self.op,
            reason: format!("parameter '{}': {reason}", self.name),
        }
    }

    /// A buffer the optimiser needs.
    pub(crate) fn required(&mut self, slot: &str) -> Result<Vec<T>, Error> {
        self.optional(slot)
            .ok_or_else(|| self.error(format!("the state has no '{slot}' buffer")))
    }

    /// A buffer that may be absent (an option that was off): empty when absent.
    pub(crate) fn optional(&mut self, slot: &str) -> Option<Vec<T>> {
        let i = self.buffers.iter().position(|(s, _)| s == slot)?;
        Some(self.buffers.remove(i).1)
    }

    /// A scalar the optimiser needs.
    pub(crate) fn scalar(&mut self, slot: &str) -> Result<f64, Error> {
        let i = self
            .scalars
            .iter()
            .position(|(s, _)| s == slot)
            .ok_or_else(|| self.error(format!("the state has no '{slot}'")))?;
        Ok(self.scalars.remove(i).1)
    }

    /// The step count: a whole number `>= 1` (a parameter with state has been stepped).
    pub(crate) fn step(&mut self) -> Result<u64, Error> {
        let s = self.scalar("step")?;
        if s >= 1.0 && s.fract() == 0.0 && s <= 2f64.powi(53) {
            Ok(s as u64)
        } else {
            Err(self.error(format!(
                "the step count must be a whole number >= 1, got {s}"
            )))
        }
    }

    /// Refuses slots the optimiser did not take.
    pub(crate) fn finish(self) -> Result<(), Error> {
        let left: Vec<&str> = self
            .buffers
            .iter()
            .map(|(s, _)| s.as_ref())
            .chain(self.scalars.iter().map(|(s, _)| s.as_ref()))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!(
                "{} does not use slot(s) {}",
                self.op,
                left.iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

/// Checks imported state against the store (every parameter is one of its own, every
/// buffer has its parameter's shape, no slot given twice, no counter left) and groups
/// it by parameter, in the store's order.
pub(crate) fn group<T: Float>(
    op: &'static str,
    params: &ParamStore<T>,
    state: OptimizerState<T>,
) -> Result<Vec<(ParamId, Entry<T>)>, Error> {
    if let Some((name, _)) = state.counters.first() {
        return Err(Error::State {
            op,
            reason: format!("{op} keeps no counter '{name}'"),
        });
    }
    let mut entries: SecondaryMap<ParamKey, Entry<T>> = SecondaryMap::new();
    for (id, slot, tensor) in state.buffers {
        let e = entry(op, params, &mut entries, id)?;
        let expected = params.get(id).expect("checked by entry").shape();
        if tensor.shape() != expected {
            return Err(e.error(format!(
                "the '{slot}' buffer has shape {}, the parameter {}",
                ShapeDisplay(tensor.shape()),
                ShapeDisplay(expected)
            )));
        }
        if e.buffers.iter().any(|(s, _)| *s == slot) {
            return Err(e.error(format!("the '{slot}' buffer is given twice")));
        }
        e.buffers.push((slot, tensor.into_data()));
    }
    for (id, slot, v) in state.scalars {
        let e = entry(op, params, &mut entries, id)?;
        if e.scalars.iter().any(|(s, _)| *s == slot) {
            return Err(e.error(format!("'{slot}' is given twice")));
        }
        e.scalars.push((slot, v));
    }
    Ok(params
        .ids()
        .filter_map(|id| entries.remove(id.key()).map(|e| (id, e)))
        .collect())
}

/// The entry of parameter `id`, made on first use; an error unless `id` names a
/// parameter of `params`.
fn entry<'e, T: Float>(
    op: &'static str,
    params: &ParamStore<T>,
    entries: &'e mut SecondaryMap<ParamKey, Entry<T>>,
    id: ParamId,
) -> Result<&'e mut Entry<T>, Error> {
    if let Err(e) = params.check(op, id) {
        let reason = match e {
            descent_tape::Error::ForeignParam {
                param_store, store, ..
            } => format!(
                "a parameter id of the state belongs to another store (store #{param_store}, not store #{store})"
            ),
            descent_tape::Error::RemovedParam { .. } => {
                "a parameter id of the state names a parameter removed from the store".into()
            }
            e => e.to_string(),
        };
        return Err(Error::State { op, reason });
    }
    Ok(entries
        .entry(id.key())
        .expect("a live key")
        .or_insert_with(|| Entry {
            op,
            name: params.name(id).unwrap_or_default().to_owned(),
            buffers: Vec::new(),
            scalars: Vec::new(),
        }))
}
