//! The worked example of `docs/guide/snapshot-testing.md`, run as a test so the guide
//! cannot go stale: a logistic-regression step on three points, its whole backward
//! pass rendered by `descent::backprop::render` and pinned as an insta snapshot
//! (`tests/snapshots/suite__guide_snapshot__logistic_regression.snap`).

use descent::backprop::{RenderOptions, render};
use descent::prelude::*;

#[test]
fn logistic_regression_backward_pass() {
    let tape = Tape::<f64>::new();
    let x = tape
        .constant(Tensor::from([[0.5, -1.0], [1.5, 2.0], [-0.5, 0.25]]))
        .named("x");
    let labels = tape
        .constant(Tensor::from([[1.0], [0.0], [1.0]]))
        .named("labels");
    let w = tape.var(Tensor::from([[0.2], [-0.4]])).named("w");
    let b = tape.var(0.1).named("b");
    let logits = {
        let _scope = tape.scope("linear");
        (x.matmul(w) + b).named("logits")
    };
    let loss = {
        let _scope = tape.scope("loss");
        logits.bce_with_logits(labels).named("loss")
    };
    let grads = loss.backward();

    let options = RenderOptions {
        digits: 4,               // enough to catch a wrong rule, few enough to be stable
        zero_below: Some(1e-12), // rounding noise near zero prints as 0
        ..RenderOptions::default()
    };
    insta::assert_snapshot!("logistic_regression", render(&tape, Some(&grads), &options));
}
