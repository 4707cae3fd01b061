//! W9 `mlp-hvp`: a Hessian-vector product of W3's loss (the 784 -> 512 -> 256 -> 10
//! ReLU MLP, softmax cross-entropy, batch 128, f32) with respect to all six parameters,
//! at W3's initial values on batch 0, beside one plain gradient of the same loss in the
//! same run, so that the ratio HVP / gradient is measured. Run only when named
//! (`descent-bench W9`); `all` leaves it out, so that existing runs are unchanged.
//!
//! The direction `v` is drawn per parameter from the SplitMix64 stream of `common.py`:
//! parameter `l` (W1, b1, W2, b2, W3, b3) `unif_sym(1)` seed `900 + l`, rounded to f32.
//! The peers' script (`crates/bench/w9_peers.py`) draws the same numbers.

use crate::w3::{self, Data, Layout, Model};
use crate::w4::unif_sym;
use descent::backprop::{HvpMode, backward_into, hvp_with};
use descent::prelude::*;

/// `v`, one tensor per parameter, shaped like it.
pub fn direction(model: &Model) -> Vec<Tensor<f32>> {
    model
        .ids
        .iter()
        .enumerate()
        .map(|(l, &id)| {
            let shape = model.store.get(id).expect("a parameter").shape().to_vec();
            let n = shape.iter().product();
            let v = unif_sym(900 + l as u64, n, 1.0)
                .into_iter()
                .map(|x| x as f32)
                .collect();
            Tensor::new(&shape, v).expect("n elements")
        })
        .collect()
}

/// One plain gradient of the loss on batch 0 (reset, record, fast backward).
pub fn gradient(tape: &Tape<f32>, model: &Model, data: &Data, grads: &mut Gradients<f32>) -> f64 {
    tape.reset();
    let (x, labels) = data.batch(0);
    let loss = w3::loss(tape, model, x, labels);
    backward_into(loss, grads).expect("a scalar loss");
    f64::from(loss.item())
}

/// `H v` of the loss on batch 0 with respect to W1, b1, W2, b2, W3, b3 (reset, record,
/// then [`hvp_with`] composed as `mode` says).
pub fn hvp(
    tape: &Tape<f32>,
    model: &Model,
    data: &Data,
    v: &[Tensor<f32>],
    mode: HvpMode,
) -> Vec<Tensor<f32>> {
    tape.reset();
    let (x, labels) = data.batch(0);
    let loss = w3::loss(tape, model, x, labels);
    let params: Vec<Var<'_, f32>> = model
        .ids
        .iter()
        .map(|&id| tape.param(&model.store, id))
        .collect();
    hvp_with(loss, &params, v, mode).expect("a twice-differentiable loss")
}

/// The model W9 differentiates: W3's initial values, `[out, in]` weights.
pub fn model(data: &Data) -> Model {
    Model::new(data, Layout::OutIn)
}
