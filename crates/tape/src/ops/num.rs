//! [`Number`]: what an element-wise derivative formula needs of its numbers, so that
//! each formula is written once and read two ways.
//!
//! On plain numbers (`f32`, `f64`) a formula computes a derivative's value: the fast
//! first-order rule ([`UnaryOp::derivative`](super::UnaryOp::derivative)) is
//! [`UnaryOp::derivative_of`](super::UnaryOp::derivative_of) on `T`. On [`Var`]s the
//! same formula records ops on the tape: the derivative becomes a node that can be
//! differentiated again (the differentiable rule `*_vjp`) or multiplied by a tangent
//! (the tangent rule `*_jvp`). One formula, two meanings, no copy to drift.
//!
//! ```
//! use descent_tape::ops::{Number, UnaryOp};
//! use descent_tape::Tape;
//! // d/dx tanh x = 1 - tanh²x, on numbers and on the tape.
//! let on_numbers = UnaryOp::Tanh.derivative_of(0.5f64, 0.5f64.tanh());
//! let tape = Tape::<f64>::new();
//! let x = tape.var(0.5);
//! let on_tape = UnaryOp::Tanh.derivative_of(x, x.tanh());
//! assert_eq!(on_tape.item(), on_numbers);
//! ```

use crate::Var;
use descent_tensor::{Float, Tensor, broadcast_shapes, kernels};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Numbers a derivative formula can be written over: plain floats, computed, or
/// [`Var`]s, recorded. Arithmetic comes from the operators; the functions below are the
/// rest of what the element-wise derivatives use.
///
/// On a `Var` the methods record ops (panicking, as the operators do, on a stale
/// handle; with anomaly detection on, a non-finite derivative also panics, naming the
/// op).
pub trait Number:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// The element type.
    type Elem: Float;
    /// The constant `c`, in a form that combines with `self` (a scalar constant node
    /// for a `Var`, broadcast by the op that uses it).
    fn lit(self, c: f64) -> Self;
    /// `eˣ`, as the forward op computes it.
    fn exp(self) -> Self;
    /// `ln x`.
    fn ln(self) -> Self;
    /// `√x`.
    fn sqrt(self) -> Self;
    /// `sin x`.
    fn sin(self) -> Self;
    /// `cos x`.
    fn cos(self) -> Self;
    /// `tanh x`, as the forward op computes it.
    fn tanh(self) -> Self;
    /// `sinh x`.
    fn sinh(self) -> Self;
    /// `cosh x`.
    fn cosh(self) -> Self;
    /// `1/x`.
    fn recip(self) -> Self;
    /// `xᵖ`.
    fn powf(self, p: f64) -> Self;
    /// `xⁿ`.
    fn powi(self, n: i32) -> Self;
    /// `σ(x)`, as the forward op computes it.
    fn sigmoid(self) -> Self;
    /// A function that is constant between kinks (a sign, a step), applied to the
    /// value: on a `Var`, a constant node (its derivative is 0 wherever it exists).
    fn step(self, f: impl Fn(Self::Elem) -> Self::Elem) -> Self;
    /// As [`Number::step`], of two broadcast operands.
    fn step2(self, other: Self, f: impl Fn(Self::Elem, Self::Elem) -> Self::Elem) -> Self;
}

impl<T: Float> Number for T {
    type Elem = T;
    #[inline(always)]
    fn lit(self, c: f64) -> Self {
        T::from_f64(c)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        self.kernel_exp()
    }
    #[inline(always)]
    fn ln(self) -> Self {
        plain::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        plain::sqrt(self)
    }
    #[inline(always)]
    fn sin(self) -> Self {
        plain::sin(self)
    }
    #[inline(always)]
    fn cos(self) -> Self {
        plain::cos(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        self.kernel_tanh()
    }
    #[inline(always)]
    fn sinh(self) -> Self {
        plain::sinh(self)
    }
    #[inline(always)]
    fn cosh(self) -> Self {
        plain::cosh(self)
    }
    #[inline(always)]
    fn recip(self) -> Self {
        plain::recip(self)
    }
    #[inline(always)]
    fn powf(self, p: f64) -> Self {
        plain::powf(self, T::from_f64(p))
    }
    #[inline(always)]
    fn powi(self, n: i32) -> Self {
        plain::powi(self, n)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        super::activation::sigmoid(self)
    }
    #[inline(always)]
    fn step(self, f: impl Fn(T) -> T) -> Self {
        f(self)
    }
    #[inline(always)]
    fn step2(self, other: Self, f: impl Fn(T, T) -> T) -> Self {
        f(self, other)
    }
}

impl<'t, T: Float> Number for Var<'t, T> {
    type Elem = T;
    fn lit(self, c: f64) -> Self {
        self.tape.scalar_constant(T::from_f64(c))
    }
    fn exp(self) -> Self {
        Var::exp(self)
    }
    fn ln(self) -> Self {
        Var::ln(self)
    }
    fn sqrt(self) -> Self {
        Var::sqrt(self)
    }
    fn sin(self) -> Self {
        Var::sin(self)
    }
    fn cos(self) -> Self {
        Var::cos(self)
    }
    fn tanh(self) -> Self {
        Var::tanh(self)
    }
    fn sinh(self) -> Self {
        Var::sinh(self)
    }
    fn cosh(self) -> Self {
        Var::cosh(self)
    }
    fn recip(self) -> Self {
        // One `rdiv_scalar(1)` node, the same value as `1 / x` with a constant node.
        Var::unwrap_or_panic(self.try_rdiv_scalar(T::one()))
    }
    fn powf(self, p: f64) -> Self {
        Var::powf(self, p)
    }
    fn powi(self, n: i32) -> Self {
        Var::powi(self, n)
    }
    fn sigmoid(self) -> Self {
        Var::sigmoid(self)
    }
    fn step(self, f: impl Fn(T) -> T) -> Self {
        // Straight from the node's buffer: one pass, one allocation.
        let t = {
            let inner = self.tape.inner.borrow();
            let x = inner.view(self.id);
            Tensor::new(x.shape(), x.data().iter().map(|&v| f(v)).collect())
                .expect("as many elements as the node")
        };
        self.tape.constant(t)
    }
    fn step2(self, other: Self, f: impl Fn(T, T) -> T) -> Self {
        let (a, b) = (self.value(), other.value());
        let shape = broadcast_shapes(a.shape(), b.shape())
            .expect("step2 is only called on the operands of a recorded broadcast op");
        let mut buf = vec![T::zero(); descent_tensor::numel(&shape)];
        let (ad, bd) = (a.data(), b.data());
        kernels::for_each_broadcast(&shape, a.shape(), b.shape(), |o, i, j| {
            buf[o] = f(ad[i], bd[j]);
        });
        let t = Tensor::new(&shape, buf).expect("the buffer has the broadcast shape's size");
        self.tape.constant(t)
    }
}

/// The float functions by their plain names, where [`Number`] (whose methods share
/// those names) is not in scope.
mod plain {
    use descent_tensor::Float;
    macro_rules! unary {
        ($($f:ident),*) => {$(
            #[inline(always)]
            pub(super) fn $f<T: Float>(x: T) -> T {
                x.$f()
            }
        )*};
    }
    unary!(ln, sqrt, sin, cos, sinh, cosh, recip);
    #[inline(always)]
    pub(super) fn powf<T: Float>(x: T, p: T) -> T {
        x.powf(p)
    }
    #[inline(always)]
    pub(super) fn powi<T: Float>(x: T, n: i32) -> T {
        x.powi(n)
    }
}
