//! Reductions: sum and mean of everything (to a scalar node), and sum, mean and max
//! over one axis.

use super::elementwise::write_or_add;
use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Number, Op, resolve_axis};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::Output;
use descent_tensor::{Float, Shape, Tensor, kernels, numel, split_at_axis};
use smallvec::smallvec;

impl<'t, T: Float> Var<'t, T> {
    /// Sum of all elements, a scalar node. Backward: every element gets `g`.
    /// PyTorch: `x.sum()`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(Tensor::from([1.0, 2.0, 3.0])).sum().item(), 6.0);
    /// ```
    pub fn sum(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_sum())
    }
    /// The fallible form of [`Var::sum`].
    pub fn try_sum(self) -> Result<Var<'t, T>> {
        self.tape.record(Op::Sum, &[self], |inner, _| {
            Ok(Output::Scalar(kernels::sum_all(inner.view(self.id).data())))
        })
    }

    /// Mean of all elements, a scalar node. Backward: every element gets `g / n`.
    /// PyTorch: `x.mean()`.
    ///
    /// # Panics
    /// If the tensor has no elements: its mean is undefined (PyTorch gives NaN
    /// silently; here it is the error of [`Var::try_mean`]).
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(Tensor::from([1.0, 2.0, 3.0])).mean().item(), 2.0);
    /// ```
    pub fn mean(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_mean())
    }
    /// The fallible form of [`Var::mean`]: an error, naming the operand and its shape,
    /// for a tensor with no elements.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let err = tape.var(Tensor::<f64>::zeros(&[2, 0])).try_mean().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "mean: the operand has no elements, so its mean is undefined \
    ///      (operand: node 0 (var, shape [2, 0]))"
    /// );
    /// ```
    pub fn try_mean(self) -> Result<Var<'t, T>> {
        self.tape.record(Op::Mean, &[self], |inner, _| {
            let x = inner.view(self.id).data();
            if x.is_empty() {
                return Err(Error::Shape {
                    op: "mean",
                    reason: "the operand has no elements, so its mean is undefined".into(),
                    node: inner.node_ref(self.id),
                });
            }
            Ok(Output::Scalar(
                kernels::sum_all(x) / T::from_f64(x.len() as f64),
            ))
        })
    }

    /// Sum over `axis` (negative counts from the end); `keepdim` keeps it as extent 1.
    /// Backward: `g` is copied along the axis. PyTorch: `x.sum(dim, keepdim)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    /// assert_eq!(x.sum_axis(0, false).value().data(), &[4.0, 6.0]);
    /// assert_eq!(x.sum_axis(-1, true).shape().as_slice(), &[2, 1]);
    /// ```
    pub fn sum_axis(self, axis: isize, keepdim: bool) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_sum_axis(axis, keepdim))
    }
    /// The fallible form of [`Var::sum_axis`]: an error for an axis out of range.
    pub fn try_sum_axis(self, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        self.reduce_axis(AxisReduction::Sum, axis, keepdim)
    }

    /// Mean over `axis`; `keepdim` keeps it as extent 1. Backward: `g / n` copied along
    /// the axis. PyTorch: `x.mean(dim, keepdim)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    /// assert_eq!(x.mean_axis(1, false).value().data(), &[1.5, 3.5]);
    /// ```
    pub fn mean_axis(self, axis: isize, keepdim: bool) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_mean_axis(axis, keepdim))
    }
    /// The fallible form of [`Var::mean_axis`]: also an error for an axis of extent 0,
    /// which has no mean (PyTorch gives NaN).
    pub fn try_mean_axis(self, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        self.reduce_axis(AxisReduction::Mean, axis, keepdim)
    }

    /// Maximum over `axis`; `keepdim` keeps it as extent 1. Backward: `g` goes to the
    /// first position holding the maximum of its slice. PyTorch: `x.max(dim).values`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 5.0], [7.0, 4.0]]));
    /// assert_eq!(x.max_axis(1, false).value().data(), &[5.0, 7.0]);
    /// ```
    pub fn max_axis(self, axis: isize, keepdim: bool) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_max_axis(axis, keepdim))
    }
    /// The fallible form of [`Var::max_axis`]: also an error for an axis of extent 0,
    /// which has no maximum.
    pub fn try_max_axis(self, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        self.reduce_axis(AxisReduction::Max, axis, keepdim)
    }

    fn reduce_axis(self, kind: AxisReduction, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        let name = kind.name();
        self.tape.check(name, &self)?;
        let (ax, out_shape) = {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            let ax = resolve_axis(&inner, name, axis, shape.len(), self.id)?;
            let undefined = match kind {
                AxisReduction::Sum => None,
                AxisReduction::Mean => Some("mean"),
                AxisReduction::Max => Some("maximum"),
            };
            if let Some(what) = undefined
                && shape[ax] == 0
            {
                return Err(Error::Shape {
                    op: name,
                    reason: format!("axis {ax} has extent 0, so it has no {what}"),
                    node: inner.node_ref(self.id),
                });
            }
            let mut out: Shape = shape.into();
            if keepdim {
                out[ax] = 1;
            } else {
                out.remove(ax);
            }
            (ax, out)
        };
        let op = kind.op(ax as u32, keepdim);
        self.tape.record(op, &[self], |inner, pool| {
            let x = inner.view(self.id);
            let mut buf = pool.take(numel(&out_shape))?;
            match kind {
                AxisReduction::Max => kernels::max_axis(x, ax, &mut buf),
                AxisReduction::Sum => kernels::sum_axis(x, ax, &mut buf),
                AxisReduction::Mean => {
                    kernels::sum_axis(x, ax, &mut buf);
                    let n = T::from_f64(x.shape()[ax] as f64);
                    buf.iter_mut().for_each(|v| *v /= n);
                }
            }
            Ok(Output::Tensor(Tensor::new(&out_shape, buf)?))
        })
    }
}

