//! Matrix multiply, 2-d and batched.

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, add_opt, reduce_to};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::Output;
use descent_tensor::kernels::{self, Product};
use descent_tensor::{Float, Tensor, broadcast_shapes, numel};
use smallvec::smallvec;

impl<'t, T: Float> Var<'t, T> {
    /// Matrix product `a @ b` for `a: [..., m, k]` and `b: [..., k, n]`; leading (batch)
    /// axes broadcast. Backward: `ga = g @ bᵀ`, `gb = aᵀ @ g`, summed over batch axes an
    /// operand was broadcast along. A 2-d `b` under a batched `a` (a layer applied to a
    /// batch) runs as one large product. PyTorch: `torch.matmul` (without its 1-d cases:
    /// reshape vectors to `[1, k]` or `[k, 1]`).
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let a = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    /// let b = tape.var(Tensor::from([[5.0], [6.0]]));
    /// assert_eq!(a.matmul(b).value().data(), &[17.0, 39.0]);
    /// let err = b.try_matmul(a).unwrap_err().to_string();
    /// assert!(err.contains("cannot multiply [2, 1] by [2, 2]"), "{err}");
    /// ```
    pub fn matmul(self, rhs: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_matmul(rhs))
    }

    /// The fallible form of [`Var::matmul`]: an error naming both shapes when they do
    /// not multiply.
    pub fn try_matmul(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.record(Op::MatMul, &[self, rhs], |inner, pool| {
            let (a, b) = (inner.view(self.id), inner.view(rhs.id));
            let (ash, bsh) = (a.shape(), b.shape());
            let fail = |reason: String| Error::MatMul {
                op: "matmul",
                reason,
                lhs: inner.node_ref(self.id),
                rhs: inner.node_ref(rhs.id),
            };
            if ash.len() < 2 || bsh.len() < 2 {
                return Err(fail(
                    "both operands need at least 2 axes (reshape a vector to [1, k] or [k, 1])"
                        .into(),
                ));
            }
            let (k1, k2) = (ash[ash.len() - 1], bsh[bsh.len() - 2]);
            if k1 != k2 {
                return Err(fail(format!("inner extents {k1} and {k2} differ")));
            }
            if broadcast_shapes(&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]).is_none() {
                return Err(fail("batch axes do not broadcast".into()));
            }
            let shape = kernels::matmul_shape(ash, bsh).expect("checked above");
            let mut buf = pool.take(numel(&shape))?;
            kernels::matmul(a, b, &shape, &mut buf);
            Ok(Output::Tensor(Tensor::new(&shape, buf)?))
        })
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// `a @ bᵀ` for `a: [..., m, k]` and a 2-d `b: [n, k]`: a layer `x Wᵀ` with the
    /// weight in PyTorch's `[out, in]` layout, without materialising the transpose (the
    /// product reads `b` through strides). Backward: `ga = g @ b`, `gb = gᵀ @ a` (summed
    /// over `a`'s batch axes). PyTorch: `torch.nn.functional.linear(a, b)` without bias.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 2.0]]));
    /// let w = tape.var(Tensor::from([[1.0, 0.0], [3.0, 4.0], [0.5, 0.5]])); // [out 3, in 2]
    /// assert_eq!(x.matmul_t(w).value().data(), &[1.0, 11.0, 1.5]);
    /// assert_eq!(x.matmul_t(w).value(), x.matmul(w.t()).value());
    /// ```
    pub fn matmul_t(self, rhs: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_matmul_t(rhs))
    }

    /// The fallible form of [`Var::matmul_t`].
    pub fn try_matmul_t(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.record(Op::MatMulT, &[self, rhs], |inner, pool| {
            let (a, b) = (inner.view(self.id), inner.view(rhs.id));
            let (ash, bsh) = (a.shape(), b.shape());
            let fail = |reason: String| Error::MatMul {
                op: "matmul_t",
                reason,
                lhs: inner.node_ref(self.id),
                rhs: inner.node_ref(rhs.id),
            };
            if ash.len() < 2 || bsh.len() != 2 {
                return Err(fail(
                    "the left operand needs at least 2 axes and the right exactly 2".into(),
                ));
            }
            let (k1, k2) = (ash[ash.len() - 1], bsh[1]);
            if k1 != k2 {
                return Err(fail(format!(
                    "inner extents {k1} and {k2} differ (the right operand is [out, in])"
                )));
            }
            let n = bsh[0];
            let mut shape: descent_tensor::Shape = ash.into();
            *shape.last_mut().expect("at least 2 axes") = n;
            if !descent_tensor::shape_fits(&shape) {
                return Err(fail(format!(
                    "the result's shape {} is too large to address",
                    descent_tensor::ShapeDisplay(&shape)
                )));
            }
            let rows = numel(&ash[..ash.len() - 1]);
            let mut buf = pool.take(numel(&shape))?;
            kernels::gemm(
                a.data(),
                false,
                b.data(),
                true,
                rows,
                k1,
                n,
                T::zero(),
                &mut buf,
            );
            Ok(Output::Tensor(Tensor::new(&shape, buf)?))
        })
    }
}

