//! The element-wise part of an LSTM cell as three fused ops, with their three rules
//! side by side: `lstm_gates` (the gate activations), `lstm_cell` (the new cell state)
//! and `lstm_hidden` (the new hidden state). Written from `slice`, `sigmoid`, `tanh`,
//! `mul` and `add`, one step records thirteen nodes and copies every gate out of the
//! pre-activations; fused, it records three and copies nothing (W8 in
//! `docs/PERFORMANCE.md` measures what that saves).
//!
//! Gates follow PyTorch's order along the last axis: `i, f, g, o`, each `H` wide, so a
//! pre-activation row is `[x_i | x_f | x_g | x_o]` (`4H` numbers), as `nn.LSTM`'s
//! `weight_ih_l0` rows produce it. The GRU's two fused ops are in `recurrent/gru.rs`.

mod gru;
pub(crate) use gru::{
    gru_gates_backward, gru_gates_jvp, gru_gates_vjp, gru_hidden_backward, gru_hidden_jvp,
    gru_hidden_vjp,
};

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, add_opt};
use crate::Var;
use crate::error::{Error, Result};
use crate::ops::activation::sigmoid;
use crate::tape::{Inner, Output};
use descent_tensor::{Float, ShapeDisplay, TRANSCENDENTAL_COST, Tensor, for_each_block_at_cost};
use smallvec::smallvec;

/// Gate blocks per row: `i, f, g, o`.
const GATES: usize = 4;

