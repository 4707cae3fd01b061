//! The `index_select` op (`crates/tape/src/ops/index.rs`): its gradient against
//! central finite differences, its backward pass as a reviewed snapshot, and every
//! way its input can be wrong, by message.

use descent::backprop::{RenderOptions, render};
use descent::prelude::*;
use descent::tensor::numel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};

fn check<F>(what: &str, inputs: &[Tensor<f64>], f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report =
        gradcheck(inputs, f, GradCheckOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let total: usize = inputs.iter().map(Tensor::len).sum();
    assert_eq!(report.checked, total, "{what}: {report}");
    assert!(report.passed(), "{what}: {report}");
}

/// Random shapes of 1 to 4 axes, every axis (negative too), index shapes of 0 to 2
/// axes with repeats drawn often (they must accumulate).
#[test]
fn gradcheck_index_select() {
    let mut r = ChaCha8Rng::seed_from_u64(19);
    for case in 0..24 {
        let ndim = r.random_range(1..=4);
        let shape: Vec<usize> = (0..ndim).map(|_| r.random_range(1..=3)).collect();
        let ax = r.random_range(0..ndim);
        let index_shape: Vec<usize> = (0..r.random_range(0..=2))
            .map(|_| r.random_range(1..=4))
            .collect();
        let index: Vec<usize> = (0..numel(&index_shape))
            .map(|_| r.random_range(0..shape[ax]))
            .collect();
        let x = Tensor::from_fn(&shape, |_| r.random_range(-2.0..2.0));
        let axis = if case % 2 == 0 {
            ax as isize
        } else {
            ax as isize - ndim as isize
        };
        // A weighted sum, so that every output element's cotangent differs.
        check(
            &format!("index_select({axis}, {index_shape:?}, {index:?}) of {shape:?}"),
            std::slice::from_ref(&x),
            |tape, v| {
                let y = v[0].index_select(axis, &index_shape, &index);
                let n = numel(&y.shape());
                let w = Tensor::new(&y.shape(), (0..n).map(|i| 1.0 + 0.5 * i as f64).collect())
                    .unwrap();
                (y * tape.constant(w)).sum()
            },
        );
    }
}

/// Hand-derived: rows 1, 1, 0 of a [3, 2] table with cotangents 1, 10, 100 per row:
/// row 1 gets 1 + 10, row 0 gets 100, row 2 nothing.
#[test]
fn repeated_rows_accumulate() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]));
    let y = x.index_select(0, &[3], &[1, 1, 0]);
    assert_eq!(y.value().data(), &[3.0, 4.0, 3.0, 4.0, 1.0, 2.0]);
    let g = Tensor::from([[1.0, 1.0], [10.0, 10.0], [100.0, 100.0]]);
    let grads = y.backward_with(&g);
    assert_eq!(grads.wrt(x).data(), &[100.0, 100.0, 11.0, 11.0, 0.0, 0.0]);
}

/// An empty index gives an empty result and a zero gradient; a 0-d index drops the
/// axis (`x[i]`).
#[test]
fn empty_and_scalar_indices() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    assert_eq!(x.index_select(1, &[0], &[]).shape().as_slice(), &[2, 0]);
    let row = x.index_select(0, &[], &[1]);
    assert_eq!(row.shape().as_slice(), &[2]);
    assert_eq!(row.value().data(), &[3.0, 4.0]);
}

/// `Σ w ⊙ y` with weights 0.5, 0.75, 1.0, ..., so every element's gradient differs.
fn weighted_sum<'t>(tape: &'t Tape<f64>, y: Var<'t, f64>) -> Var<'t, f64> {
    let n = numel(&y.shape());
    let w = Tensor::new(&y.shape(), (0..n).map(|i| 0.5 + 0.25 * i as f64).collect()).unwrap();
    (y * tape.constant(w)).sum()
}

#[test]
fn snapshot_backward() {
    let tape = Tape::<f64>::new();
    let x = tape
        .var(Tensor::from([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        .named("x");
    let rows = x.index_select(0, &[2, 2], &[1, 0, 1, 1]);
    let cols = x.index_select(-1, &[2], &[2, 0]);
    let loss = weighted_sum(&tape, rows) + weighted_sum(&tape, cols);
    let grads = loss.backward();
    let text = render(&tape, Some(&grads), &RenderOptions::default());
    insta::assert_snapshot!("index_select_backward", text);
}

fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => p,
    };
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .expect("a string payload")
}

/// The fallible form's message, checked to be the panicking form's too.
fn same_error<'t>(x: Var<'t, f64>, axis: isize, index_shape: &[usize], index: &[usize]) -> String {
    let Err(e) = x.try_index_select(axis, index_shape, index) else {
        panic!("expected an error");
    };
    let message = e.to_string();
    let panicked = panic_message(|| x.index_select(axis, index_shape, index));
    assert_eq!(panicked, message);
    message
}

#[test]
fn errors_name_op_shapes_and_node() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[2, 3])).named("table");
    assert_eq!(
        same_error(x, 1, &[2, 2], &[0, 1, 2, 3]),
        "index_select: index 3 at position 3 is out of range for an axis of extent 3 \
         (operand: node 0 'table' (var, shape [2, 3]))"
    );
    assert_eq!(
        same_error(x, 0, &[2, 2], &[0, 1, 1]),
        "index_select: index shape [2, 2] needs 4 indices, 3 were given \
         (operand: node 0 'table' (var, shape [2, 3]))"
    );
    assert_eq!(
        same_error(x, -3, &[1], &[0]),
        "index_select: axis -3 is out of range for a tensor with 2 axes \
         (operand: node 0 'table' (var, shape [2, 3]))"
    );
    let s = tape.var(1.0).named("s");
    assert_eq!(
        same_error(s, 0, &[1], &[0]),
        "index_select: a scalar has no axis to select along; reshape it to [1] first \
         (operand: node 1 's' (var, shape []))"
    );
    // Nothing was recorded by the failed calls.
    assert_eq!(tape.len(), 2);
    // A stale handle.
    tape.reset();
    assert!(
        x.try_index_select(0, &[1], &[0])
            .unwrap_err()
            .to_string()
            .contains("before the tape was reset")
    );
}
