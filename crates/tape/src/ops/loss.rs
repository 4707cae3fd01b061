//! Losses, each reduced to its mean (PyTorch's default `reduction="mean"`).
//!
//! `cross_entropy` is a fused primitive rather than `log_softmax` + `gather` + `mean`:
//! its backward, `(softmax - onehot) / N`, needs one pass and no intermediate nodes.

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Number, Op};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::{
    Float, PARALLEL_MIN, ShapeDisplay, for_each_block, for_each_weighted_block, kernels, numel,
    vectorized,
};
use smallvec::smallvec;

impl<'t, T: Float> Var<'t, T> {
    /// Mean cross-entropy of logits `[N, C]` against integer class labels (`N` of them,
    /// each below `C`): `-(1/N) Σₙ log softmax(xₙ)[labelₙ]`. Backward:
    /// `gx = g · (softmax(x) - onehot(label)) / N`. PyTorch:
    /// `torch.nn.functional.cross_entropy(logits, labels)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let logits = tape.var(Tensor::from([[0.0, 0.0], [0.0, 0.0]]));
    /// let loss = logits.cross_entropy(&[0, 1]);
    /// assert!((loss.item() - 2f64.ln()).abs() < 1e-15);
    /// assert!(logits.try_cross_entropy(&[0, 2]).unwrap_err().to_string().contains("index 2"));
    /// ```
    pub fn cross_entropy(self, labels: &[usize]) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_cross_entropy(labels))
    }

    /// The fallible form of [`Var::cross_entropy`]: an error for logits that are not
    /// 2-d, a label count that differs from the rows, or a label out of range.
    pub fn try_cross_entropy(self, labels: &[usize]) -> Result<Var<'t, T>> {
        let name = "cross_entropy";
        self.tape.check(name, &self)?;
        let slot = {
            let mut inner = self.tape.inner.borrow_mut();
            let shape = inner.shape(self.id);
            let shape_err = |reason: String| Error::Shape {
                op: name,
                reason,
                node: inner.node_ref(self.id),
            };
            if shape.len() != 2 {
                return Err(shape_err(format!(
                    "logits must be [N, C], got {}",
                    ShapeDisplay(shape)
                )));
            }
            let (n, c) = (shape[0], shape[1]);
            if labels.len() != n {
                return Err(shape_err(format!(
                    "{} labels given for {n} rows of logits",
                    labels.len()
                )));
            }
            if n == 0 {
                return Err(shape_err(
                    "logits have no rows, so the mean is undefined".into(),
                ));
            }
            if let Some((position, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= c) {
                return Err(Error::Index {
                    op: name,
                    index: l,
                    position,
                    extent: c,
                    node: inner.node_ref(self.id),
                });
            }
            Tape::push_indices(&mut inner, &[n], labels)
        };
        self.tape
            .record(Op::CrossEntropy { labels: slot }, &[self], |inner, _| {
                let x = inner.view(self.id);
                let c = x.shape()[1];
                let xd = x.data();
                // Row r's term, `ln Σ e^x − x[label]` as `r − (x[label] − m)`, which
                // keeps the digits of a confident prediction's small loss (see
                // `log_sum_exp_parts`); inlined into the loops below.
                #[inline(always)]
                fn term<T: Float>(xd: &[T], c: usize, labels: &[usize], r: usize) -> T {
                    let row = &xd[r * c..(r + 1) * c];
                    let (m, rest) = kernels::log_sum_exp_parts(row);
                    rest - (row[labels[r]] - m)
                }
                let mut total = T::zero();
                if xd.len() < PARALLEL_MIN {
                    vectorized(
                        #[inline(always)]
                        || {
                            for r in 0..labels.len() {
                                total += term(xd, c, labels, r);
                            }
                        },
                    );
                } else {
                    // Each row's term in parallel, then the same sum in row order.
                    let mut terms = vec![T::zero(); labels.len()];
                    for_each_weighted_block(
                        &mut terms,
                        c,
                        #[inline(always)]
                        |first, block| {
                            for (k, t) in block.iter_mut().enumerate() {
                                *t = term(xd, c, labels, first + k);
                            }
                        },
                    );
                    for t in terms {
                        total += t;
                    }
                }
                Ok(Output::Scalar(total / T::from_f64(labels.len() as f64)))
            })
    }

    /// Mean squared error against a target of the same shape: `mean((x - t)²)`.
    /// Backward: `gx = 2g(x - t)/n`, `gt = -gx`. Shapes must match exactly (no
    /// broadcasting, which would silently change the mean). PyTorch:
    /// `torch.nn.functional.mse_loss(x, t)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([1.0, 2.0]));
    /// let t = tape.constant(Tensor::from([0.0, 0.0]));
    /// assert_eq!(x.mse(t).item(), 2.5);
    /// ```
    pub fn mse(self, target: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_mse(target))
    }

    /// The fallible form of [`Var::mse`]: an error naming both shapes when they differ,
    /// and for operands with no elements, whose mean is undefined (PyTorch gives NaN).
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::<f64>::zeros(&[0]));
    /// let err = x.try_mse(x).unwrap_err().to_string();
    /// assert!(err.starts_with("mse: input and target of shape [0] have no elements"), "{err}");
    /// ```
    pub fn try_mse(self, target: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_shape_loss(Op::Mse, target, |x, t| (x - t) * (x - t))
    }

    /// Mean binary cross-entropy of logits `x` against targets `t` in `[0, 1]` of the
    /// same shape: `mean(max(x, 0) - x·t + ln(1 + e^-|x|))`, stable for any `x`.
    /// Backward: `gx = g(σ(x) - t)/n`, `gt = -g·x/n`. PyTorch:
    /// `torch.nn.functional.binary_cross_entropy_with_logits(x, t)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([0.0]));
    /// let t = tape.constant(Tensor::from([1.0]));
    /// assert!((x.bce_with_logits(t).item() - 2f64.ln()).abs() < 1e-15);
    /// ```
    pub fn bce_with_logits(self, target: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_bce_with_logits(target))
    }

    /// The fallible form of [`Var::bce_with_logits`]: an error naming both shapes when
    /// they differ, and for operands with no elements, as [`Var::try_mse`].
    pub fn try_bce_with_logits(self, target: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_shape_loss(Op::BceWithLogits, target, |x, t| {
            x.max(T::zero()) - x * t + (-x.abs()).kernel_exp().ln_1p()
        })
    }

    fn same_shape_loss(
        self,
        op: Op,
        target: Var<'t, T>,
        term: impl Fn(T, T) -> T,
    ) -> Result<Var<'t, T>> {
        self.tape.record(op, &[self, target], |inner, _| {
            let (x, t) = (inner.view(self.id), inner.view(target.id));
            if x.shape() != t.shape() {
                return Err(Error::Shapes {
                    op: op.name(),
                    reason: format!(
                        "input {} and target {} must have the same shape",
                        ShapeDisplay(x.shape()),
                        ShapeDisplay(t.shape())
                    ),
                    nodes: vec![inner.node_ref(self.id), inner.node_ref(target.id)],
                });
            }
            if x.is_empty() {
                return Err(Error::Shapes {
                    op: op.name(),
                    reason: format!(
                        "input and target of shape {} have no elements, so the mean is undefined",
                        ShapeDisplay(x.shape())
                    ),
                    nodes: vec![inner.node_ref(self.id), inner.node_ref(target.id)],
                });
            }
            let total: T = x
                .data()
                .iter()
                .zip(t.data())
                .map(|(&x, &t)| term(x, t))
                .sum();
            Ok(Output::Scalar(total / T::from_f64(x.len() as f64)))
        })
    }
}