impl<'t, T: Float> Var<'t, T> {
    /// The LSTM gate activations of pre-activations `x` (`[.., 4H]`, PyTorch's order
    /// `i, f, g, o` along the last axis): `[σ(x_i) | σ(x_f) | tanh(x_g) | σ(x_o)]`.
    /// Backward, from the output `y`: `(1 - y)·y` on the sigmoid blocks and
    /// `(1 - y)·(1 + y)` on the `tanh` block. PyTorch: inside `nn.LSTMCell`,
    /// `i, f, g, o = gates.chunk(4, -1)` then `sigmoid`, `sigmoid`, `tanh`, `sigmoid`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([0.0, 0.0, 1.0, 0.0]));  // H = 1
    /// let y = x.lstm_gates();
    /// assert_eq!(y.value().data(), &[0.5, 0.5, 1f64.tanh(), 0.5]);
    /// ```
    pub fn lstm_gates(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_lstm_gates())
    }

    /// The fallible form of [`Var::lstm_gates`]: an error naming the op, the shape and
    /// the node when the operand is a scalar or its last axis is not a multiple of 4.
    pub fn try_lstm_gates(self) -> Result<Var<'t, T>> {
        self.tape.record(Op::LstmGates, &[self], |inner, pool| {
            let x = inner.view(self.id);
            let width = match x.shape().last() {
                Some(&w) if w % GATES == 0 => w,
                _ => {
                    return Err(Error::Shape {
                        op: "lstm_gates",
                        reason: format!(
                            "pre-activations of shape {} need a last axis of 4 gates × hidden",
                            ShapeDisplay(x.shape())
                        ),
                        node: inner.node_ref(self.id),
                    });
                }
            };
            let mut buf = pool.take(x.len())?;
            if width > 0 {
                let xd = x.data();
                let hidden = width / GATES;
                for_rows(
                    &mut buf,
                    width,
                    TRANSCENDENTAL_COST,
                    #[inline(always)]
                    move |r, ys| {
                        let xs = blocks::<_, GATES>(xd, r, hidden);
                        for (k, y) in blocks_mut::<_, GATES>(ys, hidden).into_iter().enumerate() {
                            if k == 2 {
                                for (y, &v) in y.iter_mut().zip(xs[k]) {
                                    *y = v.kernel_tanh();
                                }
                            } else {
                                for (y, &v) in y.iter_mut().zip(xs[k]) {
                                    *y = sigmoid(v);
                                }
                            }
                        }
                    },
                );
            }
            Ok(Output::Tensor(Tensor::new(x.shape(), buf)?))
        })
    }

    /// The LSTM cell state from gate activations `self` (`[.., 4H]`, from
    /// [`Var::lstm_gates`]) and the previous cell state `c_prev` (`[.., H]`, the same
    /// leading axes): `c = f ⊙ c_prev + i ⊙ g`. Backward: `∂c/∂i = g`, `∂c/∂f = c_prev`,
    /// `∂c/∂g = i` (nothing to `o`), `∂c/∂c_prev = f`. PyTorch: inside `nn.LSTMCell`,
    /// `c = f * c_prev + i * g`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let gates = tape.var(Tensor::from([0.5, 0.25, 2.0, 1.0])); // i, f, g, o; H = 1
    /// let c = gates.lstm_cell(tape.var(Tensor::from([4.0])));
    /// assert_eq!(c.value().data(), &[0.25 * 4.0 + 0.5 * 2.0]);
    /// ```
    pub fn lstm_cell(self, c_prev: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_lstm_cell(c_prev))
    }

    /// The fallible form of [`Var::lstm_cell`]: an error naming the op, both shapes and
    /// both nodes unless `self` is `[.., 4H]` and `c_prev` is `[.., H]` with the same
    /// leading axes.
    pub fn try_lstm_cell(self, c_prev: Var<'t, T>) -> Result<Var<'t, T>> {
        self.record_state_op(
            Op::LstmCell,
            GATES,
            1,
            c_prev,
            #[inline(always)]
            |gates, cp, out| {
                let [i, f, g, _] = blocks::<_, GATES>(gates, 0, out.len());
                let cp = &cp[..out.len()];
                for (j, y) in out.iter_mut().enumerate() {
                    *y = f[j] * cp[j] + i[j] * g[j];
                }
            },
        )
    }

    /// The LSTM hidden state from gate activations `self` (`[.., 4H]`) and the cell
    /// state `c` (`[.., H]`, the same leading axes): `h = o ⊙ tanh(c)`. Backward:
    /// `∂h/∂o = tanh(c)` (nothing to `i, f, g`), `∂h/∂c = o·(1 - tanh²(c))`. PyTorch:
    /// inside `nn.LSTMCell`, `h = o * torch.tanh(c)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let gates = tape.var(Tensor::from([0.5, 0.25, 2.0, 0.5])); // i, f, g, o; H = 1
    /// let h = gates.lstm_hidden(tape.var(Tensor::from([1.0])));
    /// assert_eq!(h.value().data(), &[0.5 * 1f64.tanh()]);
    /// ```
    pub fn lstm_hidden(self, c: Var<'t, T>) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_lstm_hidden(c))
    }

    /// The fallible form of [`Var::lstm_hidden`], with the errors of
    /// [`Var::try_lstm_cell`].
    pub fn try_lstm_hidden(self, c: Var<'t, T>) -> Result<Var<'t, T>> {
        self.record_state_op(
            Op::LstmHidden,
            GATES,
            TRANSCENDENTAL_COST,
            c,
            #[inline(always)]
            |gates, c, out| {
                let o = blocks::<_, GATES>(gates, 0, out.len())[3];
                let c = &c[..out.len()];
                for (j, y) in out.iter_mut().enumerate() {
                    *y = o[j] * c[j].kernel_tanh();
                }
            },
        )
    }

    /// Records an op from gates `self` (`[.., count·H]`) and a state (`[.., H]`, the
    /// same leading axes) to a new `[.., H]` state, row by row: `kernel(gates_row,
    /// state_row, out_row)`, an output element costing `cost` ([`for_rows`]). Mark
    /// `kernel` `#[inline(always)]`.
    fn record_state_op(
        self,
        op: Op,
        count: usize,
        cost: usize,
        state: Var<'t, T>,
        kernel: impl Fn(&[T], &[T], &mut [T]) + Sync,
    ) -> Result<Var<'t, T>> {
        self.tape.record(op, &[self, state], |inner, pool| {
            let hidden = check_state(inner, op.name(), count, self, state)?;
            let (a, s) = (inner.view(self.id), inner.view(state.id));
            let (ad, sd) = (a.data(), s.data());
            let mut buf = pool.take(s.len())?;
            if hidden > 0 {
                for_rows(
                    &mut buf,
                    hidden,
                    cost,
                    #[inline(always)]
                    move |r, out| kernel(row(ad, r, count * hidden), row(sd, r, hidden), out),
                );
            }
            Ok(Output::Tensor(Tensor::new(s.shape(), buf)?))
        })
    }
}

