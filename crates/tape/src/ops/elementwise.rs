//! Element-wise arithmetic and math functions: forward and backward side by side.
//!
//! Every element-wise op is defined once on numbers: [`UnaryOp::apply`] with
//! [`UnaryOp::derivative`], and [`BinaryOp::apply`] with [`BinaryOp::partials`]. Scalar
//! nodes use those directly; tensor nodes map them over elements, broadcasting binary
//! operands NumPy-style and summing gradients back over broadcast axes.

use super::{BackwardCtx, GradSink, Number, Op, activation};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Meta, Output};

// The enums are data, defined with `Op` in `src/op.rs`; their numbers (`apply`,
// `derivative`, `partials`) are here, beside the rules that use them. Re-exported so
// that `descent_tape::ops::elementwise::UnaryOp` keeps working.
pub use crate::op::{BinaryOp, UnaryOp};
use descent_tensor::{
    Float, TRANSCENDENTAL_COST, Tensor, broadcast_shapes, for_each_block, for_each_block_at_cost,
    kernels, numel,
};
use fixed::{with_fixed_binary, with_fixed_unary};

mod broadcast_rows;
mod diff;
mod fixed;
mod number;
mod scalar;

pub(crate) use diff::{binary_jvp, binary_vjp, unary_jvp, unary_vjp};
pub use scalar::scalar_backward;

