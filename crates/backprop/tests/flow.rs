//! The gradient flow report on small hand-built MLPs: its text form as insta
//! snapshots, and its flags on the three ways a backward pass goes wrong.

use descent_backprop::{Backward, Flag, FlowOptions, FlowReport, ParamGrads};
use descent_tape::{ParamId, ParamStore, Tape};
use descent_tensor::Tensor;

/// A deterministic, sign-mixed `[rows, cols]` matrix with entries in `±scale`.
fn matrix(rows: usize, cols: usize, scale: f64, seed: usize) -> Tensor<f64> {
    Tensor::from_fn(&[rows, cols], |i| {
        let k = (i * 7 + seed * 13) % 17;
        scale * (k as f64 / 8.0 - 1.0)
    })
}

/// Layers `layer{i}` of sizes `sizes`, weight `[in, out]` scaled by `scales[i]`, bias
/// 0.1 (layer 1's bias 0, to show a ratio without a parameter norm).
fn mlp(store: &mut ParamStore<f64>, sizes: &[usize], scales: &[f64]) -> Vec<(ParamId, ParamId)> {
    sizes
        .windows(2)
        .zip(scales)
        .enumerate()
        .map(|(i, (w, &scale))| {
            let name = format!("layer{}", i + 1);
            let weight = store.insert(format!("{name}.weight"), matrix(w[0], w[1], scale, i));
            let bias_value = if i == 0 { 0.0 } else { 0.1 };
            let bias = store.insert(format!("{name}.bias"), Tensor::full(&[w[1]], bias_value));
            (weight, bias)
        })
        .collect()
}

/// `tanh` hidden layers, a linear output, mean squared error against zero, on a fixed
/// batch of 4; returns the report of one backward pass.
fn flow(scales: &[f64], options: FlowOptions) -> FlowReport {
    let mut store = ParamStore::new();
    let layers = mlp(&mut store, &[3, 5, 5, 2], scales);
    let tape = Tape::new();
    let mut h = tape.constant(matrix(4, 3, 1.0, 5));
    for (i, &(w, b)) in layers.iter().enumerate() {
        let _scope = tape.scope(&format!("layer{}", i + 1));
        h = h.matmul(tape.param(&store, w)) + tape.param(&store, b);
        if i + 1 < layers.len() {
            h = h.tanh();
        }
    }
    let loss = (h * h).mean();
    FlowReport::from_gradients(&loss.backward(), &store, options)
}

#[test]
fn a_healthy_mlp() {
    let report = flow(&[0.8, 0.8, 0.8], FlowOptions::default());
    assert_eq!(report.flagged().count(), 0);
    insta::assert_snapshot!("healthy", report.render());
}

#[test]
fn a_tiny_last_layer_starves_every_layer_before_it() {
    let report = flow(&[0.8, 0.8, 1e-9], FlowOptions::default());
    let flags: Vec<_> = report.layers().iter().map(|l| l.stats.flag).collect();
    assert_eq!(flags, [Some(Flag::Vanishing), Some(Flag::Vanishing), None]);
    insta::assert_snapshot!("vanishing", report.render());
}

#[test]
fn huge_weights_explode_the_gradient() {
    let report = flow(&[0.8, 0.8, 1e4], FlowOptions::default());
    assert_eq!(
        report.layer("layer3").unwrap().stats.flag,
        Some(Flag::Exploding)
    );
    insta::assert_snapshot!("exploding", report.render());
}

#[test]
fn thresholds_and_digits_are_options() {
    let options = FlowOptions {
        vanishing_below: 0.05,
        exploding_above: 0.5,
        digits: 2,
    };
    let report = flow(&[0.8, 0.8, 0.8], options);
    insta::assert_snapshot!("options", report.render());
}

#[test]
fn a_nan_gradient_is_flagged_non_finite() {
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("head.weight", Tensor::from([[1.0], [-1.0]]));
    let s = store.insert("head.scale", Tensor::from([0.0]));
    let tape = Tape::new();
    let x = tape.constant(Tensor::from([[1.0, 2.0]]));
    // sqrt'(0) is infinite, times 0 is NaN.
    let loss =
        (x.matmul(tape.param(&store, w)).sum() + tape.param(&store, s).sqrt().sum() * 0.0).sum();
    let report = FlowReport::from_gradients(&loss.backward(), &store, FlowOptions::default());
    let head = report.layer("head").unwrap();
    assert_eq!(head.stats.flag, Some(Flag::NonFinite));
    let flags: Vec<_> = report.params_of(head).map(|p| p.stats.flag).collect();
    assert_eq!(flags, [None, Some(Flag::NonFinite)]);
    insta::assert_snapshot!("non_finite", report.render());
}

#[test]
fn param_grads_and_gradients_give_the_same_report() {
    let mut store = ParamStore::<f32>::new();
    let w = store.insert("fc.weight", Tensor::from([[0.5f32, -0.25], [1.0, 2.0]]));
    let unused = store.insert("other.weight", Tensor::from([1.0f32]));
    let tape = Tape::new();
    let x = tape.constant(Tensor::from([[1.0f32, -1.0]]));
    let loss = x.matmul(tape.param(&store, w)).tanh().sum();
    let grads = loss.backward();
    let a = FlowReport::from_gradients(&grads, &store, FlowOptions::default());
    let b = FlowReport::new(&ParamGrads::from(&grads), &store, FlowOptions::default());
    assert_eq!(a, b);
    assert_eq!(grads.flow_report(&store), a);
    // Not bound on the tape: not in the report.
    assert!(a.params().iter().all(|p| p.id != unused));
    assert_eq!(a.layers().len(), 1);
}

#[test]
fn a_bound_parameter_no_gradient_reaches_vanishes() {
    let mut store = ParamStore::<f64>::new();
    let used = store.insert("a.weight", Tensor::from([2.0]));
    let dead = store.insert("b.weight", Tensor::from([3.0]));
    let tape = Tape::new();
    let _ = tape.param(&store, dead);
    let loss = (tape.param(&store, used) * 2.0).sum();
    let report = loss.backward().flow_report(&store);
    assert_eq!(report.layer("a").unwrap().stats.flag, None);
    assert_eq!(report.layer("b").unwrap().stats.flag, Some(Flag::Vanishing));
    assert_eq!(report.layer("b").unwrap().stats.norm, 0.0);
}
