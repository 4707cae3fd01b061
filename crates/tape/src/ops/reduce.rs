//! Reductions: sum and mean of everything (to a scalar node), and sum, mean and max
//! over one axis.

use super::elementwise::write_or_add;
use super::{BackwardCtx, GradSink, Op, resolve_axis};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::Output;
use descent_tensor::{Float, Shape, Tensor, kernels, numel};

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
        |[]| share,
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
