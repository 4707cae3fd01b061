//! `Var`: the handle a program holds to a node on a tape.

use crate::error::Result;
use crate::op::{BinaryOp, UnaryOp};
use crate::tape::Value;
use crate::{NodeId, Tape};
use descent_tensor::{Float, Shape, Tensor};
use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A handle to a node: `Copy`, tied to its tape by a borrow, and checked against the
/// tape's generation so a handle from before a `reset` is caught.
///
/// Arithmetic operators record ops; they panic on bad operands with the same message
/// the `try_` methods return as an error.
///
/// ```
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let a = tape.var(2.0);
/// let b = tape.var(3.0);
/// let c = (a * b - 1.0) / 2.0 + -a;
/// assert_eq!(c.item(), 0.5);
/// ```
#[derive(Clone, Copy)]
#[must_use = "a `Var` is a handle to a recorded node: an op whose result is unused records work nothing reads"]
pub struct Var<'t, T: Float = f64> {
    pub(crate) id: NodeId,
    pub(crate) generation: u64,
    pub(crate) tape: &'t Tape<T>,
}

impl<'t, T: Float> Var<'t, T> {
    /// The node's id on its tape.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The tape the node is on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The tape generation the handle was made in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Checks that the handle is live: of its tape's current generation. The error names
    /// `op` as the operation that was refused.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        self.tape.check(op, self)
    }

    fn checked(&self, op: &'static str) {
        if let Err(e) = self.tape.check(op, self) {
            panic!("{e}");
        }
    }

    /// The node's value, copied out (a 0-d tensor for a scalar node).
    ///
    /// # Panics
    /// If the handle is stale (recorded before a `reset`).
    pub fn value(&self) -> Tensor<T> {
        self.checked("value");
        self.tape.inner.borrow().view(self.id).to_tensor()
    }

    /// The value of a one-element node (a scalar, or a tensor such as `[1, 1]`).
    ///
    /// # Panics
    /// If the node does not hold exactly one element, or the handle is stale, with the
    /// message [`Var::try_item`] returns as an error.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var([[2.5]]).item(), 2.5);
    /// ```
    #[inline]
    pub fn item(&self) -> T {
        match self.try_item() {
            Ok(v) => v,
            Err(e) => fail(e),
        }
    }

    /// The fallible form of [`Var::item`]: an error naming the op (`item`), the node and
    /// its shape when the node does not hold exactly one element, or for a stale handle.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let m = tape.var(Tensor::<f64>::zeros(&[2, 3]));
    /// assert_eq!(
    ///     m.try_item().unwrap_err().to_string(),
    ///     "item: the value has 6 elements, not one (operand: node 0 (var, shape [2, 3]))"
    /// );
    /// assert_eq!(m.sum().try_item(), Ok(0.0));
    /// ```
    pub fn try_item(&self) -> Result<T> {
        self.validate("item")?;
        let inner = self.tape.inner.borrow();
        match inner.value(self.id) {
            Value::Scalar(v) => Ok(v),
            Value::Tensor(_) => match inner.view(self.id).data() {
                &[v] => Ok(v),
                data => Err(crate::Error::Shape {
                    op: "item",
                    reason: format!("the value has {} elements, not one", data.len()),
                    node: inner.node_ref(self.id),
                }),
            },
        }
    }

    /// The node's shape (`[]` for a scalar node).
    pub fn shape(&self) -> Shape {
        self.checked("shape");
        self.tape.inner.borrow().shape(self.id).into()
    }

    /// Names the node; the name shows in errors, renders and gradient lookups by name.
    ///
    /// ```
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(0.5).named("w");
    /// assert_eq!(tape.read().name(w.id()), Some("w"));
    /// ```
    pub fn named(self, name: &str) -> Self {
        self.checked("named");
        self.tape.set_name(self.id, name);
        self
    }

    /// Registers a gradient hook: during backward, once every contribution to this
    /// node's gradient has arrived, `hook` sees it and may change it in place (scale,
    /// clip, zero, record) before it flows on to the node's operands. The changed value
    /// is also what the gradient store reports for the node. Hooks run in registration
    /// order, are cleared by `reset`, and must not record on the tape.
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(3.0);
    /// let h = (x * x).hook(|g| g.grad.iter_mut().for_each(|v| *v *= 2.0));
    /// let grads = h.backward();
    /// assert_eq!(grads.wrt(h).item(), 2.0);   // the hooked gradient
    /// assert_eq!(grads.wrt(x).item(), 12.0);  // 2 · d(x²)/dx
    /// ```
    pub fn hook(self, hook: impl FnMut(crate::HookGrad<'_, T>) + 'static) -> Self {
        self.checked("hook");
        self.tape.add_hook(self.id, Box::new(hook));
        self
    }

    /// True when gradients flow to this node (it is a variable or depends on one).
    pub fn requires_grad(&self) -> bool {
        self.checked("requires_grad");
        self.tape.inner.borrow().requires_grad(self.id)
    }

    /// The value of an op's fallible form, or a panic with its error's message. The
    /// panic is out of line, so an op's panicking form stays small enough to inline.
    #[inline]
    pub(crate) fn unwrap_or_panic(r: Result<Self>) -> Self {
        match r {
            Ok(v) => v,
            Err(e) => fail(e),
        }
    }

    /// An operator's slow path: anything the scalar fast path declined (tensor
    /// operands, stale or foreign handles, anomalies), recorded or reported in full.
    /// The handles travel as parts and the result as a packed id and generation, all
    /// in registers: a `Var` would go through memory, and the fast path with it.
    #[inline(always)]
    fn binary_or_panic(self, op: BinaryOp, rhs: Var<'t, T>) -> Var<'t, T> {
        let packed = binary_slow(self.tape, self.pack(), op, rhs.tape, rhs.pack());
        Var::unpack(self.tape, packed)
    }

    /// [`Var::binary_or_panic`] for a unary op (the named methods `tanh`, `ln`, ...).
    #[inline(always)]
    pub(crate) fn unary_or_panic(self, op: UnaryOp) -> Var<'t, T> {
        let packed = unary_slow(self.tape, self.pack(), op);
        Var::unpack(self.tape, packed)
    }

    /// The id and generation in one `u128`, which travels in two registers.
    #[inline(always)]
    fn pack(&self) -> u128 {
        u128::from(self.id.0) | u128::from(self.generation) << 64
    }

    #[inline(always)]
    fn unpack(tape: &'t Tape<T>, packed: u128) -> Var<'t, T> {
        Var {
            id: NodeId(packed as u32),
            generation: (packed >> 64) as u64,
            tape,
        }
    }
}

/// [`Var::binary_or_panic`] out of line.
#[cold]
#[inline(never)]
fn binary_slow<'t, T: Float>(
    tape: &'t Tape<T>,
    lhs: u128,
    op: BinaryOp,
    rhs_tape: &'t Tape<T>,
    rhs: u128,
) -> u128 {
    let (lhs, rhs) = (Var::unpack(tape, lhs), Var::unpack(rhs_tape, rhs));
    let out = Var::unwrap_or_panic(lhs.binary(op, rhs));
    debug_assert!(std::ptr::eq(out.tape, tape));
    out.pack()
}

