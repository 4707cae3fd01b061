//! Ops that choose each element from one of two sources: `where_cond` (and
//! `masked_fill` on it) and `clamp`, with their three rules side by side. The condition
//! of `where_cond` is data, not an operand: it lives in a tape slot as 0/1 integers and no
//! gradient flows to it. `clamp`'s bounds live in a slot too (as the bits of two `f64`s),
//! and its recorded rules are `where_cond`s of a mask read from the input.

use super::elementwise::write_or_add;
use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, reduce_to};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::kernels::{for_each_broadcast, sum_to_shape_acc};
use descent_tensor::{Float, Shape, ShapeDisplay, Tensor, View, broadcast_shapes, numel};
use smallvec::smallvec;

impl<'t, T: Float> Var<'t, T> {
    /// Element-wise choice: `self` where `cond` is 1, `other` where it is 0, the three
    /// broadcast NumPy-style to a common shape. `out[i] = cond[i] ? self[i] : other[i]`.
    /// Backward: `∂out/∂self = cond`, `∂out/∂other = 1 - cond` (each summed back over
    /// the axes broadcasting stretched); `cond` is data and gets no gradient. A
    /// predicate result is a mask: `x.value().map(|v| if v > 0.0 { 1.0 } else { 0.0 })`.
    /// PyTorch: `torch.where(cond, self, other)` (named `where_cond` here because
    /// `where` is a Rust keyword).
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let a = tape.var(Tensor::from([1.0, 2.0, 3.0]));
    /// let b = tape.var(Tensor::from([10.0, 20.0, 30.0]));
    /// let y = a.where_cond(&Tensor::from([1.0, 0.0, 1.0]), b);
    /// assert_eq!(y.value().data(), &[1.0, 20.0, 3.0]);
    /// let grads = y.sum().backward();
    /// assert_eq!(grads.wrt(a).data(), &[1.0, 0.0, 1.0]);
    /// assert_eq!(grads.wrt(b).data(), &[0.0, 1.0, 0.0]);
    /// ```
    pub fn where_cond(self, cond: &Tensor<T>, other: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_where_cond(cond, other))
    }

    /// The fallible form of [`Var::where_cond`]: an error naming the op, the shapes and
    /// the nodes when `cond`, `self` and `other` do not broadcast together, or when
    /// `cond` holds a value other than 0 or 1.
    pub fn try_where_cond(self, cond: &Tensor<T>, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.check("where_cond", &self)?;
        self.tape.check("where_cond", &other)?;
        let slot = self.push_mask("where_cond", cond)?;
        self.where_slot(slot, other)
    }

    /// `value` where `mask` is 1, `self` elsewhere: `where_cond(mask, value, self)`.
    /// Backward: the gradient passes to `self` where `mask` is 0 and is cut where it is
    /// 1. PyTorch: `self.masked_fill(mask, value)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([1.0, 2.0, 3.0]));
    /// let y = x.masked_fill(&Tensor::from([0.0, 1.0, 0.0]), -1.0);
    /// assert_eq!(y.value().data(), &[1.0, -1.0, 3.0]);
    /// ```
    pub fn masked_fill(self, mask: &Tensor<T>, value: f64) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_masked_fill(mask, value))
    }

    /// The fallible form of [`Var::masked_fill`], with the errors of
    /// [`Var::try_where_cond`]; the result has the broadcast shape of `mask` and `self`.
    pub fn try_masked_fill(self, mask: &Tensor<T>, value: f64) -> Result<Var<'t, T>> {
        self.tape.check("masked_fill", &self)?;
        {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            if broadcast_shapes(mask.shape(), shape).is_none() {
                return Err(Error::Shape {
                    op: "masked_fill",
                    reason: format!(
                        "mask {} and self {} cannot be broadcast together",
                        ShapeDisplay(mask.shape()),
                        ShapeDisplay(shape)
                    ),
                    node: inner.node_ref(self.id),
                });
            }
        }
        let slot = self.push_mask("masked_fill", mask)?;
        let fill = self.tape.scalar_constant(T::from_f64(value));
        fill.where_slot(slot, self)
    }

    /// `cond` checked to hold only 0 and 1 and stored in a tape slot.
    fn push_mask(&self, op: &'static str, cond: &Tensor<T>) -> Result<u32> {
        let mut mask = Vec::with_capacity(cond.len());
        for (i, &c) in cond.data().iter().enumerate() {
            if c == T::zero() {
                mask.push(0);
            } else if c == T::one() {
                mask.push(1);
            } else {
                let inner = self.tape.inner.borrow();
                return Err(Error::Shape {
                    op,
                    reason: format!(
                        "cond (shape {}) holds {} at flat position {i}; a mask holds 0 or 1",
                        ShapeDisplay(cond.shape()),
                        c.as_f64()
                    ),
                    node: inner.node_ref(self.id),
                });
            }
        }
        let mut inner = self.tape.inner.borrow_mut();
        Ok(Tape::push_indices(&mut inner, cond.shape(), &mask))
    }

    /// Records `where_cond` with a mask already in tape slot `slot` (the recorded rules
    /// reuse the forward's slot).
    pub(crate) fn where_slot(self, slot: u32, other: Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = self.tape;
        tape.record(Op::Where { mask: slot }, &[self, other], |inner, pool| {
            let (a, b) = (inner.view(self.id), inner.view(other.id));
            let ix = &inner.indices[slot as usize];
            let out = broadcast_shapes(&ix.shape, a.shape())
                .and_then(|s| broadcast_shapes(&s, b.shape()))
                .ok_or_else(|| Error::Shapes {
                    op: "where_cond",
                    reason: format!(
                        "cond {}, self {} and other {} cannot be broadcast together",
                        ShapeDisplay(&ix.shape),
                        ShapeDisplay(a.shape()),
                        ShapeDisplay(b.shape())
                    ),
                    nodes: vec![inner.node_ref(self.id), inner.node_ref(other.id)],
                })?;
            let keep = expand_mask(&ix.shape, &ix.data, &out);
            let (ad, bd) = (a.data(), b.data());
            let mut buf = pool.take(numel(&out))?;
            for_each_broadcast(&out, a.shape(), b.shape(), |o, i, j| {
                buf[o] = if keep[o] { ad[i] } else { bd[j] };
            });
            output(&out, buf, pool)
        })
    }

    /// Each element limited to `[min, max]`: `out = min(max(x, min), max)`. Backward:
    /// `∂out/∂x = 1` where `min ≤ x ≤ max` (bounds included, as PyTorch's
    /// `clamp_backward`), 0 outside; a NaN input stays NaN and gets no gradient. Pass
    /// `f64::NEG_INFINITY` or `f64::INFINITY` for a one-sided clamp. PyTorch:
    /// `torch.clamp(x, min, max)`.
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([-2.0, 0.5, 1.0, 3.0]));
    /// let y = x.clamp(-1.0, 1.0);
    /// assert_eq!(y.value().data(), &[-1.0, 0.5, 1.0, 1.0]);
    /// let grads = y.sum().backward();
    /// assert_eq!(grads.wrt(x).data(), &[0.0, 1.0, 1.0, 0.0]); // 1 on the boundary, as PyTorch
    /// assert!(x.try_clamp(1.0, -1.0).is_err());
    /// ```
    pub fn clamp(self, min: f64, max: f64) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_clamp(min, max))
    }

    /// The fallible form of [`Var::clamp`]: an error naming the op and the node when a
    /// bound is NaN or `min > max` (PyTorch then returns `max` everywhere; here it is
    /// taken as a mistake).
    pub fn try_clamp(self, min: f64, max: f64) -> Result<Var<'t, T>> {
        self.tape.check("clamp", &self)?;
        if min.is_nan() || max.is_nan() || min > max {
            let inner = self.tape.inner.borrow();
            return Err(Error::Shape {
                op: "clamp",
                reason: format!(
                    "bounds [{min}, {max}] of an operand of shape {} are not an interval",
                    ShapeDisplay(inner.shape(self.id))
                ),
                node: inner.node_ref(self.id),
            });
        }
        let slot = {
            let mut inner = self.tape.inner.borrow_mut();
            Tape::push_indices(&mut inner, &[4], &encode_bounds(min, max))
        };
        let (lo, hi) = (T::from_f64(min), T::from_f64(max));
        self.tape
            .record(Op::Clamp { bounds: slot }, &[self], |inner, pool| {
                let x = inner.view(self.id);
                let mut buf = pool.take(x.len())?;
                for (y, &v) in buf.iter_mut().zip(x.data()) {
                    *y = clamp_one(v, lo, hi);
                }
                output(x.shape(), buf, pool)
            })
    }
}