impl UnaryOp {
    /// The function itself.
    // Always inlined: `with_fixed_unary!` and `with_fixed_binary!` rely on the match
    // folding away.
    #[inline(always)]
    pub fn apply<T: Float>(self, x: T) -> T {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::PowF(p) => x.powf(T::from_f64(p)),
            UnaryOp::PowI(n) => x.powi(n),
            UnaryOp::Exp => x.kernel_exp(),
            UnaryOp::Ln => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Tanh => x.kernel_tanh(),
            UnaryOp::Sinh => x.sinh(),
            UnaryOp::Cosh => x.cosh(),
            UnaryOp::Sigmoid => activation::sigmoid(x),
            UnaryOp::Relu => activation::relu(x),
            UnaryOp::LeakyRelu(a) => activation::leaky_relu(x, T::from_f64(a)),
            UnaryOp::Gelu => activation::gelu(x),
            UnaryOp::Softplus => activation::softplus(x),
            UnaryOp::AddScalar(c) => x + T::from_f64(c),
            UnaryOp::SubScalar(c) => x - T::from_f64(c),
            UnaryOp::RSubScalar(c) => T::from_f64(c) - x,
            UnaryOp::MulScalar(c) => x * T::from_f64(c),
            UnaryOp::DivScalar(c) => x / T::from_f64(c),
            UnaryOp::RDivScalar(c) => T::from_f64(c) / x,
        }
    }

    /// What an element costs, in elements of a sum, for splitting a large loop across
    /// rayon's pool ([`for_each_block_at_cost`]): [`TRANSCENDENTAL_COST`] for the
    /// functions that evaluate an exponential, a logarithm or a trigonometric function,
    /// 1 for the rest.
    ///
    /// ```
    /// use descent_tape::ops::elementwise::UnaryOp;
    /// use descent_tensor::TRANSCENDENTAL_COST;
    /// assert_eq!(UnaryOp::Tanh.cost(), TRANSCENDENTAL_COST);
    /// assert_eq!(UnaryOp::MulScalar(0.5).cost(), 1);
    /// ```
    #[inline(always)]
    pub fn cost(self) -> usize {
        match self {
            UnaryOp::PowF(_)
            | UnaryOp::Exp
            | UnaryOp::Ln
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Sigmoid
            | UnaryOp::Gelu
            | UnaryOp::Softplus => TRANSCENDENTAL_COST,
            UnaryOp::Neg
            | UnaryOp::PowI(_)
            | UnaryOp::Sqrt
            | UnaryOp::Abs
            | UnaryOp::Relu
            | UnaryOp::LeakyRelu(_)
            | UnaryOp::AddScalar(_)
            | UnaryOp::SubScalar(_)
            | UnaryOp::RSubScalar(_)
            | UnaryOp::MulScalar(_)
            | UnaryOp::DivScalar(_)
            | UnaryOp::RDivScalar(_) => 1,
        }
    }

    /// `dy/dx` at input `x`, where `y = self.apply(x)`: [`UnaryOp::derivative_of`] on
    /// numbers, the fast first-order rule's factor.
    // Always inlined: `with_fixed_unary!` and `with_fixed_binary!` rely on the match
    // folding away.
    #[inline(always)]
    pub fn derivative<T: Float>(self, x: T, y: T) -> T {
        self.derivative_of(x, y)
    }

    /// `dy/dx` at input `x` with output `y`, written once over any [`Number`]: on plain
    /// numbers it computes the derivative (the fast rule), on [`Var`]s it records it,
    /// so that the differentiable rule (`unary_vjp`) and the tangent rule
    /// (`unary_jvp`) are this same formula. Kinks (`abs`, `relu`, `leaky_relu`) are
    /// steps ([`Number::step`]): their derivative is a constant whose own derivative
    /// is 0, as in PyTorch.
    ///
    /// ```
    /// use descent_tape::ops::UnaryOp;
    /// assert_eq!(UnaryOp::Sin.derivative_of(0.0f64, 0.0), 1.0);
    /// ```
    #[inline(always)]
    pub fn derivative_of<N: Number>(self, x: N, y: N) -> N {
        match self {
            UnaryOp::Neg => x.lit(-1.0),
            // p·x^(p-1); a zero exponent is a constant whose derivative is 0 everywhere,
            // including x = 0 where the formula would give 0·∞.
            UnaryOp::PowF(0.0) => x.lit(0.0),
            UnaryOp::PowF(p) => x.lit(p) * x.powf(p - 1.0),
            UnaryOp::PowI(0) => x.lit(0.0),
            // n·x^(n-1); for n = i32::MIN, n - 1 does not fit in an i32: x^n / x.
            UnaryOp::PowI(n) => {
                x.lit(n as f64)
                    * match n.checked_sub(1) {
                        Some(m) => x.powi(m),
                        None => x.powi(n) / x,
                    }
            }
            UnaryOp::Exp => y,
            UnaryOp::Ln => x.recip(),
            UnaryOp::Sqrt => x.lit(0.5) / y,
            // PyTorch's convention: the subgradient 0 at the kink.
            UnaryOp::Abs => x.step(|x| {
                let (zero, one) = (N::Elem::from_f64(0.0), N::Elem::from_f64(1.0));
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    zero
                }
            }),
            UnaryOp::Sin => x.cos(),
            UnaryOp::Cos => -x.sin(),
            UnaryOp::Tanh => x.lit(1.0) - y * y,
            UnaryOp::Sinh => x.cosh(),
            UnaryOp::Cosh => x.sinh(),
            UnaryOp::Sigmoid => y * (x.lit(1.0) - y),
            UnaryOp::Relu => x.step(activation::relu_derivative),
            UnaryOp::LeakyRelu(a) => {
                x.step(move |x| activation::leaky_relu_derivative(x, N::Elem::from_f64(a)))
            }
            UnaryOp::Gelu => activation::gelu_derivative_of(x),
            UnaryOp::Softplus => x.sigmoid(),
            // Constant factors: `number::constant_derivative` reads them from here.
            UnaryOp::AddScalar(_) | UnaryOp::SubScalar(_) => x.lit(1.0),
            UnaryOp::RSubScalar(_) => x.lit(-1.0),
            // `c` came from an element, so it is exact in the element type.
            UnaryOp::MulScalar(c) => x.lit(c),
            // 1/c rounded to the element type, as `div`'s first partial `b.recip()`.
            UnaryOp::DivScalar(c) => {
                let one = N::Elem::from_f64(1.0);
                x.lit((one / N::Elem::from_f64(c)).as_f64())
            }
            // d(c/x)/dx = -c/x² = -y/x, as `div`'s second partial.
            UnaryOp::RDivScalar(_) => -y / x,
        }
    }
}

