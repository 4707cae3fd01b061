//! Owned parameter gradients from a walk's store. The type itself lives beside
//! `ParamStore` in `descent-tape`, so that optimisers need no walk to speak of it.

use crate::Gradients;
use descent_tape::ParamGrads;
use descent_tensor::Float;

impl<T: Float> From<&Gradients<T>> for ParamGrads<T> {
    /// A copy of the gradients of every parameter bound on the tape, in binding order
    /// (zeros for a bound parameter no gradient reached). A training step needs no
    /// copy (optimisers read `Gradients` in place); this is for keeping them.
    ///
    /// ```
    /// use descent_backprop::{Backward, ParamGrads};
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([3.0, 4.0]));
    /// let tape = Tape::new();
    /// let loss = (tape.param(&store, w) * 1.0).sum();
    /// let grads = ParamGrads::from(&loss.backward());
    /// assert_eq!(grads.get(w).unwrap().data(), &[1.0, 1.0]);
    /// assert_eq!(grads.global_norm(), 2f64.sqrt());
    /// ```
    fn from(grads: &Gradients<T>) -> Self {
        ParamGrads::copy_of(grads)
    }
}
