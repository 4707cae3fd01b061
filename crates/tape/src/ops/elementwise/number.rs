//! Operations with a plain number (`x * 0.5`, `1.0 - x`, `x / 2.0`): one node that holds
//! the number, not a constant node and a binary node. They are [`UnaryOp`]s
//! (`AddScalar(c)`, `MulScalar(c)`, ...), so their forward (`UnaryOp::apply`), their
//! derivative (`UnaryOp::derivative_of`, written once over [`Number`](super::Number)),
//! the scalar fast path, the tensor loops and the three rules are the element-wise
//! family's; this file records them and gives the operators on plain numbers.
//!
//! The number is stored as an `f64` in the op: exact for an `f64` tape, and exact for
//! an `f32` tape too (every `f32` is an `f64`; `T::from_f64` gives the same `f32`
//! back), so a node computes exactly what the two-node form computed, bit for bit.
//! `Op` stays 16 bytes (`PowF(f64)` already held one).

use super::UnaryOp;
use crate::Var;
use crate::error::Result;
use descent_tensor::Float;
use std::ops::{Add, Div, Mul, Sub};

/// The derivative of a unary op whose derivative is one number everywhere (`neg` and
/// the ops with a plain number), read from [`UnaryOp::derivative_of`] on numbers and
/// rounded to the element type; `None` for every other op. The recorded rules scale by
/// it with [`Var::try_mul_scalar`] (one node), where the general rule would record a
/// constant node and a product.
pub(crate) fn constant_derivative<T: Float>(op: UnaryOp) -> Option<f64> {
    match op {
        UnaryOp::Neg
        | UnaryOp::AddScalar(_)
        | UnaryOp::SubScalar(_)
        | UnaryOp::RSubScalar(_)
        | UnaryOp::MulScalar(_)
        | UnaryOp::DivScalar(_) => Some(op.derivative_of(T::zero(), T::zero()).as_f64()),
        UnaryOp::PowF(_)
        | UnaryOp::PowI(_)
        | UnaryOp::Exp
        | UnaryOp::Ln
        | UnaryOp::Sqrt
        | UnaryOp::Abs
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tanh
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Sigmoid
        | UnaryOp::Relu
        | UnaryOp::LeakyRelu(_)
        | UnaryOp::Gelu
        | UnaryOp::Softplus
        | UnaryOp::RDivScalar(_) => None,
    }
}

/// `v · k` recorded, for a recorded rule's constant factor `k`: `v` itself for 1, `-v`
/// for -1 (both exact, as multiplying by them is), else one `mul_scalar` node.
pub(crate) fn scale<'t, T: Float>(v: Var<'t, T>, k: f64) -> Result<Var<'t, T>> {
    if k == 1.0 {
        Ok(v)
    } else if k == -1.0 {
        v.try_neg()
    } else {
        v.try_mul_scalar(T::from_f64(k))
    }
}