/// The hidden size `H` when `gates` is `[.., count·H]` and `state` is `[.., H]` with the
/// same leading axes; otherwise an error naming `op`, both shapes and both nodes.
fn check_state<T: Float>(
    inner: &Inner<T>,
    op: &'static str,
    count: usize,
    gates: Var<'_, T>,
    state: Var<'_, T>,
) -> Result<usize> {
    let (a, c) = (inner.shape(gates.id), inner.shape(state.id));
    if let (Some((&w, lead_a)), Some((&h, lead_c))) = (a.split_last(), c.split_last())
        && lead_a == lead_c
        && w == count * h
    {
        return Ok(h);
    }
    Err(Error::Shapes {
        op,
        reason: format!(
            "gate activations {} and state {} should be [.., {count}H] and [.., H] with the same leading axes",
            ShapeDisplay(a),
            ShapeDisplay(c)
        ),
        nodes: vec![inner.node_ref(gates.id), inner.node_ref(state.id)],
    })
}

/// The `K` gate blocks of row `r` of `[rows, K·H]` data.
#[inline(always)]
fn blocks<T, const K: usize>(data: &[T], r: usize, hidden: usize) -> [&[T]; K] {
    let row = &data[r * K * hidden..][..K * hidden];
    std::array::from_fn(|k| &row[k * hidden..][..hidden])
}

/// The `K` gate blocks of one `K·H` row, for writing.
#[inline(always)]
fn blocks_mut<T, const K: usize>(data: &mut [T], hidden: usize) -> [&mut [T]; K] {
    let mut parts = data.chunks_exact_mut(hidden.max(1));
    std::array::from_fn(|_| parts.next().expect("a row of K blocks"))
}

/// Runs `f(r, row)` over the rows of `width` elements of `out` (`r` counting from the
/// first row), in blocks of whole rows as [`for_each_block_at_cost`] splits them for
/// elements of `cost`: on the pool for a large `out`, compiled for the widest vectors.
/// Mark `f` `#[inline(always)]`.
#[inline(always)]
fn for_rows<T: Float>(
    out: &mut [T],
    width: usize,
    cost: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    for_each_block_at_cost(
        out,
        width,
        cost,
        #[inline(always)]
        move |offset, block| {
            for (row, data) in block.chunks_exact_mut(width).enumerate() {
                f(offset / width + row, data);
            }
        },
    );
}

/// Row `r` of `[rows, hidden]` data.
#[inline(always)]
fn row<T>(data: &[T], r: usize, hidden: usize) -> &[T] {
    &data[r * hidden..][..hidden]
}

/// Writes `term` of the inputs' elements `j` into `out[j]` on a first reach (`0 + term`,
/// the bits of adding into zeros), or adds it. The inputs are cut to `out`'s length
/// and indexed, the form LLVM vectorises (as `elementwise::write_or_add`).
#[inline(always)]
fn put<T: Float, const K: usize>(
    out: &mut [T],
    fresh: bool,
    inputs: [&[T]; K],
    term: impl Fn([T; K]) -> T,
) {
    let len = out.len();
    let ins: [&[T]; K] = inputs.map(|x| &x[..len]);
    if fresh {
        for (j, d) in out.iter_mut().enumerate() {
            *d = T::zero() + term(std::array::from_fn(|k| ins[k][j]));
        }
    } else {
        for (j, d) in out.iter_mut().enumerate() {
            *d += term(std::array::from_fn(|k| ins[k][j]));
        }
    }
}

/// `u` of the gate derivative `(1 - y)·(y + u)`: 0 for the sigmoid blocks (`y(1 - y)`),
/// 1 for the `tanh` block (`1 - y²` as `(1 - y)(1 + y)`).
#[inline(always)]
fn gate_shift<T: Float>(k: usize) -> T {
    if k == 2 { T::one() } else { T::zero() }
}

/// Backward of `lstm_gates`: `gx += g·(1 - y)·(y + u)`, `u` per block ([`gate_shift`]).
pub(crate) fn lstm_gates_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    if !cx.needs(0) {
        return;
    }
    let width = cx.out.shape().last().copied().unwrap_or(0);
    if width == 0 {
        return;
    }
    let hidden = width / GATES;
    let (g, y) = (cx.g.data(), cx.out.data());
    let (grad, fresh) = sink.grad_for_write(cx.parent(0));
    for_rows(
        grad,
        width,
        1,
        #[inline(always)]
        move |r, ds| {
            let (gs, ys) = (
                blocks::<_, GATES>(g, r, hidden),
                blocks::<_, GATES>(y, r, hidden),
            );
            for (k, d) in blocks_mut::<_, GATES>(ds, hidden).into_iter().enumerate() {
                let u = gate_shift::<T>(k);
                let (gk, yk) = (gs[k], ys[k]);
                put(d, fresh, [gk, yk], move |[g, y]| {
                    g * ((T::one() - y) * (y + u))
                });
            }
        },
    );
}