impl BinaryOp {
    /// The function itself. `maximum` and `minimum` propagate NaN.
    // Always inlined: `with_fixed_unary!` and `with_fixed_binary!` rely on the match
    // folding away.
    #[inline(always)]
    pub fn apply<T: Float>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => {
                if a.is_nan() || b.is_nan() {
                    T::nan()
                } else {
                    a.max(b)
                }
            }
            BinaryOp::Minimum => {
                if a.is_nan() || b.is_nan() {
                    T::nan()
                } else {
                    a.min(b)
                }
            }
        }
    }

    /// `(∂y/∂a, ∂y/∂b)` at `(a, b)` with output `y`: [`BinaryOp::partials_of`] on
    /// numbers, the fast first-order rule's factors.
    // Always inlined: `with_fixed_unary!` and `with_fixed_binary!` rely on the match
    // folding away.
    #[inline(always)]
    pub fn partials<T: Float>(self, a: T, b: T, y: T) -> (T, T) {
        self.partials_of(a, b, y)
    }

    /// `(∂y/∂a, ∂y/∂b)` written once over any [`Number`], as
    /// [`UnaryOp::derivative_of`]. `maximum`'s and `minimum`'s partials are steps
    /// (selection masks); on a tie the first-order rule splits the gradient evenly, as
    /// PyTorch does, but the derivative does not exist there, so the differentiable and
    /// tangent rules refuse ties ([`Error::NotDifferentiable`]).
    ///
    /// ```
    /// use descent_tape::ops::BinaryOp;
    /// assert_eq!(BinaryOp::Div.partials_of(1.0f64, 2.0, 0.5), (0.5, -0.25));
    /// ```
    #[inline(always)]
    pub fn partials_of<N: Number>(self, a: N, b: N, y: N) -> (N, N) {
        match self {
            BinaryOp::Add => (a.lit(1.0), a.lit(1.0)),
            BinaryOp::Sub => (a.lit(1.0), a.lit(-1.0)),
            BinaryOp::Mul => (b, a),
            BinaryOp::Div => (b.recip(), -y / b),
            // The first operand's share: 1 where it is selected, 0 where the other is,
            // and on a tie one half, PyTorch's even split; the second's is 1 minus it
            // (exactly 0, 1 or 1/2). NaN selects the second, as before.
            BinaryOp::Maximum => {
                let first = a.step2(b, |a, b| {
                    let one = N::Elem::from_f64(1.0);
                    if a == b {
                        N::Elem::from_f64(0.5)
                    } else if a > b {
                        one
                    } else {
                        N::Elem::from_f64(0.0)
                    }
                });
                (first, a.lit(1.0) - first)
            }
            BinaryOp::Minimum => {
                let first = a.step2(b, |a, b| {
                    let one = N::Elem::from_f64(1.0);
                    if a == b {
                        N::Elem::from_f64(0.5)
                    } else if a < b {
                        one
                    } else {
                        N::Elem::from_f64(0.0)
                    }
                });
                (first, a.lit(1.0) - first)
            }
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Records an element-wise function of this node.
    #[inline]
    pub(crate) fn unary(self, op: UnaryOp) -> Result<Var<'t, T>> {
        match self.unary_scalar(op) {
            Some(v) => Ok(v),
            None => self.unary_general(op),
        }
    }

    /// The scalar fast path of [`Var::unary`]: one borrow, no views, no allocation.
    /// `None` for a tensor operand or a stale handle, which the general path handles
    /// (and reports).
    #[inline(always)]
    pub(crate) fn unary_scalar(self, op: UnaryOp) -> Option<Var<'t, T>> {
        let tape = self.tape;
        if self.generation != tape.generation() {
            return None;
        }
        let mut inner = tape.inner.borrow_mut();
        let (m, x) = {
            let node = &inner.nodes[self.id.index()];
            (node.meta, node.scalar)
        };
        // Tensors, and anything recorded under `no_grad` or with anomaly detection
        // on, take the general path.
        if m.slot().is_some() || !tape.plain_mode() {
            return None;
        }
        let y = op.apply(x);
        let id = inner.push(Op::Unary(op), [self.id, self.id], y, Meta::scalar_of(m, m));
        // The generation was checked above; the handle carries it on.
        Some(Var {
            id,
            generation: self.generation,
            tape,
        })
    }

    #[inline(never)]
    fn unary_general(self, op: UnaryOp) -> Result<Var<'t, T>> {
        let tape = self.tape;
        tape.record(Op::Unary(op), &[self], |inner, pool| {
            let x = inner.view(self.id);
            let mut buf = pool.take(x.len())?;
            let xd = x.data();
            with_fixed_unary!(op, |OP| {
                for_each_block_at_cost(
                    &mut buf,
                    1,
                    OP.cost(),
                    #[inline(always)]
                    move |offset, block| {
                        for (y, &v) in block.iter_mut().zip(&xd[offset..]) {
                            *y = OP.apply(v);
                        }
                    },
                )
            });
            Ok(Output::Tensor(Tensor::new(x.shape(), buf)?))
        })
    }

    /// Records an element-wise function of this node and `rhs`, broadcast.
    #[inline]
    pub(crate) fn binary(self, op: BinaryOp, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        match self.binary_scalar(op, rhs) {
            Some(v) => Ok(v),
            None => self.binary_general(op, rhs),
        }
    }

    /// The scalar fast path of [`Var::binary`], as [`Var::unary_scalar`]; a handle from
    /// another tape or generation falls through to the general path and its error.
    #[inline(always)]
    pub(crate) fn binary_scalar(self, op: BinaryOp, rhs: Var<'t, T>) -> Option<Var<'t, T>> {
        let tape = self.tape;
        if !std::ptr::eq(tape, rhs.tape)
            || self.generation != tape.generation()
            || rhs.generation != self.generation
        {
            return None;
        }
        let mut inner = tape.inner.borrow_mut();
        let (ma, a) = {
            let node = &inner.nodes[self.id.index()];
            (node.meta, node.scalar)
        };
        let (mb, b) = {
            let node = &inner.nodes[rhs.id.index()];
            (node.meta, node.scalar)
        };
        if ma.slot().is_some() || mb.slot().is_some() || !tape.plain_mode() {
            return None;
        }
        let y = op.apply(a, b);
        let id = inner.push(
            Op::Binary(op),
            [self.id, rhs.id],
            y,
            Meta::scalar_of(ma, mb),
        );
        Some(Var {
            id,
            generation: self.generation,
            tape,
        })
    }

    #[inline(never)]
    fn binary_general(self, op: BinaryOp, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = self.tape;
        tape.record(Op::Binary(op), &[self, rhs], |inner, pool| {
            let (a, b) = (inner.view(self.id), inner.view(rhs.id));
            let shape = broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| Error::Broadcast {
                op: op.name(),
                lhs: inner.node_ref(self.id),
                rhs: inner.node_ref(rhs.id),
            })?;
            let mut buf = pool.take(numel(&shape))?;
            with_fixed_binary!(op, |OP| {
                kernels::zip_broadcast(
                    a,
                    b,
                    &shape,
                    &mut buf,
                    #[inline(always)]
                    |x, y| OP.apply(x, y),
                )
            });
            Ok(Output::Tensor(Tensor::new(&shape, buf)?))
        })
    }
}