/// Backward of `cross_entropy`: `gx += g · (softmax(x) − onehot(label)) / N`.
pub(crate) fn cross_entropy_backward<T: Float, S: GradSink<T>>(
    labels: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if !cx.needs(0) {
        return;
    }
    let g = cx.g.data()[0];
    let x = cx.input(0);
    let (_, labels) = cx.indices(labels);
    let c = x.shape()[1];
    let scale = g / T::from_f64(labels.len() as f64);
    let gx = sink.grad_mut(cx.parent(0));
    let xd = x.data();
    for_each_block(
        gx,
        c,
        #[inline(always)]
        |at, block| {
            // On the stack for up to 16 classes (W3's and W4's 10): no allocation a
            // step.
            let mut probs: smallvec::SmallVec<[T; 16]> = smallvec::smallvec![T::zero(); c];
            let rows = block.chunks_exact_mut(c).zip(xd[at..].chunks_exact(c));
            for ((grow, row), &l) in rows.zip(&labels[at / c..]) {
                kernels::softmax_lane(row, &mut probs);
                for (j, (gv, &p)) in grow.iter_mut().zip(&probs).enumerate() {
                    let onehot = if j == l { T::one() } else { T::zero() };
                    *gv += scale * (p - onehot);
                }
            }
        },
    );
}

/// Backward of `mse`: `gx += 2g(x − t)/n`, `gt += −2g(x − t)/n`.
pub(crate) fn mse_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let g = cx.g.data()[0];
    let (x, t) = (cx.input(0), cx.input(1));
    let n = T::from_f64(x.len() as f64);
    let two = T::from_f64(2.0);
    for side in 0..2 {
        if cx.needs(side) {
            let sign = if side == 0 { T::one() } else { -T::one() };
            let gp = sink.grad_mut(cx.parent(side));
            for ((gv, &xv), &tv) in gp.iter_mut().zip(x.data()).zip(t.data()) {
                *gv += sign * two * g * (xv - tv) / n;
            }
        }
    }
}

