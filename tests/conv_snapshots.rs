//! Backward passes of convolution, pooling and padding as insta snapshots: small
//! graphs on fixed inputs reduced to a scalar loss, rendered with `descent::backprop::render`.
//! The values are checked against PyTorch in `torch_conv.rs` and against finite
//! differences in `gradcheck_conv.rs`; these pin the whole pass (values, gradients, the
//! options each op keeps on the tape, operand wiring) so that a change is reviewed.

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

/// `0, 1, 2, ...` scaled by `step` and shifted by `start`.
fn ramp(shape: &[usize], start: f64, step: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |i| start + step * i as f64)
}

#[test]
fn conv2d_strided_padded_grouped() {
    let tape = Tape::<f64>::new();
    let x = tape.var(ramp(&[1, 2, 3, 3], -1.0, 0.125)).named("x");
    let w = tape.var(ramp(&[2, 1, 2, 2], 0.5, -0.25)).named("w");
    let b = tape.var(Tensor::from([0.1, -0.2])).named("b");
    let o = Conv2dOptions::new().stride(2).padding(1).groups(2);
    let y = x.conv2d(w, Some(b), o);
    snapshot(
        "conv2d_strided_padded_grouped",
        &tape,
        weighted_sum(&tape, y),
    );
}

#[test]
fn conv1d_dilated() {
    let tape = Tape::<f64>::new();
    let x = tape.var(ramp(&[1, 1, 5], 0.5, -0.25)).named("x");
    let w = tape.var(Tensor::from([[[1.0, -2.0]]])).named("w");
    let y = x.conv1d(w, None, Conv1dOptions::new().dilation(2).padding(1));
    snapshot("conv1d_dilated", &tape, weighted_sum(&tape, y));
}

#[test]
fn pooling_and_padding() {
    let tape = Tape::<f64>::new();
    // A tie in the first window (1 twice): the gradient goes to the first.
    let x = tape
        .var(
            Tensor::new(
                &[1, 1, 3, 3],
                vec![1.0, 1.0, -1.0, 0.25, 0.5, 1.5, -0.5, 1.0, 0.75],
            )
            .unwrap(),
        )
        .named("x");
    let m = x.max_pool2d(Pool2dOptions::new(2).stride(1));
    let a = x.avg_pool2d(Pool2dOptions::new(2).padding(1));
    let c = x.max_pool2d(Pool2dOptions::new(2).ceil_mode(true));
    let p = x.pad(&[1, 0, 0, 1]);
    let g = x.global_avg_pool2d();
    let total = weighted_sum(&tape, m)
        + weighted_sum(&tape, a)
        + weighted_sum(&tape, c)
        + weighted_sum(&tape, p)
        + weighted_sum(&tape, g);
    snapshot("pooling_and_padding", &tape, total);
}
