//! Every op's backward pass as an insta snapshot: one small graph per op family, each
//! op applied to fixed inputs and reduced to a scalar loss, rendered with the same
//! renderer users get (`descent::backprop::render`). The values are checked against
//! finite differences in `gradcheck_ops.rs`; these snapshots pin the whole pass (values,
//! gradients, op attributes, operand wiring) so that any change to it is reviewed.

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

type UnaryFn = for<'t> fn(Var<'t, f64>) -> Var<'t, f64>;

/// Each op on a leaf of its own (so each leaf's gradient is that op's derivative times
/// the weights 0.5 and 0.75), the weighted sums added into one loss.
fn each_on_its_own_leaf(name: &str, input: [f64; 2], ops: &[(&str, UnaryFn)]) {
    let tape = Tape::<f64>::new();
    let mut total = tape.constant(0.0);
    for (op, f) in ops {
        let x = tape.var(Tensor::from(input)).named(&format!("x for {op}"));
        total = total + weighted_sum(&tape, f(x));
    }
    snapshot(name, &tape, total);
}

#[test]
fn unary_math_ops() {
    let ops: [(&str, UnaryFn); 12] = [
        ("neg", |x| -x),
        ("exp", |x| x.exp()),
        ("ln", |x| x.ln()),
        ("sqrt", |x| x.sqrt()),
        ("abs", |x| x.abs()),
        ("sin", |x| x.sin()),
        ("cos", |x| x.cos()),
        ("tanh", |x| x.tanh()),
        ("sinh", |x| x.sinh()),
        ("cosh", |x| x.cosh()),
        ("powf", |x| x.powf(1.5)),
        ("powi", |x| x.powi(3)),
    ];
    each_on_its_own_leaf("unary_math_ops", [0.3, 1.2], &ops);
}

#[test]
fn activations() {
    let ops: [(&str, UnaryFn); 5] = [
        ("sigmoid", |x| x.sigmoid()),
        ("relu", |x| x.relu()),
        ("leaky_relu", |x| x.leaky_relu(0.1)),
        ("gelu", |x| x.gelu()),
        ("softplus", |x| x.softplus()),
    ];
    each_on_its_own_leaf("activations", [-0.7, 0.4], &ops);
}

#[test]
fn binary_ops_with_broadcasting() {
    let tape = Tape::<f64>::new();
    let a = tape
        .var(Tensor::from([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        .named("a");
    let b = tape.var(Tensor::from([0.75, 1.25, -1.5])).named("b");
    let ops = [
        a + b,
        a - b,
        a * b,
        a / b,
        a.maximum(b),
        a.minimum(b),
        2.0 * a,
        a / 4.0,
    ];
    let total = ops
        .iter()
        .fold(tape.constant(0.0), |acc, &y| acc + weighted_sum(&tape, y));
    snapshot("binary_ops_with_broadcasting", &tape, total);
}

#[test]
fn reductions() {
    let tape = Tape::<f64>::new();
    let x = tape
        .var(Tensor::from([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        .named("x");
    let total = x.sum()
        + x.mean()
        + weighted_sum(&tape, x.sum_axis(0, false))
        + weighted_sum(&tape, x.mean_axis(-1, true))
        + weighted_sum(&tape, x.max_axis(1, false));
    snapshot("reductions", &tape, total);
}

#[test]
fn matrix_products() {
    let tape = Tape::<f64>::new();
    let a = tape
        .var(Tensor::from([[0.5, -1.0], [1.5, 0.25]]))
        .named("a");
    let w = tape
        .var(Tensor::from([[0.3, 0.7], [-0.2, 0.9], [1.1, -0.4]]))
        .named("w");
    let total = weighted_sum(&tape, a.matmul(w.t())) + weighted_sum(&tape, a.matmul_t(w));
    snapshot("matrix_products", &tape, total);
}

#[test]
fn shape_ops() {
    let tape = Tape::<f64>::new();
    let x = tape
        .var(Tensor::from([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        .named("x");
    let r = tape.var(Tensor::from([0.1, 0.2, 0.3])).named("r");
    let ops = [
        x.transpose(0, 1),
        x.reshape(&[3, 2]),
        r.broadcast_to(&[2, 3]),
        x.slice(1, 1, 3),
        Var::concat(&[x, r.reshape(&[1, 3])], 0),
        Var::stack(&[r, r], 0),
        x.gather(1, &[2, 2], &[2, 2, 0, 1]),
    ];
    let total = ops
        .iter()
        .fold(tape.constant(0.0), |acc, &y| acc + weighted_sum(&tape, y));
    snapshot("shape_ops", &tape, total);
}

#[test]
fn softmax_and_losses() {
    let tape = Tape::<f64>::new();
    let z = tape
        .var(Tensor::from([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        .named("z");
    let t = tape
        .constant(Tensor::from([[1.0, 0.0, 0.5], [0.0, 1.0, 0.25]]))
        .named("t");
    let total = weighted_sum(&tape, z.softmax(-1))
        + weighted_sum(&tape, z.log_softmax(0))
        + z.cross_entropy(&[2, 0])
        + z.mse(t)
        + z.bce_with_logits(t);
    snapshot("softmax_and_losses", &tape, total);
}

#[test]
fn scatter_add() {
    let tape = Tape::<f64>::new();
    let base = tape
        .var(Tensor::from([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        .named("base");
    let src = tape
        .var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]))
        .named("src");
    // Row 0 gets src[0][0] at column 2 and src[0][1] at column 2 again (they add).
    let y = base.scatter_add(1, &[2, 2], &[2, 2, 0, 1], src);
    snapshot("scatter_add", &tape, weighted_sum(&tape, y));
}
