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
    /// The mean of an empty tensor is NaN, as in PyTorch. PyTorch: `x.mean()`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(Tensor::from([1.0, 2.0, 3.0])).mean().item(), 2.0);
    /// ```
    pub fn mean(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_mean())
    }
    /// The fallible form of [`Var::mean`].
    pub fn try_mean(self) -> Result<Var<'t, T>> {
        self.tape.record(Op::Mean, &[self], |inner, _| {
            let x = inner.view(self.id).data();
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
        self.reduce_axis("sum_axis", axis, keepdim)
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
    /// The fallible form of [`Var::mean_axis`].
    pub fn try_mean_axis(self, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        self.reduce_axis("mean_axis", axis, keepdim)
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
        self.reduce_axis("max_axis", axis, keepdim)
    }

    fn reduce_axis(self, name: &'static str, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        self.tape.check(name, &self)?;
        let (ax, out_shape) = {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            let ax = resolve_axis(&inner, name, axis, shape.len(), self.id)?;
            if name == "max_axis" && shape[ax] == 0 {
                return Err(Error::Shape {
                    op: name,
                    reason: format!("axis {ax} has extent 0, so it has no maximum"),
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
        let axis = ax as u32;
        let op = match name {
            "sum_axis" => Op::SumAxis { axis, keepdim },
            "mean_axis" => Op::MeanAxis { axis, keepdim },
            _ => Op::MaxAxis { axis, keepdim },
        };
        self.tape.record(op, &[self], |inner, pool| {
            let x = inner.view(self.id);
            let mut buf = pool.take(numel(&out_shape))?;
            match op {
                Op::MaxAxis { .. } => kernels::max_axis(x, ax, &mut buf),
                _ => {
                    kernels::sum_axis(x, ax, &mut buf);
                    if let Op::MeanAxis { .. } = op {
                        let n = T::from_f64(x.shape()[ax] as f64);
                        buf.iter_mut().for_each(|v| *v /= n);
                    }
                }
            }
            Ok(Output::Tensor(Tensor::new(&out_shape, buf)?))
        })
    }
}

/// Backward of the reductions.
pub(crate) fn backward<T: Float, S: GradSink<T>>(op: Op, cx: &BackwardCtx<'_, T>, sink: &mut S) {
    if !cx.needs(0) {
        return;
    }
    let x = cx.input(0);
    let g = cx.g.data();
    if let Op::Sum | Op::Mean = op {
        let share = match op {
            Op::Sum => g[0],
            _ => g[0] / T::from_f64(x.len() as f64),
        };
        let (gx, fresh) = sink.grad_for_write(cx.parent(0));
        write_or_add(
            gx,
            fresh,
            [],
            #[inline(always)]
            |[]| share,
        );
        return;
    }
    let gx = sink.grad_mut(cx.parent(0));
    match op {
        Op::SumAxis { axis, .. } => {
            kernels::expand_axis_acc(g, x.shape(), axis as usize, T::one(), gx)
        }
        Op::MeanAxis { axis, .. } => {
            let scale = T::from_f64(x.shape()[axis as usize] as f64).recip();
            kernels::expand_axis_acc(g, x.shape(), axis as usize, scale, gx)
        }
        Op::MaxAxis { axis, .. } => {
            kernels::max_axis_backward_acc(x, axis as usize, cx.out.data(), g, gx)
        }
        _ => unreachable!("reduce::backward called for {op:?}"),
    }
}