/// Backward of a unary element-wise node: `ga += g · f'(x)`.
pub(crate) fn unary_backward<T: Float, S: GradSink<T>>(
    op: UnaryOp,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if !cx.needs(0) {
        return;
    }
    let x = cx.input(0);
    let (ga, fresh) = sink.grad_for_write(cx.parent(0));
    let (g, x, y) = (cx.g.data(), x.data(), cx.out.data());
    with_fixed_unary!(op, |OP| {
        write_or_add(
            ga,
            fresh,
            [g, x, y],
            #[inline(always)]
            move |[g, x, y]| g * OP.derivative(x, y),
        )
    });
}

/// Adds `term` of the `K` inputs' elements `i` into element `i` of a gradient buffer,
/// or on the first reach (`fresh`, the buffer not zeroed) writes `0 + term`: the same
/// bits as adding into zeros (`0 + -0` is `+0`), without the pass that zeroes the
/// buffer. Indexed over slices cut to the block's length, so that LLVM drops the
/// bounds checks and vectorises; not zipped iterators: for GELU, LLVM kept a zipped
/// iterator's `next` out of line, compiled for the baseline instruction set and
/// scalar (40% of a large element-wise backward). Large buffers are split across
/// rayon's pool ([`for_each_block`]).
#[inline(always)]
pub(super) fn write_or_add<T: Float, const K: usize>(
    grad: &mut [T],
    fresh: bool,
    inputs: [&[T]; K],
    term: impl Fn([T; K]) -> T + Sync,
) {
    for_each_block(
        grad,
        1,
        #[inline(always)]
        |offset, block| {
            let len = block.len();
            let ins: [&[T]; K] = inputs.map(|x| &x[offset..offset + len]);
            if fresh {
                for (i, d) in block.iter_mut().enumerate() {
                    *d = T::zero() + term(std::array::from_fn(|k| ins[k][i]));
                }
            } else {
                for (i, d) in block.iter_mut().enumerate() {
                    *d += term(std::array::from_fn(|k| ins[k][i]));
                }
            }
        },
    )
}

