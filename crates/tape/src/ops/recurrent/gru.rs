//! The element-wise part of a GRU cell as two fused ops, with their three rules side by
//! side: `gru_gates` (the three gates from the input's and the hidden state's
//! projections) and `gru_hidden` (the new hidden state). Written from `slice`,
//! `sigmoid`, `tanh`, `mul`, `add` and `sub`, one step records sixteen nodes and copies
//! every gate out of both projections; fused, it records two and copies nothing.
//!
//! Gates follow PyTorch's order along the last axis: `r, z, n`, each `H` wide, as
//! `nn.GRU`'s `weight_ih_l0` and `weight_hh_l0` rows produce them. The hidden state's
//! projection `q = h W_hhᵀ + b_hh` stays whole because the `n` gate scales its part by
//! `r` (`n = tanh(p_n + r ⊙ q_n)`).

use super::{blocks, blocks_mut, for_rows, join_gates, put, row};
use crate::Var;
use crate::error::{Error, Result};
use crate::ops::activation::sigmoid;
use crate::ops::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, add_opt};
use crate::tape::Output;
use descent_tensor::{Float, ShapeDisplay, TRANSCENDENTAL_COST, Tensor};
use smallvec::smallvec;

/// Gate blocks per row: `r, z, n`.
const GATES: usize = 3;

impl<'t, T: Float> Var<'t, T> {
    /// The GRU gates from the input's projection `self` (`p = x W_ihᵀ + b_ih`) and the
    /// hidden state's (`q = h W_hhᵀ + b_hh`), both `[.., 3H]` in PyTorch's order
    /// `r, z, n`: `[r | z | n]` with `r = σ(p_r + q_r)`, `z = σ(p_z + q_z)` and
    /// `n = tanh(p_n + r ⊙ q_n)`. Backward, from the output: `n̄ = n̄_out (1 - n)(1 + n)`,
    /// `r̄ = (r̄_out + n̄ q_n) (1 - r) r`, `z̄ = z̄_out (1 - z) z`; `p̄ = [r̄ | z̄ | n̄]`,
    /// `q̄ = [r̄ | z̄ | n̄ ⊙ r]`. PyTorch: inside `nn.GRUCell`, `p.chunk(3, -1)`,
    /// `q.chunk(3, -1)`, then `sigmoid`, `sigmoid` and `tanh(p_n + r * q_n)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let p = tape.var(Tensor::from([0.5, 0.0, 0.25]));  // H = 1
    /// let q = tape.var(Tensor::from([-0.5, 1.0, 2.0]));
    /// let a = p.gru_gates(q);
    /// let r = 0.5; // σ(0.5 - 0.5)
    /// assert_eq!(a.value().data(), &[r, 1.0 / (1.0 + (-1f64).exp()), (0.25 + r * 2.0f64).tanh()]);
    /// ```
    pub fn gru_gates(self, q: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_gru_gates(q))
    }

    /// The fallible form of [`Var::gru_gates`]: an error naming the op, both shapes and
    /// both nodes unless the two projections have the same shape with a last axis of
    /// 3 gates × hidden.
    pub fn try_gru_gates(self, q: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.record(Op::GruGates, &[self, q], |inner, pool| {
            let (p, qv) = (inner.view(self.id), inner.view(q.id));
            let width = match p.shape().last() {
                Some(&w) if w % GATES == 0 && p.shape() == qv.shape() => w,
                _ => {
                    return Err(Error::Shapes {
                        op: "gru_gates",
                        reason: format!(
                            "projections {} and {} should both be [.., 3H], 3 gates × hidden",
                            ShapeDisplay(p.shape()),
                            ShapeDisplay(qv.shape())
                        ),
                        nodes: vec![inner.node_ref(self.id), inner.node_ref(q.id)],
                    });
                }
            };
            let mut buf = pool.take(p.len())?;
            if width > 0 {
                let (pd, qd) = (p.data(), qv.data());
                let hidden = width / GATES;
                for_rows(
                    &mut buf,
                    width,
                    TRANSCENDENTAL_COST,
                    #[inline(always)]
                    move |r, ys| {
                        let [pr, pz, pn] = blocks(pd, r, hidden);
                        let [qr, qz, qn] = blocks(qd, r, hidden);
                        let [yr, yz, yn] = blocks_mut::<T, GATES>(ys, hidden);
                        for j in 0..hidden {
                            yr[j] = sigmoid(pr[j] + qr[j]);
                            yz[j] = sigmoid(pz[j] + qz[j]);
                            yn[j] = (pn[j] + yr[j] * qn[j]).kernel_tanh();
                        }
                    },
                );
            }
            Ok(Output::Tensor(Tensor::new(p.shape(), buf)?))
        })
    }

    /// The GRU hidden state from gates `self` (`[.., 3H]`, from [`Var::gru_gates`]) and
    /// the previous hidden state `h` (`[.., H]`, the same leading axes):
    /// `h' = (1 - z) ⊙ n + z ⊙ h`, computed as `n + z ⊙ (h - n)`. Backward:
    /// `∂h'/∂z = h - n`, `∂h'/∂n = 1 - z` (nothing to `r`), `∂h'/∂h = z`. PyTorch:
    /// inside `nn.GRUCell`, `(1 - z) * n + z * h`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let gates = tape.var(Tensor::from([0.5, 0.25, 2.0])); // r, z, n; H = 1
    /// let h = gates.gru_hidden(tape.var(Tensor::from([4.0])));
    /// assert_eq!(h.value().data(), &[2.0 + 0.25 * (4.0 - 2.0)]);
    /// ```
    pub fn gru_hidden(self, h: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_gru_hidden(h))
    }

    /// The fallible form of [`Var::gru_hidden`]: an error naming the op, both shapes
    /// and both nodes unless `self` is `[.., 3H]` and `h` is `[.., H]` with the same
    /// leading axes.
    pub fn try_gru_hidden(self, h: Var<'t, T>) -> Result<Var<'t, T>> {
        self.record_state_op(
            Op::GruHidden,
            GATES,
            1,
            h,
            #[inline(always)]
            |gates, h, out| {
                let [_, z, n] = blocks::<_, GATES>(gates, 0, out.len());
                let h = &h[..out.len()];
                for (j, y) in out.iter_mut().enumerate() {
                    *y = n[j] + z[j] * (h[j] - n[j]);
                }
            },
        )
    }
}

