//! Stopping gradients: the tape's no-gradient mode ([`Tape::no_grad`]) and
//! [`Var::detach`].
//!
//! | PyTorch | descent |
//! |---|---|
//! | `with torch.no_grad(): y = f(x)` | `let y = tape.no_grad(\|\| f(x));` |
//! | `torch.set_grad_enabled(False)` (until re-enabled) | `let _g = tape.no_grad_guard();` (until dropped) |
//! | `torch.is_grad_enabled()` | `tape.is_grad_enabled()` |
//! | `x.detach()` | `x.detach()` |
//! | `p.requires_grad_(False)` | `store.set_requires_grad(id, false)` |

use super::{Meta, NO_ARGS, Output, Tape, push_node};
use crate::Var;
use crate::op::Op;
use descent_tensor::{Float, Tensor};

impl<T: Float> Tape<T> {
    /// Runs `f` with gradients off, as PyTorch's `with torch.no_grad():`. Every op
    /// recorded inside requires no gradient, whatever its operands, so backward never
    /// walks it; a parameter not yet bound on this tape binds as a constant (it is not
    /// among [`Tape::bindings`]: no optimiser step sees it). Leaves made with
    /// [`Tape::var`] inside still want a gradient, as a tensor created with
    /// `requires_grad=True` does inside `no_grad`. The previous mode is restored when
    /// `f` returns or panics; calls nest.
    ///
    /// What it saves: the bookkeeping of parameter bindings and, in a step that
    /// mixes both, all backward work on the part computed inside (a frozen teacher, a
    /// target network). Values are still recorded, since handles read them.
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(3.0);
    /// let target = tape.no_grad(|| x * x); // treated as a constant
    /// assert!(!target.requires_grad());
    /// assert!(tape.is_grad_enabled());
    /// let loss = x * target;
    /// assert_eq!(loss.backward().wrt(x).item(), 9.0); // not 27: no path through x * x
    /// ```
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.no_grad_guard();
        f()
    }

    /// Turns gradients off until the guard drops (then restores the mode it found),
    /// for code that cannot be a closure. See [`Tape::no_grad`].
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(1.0);
    /// {
    ///     let _off = tape.no_grad_guard();
    ///     assert!(!tape.is_grad_enabled());
    ///     assert!(!x.exp().requires_grad());
    /// }
    /// assert!(x.exp().requires_grad());
    /// ```
    pub fn no_grad_guard(&self) -> NoGradGuard<'_, T> {
        let previous = self.set_mode(super::MODE_NO_GRAD, true);
        NoGradGuard {
            tape: self,
            previous,
        }
    }

    /// Whether ops recorded now can require a gradient (false inside
    /// [`Tape::no_grad`]).
    pub fn is_grad_enabled(&self) -> bool {
        !self.grad_off()
    }
}

/// Restores the tape's gradient mode when dropped; made by [`Tape::no_grad_guard`].
#[must_use = "gradients are back on as soon as this guard is dropped"]
pub struct NoGradGuard<'t, T: Float> {
    tape: &'t Tape<T>,
    previous: bool,
}

impl<T: Float> Drop for NoGradGuard<'_, T> {
    fn drop(&mut self) {
        self.tape.set_mode(super::MODE_NO_GRAD, self.previous);
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// The same value as a new constant leaf: no gradient flows back through it to
    /// what it was computed from. PyTorch: `x.detach()`; JAX: `lax.stop_gradient(x)`.
    /// The value is copied (into one of the tape's recycled buffers).
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(2.0);
    /// let y = x * x;
    /// let z = y.detach() * x; // d/dx of (4 * x) = 4, not 3x² = 12
    /// assert!(!y.detach().requires_grad());
    /// assert_eq!(z.backward().wrt(x).item(), 4.0);
    /// ```
    ///
    /// # Panics
    /// If the handle is stale or foreign (see [`Var::try_detach`]).
    pub fn detach(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_detach())
    }

    /// The fallible form of [`Var::detach`]: an error for a stale handle.
    pub fn try_detach(self) -> crate::Result<Var<'t, T>> {
        self.validate("detach")?;
        let tape = self.tape;
        let mut inner = tape.inner.borrow_mut();
        let inner = &mut *inner;
        let node = inner.nodes[self.id.index()];
        let id = match node.meta.slot() {
            None => inner.push(Op::Constant, NO_ARGS, node.scalar, Meta::new(None, false)),
            Some(slot) => {
                let len = inner.tensors[slot as usize].len();
                inner.pool.op = "detach";
                let mut buf = inner.pool.take(len)?;
                let src = &inner.tensors[slot as usize];
                buf.copy_from_slice(src.data());
                let t = Tensor::new(src.shape(), buf)?;
                push_node(inner, Op::Constant, NO_ARGS, Output::Tensor(t), false)
            }
        };
        Ok(tape.handle(id))
    }
}
