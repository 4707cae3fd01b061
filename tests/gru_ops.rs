//! The fused GRU ops `gru_gates` and `gru_hidden`: gradients against central finite
//! differences (`descent::gradcheck`, f64), values and gradients against the same cell
//! written from `slice`, `sigmoid`, `tanh`, `mul`, `add` and `sub` (f64 and f32), their
//! error messages, and a backward pass as an insta snapshot. Their second derivatives
//! and tangents are in descent-backprop's `higher_order.rs`, their agreement with JAX
//! in `random_programs.rs`, and the GRU layer built on them against PyTorch in
//! descent-nn's `torch_recurrent.rs`. The helpers are `lstm_ops.rs`'s.

use crate::lstm_ops::{check, max_rel, refused, uniform, weighted, with_last};
use descent::backprop::{RenderOptions, render};
use descent::prelude::*;
use descent::tensor::Float;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn each_op_passes_a_gradient_check() {
    let mut rng = ChaCha8Rng::seed_from_u64(51);
    for lead in [&[][..], &[3], &[2, 3]] {
        for hidden in [1, 3] {
            let gates = with_last(lead, 3 * hidden);
            let state = with_last(lead, hidden);
            let what = |op: &str| format!("{op} gates {gates:?} state {state:?}");
            let p = uniform(&mut rng, &gates, 2.0);
            let q = uniform(&mut rng, &gates, 2.0);
            check(&what("gru_gates"), &[p.clone(), q.clone()], |tape, v| {
                weighted(tape, v[0].gru_gates(v[1]).powi(2))
            });
            let a = uniform(&mut rng, &gates, 1.0);
            let h = uniform(&mut rng, &state, 2.0);
            check(&what("gru_hidden"), &[a, h.clone()], |tape, v| {
                weighted(tape, v[0].gru_hidden(v[1]).sin())
            });
            // Two steps, the hidden state feeding the next step's `q` and its own
            // update, the first step's gates fanning out.
            check(&what("two cell steps"), &[p, q, h], |tape, v| {
                let a1 = v[0].gru_gates(v[1]);
                let h1 = a1.gru_hidden(v[2]);
                let a2 = v[0].gru_gates(v[1] * h1.sum() + a1);
                let h2 = a2.gru_hidden(h1);
                weighted(tape, h2) + weighted(tape, h1 * h1)
            });
        }
    }
}

/// The same cell from the ops it fuses.
fn composite<'t, T: Float>(p: Var<'t, T>, q: Var<'t, T>, h: Var<'t, T>) -> Var<'t, T> {
    let shape = p.shape();
    let axis = shape.len() as isize - 1;
    let hidden = shape[shape.len() - 1] / 3;
    let gate = |v: Var<'t, T>, k: usize| v.slice(axis, k * hidden, (k + 1) * hidden);
    let r = (gate(p, 0) + gate(q, 0)).sigmoid();
    let z = (gate(p, 1) + gate(q, 1)).sigmoid();
    let n = (gate(p, 2) + r * gate(q, 2)).tanh();
    n + z * (h - n)
}

fn fused<'t, T: Float>(p: Var<'t, T>, q: Var<'t, T>, h: Var<'t, T>) -> Var<'t, T> {
    p.gru_gates(q).gru_hidden(h)
}

/// A cell from both projections and the previous hidden state to the new one.
type CellFn<T> = for<'t> fn(Var<'t, T>, Var<'t, T>, Var<'t, T>) -> Var<'t, T>;

/// The new hidden state, and the gradients of `Σ w ⊙ h'` with respect to `p`, `q` and
/// `h`, of one cell built by `cell`.
fn run<T: Float>(cell: CellFn<T>, inputs: &[Tensor<T>; 3]) -> [Vec<T>; 4] {
    let tape = Tape::<T>::new();
    let v = inputs.clone().map(|t| tape.var(t));
    let out = cell(v[0], v[1], v[2]);
    let w = Tensor::from_fn(&out.shape(), |i| T::from_f64(0.5 + 0.125 * (i % 7) as f64));
    let grads = (out * tape.constant(w)).sum().backward();
    [
        out.value().data().to_vec(),
        grads.wrt(v[0]).data().to_vec(),
        grads.wrt(v[1]).data().to_vec(),
        grads.wrt(v[2]).data().to_vec(),
    ]
}

