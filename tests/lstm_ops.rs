//! The fused LSTM ops `lstm_gates`, `lstm_cell` and `lstm_hidden`: gradients against
//! central finite differences (`descent::gradcheck`, f64), values and gradients
//! against the same cell written from `slice`, `sigmoid`, `tanh`, `mul` and `add`
//! (f64 and f32), their error messages, and a backward pass as an insta snapshot.
//! Their second derivatives and tangents are in descent-backprop's `higher_order.rs`,
//! their agreement with JAX in `random_programs.rs`, and the LSTM layer built on them
//! against PyTorch in descent-nn's `torch_recurrent.rs`. `gru_ops.rs` uses this file's
//! helpers for the GRU's ops.

use descent::backprop::{RenderOptions, render};
use descent::prelude::*;
use descent::tensor::Float;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};

pub(crate) fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], bound: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.random_range(-bound..bound))
}

pub(crate) fn check<F>(what: &str, inputs: &[Tensor<f64>], f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report =
        gradcheck(inputs, f, GradCheckOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let total: usize = inputs.iter().map(Tensor::len).sum();
    assert_eq!(report.checked, total, "{what}: {report}");
    assert!(report.passed(), "{what}: {report}");
}

/// `Σ w ⊙ y` with a fixed, position-dependent `w`, so no two gradients coincide.
pub(crate) fn weighted<'t>(tape: &'t Tape<f64>, y: Var<'t, f64>) -> Var<'t, f64> {
    let shape = y.shape();
    let n = descent::tensor::numel(&shape);
    let w = Tensor::new(&shape, (0..n).map(|i| 0.3 + 0.17 * i as f64).collect()).unwrap();
    (y * tape.constant(w)).sum()
}

/// Leading axes and hidden sizes the checks run over: a single row, a batch, and a
/// batch of sequences.
const LEADS: [&[usize]; 3] = [&[], &[3], &[2, 3]];

pub(crate) fn with_last(lead: &[usize], last: usize) -> Vec<usize> {
    let mut s = lead.to_vec();
    s.push(last);
    s
}

#[test]
fn each_op_passes_a_gradient_check() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    for lead in LEADS {
        for hidden in [1, 3] {
            let gates = with_last(lead, 4 * hidden);
            let state = with_last(lead, hidden);
            let what = |op: &str| format!("{op} gates {gates:?} state {state:?}");
            let x = uniform(&mut rng, &gates, 2.0);
            check(&what("lstm_gates"), std::slice::from_ref(&x), |tape, v| {
                weighted(tape, v[0].lstm_gates().powi(2))
            });
            // `lstm_cell` and `lstm_hidden` take any gate values (they are polynomial in
            // them; tanh in `c` for the second).
            let a = uniform(&mut rng, &gates, 1.0);
            let c = uniform(&mut rng, &state, 2.0);
            check(&what("lstm_cell"), &[a.clone(), c.clone()], |tape, v| {
                weighted(tape, v[0].lstm_cell(v[1]).sin())
            });
            check(&what("lstm_hidden"), &[a, c.clone()], |tape, v| {
                weighted(tape, v[0].lstm_hidden(v[1]).sin())
            });
            // A whole cell, two steps, the gates fanning out to both state ops and the
            // cell state to the next step and to its own hidden state.
            let x2 = uniform(&mut rng, &gates, 2.0);
            check(&what("two cell steps"), &[x, x2, c], |tape, v| {
                let a1 = v[0].lstm_gates();
                let c1 = a1.lstm_cell(v[2]);
                let h1 = a1.lstm_hidden(c1);
                let a2 = (v[1] * h1.sum()).lstm_gates();
                let c2 = a2.lstm_cell(c1);
                let h2 = a2.lstm_hidden(c2);
                weighted(tape, h2) + weighted(tape, c2 * h1)
            });
        }
    }
}

/// The same cell from the ops it fuses: gates sliced out of `x`, `σ`, `tanh`, products.
fn composite<'t, T: Float>(x: Var<'t, T>, c_prev: Var<'t, T>) -> (Var<'t, T>, Var<'t, T>) {
    let shape = x.shape();
    let axis = shape.len() as isize - 1;
    let hidden = shape[shape.len() - 1] / 4;
    let gate = |k: usize| x.slice(axis, k * hidden, (k + 1) * hidden);
    let (i, f, g, o) = (
        gate(0).sigmoid(),
        gate(1).sigmoid(),
        gate(2).tanh(),
        gate(3).sigmoid(),
    );
    let c = f * c_prev + i * g;
    (c, o * c.tanh())
}

/// A cell from its pre-activations and previous cell state to `(c, h)`.
type CellFn<T> = for<'t> fn(Var<'t, T>, Var<'t, T>) -> (Var<'t, T>, Var<'t, T>);

fn fused<'t, T: Float>(x: Var<'t, T>, c_prev: Var<'t, T>) -> (Var<'t, T>, Var<'t, T>) {
    let a = x.lstm_gates();
    let c = a.lstm_cell(c_prev);
    (c, a.lstm_hidden(c))
}