/// One element clamped; NaN passes through (both comparisons are false).
#[inline(always)]
fn clamp_one<T: Float>(v: T, lo: T, hi: T) -> T {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// A buffer as the node's value: inline for a 0-d result, as scalar ops keep theirs.
fn output<T: Float>(
    shape: &[usize],
    buf: Vec<T>,
    pool: &mut crate::tape::Pool<T>,
) -> Result<Output<T>> {
    if shape.is_empty() {
        let v = buf[0];
        pool.give(buf);
        return Ok(Output::Scalar(v));
    }
    Ok(Output::Tensor(Tensor::new(shape, buf)?))
}

/// The mask (shape `shape`, 0/1 data) broadcast to `out`, as booleans.
fn expand_mask(shape: &[usize], data: &[usize], out: &[usize]) -> Vec<bool> {
    let mut keep = vec![false; numel(out)];
    for_each_broadcast(out, shape, shape, |o, i, _| keep[o] = data[i] != 0);
    keep
}

/// `min` and `max` as four 32-bit halves (a slot holds `usize`s, at least 32 bits).
fn encode_bounds(min: f64, max: f64) -> [usize; 4] {
    let (a, b) = (min.to_bits(), max.to_bits());
    [
        (a >> 32) as usize,
        (a & 0xffff_ffff) as usize,
        (b >> 32) as usize,
        (b & 0xffff_ffff) as usize,
    ]
}

/// The bounds [`encode_bounds`] stored.
pub(crate) fn decode_bounds(data: &[usize]) -> (f64, f64) {
    let word = |hi: usize, lo: usize| f64::from_bits(((hi as u64) << 32) | lo as u64);
    (word(data[0], data[1]), word(data[2], data[3]))
}

/// Backward of `where_cond`: `g` to `self` where the mask is 1, to `other` where it is
/// 0, each summed down to its operand's shape.
pub(crate) fn where_backward<T: Float, S: GradSink<T>>(
    mask: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let (ms, md) = cx.indices(mask);
    let out = cx.g.shape();
    let g = cx.g.data();
    let keep = expand_mask(ms, md, out);
    for side in 0..2 {
        if !cx.needs(side) {
            continue;
        }
        let own = cx.input(side).shape();
        let picked = |o: usize| keep[o] == (side == 0);
        if own == out {
            let grad = sink.grad_mut(cx.parent(side));
            for (o, d) in grad.iter_mut().enumerate() {
                if picked(o) {
                    *d += g[o];
                }
            }
        } else {
            let masked: Vec<T> = (0..g.len())
                .map(|o| if picked(o) { g[o] } else { T::zero() })
                .collect();
            sum_to_shape_acc(View::new(out, &masked), own, sink.grad_mut(cx.parent(side)));
        }
    }
}

/// Differentiable backward of `where_cond`: `where(cond, g, 0)` and `where(cond, 0, g)`,
/// recorded with the forward's mask, summed down to each operand's shape.
pub(crate) fn where_vjp<'t, T: Float>(
    mask: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let zero = cx.tape.scalar_constant(T::zero());
    let mut out: Contributions<'t, T> = smallvec![None, None];
    if cx.needs(0) {
        out[0] = Some(reduce_to(g.where_slot(mask, zero)?, &cx.shape(0))?);
    }
    if cx.needs(1) {
        out[1] = Some(reduce_to(zero.where_slot(mask, g)?, &cx.shape(1))?);
    }
    Ok(out)
}

