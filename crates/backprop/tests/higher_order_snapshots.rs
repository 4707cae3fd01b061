//! Differentiable backward passes as insta snapshots: the tape after `grad` (forward
//! nodes, then the backward recorded in the scope `backward`), with the gradients of a
//! second, fast walk from the recorded gradient. The values are checked against finite
//! differences in `higher_order.rs`; these pin which ops each differentiable rule
//! records and how they are wired.

use descent_backprop::{RenderOptions, backward, grad, jvp, render};
use descent_tape::Tape;
use descent_tensor::Tensor;

fn snapshot(name: &str, tape: &Tape<f64>, out: descent_tape::Var<'_, f64>) {
    let grads = backward(out).unwrap();
    insta::assert_snapshot!(name, render(tape, Some(&grads), &RenderOptions::default()));
}

#[test]
fn second_derivative_of_a_scalar_chain() {
    // y = x·tanh(x); dy/dx recorded, then differentiated by the fast walk:
    // d²y/dx² = 2(1 − t²) − 2x·t(1 − t²) with t = tanh x.
    let tape = Tape::<f64>::new();
    let x = tape.var(0.5).named("x");
    let y = (x * x.tanh()).named("y");
    let dy = grad(y, &[x]).unwrap()[0].named("dy/dx");
    snapshot("second_derivative_of_a_scalar_chain", &tape, dy);
}

#[test]
fn gradient_norm_of_a_linear_layer() {
    // The gradient-norm penalty ‖∇_W L‖² of a softmax cross-entropy layer: its
    // recorded backward (matmul_t, softmax, one-hot) differentiated once more.
    let tape = Tape::<f64>::new();
    let x = tape
        .constant(Tensor::from([[0.5, -1.0], [1.5, 0.25]]))
        .named("x");
    let w = tape
        .var(Tensor::from([[0.1, 0.2], [-0.3, 0.4], [0.5, -0.6]]))
        .named("w");
    let loss = x.matmul_t(w).cross_entropy(&[2, 0]).named("loss");
    let gw = grad(loss, &[w]).unwrap()[0].named("dloss/dw");
    snapshot("gradient_norm_of_a_linear_layer", &tape, (gw * gw).sum());
}

#[test]
fn tangent_of_a_softmax() {
    // Forward mode: the tangent of Σ softmax(x)·c along v, recorded in the scope
    // `tangent`, then its gradient with respect to x (reverse over forward).
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([[0.5, -1.0, 2.0]])).named("x");
    let c = tape.constant(Tensor::from([[1.0, 2.0, 3.0]]));
    let y = (x.softmax(1) * c).sum().named("y");
    let v = tape.constant(Tensor::from([[1.0, 0.0, -1.0]]));
    let t = jvp(y, &[x], &[v]).unwrap().named("dy.v");
    snapshot("tangent_of_a_softmax", &tape, t);
}