/// Values, and gradients of `Σ w₁ ⊙ c + Σ w₂ ⊙ h` with respect to `x` and `c_prev`, of
/// one cell built by `cell`.
fn run<T: Float>(cell: CellFn<T>, x: &Tensor<T>, c_prev: &Tensor<T>) -> [Vec<T>; 4] {
    let tape = Tape::<T>::new();
    let (xv, cv) = (tape.var(x.clone()), tape.var(c_prev.clone()));
    let (c, h) = cell(xv, cv);
    fn w<'t, T: Float>(tape: &'t Tape<T>, y: Var<'t, T>, k: f64) -> Var<'t, T> {
        let w = Tensor::from_fn(&y.shape(), |i| T::from_f64(k + 0.125 * (i % 7) as f64));
        (y * tape.constant(w)).sum()
    }
    let grads = (w(&tape, c, 0.5) + w(&tape, h, -0.75)).backward();
    [
        c.value().data().to_vec(),
        h.value().data().to_vec(),
        grads.wrt(xv).data().to_vec(),
        grads.wrt(cv).data().to_vec(),
    ]
}

pub(crate) fn max_rel<T: Float>(got: &[T], want: &[T]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g.as_f64() - w.as_f64()).abs() / w.as_f64().abs().max(1.0))
        .fold(0.0, f64::max)
}

/// The fused ops compute the composite's values bit for bit (the same functions in the
/// same order). Their gradients differ by rounding only: `tanh`'s derivative is
/// `(1 - y)(1 + y)` in `lstm_gates` against `1 - y²`, and sums meet in another order.
fn agrees_with_the_composite<T: Float>(what: &str, gradient_bound: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for (batch, hidden) in [(1, 1), (4, 5), (32, 16)] {
        let x = Tensor::from_fn(&[batch, 4 * hidden], |_| {
            T::from_f64(rng.random_range(-3.0..3.0))
        });
        let c = Tensor::from_fn(&[batch, hidden], |_| {
            T::from_f64(rng.random_range(-2.0..2.0))
        });
        let [fc, fh, fgx, fgc] = run::<T>(fused, &x, &c);
        let [cc, ch, cgx, cgc] = run::<T>(composite, &x, &c);
        assert_eq!(fc, cc, "{what} [{batch}, {hidden}]: c");
        assert_eq!(fh, ch, "{what} [{batch}, {hidden}]: h");
        for (name, got, want) in [("∂/∂x", &fgx, &cgx), ("∂/∂c_prev", &fgc, &cgc)] {
            let d = max_rel(got, want);
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
    let x = tape
        .var(Tensor::from([
            [0.5, -1.0, 0.25, 2.0],
            [-0.5, 1.5, -2.0, 0.0],
        ]))
        .named("x");
    let c0 = tape.var(Tensor::from([[0.75], [-1.25]])).named("c0");
    let a = x.lstm_gates().named("a");
    let c = a.lstm_cell(c0).named("c");
    let h = a.lstm_hidden(c).named("h");
    let loss = weighted(&tape, h) + weighted(&tape, c);
    let grads = loss.backward();
    let text = render(&tape, Some(&grads), &RenderOptions::default());
    insta::assert_snapshot!("lstm_cell_backward", text);
}

pub(crate) fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(payload) => payload,
    };
    match (
        payload.downcast_ref::<String>(),
        payload.downcast_ref::<&str>(),
    ) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => (*s).to_owned(),
        (None, None) => panic!("the panic payload is not a string"),
    }
}

/// The fallible form fails naming every needle, records nothing, and the panicking
/// form panics with the same message.
pub(crate) fn refused<T>(
    tape: &Tape<f64>,
    fallible: impl FnOnce() -> descent::tape::Result<T>,
    panicking: impl FnOnce() -> T,
    needles: &[&str],
) {
    let before = tape.len();
    let message = match fallible() {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(e) => e.to_string(),
    };
    assert_eq!(tape.len(), before, "a refused op must record nothing");
    assert_eq!(panic_message(panicking), message);
    for needle in needles {
        assert!(
            message.contains(needle),
            "message lacks {needle:?}: {message}"
        );
    }
}

#[test]
fn wrong_shapes_name_the_op_the_shapes_and_the_nodes() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[2, 6])).named("pre");
    refused(
        &tape,
        || x.try_lstm_gates(),
        || x.lstm_gates(),
        &["lstm_gates", "[2, 6]", "4 gates", "pre"],
    );
    let s = tape.var(1.0).named("s");
    refused(
        &tape,
        || s.try_lstm_gates(),
        || s.lstm_gates(),
        &["lstm_gates", "[]", "s"],
    );

    let a = tape.var(Tensor::<f64>::zeros(&[2, 8])).named("gates");
    for (shape, name) in [(&[2, 3][..], "wide"), (&[3, 2], "tall"), (&[2], "flat")] {
        let c = tape.var(Tensor::<f64>::zeros(shape)).named(name);
        let shape_text = format!("{shape:?}");
        refused(
            &tape,
            || a.try_lstm_cell(c),
            || a.lstm_cell(c),
            &["lstm_cell", "[2, 8]", &shape_text, "gates", name],
        );
        refused(
            &tape,
            || a.try_lstm_hidden(c),
            || a.lstm_hidden(c),
            &["lstm_hidden", "[2, 8]", &shape_text, "gates", name],
        );
    }
}

#[test]
fn empty_batches_give_empty_results_and_gradients() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[0, 8]));
    let c0 = tape.var(Tensor::<f64>::zeros(&[0, 2]));
    let a = x.lstm_gates();
    let c = a.lstm_cell(c0);
    let h = a.lstm_hidden(c);
    assert_eq!(h.shape().as_slice(), [0, 2]);
    let grads = (h.sum() + c.sum()).backward();
    assert_eq!(grads.wrt(x).shape(), [0, 8]);
    assert_eq!(grads.wrt(c0).shape(), [0, 2]);
}