/// Tangent of `where_cond` (linear in both operands): `where(cond, ȧ, ḃ)`, a zero
/// standing in for a missing tangent, broadcast to the node's shape.
pub(crate) fn where_jvp<'t, T: Float>(
    mask: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let zero = cx.tape.scalar_constant(T::zero());
    let ta = t[0].unwrap_or(zero);
    let tb = t[1].unwrap_or(zero);
    let y = ta.where_slot(mask, tb)?;
    let out = cx.out_shape();
    Ok(Some(if y.shape() == out {
        y
    } else {
        y.try_broadcast_to(&out)?
    }))
}

/// Backward of `clamp`: `g` where `min ≤ x ≤ max`, nothing elsewhere.
pub(crate) fn clamp_backward<T: Float, S: GradSink<T>>(
    bounds: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if !cx.needs(0) {
        return;
    }
    let (lo, hi) = bounds_of(cx.indices(bounds).1);
    let (grad, fresh) = sink.grad_for_write(cx.parent(0));
    write_or_add(
        grad,
        fresh,
        [cx.g.data(), cx.input(0).data()],
        #[inline(always)]
        move |[g, x]| if lo <= x && x <= hi { g } else { T::zero() },
    );
}

/// The bounds of a `clamp` slot in `T`.
fn bounds_of<T: Float>(data: &[usize]) -> (T, T) {
    let (lo, hi) = decode_bounds(data);
    (T::from_f64(lo), T::from_f64(hi))
}

/// The 0/1 mask of `min ≤ x ≤ max` over the operand's value, in a new slot: the
/// derivative of `clamp`, constant in `x` (its own derivative is zero almost
/// everywhere).
fn clamp_mask<T: Float>(bounds: u32, cx: &DiffCtx<'_, T>) -> u32 {
    let mut inner = cx.tape.inner.borrow_mut();
    let (lo, hi) = bounds_of::<T>(&inner.indices[bounds as usize].data);
    let x = inner.view(cx.parents[0]);
    let shape: Shape = x.shape().into();
    let mask: Vec<usize> = x
        .data()
        .iter()
        .map(|&v| usize::from(lo <= v && v <= hi))
        .collect();
    Tape::push_indices(&mut inner, &shape, &mask)
}

/// Differentiable backward of `clamp`: `where(min ≤ x ≤ max, g, 0)`.
pub(crate) fn clamp_vjp<'t, T: Float>(
    bounds: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let slot = clamp_mask(bounds, cx);
    let zero = cx.tape.scalar_constant(T::zero());
    Ok(smallvec![Some(g.where_slot(slot, zero)?)])
}

/// Tangent of `clamp`: `where(min ≤ x ≤ max, ẋ, 0)`.
pub(crate) fn clamp_jvp<'t, T: Float>(
    bounds: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(tx) = t[0] else { return Ok(None) };
    let slot = clamp_mask(bounds, cx);
    let zero = cx.tape.scalar_constant(T::zero());
    Ok(Some(tx.where_slot(slot, zero)?))
}