/// Backward of `gru_gates` (the formulas of [`Var::gru_gates`]): `tanh`'s derivative
/// as `(1 - n)(1 + n)`, the sigmoid's as `(1 - y) y`, in the order the recorded rule
/// keeps.
pub(crate) fn gru_gates_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let width = cx.out.shape().last().copied().unwrap_or(0);
    if width == 0 {
        return;
    }
    let hidden = width / GATES;
    let (g, y, q) = (cx.g.data(), cx.out.data(), cx.input(1).data());
    for side in 0..2 {
        if !cx.needs(side) {
            continue;
        }
        let (grad, fresh) = sink.grad_for_write(cx.parent(side));
        for_rows(
            grad,
            width,
            1,
            #[inline(always)]
            move |r, ds| {
                let [gr, gz, gn] = blocks(g, r, hidden);
                let [yr, yz, yn] = blocks(y, r, hidden);
                let qn = blocks::<T, GATES>(q, r, hidden)[2];
                let [dr, dz, dn] = blocks_mut::<T, GATES>(ds, hidden);
                let one = T::one();
                put(dr, fresh, [gr, gn, yn, qn, yr], |[gr, gn, n, qn, r]| {
                    (gr + (gn * ((one - n) * (one + n))) * qn) * ((one - r) * r)
                });
                put(dz, fresh, [gz, yz], |[g, z]| g * ((one - z) * z));
                if side == 0 {
                    put(dn, fresh, [gn, yn], |[g, n]| g * ((one - n) * (one + n)));
                } else {
                    put(dn, fresh, [gn, yn, yr], |[g, n, r]| {
                        (g * ((one - n) * (one + n))) * r
                    });
                }
            },
        );
    }
}

/// The three gate blocks of a recorded `[.., 3H]` node, as slices along its last axis.
fn gate_vars<'t, T: Float>(a: Var<'t, T>) -> Result<[Var<'t, T>; GATES]> {
    super::gate_vars(a)
}

/// `(1 - y) y` and `(1 - y)(1 + y)` recorded: the sigmoid's and `tanh`'s derivatives
/// from their outputs, as the fast rule computes them.
fn sigmoid_slope<'t, T: Float>(y: Var<'t, T>) -> Result<Var<'t, T>> {
    y.try_rsub_scalar(T::one())?.try_mul(y)
}

fn tanh_slope<'t, T: Float>(y: Var<'t, T>) -> Result<Var<'t, T>> {
    y.try_rsub_scalar(T::one())?
        .try_mul(y.try_add_scalar(T::one())?)
}

/// Differentiable backward of `gru_gates`: the fast rule's formulas, recorded.
pub(crate) fn gru_gates_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let [yr, yz, yn] = gate_vars(cx.out())?;
    let [gr, gz, gn] = gate_vars(g)?;
    let qn = gate_vars(cx.input(1))?[2];
    let dn = gn.try_mul(tanh_slope(yn)?)?;
    let dr = gr.try_add(dn.try_mul(qn)?)?.try_mul(sigmoid_slope(yr)?)?;
    let dz = gz.try_mul(sigmoid_slope(yz)?)?;
    let dp = if cx.needs(0) {
        Some(Var::try_concat(&[dr, dz, dn], -1)?)
    } else {
        None
    };
    let dq = if cx.needs(1) {
        Some(Var::try_concat(&[dr, dz, dn.try_mul(yr)?], -1)?)
    } else {
        None
    };
    Ok(smallvec![dp, dq])
}