/// `(1 - y)·(y + u)` recorded: the derivative of `lstm_gates` from its output, `u` a
/// constant row of 0 (sigmoid blocks) and 1 (`tanh` block).
fn gates_derivative<'t, T: Float>(cx: &DiffCtx<'t, T>) -> Result<Var<'t, T>> {
    let y = cx.out();
    let width = cx.out_shape().last().copied().unwrap_or(0);
    let hidden = width / GATES;
    let shift: Vec<T> = (0..width).map(|c| gate_shift(c / hidden.max(1))).collect();
    let u = cx.tape.constant(Tensor::new(&[width], shift)?);
    y.try_rsub_scalar(T::one())?.try_mul(y.try_add(u)?)
}

/// Differentiable backward of `lstm_gates`: `g ⊙ (1 - y)(y + u)`.
pub(crate) fn lstm_gates_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(g.try_mul(gates_derivative(cx)?)?)])
}

/// Tangent of `lstm_gates`: `ẋ ⊙ (1 - y)(y + u)`.
pub(crate) fn lstm_gates_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(tx) = t[0] else { return Ok(None) };
    Ok(Some(tx.try_mul(gates_derivative(cx)?)?))
}

/// Backward of `lstm_cell`: `gi += g·g_gate`, `gf += g·c_prev`, `gg += g·i` (and
/// nothing to `o`: zeros on a first reach), `gc_prev += g·f`.
pub(crate) fn lstm_cell_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let hidden = cx.g.shape().last().copied().unwrap_or(0);
    if hidden == 0 {
        return;
    }
    let (g, a, cp) = (cx.g.data(), cx.input(0).data(), cx.input(1).data());
    if cx.needs(0) {
        let (grad, fresh) = sink.grad_for_write(cx.parent(0));
        for_rows(
            grad,
            GATES * hidden,
            1,
            #[inline(always)]
            move |r, ds| {
                let [i, _, gg, _] = blocks::<_, GATES>(a, r, hidden);
                let (gr, cr) = (row(g, r, hidden), row(cp, r, hidden));
                let [di, df, dg, d_o] = blocks_mut::<_, GATES>(ds, hidden);
                put(di, fresh, [gr, gg], |[g, x]| g * x);
                put(df, fresh, [gr, cr], |[g, x]| g * x);
                put(dg, fresh, [gr, i], |[g, x]| g * x);
                if fresh {
                    d_o.fill(T::zero());
                }
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
                let f = blocks::<_, GATES>(a, r, hidden)[1];
                let gr = row(g, r, hidden);
                put(d, fresh, [gr, f], |[g, f]| g * f);
            },
        );
    }
}

/// The `K` gate blocks of a recorded `[.., K·H]` node, as slices along its last axis.
fn gate_vars<'t, T: Float, const K: usize>(a: Var<'t, T>) -> Result<[Var<'t, T>; K]> {
    let shape = a.shape();
    let axis = shape.len() as isize - 1;
    let hidden = shape[shape.len() - 1] / K;
    let mut parts = Vec::with_capacity(K);
    for k in 0..K {
        parts.push(a.try_slice(axis, k * hidden, (k + 1) * hidden)?);
    }
    Ok(std::array::from_fn(|k| parts[k]))
}

/// `K` gate blocks of shape `block` (`[.., H]`) joined along the last axis, zeros
/// standing in for `None`.
fn join_gates<'t, T: Float, const K: usize>(
    cx: &DiffCtx<'t, T>,
    block: &[usize],
    parts: [Option<Var<'t, T>>; K],
) -> Result<Var<'t, T>> {
    let zero = cx.zeros(block);
    let parts = parts.map(|p| p.unwrap_or(zero));
    Var::try_concat(&parts, -1)
}

/// Differentiable backward of `lstm_cell`: `[g ⊙ g_gate | g ⊙ c_prev | g ⊙ i | 0]` and
/// `g ⊙ f`.
pub(crate) fn lstm_cell_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (a, cp) = (cx.input(0), cx.input(1));
    let [i, f, gg, _] = gate_vars::<_, GATES>(a)?;
    let da = if cx.needs(0) {
        Some(join_gates(
            cx,
            &cx.shape(1),
            [
                Some(g.try_mul(gg)?),
                Some(g.try_mul(cp)?),
                Some(g.try_mul(i)?),
                None,
            ],
        )?)
    } else {
        None
    };
    let dc = if cx.needs(1) {
        Some(g.try_mul(f)?)
    } else {
        None
    };
    Ok(smallvec![da, dc])
}