/// Backward of `a @ bᵀ` with `b: [n, k]`: `ga += g @ b`, `gb += gᵀ @ a`.
pub(crate) fn backward_t<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let (a, b) = (cx.input(0), cx.input(1));
    let (n, k) = (b.shape()[0], b.shape()[1]);
    let rows = numel(&a.shape()[..a.ndim() - 1]);
    let (g, a, b) = (cx.g.data(), a.data(), b.data());
    // `ga = g @ b` ([rows, n] @ [n, k]) and `gb = gᵀ @ a` ([n, rows] @ [rows, k]).
    grads_by_products(
        cx,
        sink,
        GradProduct::of(g, false, b, false, [rows, n, k]),
        GradProduct::of(g, true, a, false, [n, rows, k]),
    );
}

/// Backward of matmul: `ga += g @ bᵀ`, `gb += aᵀ @ g`.
pub(crate) fn backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let (a, b) = (cx.input(0), cx.input(1));
    if b.ndim() == 2 {
        // `[batch..., m, k] @ [k, n]`: each gradient is one product over all the rows.
        let (k, n) = (b.shape()[0], b.shape()[1]);
        let rows = numel(&a.shape()[..a.ndim() - 1]);
        let (g, a, b) = (cx.g.data(), a.data(), b.data());
        // `ga = g @ bᵀ` ([rows, n] @ [n, k]) and `gb = aᵀ @ g` ([k, rows] @ [rows, n]).
        grads_by_products(
            cx,
            sink,
            GradProduct::of(g, false, b, true, [rows, n, k]),
            GradProduct::of(a, true, g, false, [k, rows, n]),
        );
        return;
    }
    if cx.needs(0) {
        kernels::matmul_backward_lhs_acc(cx.g, b, a.shape(), sink.grad_mut(cx.parent(0)));
    }
    if cx.needs(1) {
        kernels::matmul_backward_rhs_acc(a, cx.g, b.shape(), sink.grad_mut(cx.parent(1)));
    }
}

/// One operand's gradient as a single product `op(a) @ op(b)`, `[m, k] @ [k, n]`.
struct GradProduct<'a, T> {
    a: &'a [T],
    ta: bool,
    b: &'a [T],
    tb: bool,
    mkn: [usize; 3],
}

impl<'a, T: Float> GradProduct<'a, T> {
    /// `op(a) @ op(b)` of `[m, k] @ [k, n]`, each operand transposed when its flag says.
    fn of(a: &'a [T], ta: bool, b: &'a [T], tb: bool, mkn: [usize; 3]) -> Self {
        GradProduct { a, ta, b, tb, mkn }
    }