/// Tangent of `gru_gates`: `ṙ = (1 - r) r (ṗ_r + q̇_r)`, `ż = (1 - z) z (ṗ_z + q̇_z)`,
/// `ṅ = (1 - n)(1 + n)(ṗ_n + ṙ ⊙ q_n + r ⊙ q̇_n)`.
pub(crate) fn gru_gates_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let [yr, yz, yn] = gate_vars(cx.out())?;
    let qn = gate_vars(cx.input(1))?[2];
    let tp = t[0].map(gate_vars).transpose()?;
    let tq = t[1].map(gate_vars).transpose()?;
    let sum = |k: usize| add_opt(tp.map(|b| b[k]), tq.map(|b| b[k]));
    let tr = sum(0)?.map(|v| v.try_mul(sigmoid_slope(yr)?)).transpose()?;
    let tz = sum(1)?.map(|v| v.try_mul(sigmoid_slope(yz)?)).transpose()?;
    let inner = add_opt(
        tp.map(|b| b[2]),
        add_opt(
            tr.map(|v| v.try_mul(qn)).transpose()?,
            tq.map(|b| yr.try_mul(b[2])).transpose()?,
        )?,
    )?;
    let tn = inner.map(|v| v.try_mul(tanh_slope(yn)?)).transpose()?;
    let mut block = cx.shape(1).to_vec();
    if let Some(last) = block.last_mut() {
        *last /= GATES;
    }
    Ok(Some(join_gates(cx, &block, [tr, tz, tn])?))
}

/// Backward of `gru_hidden`: `gz += g (h - n)`, `gn += g (1 - z)` (nothing to `r`: zeros
/// on a first reach), `gh += g z`.
pub(crate) fn gru_hidden_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let hidden = cx.g.shape().last().copied().unwrap_or(0);
    if hidden == 0 {
        return;
    }
    let (g, a, h) = (cx.g.data(), cx.input(0).data(), cx.input(1).data());
    if cx.needs(0) {
        let (grad, fresh) = sink.grad_for_write(cx.parent(0));
        for_rows(
            grad,
            GATES * hidden,
            1,
            #[inline(always)]
            move |r, ds| {
                let [_, z, n] = blocks::<T, GATES>(a, r, hidden);
                let (gr, hr) = (row(g, r, hidden), row(h, r, hidden));
                let [dr, dz, dn] = blocks_mut::<T, GATES>(ds, hidden);
                if fresh {
                    dr.fill(T::zero());
                }
                put(dz, fresh, [gr, hr, n], |[g, h, n]| g * (h - n));
                put(dn, fresh, [gr, z], |[g, z]| g * (T::one() - z));
            },
        );
    }
    if cx.needs(1) {
        let (grad, fresh) = sink.grad_for_write(cx.parent(1));
        for_rows(
            grad,
            hidden,
            1,
            #[inline(always)]
            move |r, d| {
                let z = blocks::<T, GATES>(a, r, hidden)[1];
                put(d, fresh, [row(g, r, hidden), z], |[g, z]| g * z);
            },
        );
    }
}

/// Differentiable backward of `gru_hidden`: `[0 | g ⊙ (h - n) | g ⊙ (1 - z)]` and `g ⊙ z`.
pub(crate) fn gru_hidden_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (a, h) = (cx.input(0), cx.input(1));
    let [_, z, n] = gate_vars(a)?;
    let da = if cx.needs(0) {
        let dz = g.try_mul(h.try_sub(n)?)?;
        let dn = g.try_mul(z.try_rsub_scalar(T::one())?)?;
        Some(join_gates(cx, &cx.shape(1), [None, Some(dz), Some(dn)])?)
    } else {
        None
    };
    let dh = if cx.needs(1) {
        Some(g.try_mul(z)?)
    } else {
        None
    };
    Ok(smallvec![da, dh])
}

/// Tangent of `gru_hidden`: `ż ⊙ (h - n) + ṅ ⊙ (1 - z) + z ⊙ ḣ`.
pub(crate) fn gru_hidden_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (a, h) = (cx.input(0), cx.input(1));
    let [_, z, n] = gate_vars(a)?;
    let mut out = None;
    if let Some(ta) = t[0] {
        let [_, tz, tn] = gate_vars(ta)?;
        out = add_opt(out, Some(tz.try_mul(h.try_sub(n)?)?))?;
        out = add_opt(out, Some(tn.try_mul(z.try_rsub_scalar(T::one())?)?))?;
    }
    if let Some(th) = t[1] {
        out = add_opt(out, Some(z.try_mul(th)?))?;
    }
    Ok(out)
}
