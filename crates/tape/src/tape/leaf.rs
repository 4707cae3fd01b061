//! Leaves: the values a program puts on the tape ([`Tape::var`], [`Tape::constant`])
//! and what they may be given as ([`IntoLeaf`]).

use super::{Meta, NO_ARGS, Output, Stored, Tape, push_node};
use crate::NodeId;
use crate::Var;
use crate::op::Op;
use descent_tensor::{Float, Tensor, View};

impl<T: Float> Tape<T> {
    /// A leaf that gradients flow to: a scalar (`tape.var(2.0)`) or a tensor.
    ///
    /// ```
    /// use descent_tape::Tape;
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f32>::new();
    /// let w = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    /// assert_eq!(w.shape().as_slice(), &[2, 2]);
    /// ```
    #[inline]
    pub fn var<'a>(&self, value: impl IntoLeaf<'a, T>) -> Var<'_, T> {
        match value.into_leaf() {
            LeafValue::Scalar(v) => self.push_scalar_leaf(v, Op::Var),
            value => self.leaf(value, Op::Var),
        }
    }

    /// A leaf that no gradient flows to (input data, targets, fixed numbers).
    ///
    /// ```
    /// use descent_tape::Tape;
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let data = Tensor::from([[1.0, 2.0]]);
    /// let x = tape.constant(&data); // borrowed: the tape copies it into its own buffer
    /// assert!(!x.requires_grad());
    /// ```
    #[inline]
    pub fn constant<'a>(&self, value: impl IntoLeaf<'a, T>) -> Var<'_, T> {
        match value.into_leaf() {
            LeafValue::Scalar(v) => self.push_scalar_leaf(v, Op::Constant),
            value => self.leaf(value, Op::Constant),
        }
    }

    /// A scalar leaf, recorded without going through a tensor.
    #[inline]
    pub fn scalar(&self, value: T) -> Var<'_, T> {
        self.push_scalar_leaf(value, Op::Var)
    }

    #[inline]
    pub(crate) fn scalar_constant(&self, value: T) -> Var<'_, T> {
        self.push_scalar_leaf(value, Op::Constant)
    }

    #[inline]
    fn push_scalar_leaf(&self, value: T, op: Op) -> Var<'_, T> {
        let requires_grad = matches!(op, Op::Var);
        let id = self
            .inner
            .borrow_mut()
            .push(op, NO_ARGS, value, Meta::new(None, requires_grad));
        self.handle(id)
    }

    fn leaf(&self, value: LeafValue<'_, T>, op: Op) -> Var<'_, T> {
        let view = match &value {
            LeafValue::Scalar(v) => return self.push_scalar_leaf(*v, op),
            LeafValue::View(v) => *v,
            LeafValue::Owned(t) => t.view(),
        };
        if view.ndim() == 0 {
            return self.push_scalar_leaf(view.item(), op);
        }
        let requires_grad = matches!(op, Op::Var);
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        // The value is copied into one of the tape's buffers, so a steady loop reuses
        // them instead of growing the pool by a buffer a step.
        // Copying a value that already exists in memory; running out here is as fatal
        // as it would be anywhere else in the program.
        let mut buf = inner.pool.take(view.len()).expect("memory for a leaf");
        buf.copy_from_slice(view.data());
        let value = view;
        let t = Tensor::new(value.shape(), buf).expect("same length as the value");
        let id = push_node(inner, op, NO_ARGS, Output::Tensor(t), requires_grad);
        self.handle(id)
    }
}

impl<T: Float> Tape<T> {
    /// A leaf holding a value shared with its owner (a parameter's, from its store):
    /// a reference count, no copy (`slots.rs`). A 0-d value is stored inline.
    pub(crate) fn shared_leaf(&self, value: &std::sync::Arc<Tensor<T>>, op: Op) -> Var<'_, T> {
        if value.ndim() == 0 {
            return self.push_scalar_leaf(value.item(), op);
        }
        let requires_grad = matches!(op, Op::Var);
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        inner
            .tensors
            .push(Stored::Shared(std::sync::Arc::clone(value)));
        let id = NodeId(inner.nodes.len() as u32);
        inner.tensor_nodes.push(id);
        let slot = (inner.tensors.len() - 1) as u32;
        let id = inner.push(op, NO_ARGS, T::zero(), Meta::new(Some(slot), requires_grad));
        self.handle(id)
    }
}

/// A leaf's value as the tape receives it.
#[derive(Debug)]
pub enum LeafValue<'a, T: Float> {
    /// A number: stored inline, no allocation.
    Scalar(T),
    /// Borrowed elements, copied into a tape buffer.
    View(View<'a, T>),
    /// An owned tensor, copied into a tape buffer.
    Owned(Tensor<T>),
}

/// What [`Tape::var`] and [`Tape::constant`] accept: a number (`2.0`), a tensor or a
/// reference to one, a `Vec`, a slice, or (nested) arrays.
pub trait IntoLeaf<'a, T: Float> {
    /// The value, ready for the tape.
    fn into_leaf(self) -> LeafValue<'a, T>;
}

impl<'a> IntoLeaf<'a, f64> for f64 {
    #[inline]
    fn into_leaf(self) -> LeafValue<'a, f64> {
        LeafValue::Scalar(self)
    }
}

impl<'a> IntoLeaf<'a, f32> for f32 {
    #[inline]
    fn into_leaf(self) -> LeafValue<'a, f32> {
        LeafValue::Scalar(self)
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for Tensor<T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(self)
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for &'a Tensor<T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::View(self.view())
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for View<'a, T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::View(self)
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for Vec<T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}

impl<'a, T: Float, const N: usize> IntoLeaf<'a, T> for [T; N] {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}

impl<'a, T: Float, const R: usize, const C: usize> IntoLeaf<'a, T> for [[T; C]; R] {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}

impl<'a, T: Float, const D: usize, const R: usize, const C: usize> IntoLeaf<'a, T>
    for [[[T; C]; R]; D]
{
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var([[[1.0, 2.0]], [[3.0, 4.0]]]);
    /// assert_eq!(x.shape().as_slice(), &[2, 1, 2]);
    /// ```
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}