/// The reductions over one axis: which op [`Var::reduce_axis`] records and computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AxisReduction {
    Sum,
    Mean,
    Max,
}

impl AxisReduction {
    /// The op recorded for a reduction over `axis`.
    fn op(self, axis: u32, keepdim: bool) -> Op {
        match self {
            AxisReduction::Sum => Op::SumAxis { axis, keepdim },
            AxisReduction::Mean => Op::MeanAxis { axis, keepdim },
            AxisReduction::Max => Op::MaxAxis { axis, keepdim },
        }
    }

    /// The op's name, as [`Op::name`] spells it (one spelling for errors and renders).
    fn name(self) -> &'static str {
        self.op(0, false).name()
    }
}

/// Backward of `sum`: every element gets `g`.
pub(crate) fn sum_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    spread(cx.g.data()[0], cx, sink);
}

/// Backward of `mean`: every element gets `g / n`.
pub(crate) fn mean_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let n = T::from_f64(cx.input(0).len() as f64);
    spread(cx.g.data()[0] / n, cx, sink);
}

/// Gives every element of the operand the same `share` of the gradient.
fn spread<T: Float, S: GradSink<T>>(share: T, cx: &BackwardCtx<'_, T>, sink: &mut S) {
    if !cx.needs(0) {
        return;
    }
    let (gx, fresh) = sink.grad_for_write(cx.parent(0));
    write_or_add(
        gx,
        fresh,
        [],
        #[inline(always)]
        move |[]| share,
    );
}

/// Backward of `sum_axis`: `g` copied along the axis.
pub(crate) fn sum_axis_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let x = cx.input(0);
        let gx = sink.grad_mut(cx.parent(0));
        kernels::expand_axis_acc(cx.g.data(), x.shape(), axis as usize, T::one(), gx);
    }
}

/// Backward of `mean_axis`: `g / n` copied along the axis.
pub(crate) fn mean_axis_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let x = cx.input(0);
        let scale = T::from_f64(x.shape()[axis as usize] as f64).recip();
        let gx = sink.grad_mut(cx.parent(0));
        kernels::expand_axis_acc(cx.g.data(), x.shape(), axis as usize, scale, gx);
    }
}

/// Backward of `max_axis`: `g` to the first position holding each slice's maximum.
pub(crate) fn max_axis_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let x = cx.input(0);
        let gx = sink.grad_mut(cx.parent(0));
        kernels::max_axis_backward_acc(x, axis as usize, cx.out.data(), cx.g.data(), gx);
    }
}