/// [`Var::unary_or_panic`] out of line.
#[cold]
#[inline(never)]
fn unary_slow<T: Float>(tape: &Tape<T>, x: u128, op: UnaryOp) -> u128 {
    let out = Var::unwrap_or_panic(Var::unpack(tape, x).unary(op));
    debug_assert!(std::ptr::eq(out.tape, tape));
    out.pack()
}

/// Panics with an op's error, kept out of the ops' inlined fast paths.
#[cold]
#[inline(never)]
fn fail(e: crate::Error) -> ! {
    panic!("{e}")
}

impl<T: Float> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var(node {}, tape #{}", self.id.index(), self.tape.uid())?;
        if self.generation != self.tape.generation() {
            write!(f, ", stale")?;
        }
        write!(f, ")")
    }
}

/// The node's op and value, e.g. `tanh = 0.7615941559557649`.
impl<T: Float> fmt::Display for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tape.check("display", self).is_err() {
            return write!(f, "<stale handle to node {}>", self.id.index());
        }
        let inner = self.tape.inner.borrow();
        let op = inner.nodes[self.id.index()].op;
        write!(f, "{op} = {}", inner.view(self.id))
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $op:expr) => {
        impl<'t, T: Float> $trait<Var<'t, T>> for Var<'t, T> {
            type Output = Var<'t, T>;
            #[inline]
            fn $method(self, rhs: Var<'t, T>) -> Var<'t, T> {
                match self.binary_scalar($op, rhs) {
                    Some(v) => v,
                    None => self.binary_or_panic($op, rhs),
                }
            }
        }
    };
}

binary_operator!(Add, add, BinaryOp::Add);
binary_operator!(Sub, sub, BinaryOp::Sub);
binary_operator!(Mul, mul, BinaryOp::Mul);
binary_operator!(Div, div, BinaryOp::Div);

impl<'t, T: Float> Neg for Var<'t, T> {
    type Output = Var<'t, T>;
    fn neg(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.unary(UnaryOp::Neg))
    }
}