macro_rules! number_method {
    ($(#[$doc:meta])* $try_name:ident, $variant:ident) => {
        $(#[$doc])*
        #[inline]
        pub fn $try_name(self, c: T) -> Result<Var<'t, T>> {
            self.unary(UnaryOp::$variant(c.as_f64()))
        }
    };
}

impl<'t, T: Float> Var<'t, T> {
    number_method!(
        /// `x + c` for a plain number `c`, one node holding `c`; the `+` operator with a
        /// number on either side records it and panics with the same message.
        /// d/dx = 1. PyTorch: `torch.add(x, c)`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// let x = tape.var(2.0);
        /// let y = x.try_add_scalar(0.5).unwrap();
        /// assert_eq!(y.item(), 2.5);
        /// assert_eq!((1.0 + x).to_string(), "add_scalar(1) = 3");
        /// assert_eq!(tape.len(), 3); // x and two nodes: no constant nodes
        /// ```
        try_add_scalar, AddScalar
    );
    number_method!(
        /// `x - c` for a plain number `c`, one node holding `c` (the `-` operator with
        /// the number on the right). d/dx = 1. PyTorch: `torch.sub(x, c)`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// let x = tape.var(2.0);
        /// assert_eq!(x.try_sub_scalar(0.5).unwrap().item(), 1.5);
        /// assert_eq!((x - 0.5).to_string(), "sub_scalar(0.5) = 1.5");
        /// ```
        try_sub_scalar, SubScalar
    );
    number_method!(
        /// `c - x` for a plain number `c`, one node holding `c` (the `-` operator with
        /// the number on the left). d/dx = -1. PyTorch: `torch.rsub(x, c)`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// let x = tape.var(2.0);
        /// assert_eq!(x.try_rsub_scalar(0.5).unwrap().item(), -1.5);
        /// assert_eq!((0.5 - x).to_string(), "rsub_scalar(0.5) = -1.5");
        /// ```
        try_rsub_scalar, RSubScalar
    );
    number_method!(
        /// `x · c` for a plain number `c`, one node holding `c` (the `*` operator with a
        /// number on either side). d/dx = c. PyTorch: `torch.mul(x, c)`.
        ///
        /// ```
        /// use descent_tape::Tape;
        /// use descent_tensor::Tensor;
        /// let tape = Tape::<f32>::new();
        /// let x = tape.var(Tensor::from([1.0f32, -2.0]));
        /// assert_eq!(x.try_mul_scalar(0.5).unwrap().value().data(), &[0.5, -1.0]);
        /// assert_eq!((0.5 * x).value().data(), &[0.5, -1.0]);
        /// ```
        try_mul_scalar, MulScalar
    );
    number_method!(
        /// `x / c` for a plain number `c`, one node holding `c` (the `/` operator with
        /// the number on the right; divided, not multiplied by `1/c`, so the value is
        /// the division's). d/dx = 1/c. PyTorch: `torch.div(x, c)`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// let x = tape.var(1.0);
        /// assert_eq!(x.try_div_scalar(4.0).unwrap().item(), 0.25);
        /// assert_eq!((x / 3.0).item(), 1.0 / 3.0);
        /// ```
        try_div_scalar, DivScalar
    );
    number_method!(
        /// `c / x` for a plain number `c`, one node holding `c` (the `/` operator with
        /// the number on the left). d/dx = -c/x² (computed as `-y/x`, as `div` does).
        /// PyTorch: `torch.reciprocal(x) * c`, or `c / x`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// let x = tape.var(4.0);
        /// assert_eq!(x.try_rdiv_scalar(1.0).unwrap().item(), 0.25);
        /// assert_eq!((2.0 / x).to_string(), "rdiv_scalar(2) = 0.5");
        /// ```
        try_rdiv_scalar, RDivScalar
    );

    /// An operator with a plain number: the scalar fast path inlined, everything else
    /// (tensors, errors) out of line, as the named unary methods.
    #[inline(always)]
    fn with_number(self, op: UnaryOp) -> Var<'t, T> {
        match self.unary_scalar(op) {
            Some(v) => v,
            None => self.unary_or_panic(op),
        }
    }
}

/// The operators with a plain number on the right (`x op c`) and, for `f64` and `f32`,
/// on the left (`c op x`): each records one node ([`UnaryOp`]'s `*Scalar` variants).
macro_rules! number_operator {
    ($trait:ident, $method:ident, $right:ident, $left:ident) => {
        impl<'t, T: Float> $trait<T> for Var<'t, T> {
            type Output = Var<'t, T>;
            #[inline]
            fn $method(self, c: T) -> Var<'t, T> {
                self.with_number(UnaryOp::$right(c.as_f64()))
            }
        }
        impl<'t> $trait<Var<'t, f64>> for f64 {
            type Output = Var<'t, f64>;
            #[inline]
            fn $method(self, x: Var<'t, f64>) -> Var<'t, f64> {
                x.with_number(UnaryOp::$left(self))
            }
        }
        impl<'t> $trait<Var<'t, f32>> for f32 {
            type Output = Var<'t, f32>;
            #[inline]
            fn $method(self, x: Var<'t, f32>) -> Var<'t, f32> {
                x.with_number(UnaryOp::$left(f64::from(self)))
            }
        }
    };
}

// `c + x` and `c · x` are `x + c` and `x · c` (IEEE addition and multiplication
// commute, so the bits are the same).
number_operator!(Add, add, AddScalar, AddScalar);
number_operator!(Sub, sub, SubScalar, RSubScalar);
number_operator!(Mul, mul, MulScalar, MulScalar);
number_operator!(Div, div, DivScalar, RDivScalar);