/// Differentiable backward of `sum`: `g` broadcast to the operand's shape.
pub(crate) fn sum_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(g.try_broadcast_to(&cx.shape(0))?)])
}

/// Tangent of `sum`: the sum of the tangent.
pub(crate) fn sum_jvp<'t, T: Float>(
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_sum()).transpose()
}

/// Differentiable backward of `mean`: `g / n` broadcast to the operand's shape.
pub(crate) fn mean_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let shape = cx.shape(0);
    let n = g.lit(numel(&shape) as f64);
    Ok(smallvec![Some(g.try_div(n)?.try_broadcast_to(&shape)?)])
}

/// Tangent of `mean`: the mean of the tangent.
pub(crate) fn mean_jvp<'t, T: Float>(
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_mean()).transpose()
}

/// `g` of a reduction over `axis` copied back along it, times `scale` (if any).
fn expand<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
    scale: Option<f64>,
) -> Result<Var<'t, T>> {
    let shape = cx.shape(0);
    let mut kept: Shape = shape.clone();
    kept[axis as usize] = 1;
    let g = match scale {
        Some(s) => g.try_mul(g.lit(s))?,
        None => g,
    };
    g.try_reshape(&kept)?.try_broadcast_to(&shape)
}

/// Differentiable backward of `sum_axis`: `g` copied along the axis.
pub(crate) fn sum_axis_vjp<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(expand(axis, cx, g, None)?)])
}

/// Tangent of `sum_axis`: the tangent summed over the axis.
pub(crate) fn sum_axis_jvp<'t, T: Float>(
    axis: u32,
    keepdim: bool,
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_sum_axis(axis as isize, keepdim))
        .transpose()
}

/// Differentiable backward of `mean_axis`: `g · (1/n)` copied along the axis (the fast
/// rule's factor, so the values agree bit for bit).
pub(crate) fn mean_axis_vjp<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let n = cx.shape(0)[axis as usize] as f64;
    Ok(smallvec![Some(expand(axis, cx, g, Some(1.0 / n))?)])
}

/// Tangent of `mean_axis`: the tangent's mean over the axis.
pub(crate) fn mean_axis_jvp<'t, T: Float>(
    axis: u32,
    keepdim: bool,
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_mean_axis(axis as isize, keepdim))
        .transpose()
}

/// The mask of each slice's maximum along `axis` (a constant: the position of a
/// maximum is locally constant), or the error when a slice holds its maximum twice:
/// there `max_axis` has no derivative.
fn max_mask<'t, T: Float>(axis: u32, cx: &DiffCtx<'t, T>) -> Result<Var<'t, T>> {
    let x = cx.input(0).value();
    let (outer, n, inner) = split_at_axis(x.shape(), axis as usize);
    let mut mask = vec![T::zero(); x.len()];
    let xd = x.data();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let mut best = 0;
            for k in 1..n {
                if xd[at(k)] > xd[at(best)] {
                    best = k;
                }
            }
            if let Some(k) = (0..n).find(|&k| k != best && xd[at(k)] == xd[at(best)]) {
                return Err(cx.not_differentiable(format!(
                    "the maximum {} is held at positions {} and {} of a slice along axis {axis}",
                    xd[at(best)],
                    best.min(k),
                    best.max(k)
                )));
            }
            mask[at(best)] = T::one();
        }
    }
    Ok(cx.input(0).tape().constant(Tensor::new(x.shape(), mask)?))
}

/// Differentiable backward of `max_axis`: `g` to each slice's maximum.
pub(crate) fn max_axis_vjp<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let mask = max_mask(axis, cx)?;
    Ok(smallvec![Some(mask.try_mul(expand(axis, cx, g, None)?)?)])
}

/// Tangent of `max_axis`: the tangent at each slice's maximum.
pub(crate) fn max_axis_jvp<'t, T: Float>(
    axis: u32,
    keepdim: bool,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(t) = t[0] else { return Ok(None) };
    let mask = max_mask(axis, cx)?;
    Ok(Some(mask.try_mul(t)?.try_sum_axis(axis as isize, keepdim)?))
}