/// Backward of a binary element-wise node: each operand's gradient is `g` times its
/// partial, summed over the axes broadcasting stretched it along.
pub(crate) fn binary_backward<T: Float, S: GradSink<T>>(
    op: BinaryOp,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let (a, b) = (cx.input(0), cx.input(1));
    let out_shape = cx.out.shape();
    // Fast paths for the common layer ops: a sum or difference passes `±g` through
    // (summed down over broadcast axes, as for a bias), and a same-shape product
    // scales `g` by the other operand; neither needs the per-element broadcast walk.
    match op {
        BinaryOp::Add | BinaryOp::Sub => {
            for side in 0..2 {
                if cx.needs(side) {
                    let sign = if side == 1 && op == BinaryOp::Sub {
                        -T::one()
                    } else {
                        T::one()
                    };
                    let own = if side == 0 { a.shape() } else { b.shape() };
                    if own == out_shape {
                        let (grad, fresh) = sink.grad_for_write(cx.parent(side));
                        write_or_add(
                            grad,
                            fresh,
                            [cx.g.data()],
                            #[inline(always)]
                            move |[g]| sign * g,
                        );
                    } else {
                        kernels::sum_to_shape_scaled_acc(
                            cx.g,
                            own,
                            sign,
                            sink.grad_mut(cx.parent(side)),
                        );
                    }
                }
            }
            return;
        }
        BinaryOp::Mul if a.shape() == out_shape && b.shape() == out_shape => {
            for side in 0..2 {
                if cx.needs(side) {
                    let other = if side == 0 { b.data() } else { a.data() };
                    let (grad, fresh) = sink.grad_for_write(cx.parent(side));
                    write_or_add(
                        grad,
                        fresh,
                        [cx.g.data(), other],
                        #[inline(always)]
                        |[g, o]| g * o,
                    );
                }
            }
            return;
        }
        _ => {}
    }
    // Every other case, over rows of the broadcast: the op fixed, so its partials
    // compile into the loops.
    with_fixed_binary!(op, |OP| broadcast_rows::backward(cx, sink, |a, b, y| OP
        .partials(a, b, y)));
}