/// Tangent of `lstm_cell`: `ḟ ⊙ c_prev + f ⊙ ċ_prev + i̇ ⊙ g + i ⊙ ġ`.
pub(crate) fn lstm_cell_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (a, cp) = (cx.input(0), cx.input(1));
    let [i, f, gg, _] = gate_vars::<_, GATES>(a)?;
    let mut out = None;
    if let Some(ta) = t[0] {
        let [ti, tf, tg, _] = gate_vars::<_, GATES>(ta)?;
        out = add_opt(out, Some(tf.try_mul(cp)?))?;
        out = add_opt(out, Some(ti.try_mul(gg)?))?;
        out = add_opt(out, Some(i.try_mul(tg)?))?;
    }
    if let Some(tc) = t[1] {
        out = add_opt(out, Some(f.try_mul(tc)?))?;
    }
    Ok(out)
}

/// Backward of `lstm_hidden`: `go += g·tanh(c)` (and nothing to `i, f, g`: zeros on a
/// first reach), `gc += (g·o)·(1 - tanh²(c))`, `tanh(c)` recomputed.
pub(crate) fn lstm_hidden_backward<T: Float, S: GradSink<T>>(
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let hidden = cx.g.shape().last().copied().unwrap_or(0);
    if hidden == 0 {
        return;
    }
    let (g, a, c) = (cx.g.data(), cx.input(0).data(), cx.input(1).data());
    if cx.needs(0) {
        let (grad, fresh) = sink.grad_for_write(cx.parent(0));
        for_rows(
            grad,
            GATES * hidden,
            1,
            #[inline(always)]
            move |r, ds| {
                let (gr, cr) = (row(g, r, hidden), row(c, r, hidden));
                let [di, df, dg, d_o] = blocks_mut::<_, GATES>(ds, hidden);
                if fresh {
                    di.fill(T::zero());
                    df.fill(T::zero());
                    dg.fill(T::zero());
                }
                put(d_o, fresh, [gr, cr], |[g, c]| g * c.kernel_tanh());
            },
        );
    }
    if cx.needs(1) {
        let (grad, fresh) = sink.grad_for_write(cx.parent(1));
        for_rows(
            grad,
            hidden,
            TRANSCENDENTAL_COST,
            #[inline(always)]
            move |r, d| {
                let o = blocks::<_, GATES>(a, r, hidden)[3];
                let (gr, cr) = (row(g, r, hidden), row(c, r, hidden));
                put(d, fresh, [gr, o, cr], |[g, o, c]| {
                    let th = c.kernel_tanh();
                    (g * o) * (T::one() - th * th)
                });
            },
        );
    }
}

/// Differentiable backward of `lstm_hidden`: `[0 | 0 | 0 | g ⊙ tanh(c)]` and
/// `(g ⊙ o) ⊙ (1 - tanh²(c))`.
pub(crate) fn lstm_hidden_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (a, c) = (cx.input(0), cx.input(1));
    let th = c.try_tanh()?;
    let da = if cx.needs(0) {
        Some(join_gates(
            cx,
            &cx.shape(1),
            [None, None, None, Some(g.try_mul(th)?)],
        )?)
    } else {
        None
    };
    let dc = if cx.needs(1) {
        let o = gate_vars::<_, GATES>(a)?[3];
        let slope = th.try_mul(th)?.try_rsub_scalar(T::one())?;
        Some(g.try_mul(o)?.try_mul(slope)?)
    } else {
        None
    };
    Ok(smallvec![da, dc])
}

/// Tangent of `lstm_hidden`: `ȯ ⊙ tanh(c) + o ⊙ (1 - tanh²(c)) ⊙ ċ`.
pub(crate) fn lstm_hidden_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (a, c) = (cx.input(0), cx.input(1));
    let th = c.try_tanh()?;
    let mut out = None;
    if let Some(ta) = t[0] {
        out = add_opt(out, Some(gate_vars::<_, GATES>(ta)?[3].try_mul(th)?))?;
    }
    if let Some(tc) = t[1] {
        let o = gate_vars::<_, GATES>(a)?[3];
        let slope = th.try_mul(th)?.try_rsub_scalar(T::one())?;
        out = add_opt(out, Some(o.try_mul(slope)?.try_mul(tc)?))?;
    }
    Ok(out)
}
