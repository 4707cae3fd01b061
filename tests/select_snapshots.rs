//! Backward passes of `where_cond`, `masked_fill` and `clamp` as insta snapshots: small
//! graphs on fixed inputs reduced to a scalar loss, rendered with
//! `descent::backprop::render`. The values are checked against finite differences in
//! `gradcheck_select.rs` and against JAX in `random_programs.rs`; these pin the whole
//! pass (values, gradients, the bounds kept on the tape, operand wiring).

use descent::backprop::{RenderOptions, render};
use descent::prelude::*;

fn snapshot(name: &str, tape: &Tape<f64>, loss: Var<'_, f64>) {
    let grads = loss.backward();
    let text = render(tape, Some(&grads), &RenderOptions::default());
    insta::assert_snapshot!(name, text);
}

/// `Σ w ⊙ y` with fixed weights, so every element's gradient differs.
fn weighted_sum<'t>(tape: &'t Tape<f64>, y: Var<'t, f64>) -> Var<'t, f64> {
    let shape = y.shape();
    let n = descent::tensor::numel(&shape);
    let w = Tensor::new(&shape, (0..n).map(|i| 0.5 + 0.25 * i as f64).collect()).unwrap();
    (y * tape.constant(w)).sum()
}

#[test]
fn where_cond_broadcast() {
    let tape = Tape::<f64>::new();
    // `a` is a row broadcast over two rows; `b` a full [2, 3].
    let a = tape.var(Tensor::from([1.0, 2.0, 3.0])).named("a");
    let b = tape
        .var(Tensor::from([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]]))
        .named("b");
    let cond = Tensor::from([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]);
    let y = a.where_cond(&cond, b);
    snapshot("where_cond_broadcast", &tape, weighted_sum(&tape, y));
}

#[test]
fn clamp_with_boundaries_and_masked_fill() {
    let tape = Tape::<f64>::new();
    // -1 and 1 sit on the bounds: their gradient passes, as in PyTorch.
    let x = tape
        .var(Tensor::from([-2.0, -1.0, -0.5, 0.5, 1.0, 3.0]))
        .named("x");
    let y = x.clamp(-1.0, 1.0);
    let z = y.masked_fill(&Tensor::from([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), 9.0);
    snapshot(
        "clamp_with_boundaries_and_masked_fill",
        &tape,
        weighted_sum(&tape, z),
    );
}