macro_rules! unary_method {
    ($(#[$doc:meta])* $name:ident, $try_name:ident, $op:expr) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(self) -> Var<'t, T> {
            // The scalar fast path inlined; everything else (tensors, errors) out of line.
            match self.unary_scalar($op) {
                Some(v) => v,
                None => self.unary_or_panic($op),
            }
        }
        #[doc = concat!("The fallible form of [`Var::", stringify!($name), "`]: an error instead of a panic for a stale or foreign handle.")]
        pub fn $try_name(self) -> Result<Var<'t, T>> {
            self.unary($op)
        }
    };
}

/// The fallible form of an op whose panicking form is an operator (`+`, `-`, ...).
/// The fallible form of an op whose panicking form is an operator (unary `-`).
macro_rules! unary_try_method {
    ($(#[$doc:meta])* $try_name:ident, $op:expr) => {
        $(#[$doc])*
        pub fn $try_name(self) -> Result<Var<'t, T>> {
            self.unary($op)
        }
    };
}

macro_rules! binary_try_method {
    ($(#[$doc:meta])* $try_name:ident, $op:expr) => {
        $(#[$doc])*
        pub fn $try_name(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
            self.binary($op, rhs)
        }
    };
}

macro_rules! binary_method {
    ($(#[$doc:meta])* $name:ident, $try_name:ident, $op:expr) => {
        $(#[$doc])*
        pub fn $name(self, rhs: Var<'t, T>) -> Var<'t, T> {
            Var::unwrap_or_panic(self.$try_name(rhs))
        }
        #[doc = concat!("The fallible form of [`Var::", stringify!($name), "`]: an error naming the shapes when they do not broadcast.")]
        pub fn $try_name(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
            self.binary($op, rhs)
        }
    };
}

impl<'t, T: Float> Var<'t, T> {
    binary_try_method!(
        /// `a + b`, broadcast, as a fallible call; the `+` operator (with handles or plain
        /// numbers on either side) panics with the same message. ∂/∂a = 1, ∂/∂b = 1.
        /// PyTorch: `torch.add`.
        ///
        /// ```
        /// use descent_tape::Tape;
        /// use descent_tensor::Tensor;
        /// let tape = Tape::<f64>::new();
        /// let m = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
        /// let row = tape.var(Tensor::from([10.0, 20.0]));
        /// assert_eq!((m + row).value().data(), &[11.0, 22.0, 13.0, 24.0]);
        /// let bad = tape.var(Tensor::from([1.0, 2.0, 3.0]));
        /// assert!(m.try_add(bad).unwrap_err().to_string().contains("[2, 2] and [3]"));
        /// ```
        try_add, BinaryOp::Add
    );
    binary_try_method!(
        /// `a - b`, broadcast, as a fallible call; the `-` operator panics with the same
        /// message. ∂/∂a = 1, ∂/∂b = -1. PyTorch: `torch.sub`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!((tape.var(5.0) - tape.var(2.0)).item(), 3.0);
        /// ```
        try_sub, BinaryOp::Sub
    );
    binary_try_method!(
        /// `a * b`, broadcast, as a fallible call; the `*` operator panics with the same
        /// message. ∂/∂a = b, ∂/∂b = a. PyTorch: `torch.mul`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!((tape.var(5.0) * tape.var(2.0)).item(), 10.0);
        /// ```
        try_mul, BinaryOp::Mul
    );
    binary_try_method!(
        /// `a / b`, broadcast, as a fallible call; the `/` operator panics with the same
        /// message. ∂/∂a = 1/b, ∂/∂b = -a/b². PyTorch: `torch.div`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!((tape.var(5.0) / tape.var(2.0)).item(), 2.5);
        /// ```
        try_div, BinaryOp::Div
    );
    binary_method!(
        /// Element-wise `max(a, b)`, broadcast. The gradient goes to the larger operand,
        /// split evenly on a tie; NaN propagates. PyTorch: `torch.maximum`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(5.0).maximum(tape.var(2.0)).item(), 5.0);
        /// ```
        maximum, try_maximum, BinaryOp::Maximum
    );
    binary_method!(
        /// Element-wise `min(a, b)`, broadcast. The gradient goes to the smaller operand,
        /// split evenly on a tie; NaN propagates. PyTorch: `torch.minimum`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(5.0).minimum(tape.var(2.0)).item(), 2.0);
        /// ```
        minimum, try_minimum, BinaryOp::Minimum
    );
    unary_try_method!(
        /// `-x` as a fallible call; unary `-` panics with the same message. d/dx = -1.
        /// PyTorch: `torch.neg`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!((-tape.var(2.0)).item(), -2.0);
        /// ```
        try_neg, UnaryOp::Neg
    );
    unary_method!(
        /// `eˣ`. d/dx = eˣ (the output, which backward reuses). PyTorch: `torch.exp`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(0.0).exp().item(), 1.0);
        /// ```
        exp, try_exp, UnaryOp::Exp
    );
    unary_method!(
        /// Natural logarithm `ln x`. d/dx = 1/x. NaN below 0, -∞ at 0. PyTorch: `torch.log`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(1.0).ln().item(), 0.0);
        /// ```
        ln, try_ln, UnaryOp::Ln
    );
    unary_method!(
        /// `√x`. d/dx = 1/(2√x). PyTorch: `torch.sqrt`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(9.0).sqrt().item(), 3.0);
        /// ```
        sqrt, try_sqrt, UnaryOp::Sqrt
    );
    unary_method!(
        /// `|x|`. d/dx = sign(x), and 0 at 0 (PyTorch's choice). PyTorch: `torch.abs`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(-2.0).abs().item(), 2.0);
        /// ```
        abs, try_abs, UnaryOp::Abs
    );
    unary_method!(
        /// `sin x`. d/dx = cos x. PyTorch: `torch.sin`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(0.0).sin().item(), 0.0);
        /// ```
        sin, try_sin, UnaryOp::Sin
    );
    unary_method!(
        /// `cos x`. d/dx = -sin x. PyTorch: `torch.cos`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(0.0).cos().item(), 1.0);
        /// ```
        cos, try_cos, UnaryOp::Cos
    );
    unary_method!(
        /// `tanh x`. d/dx = 1 - tanh²x (from the output). PyTorch: `torch.tanh`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(0.0).tanh().item(), 0.0);
        /// ```
        tanh, try_tanh, UnaryOp::Tanh
    );
    unary_method!(
        /// `sinh x`. d/dx = cosh x. PyTorch: `torch.sinh`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(0.0).sinh().item(), 0.0);
        /// ```
        sinh, try_sinh, UnaryOp::Sinh
    );
    unary_method!(
        /// `cosh x`. d/dx = sinh x. PyTorch: `torch.cosh`.
        ///
        /// ```
        /// let tape = descent_tape::Tape::<f64>::new();
        /// assert_eq!(tape.var(0.0).cosh().item(), 1.0);
        /// ```
        cosh, try_cosh, UnaryOp::Cosh
    );

    /// `xᵖ` for a constant real exponent. d/dx = p·xᵖ⁻¹ (0 when p = 0). PyTorch:
    /// `torch.pow(x, p)`.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(4.0).powf(1.5).item(), 8.0);
    /// ```
    pub fn powf(self, p: f64) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_powf(p))
    }

    /// The fallible form of [`Var::powf`].
    pub fn try_powf(self, p: f64) -> Result<Var<'t, T>> {
        self.unary(UnaryOp::PowF(p))
    }

    /// `xⁿ` for a constant integer exponent. d/dx = n·xⁿ⁻¹ (0 when n = 0). PyTorch:
    /// `torch.pow(x, n)`.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(-2.0).powi(3).item(), -8.0);
    /// ```
    pub fn powi(self, n: i32) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_powi(n))
    }

    /// The fallible form of [`Var::powi`].
    pub fn try_powi(self, n: i32) -> Result<Var<'t, T>> {
        self.unary(UnaryOp::PowI(n))
    }
}