/// Backward of `bce_with_logits`: `gx += g(σ(x) − t)/n`, `gt += −g·x/n`.
pub(crate) fn bce_with_logits_backward<T: Float, S: GradSink<T>>(
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let g = cx.g.data()[0];
    let (x, t) = (cx.input(0), cx.input(1));
    let n = T::from_f64(x.len() as f64);
    if cx.needs(0) {
        let gp = sink.grad_mut(cx.parent(0));
        for ((gv, &xv), &tv) in gp.iter_mut().zip(x.data()).zip(t.data()) {
            *gv += g * (super::activation::sigmoid(xv) - tv) / n;
        }
    }
    if cx.needs(1) {
        let gp = sink.grad_mut(cx.parent(1));
        for (gv, &xv) in gp.iter_mut().zip(x.data()) {
            *gv -= g * xv / n;
        }
    }
}

/// `softmax(x) − onehot(labels)`, recorded (the one-hot a constant).
fn softmax_minus_onehot<'t, T: Float>(labels: u32, cx: &DiffCtx<'t, T>) -> Result<Var<'t, T>> {
    let x = cx.input(0);
    let shape = cx.shape(0);
    let (_, labels) = cx.indices(labels);
    let mut onehot = vec![T::zero(); shape[0] * shape[1]];
    for (r, &l) in labels.iter().enumerate() {
        onehot[r * shape[1] + l] = T::one();
    }
    let onehot = x
        .tape()
        .constant(descent_tensor::Tensor::new(&shape, onehot)?);
    x.try_softmax(1)?.try_sub(onehot)
}

/// Differentiable backward of `cross_entropy`: `(softmax(x) − onehot) · (g / N)`, the
/// softmax recorded so that it differentiates again.
pub(crate) fn cross_entropy_vjp<'t, T: Float>(
    labels: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let n = cx.shape(0)[0] as f64;
    let scale = g.try_div(g.lit(n))?;
    Ok(smallvec![Some(
        softmax_minus_onehot(labels, cx)?.try_mul(scale)?
    )])
}

/// Tangent of `cross_entropy`: `Σ (softmax(x) − onehot) ⊙ ẋ / N`.
pub(crate) fn cross_entropy_jvp<'t, T: Float>(
    labels: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(t) = t[0] else { return Ok(None) };
    let n = cx.shape(0)[0] as f64;
    let s = softmax_minus_onehot(labels, cx)?.try_mul(t)?.try_sum()?;
    Ok(Some(s.try_div(t.lit(n))?))
}

/// Differentiable backward of `mse`: `gx = (2g)(x − t)/n`, `gt = (−2g)(x − t)/n`, in
/// the fast rule's order of operations.
pub(crate) fn mse_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (x, t) = (cx.input(0), cx.input(1));
    let n = g.lit(numel(&cx.shape(0)) as f64);
    let d = x.try_sub(t)?;
    let mut out = Contributions::new();
    for (side, sign) in [(0, 2.0), (1, -2.0)] {
        out.push(if cx.needs(side) {
            Some(g.lit(sign).try_mul(g)?.try_mul(d)?.try_div(n)?)
        } else {
            None
        });
    }
    Ok(out)
}

/// Tangent of `mse`: `Σ 2(x − t)(ẋ − ṫ) / n`.
pub(crate) fn mse_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (x, y) = (cx.input(0), cx.input(1));
    let dt = match (t[0], t[1]) {
        (Some(a), Some(b)) => a.try_sub(b)?,
        (Some(a), None) => a,
        (None, Some(b)) => -b,
        (None, None) => return Ok(None),
    };
    let n = x.lit(numel(&cx.shape(0)) as f64);
    let s = x.lit(2.0).try_mul(x.try_sub(y)?)?.try_mul(dt)?.try_sum()?;
    Ok(Some(s.try_div(n)?))
}

/// Differentiable backward of `bce_with_logits`: `gx = g(σ(x) − t)/n`, `gt = −gx/n`.
pub(crate) fn bce_with_logits_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (x, t) = (cx.input(0), cx.input(1));
    let n = g.lit(numel(&cx.shape(0)) as f64);
    let gx = if cx.needs(0) {
        Some(g.try_mul(x.try_sigmoid()?.try_sub(t)?)?.try_div(n)?)
    } else {
        None
    };
    let gt = if cx.needs(1) {
        Some(-(g.try_mul(x)?.try_div(n)?))
    } else {
        None
    };
    Ok(smallvec![gx, gt])
}

/// Tangent of `bce_with_logits`: `Σ ((σ(x) − t) ẋ − x ṫ) / n`.
pub(crate) fn bce_with_logits_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (x, y) = (cx.input(0), cx.input(1));
    let a = t[0]
        .map(|tx| x.try_sigmoid()?.try_sub(y)?.try_mul(tx))
        .transpose()?;
    let b = t[1].map(|ty| x.try_mul(ty)).transpose()?;
    let s = match (a, b) {
        (Some(a), Some(b)) => a.try_sub(b)?,
        (Some(a), None) => a,
        (None, Some(b)) => -b,
        (None, None) => return Ok(None),
    };
    let n = x.lit(numel(&cx.shape(0)) as f64);
    Ok(Some(s.try_sum()?.try_div(n)?))
}