/// The fused ops compute the composite's value bit for bit (the same functions in the
/// same order); gradients differ by rounding only (`tanh`'s derivative is `(1 - n)(1 + n)`
/// against `1 - n²`, and sums meet in another order).
fn agrees_with_the_composite<T: Float>(what: &str, gradient_bound: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(52);
    for (batch, hidden) in [(1, 1), (4, 5), (32, 16)] {
        let mut draw = |shape: &[usize], b: f64| {
            Tensor::from_fn(shape, |_| T::from_f64(rng.random_range(-b..b)))
        };
        let inputs = [
            draw(&[batch, 3 * hidden], 3.0),
            draw(&[batch, 3 * hidden], 3.0),
            draw(&[batch, hidden], 2.0),
        ];
        let f = run::<T>(fused, &inputs);
        let c = run::<T>(composite, &inputs);
        assert_eq!(f[0], c[0], "{what} [{batch}, {hidden}]: h'");
        for (k, name) in [(1, "∂/∂p"), (2, "∂/∂q"), (3, "∂/∂h")] {
            let d = max_rel(&f[k], &c[k]);
            assert!(
                d <= gradient_bound,
                "{what} [{batch}, {hidden}]: {name} differs by {d:e} relative"
            );
        }
    }
}

#[test]
fn the_fused_cell_agrees_with_the_composite_in_f64() {
    agrees_with_the_composite::<f64>("f64", 1e-14);
}

#[test]
fn the_fused_cell_agrees_with_the_composite_in_f32() {
    agrees_with_the_composite::<f32>("f32", 1e-5);
}

#[test]
fn a_backward_pass_through_one_cell() {
    let tape = Tape::<f64>::new();
    let p = tape
        .var(Tensor::from([[0.5, -1.0, 0.25], [-0.5, 1.5, -2.0]]))
        .named("p");
    let q = tape
        .var(Tensor::from([[0.25, 0.5, -1.0], [1.0, -0.5, 0.75]]))
        .named("q");
    let h0 = tape.var(Tensor::from([[0.75], [-1.25]])).named("h0");
    let a = p.gru_gates(q).named("a");
    let h = a.gru_hidden(h0).named("h");
    let loss = weighted(&tape, h);
    let grads = loss.backward();
    let text = render(&tape, Some(&grads), &RenderOptions::default());
    insta::assert_snapshot!("gru_cell_backward", text);
}

#[test]
fn wrong_shapes_name_the_op_the_shapes_and_the_nodes() {
    let tape = Tape::<f64>::new();
    let p = tape.var(Tensor::<f64>::zeros(&[2, 6])).named("p");
    for (shape, name) in [(&[2, 3][..], "narrow"), (&[3, 6], "tall"), (&[2, 5], "odd")] {
        let q = tape.var(Tensor::<f64>::zeros(shape)).named(name);
        let shape_text = format!("{shape:?}");
        refused(
            &tape,
            || p.try_gru_gates(q),
            || p.gru_gates(q),
            &["gru_gates", "[2, 6]", &shape_text, "p", name],
        );
    }
    let odd = tape.var(Tensor::<f64>::zeros(&[2, 5])).named("odd5");
    refused(
        &tape,
        || odd.try_gru_gates(odd),
        || odd.gru_gates(odd),
        &["gru_gates", "[2, 5]", "3 gates", "odd5"],
    );
    let a = tape.var(Tensor::<f64>::zeros(&[2, 6])).named("gates");
    for (shape, name) in [(&[2, 3][..], "wide"), (&[3, 2], "tall_h"), (&[2], "flat")] {
        let h = tape.var(Tensor::<f64>::zeros(shape)).named(name);
        let shape_text = format!("{shape:?}");
        refused(
            &tape,
            || a.try_gru_hidden(h),
            || a.gru_hidden(h),
            &["gru_hidden", "[2, 6]", &shape_text, "3H", "gates", name],
        );
    }
}

#[test]
fn empty_batches_give_empty_results_and_gradients() {
    let tape = Tape::<f64>::new();
    let p = tape.var(Tensor::<f64>::zeros(&[0, 6]));
    let q = tape.var(Tensor::<f64>::zeros(&[0, 6]));
    let h0 = tape.var(Tensor::<f64>::zeros(&[0, 2]));
    let h = p.gru_gates(q).gru_hidden(h0);
    assert_eq!(h.shape().as_slice(), [0, 2]);
    let grads = h.sum().backward();
    assert_eq!(grads.wrt(p).shape(), [0, 6]);
    assert_eq!(grads.wrt(q).shape(), [0, 6]);
    assert_eq!(grads.wrt(h0).shape(), [0, 2]);
}