    /// Into `c`: overwriting it when `fresh` (nothing has reached the operand yet, so
    /// the buffer needs no zeroing), else adding into it.
    fn into_product(self, c: &'a mut [T], fresh: bool) -> Product<'a, T> {
        let [m, k, n] = self.mkn;
        let beta = if fresh { T::zero() } else { T::one() };
        let (a, ta, b, tb) = (self.a, self.ta, self.b, self.tb);
        Product {
            a,
            ta,
            b,
            tb,
            m,
            k,
            n,
            beta,
            c,
        }
    }
}

/// Each wanted operand gradient of a two-operand product, both at once when the sink
/// can hand out both buffers (large ones then run side by side on two threads).
fn grads_by_products<'a, T: Float, S: GradSink<T>>(
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
    lhs: GradProduct<'a, T>,
    rhs: GradProduct<'a, T>,
) {
    if cx.needs(0)
        && cx.needs(1)
        && let Some([(ga, fa), (gb, fb)]) = sink.grads_for_write_pair(cx.parent(0), cx.parent(1))
    {
        kernels::gemm_pair(lhs.into_product(ga, fa), rhs.into_product(gb, fb));
        return;
    }
    if cx.needs(0) {
        let (ga, fresh) = sink.grad_for_write(cx.parent(0));
        lhs.into_product(ga, fresh).compute();
    }
    if cx.needs(1) {
        let (gb, fresh) = sink.grad_for_write(cx.parent(1));
        rhs.into_product(gb, fresh).compute();
    }
}

/// Differentiable backward of `matmul`: `ga = g @ bᵀ`, `gb = aᵀ @ g`, each summed back
/// over batch axes broadcasting stretched. For a 2-d `b`, `ga` is one `matmul_t`.
pub(crate) fn matmul_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (a, b) = (cx.input(0), cx.input(1));
    let ga = if cx.needs(0) {
        let prod = if cx.shape(1).len() == 2 {
            g.try_matmul_t(b)?
        } else {
            g.try_matmul(b.try_transpose(-2, -1)?)?
        };
        Some(reduce_to(prod, &cx.shape(0))?)
    } else {
        None
    };
    let gb = if cx.needs(1) {
        let prod = a.try_transpose(-2, -1)?.try_matmul(g)?;
        Some(reduce_to(prod, &cx.shape(1))?)
    } else {
        None
    };
    Ok(smallvec![ga, gb])
}

/// Tangent of `matmul`: `ȧ @ b + a @ ḃ`.
pub(crate) fn matmul_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (a, b) = (cx.input(0), cx.input(1));
    let ta = t[0].map(|t| t.try_matmul(b)).transpose()?;
    let tb = t[1].map(|t| a.try_matmul(t)).transpose()?;
    let sum = add_opt(ta, tb)?;
    let out = cx.out_shape();
    match sum {
        Some(s) if s.shape() != out => Ok(Some(s.try_broadcast_to(&out)?)),
        s => Ok(s),
    }
}

/// Differentiable backward of `matmul_t` (`y = a @ bᵀ`, `b` 2-d): `ga = g @ b`,
/// `gb = gᵀ @ a` summed over `a`'s batch axes.
pub(crate) fn matmul_t_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (a, b) = (cx.input(0), cx.input(1));
    let ga = if cx.needs(0) {
        Some(g.try_matmul(b)?)
    } else {
        None
    };
    let gb = if cx.needs(1) {
        let prod = g.try_transpose(-2, -1)?.try_matmul(a)?;
        Some(reduce_to(prod, &cx.shape(1))?)
    } else {
        None
    };
    Ok(smallvec![ga, gb])
}

/// Tangent of `matmul_t`: `ȧ @ bᵀ + a @ ḃᵀ`.
pub(crate) fn matmul_t_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (a, b) = (cx.input(0), cx.input(1));
    let ta = t[0].map(|t| t.try_matmul_t(b)).transpose()?;
    let tb = t[1].map(|t| a.try_matmul_t(t)).transpose()?;
    add_opt(ta, tb)
}
