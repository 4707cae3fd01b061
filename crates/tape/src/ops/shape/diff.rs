//! The shape ops' differentiable rules (`*_vjp`, their backward recorded as ops) and
//! tangent rules (`*_jvp`): each moves a gradient or a tangent with shape ops, so it
//! differentiates again.

use super::super::{Contributions, DiffCtx, reduce_to};
use super::join;
use crate::Var;
use crate::error::Result;
use descent_tensor::Float;
use smallvec::smallvec;

/// Differentiable backward of `transpose`: the same exchange.
pub(crate) fn transpose_vjp<'t, T: Float>(
    a: u32,
    b: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(g.try_transpose(a as isize, b as isize)?)])
}

/// Tangent of `transpose`: the tangent transposed.
pub(crate) fn transpose_jvp<'t, T: Float>(
    a: u32,
    b: u32,
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_transpose(a as isize, b as isize))
        .transpose()
}

/// Differentiable backward of `reshape`: `g` reshaped back.
pub(crate) fn reshape_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(g.try_reshape(&cx.shape(0))?)])
}

/// Tangent of `reshape`: the tangent reshaped.
pub(crate) fn reshape_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_reshape(&cx.out_shape())).transpose()
}

/// Differentiable backward of `broadcast_to`: `g` summed over the stretched axes.
pub(crate) fn broadcast_to_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(reduce_to(g, &cx.shape(0))?)])
}

/// Tangent of `broadcast_to`: the tangent broadcast.
pub(crate) fn broadcast_to_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_broadcast_to(&cx.out_shape()))
        .transpose()
}

/// Differentiable backward of `slice`: `g` between zero blocks along the axis (a
/// `concat`, so it differentiates again).
pub(crate) fn slice_vjp<'t, T: Float>(
    axis: u32,
    start: u32,
    end: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let shape = cx.shape(0);
    let ax = axis as usize;
    let mut parts = Vec::with_capacity(3);
    for (from, to) in [(0, start as usize), (end as usize, shape[ax])] {
        if to > from {
            let mut s = shape.clone();
            s[ax] = to - from;
            parts.push((from, cx.zeros(&s)));
        }
    }
    parts.push((start as usize, g));
    parts.sort_by_key(|p| p.0);
    let parts: Vec<Var<'t, T>> = parts.into_iter().map(|p| p.1).collect();
    Ok(smallvec![Some(Var::try_concat(&parts, ax as isize)?)])
}

/// Tangent of `slice`: the tangent sliced.
pub(crate) fn slice_jvp<'t, T: Float>(
    axis: u32,
    start: u32,
    end: u32,
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_slice(axis as isize, start as usize, end as usize))
        .transpose()
}

/// Differentiable backward of `concat` and `stack`: each operand's slice of `g`.
pub(crate) fn join_vjp<'t, T: Float>(
    axis: u32,
    new_axis: bool,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let mut out = Contributions::new();
    let mut offset = 0;
    for i in 0..cx.arity() {
        let shape = cx.shape(i);
        let extent = if new_axis { 1 } else { shape[axis as usize] };
        out.push(if cx.needs(i) {
            let part = g.try_slice(axis as isize, offset, offset + extent)?;
            Some(if new_axis {
                part.try_reshape(&shape)?
            } else {
                part
            })
        } else {
            None
        });
        offset += extent;
    }
    Ok(out)
}

/// Tangent of `concat` and `stack`: the tangents joined (zeros where an operand has
/// none).
pub(crate) fn join_jvp<'t, T: Float>(
    axis: u32,
    new_axis: bool,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let parts: Vec<Var<'t, T>> = (0..cx.arity())
        .map(|i| t[i].unwrap_or_else(|| cx.zeros(&cx.shape(i))))
        .collect();
    join(&parts, axis as isize, new_axis).map(Some)
}

/// Differentiable backward of `gather`: `g` scatter-added into zeros at the picked
/// positions (the `scatter_add` op, whose own rules gather again).
pub(crate) fn gather_vjp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let (ishape, index) = cx.indices(indices);
    let zeros = cx.zeros(&cx.shape(0));
    Ok(smallvec![Some(zeros.try_scatter_add(
        axis as isize,
        &ishape,
        &index,
        g
    )?)])
}

/// Tangent of `gather`: the tangent gathered.
pub(crate) fn gather_jvp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(t) = t[0] else { return Ok(None) };
    let (ishape, index) = cx.indices(indices);
    Ok(Some(t.try_gather(axis as isize, &ishape, &index)?))
}
