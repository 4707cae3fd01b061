//! The tensor arena's entries: a tensor the tape owns (an op's output, in one of the
//! pool's buffers), or a parameter's value shared with its [`ParamStore`](crate::ParamStore).
//!
//! Binding a parameter ([`Tape::param`](crate::Tape::param)) used to copy its value
//! into a tape buffer every step (5.3 MB a step for a 256→1024→1024→10 MLP). Now the
//! store keeps each value behind an `Arc` and the tape holds a clone: binding is a
//! reference count, not a copy. The value cannot change under a live tape: the store
//! hands out a value mutably only through `Arc::make_mut` ([`ParamStore::get_mut`](crate::ParamStore::get_mut)),
//! which copies it first if a tape still holds it (counted, [`ParamStore::copies`](crate::ParamStore::copies)).
//! A tape releases its clones on `reset`, `rewind` past the binding, or drop; a loop
//! that does so before the optimiser step copies nothing.

use super::Pool;
use descent_tensor::{Float, Tensor};
use std::ops::Deref;
use std::sync::Arc;

/// One entry of the tape's tensor arena.
pub(crate) enum Stored<T> {
    /// A value the tape computed, in one of its pool's buffers.
    Own(Tensor<T>),
    /// A parameter's value, shared with its store (no copy).
    Shared(Arc<Tensor<T>>),
}

impl<T: Float> Stored<T> {
    /// Gives the entry up: an owned buffer goes back to the pool for the next
    /// recording; a shared value is only released (the store keeps it).
    #[inline]
    pub(crate) fn release(self, pool: &mut Pool<T>) {
        match self {
            Stored::Own(t) => pool.give(t.into_data()),
            Stored::Shared(t) => drop(t),
        }
    }
}

impl<T> Deref for Stored<T> {
    type Target = Tensor<T>;
    #[inline]
    fn deref(&self) -> &Tensor<T> {
        match self {
            Stored::Own(t) => t,
            Stored::Shared(t) => t,
        }
    }
}
