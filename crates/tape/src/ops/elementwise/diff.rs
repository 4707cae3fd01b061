//! The element-wise ops' differentiable rules (`*_vjp`, the backward recorded as ops)
//! and tangent rules (`*_jvp`, forward mode). Both are the formulas of
//! [`UnaryOp::derivative_of`] and [`BinaryOp::partials_of`], read on [`Var`]s: the
//! fast rules in `elementwise.rs` read the same formulas on numbers.

use super::super::{Contributions, DiffCtx, add_opt, reduce_to};
use super::number::{constant_derivative, scale};
use crate::Var;
use crate::error::Result;
use crate::op::{BinaryOp, UnaryOp};
use descent_tensor::{Float, broadcast_shapes, kernels};
use smallvec::smallvec;

/// Differentiable backward of a unary element-wise node: `g · f'(x)`, with `f'` from
/// [`UnaryOp::derivative_of`] on the node's operand and value.
pub(crate) fn unary_vjp<'t, T: Float>(
    op: UnaryOp,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(times_derivative(op, cx, g)?)])
}

/// Tangent of a unary element-wise node: `f'(x) · ẋ`.
pub(crate) fn unary_jvp<'t, T: Float>(
    op: UnaryOp,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(t) = t[0] else { return Ok(None) };
    Ok(Some(times_derivative(op, cx, t)?))
}

/// `v · f'(x)` recorded, with `f'` from [`UnaryOp::derivative_of`]. A derivative that
/// is one number everywhere (`neg`, the ops with a plain number) scales `v` in one node
/// (`number::scale`), the same bits as the fast rule's `g · f'`.
fn times_derivative<'t, T: Float>(
    op: UnaryOp,
    cx: &DiffCtx<'t, T>,
    v: Var<'t, T>,
) -> Result<Var<'t, T>> {
    match constant_derivative::<T>(op) {
        Some(k) => scale(v, k),
        None => v.try_mul(op.derivative_of(cx.input(0), cx.out())),
    }
}

/// The error when `maximum`/`minimum` has a tie among its (broadcast) operands: there
/// the function has no derivative (the fast rule's even split is a subgradient).
fn refuse_ties<T: Float>(op: BinaryOp, cx: &DiffCtx<'_, T>) -> Result<()> {
    if !matches!(op, BinaryOp::Maximum | BinaryOp::Minimum) {
        return Ok(());
    }
    let (a, b) = (cx.input(0).value(), cx.input(1).value());
    let shape = broadcast_shapes(a.shape(), b.shape()).unwrap_or_default();
    let mut tie = None;
    kernels::for_each_broadcast(&shape, a.shape(), b.shape(), |o, i, j| {
        if tie.is_none() && a.data()[i] == b.data()[j] {
            tie = Some(o);
        }
    });
    match tie {
        Some(o) => Err(cx.not_differentiable(format!(
            "its operands are equal at output element {o}, where {} has no derivative",
            op.name()
        ))),
        None => Ok(()),
    }
}

/// Differentiable backward of a binary element-wise node: `g` times each partial of
/// [`BinaryOp::partials_of`], summed back over broadcast axes. `add` and `sub` pass `±g`
/// on without multiplying by a constant 1.
pub(crate) fn binary_vjp<'t, T: Float>(
    op: BinaryOp,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    refuse_ties(op, cx)?;
    let terms: [Option<Var<'t, T>>; 2] = match op {
        BinaryOp::Add => [Some(g), Some(g)],
        BinaryOp::Sub => [Some(g), cx.needs(1).then(|| -g)],
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Maximum | BinaryOp::Minimum => {
            let (a, b) = (cx.input(0), cx.input(1));
            let (da, db) = op.partials_of(a, b, cx.out());
            [
                if cx.needs(0) {
                    Some(g.try_mul(da)?)
                } else {
                    None
                },
                if cx.needs(1) {
                    Some(g.try_mul(db)?)
                } else {
                    None
                },
            ]
        }
    };
    let mut out = Contributions::new();
    for (side, term) in terms.into_iter().enumerate() {
        out.push(match term {
            Some(t) if cx.needs(side) => Some(reduce_to(t, &cx.shape(side))?),
            _ => None,
        });
    }
    Ok(out)
}

/// Tangent of a binary element-wise node: `∂y/∂a · ȧ + ∂y/∂b · ḃ`, broadcast to the
/// output's shape.
pub(crate) fn binary_jvp<'t, T: Float>(
    op: BinaryOp,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    refuse_ties(op, cx)?;
    let sum = match op {
        BinaryOp::Add => add_opt(t[0], t[1])?,
        BinaryOp::Sub => add_opt(t[0], t[1].map(|t| -t))?,
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Maximum | BinaryOp::Minimum => {
            let (a, b) = (cx.input(0), cx.input(1));
            let (da, db) = op.partials_of(a, b, cx.out());
            let ta = t[0].map(|t| t.try_mul(da)).transpose()?;
            let tb = t[1].map(|t| t.try_mul(db)).transpose()?;
            add_opt(ta, tb)?
        }
    };
    let out_shape = cx.out_shape();
    match sum {
        Some(s) if s.shape() != out_shape => Ok(Some(s.try_broadcast_to(&out_shape)?)),
        s => Ok(s),
    }
}
