//! W5 `deep-rnn`: a vanilla RNN `h_t = tanh(x_t Wxᵀ + h_{t-1} Whᵀ + b)`, `h_0 = 0`,
//! input 8, hidden 64, 200 time steps, batch 32, f32; loss: mean squared error of the
//! read-out `h_T Woᵀ + bo` against a target; backpropagation through all 200 steps,
//! global-norm clipping at 5.0, SGD 0.01 (`shared/docs/WORKLOADS.md`,
//! `shared/peers/README.md`).
//!
//! Data and initial values: `common.w5_data()` (X `[200, 32, 8]` normal seed 501,
//! target `[32, 1]` normal seed 502, Wx normal/√8 seed 503, Wh normal·2/8 seed 504,
//! Wo normal/8 seed 505, biases 0; all rounded to f32). With Wh's scale 2 the gradient
//! norm is ~1e4, so clipping is active on every step.
//!
//! The cell is written in the peers' order, `(x_t @ Wxᵀ + h @ Whᵀ) + b`, with `Wxᵀ`
//! and `Whᵀ` recorded once per step; at `t = 0` the product with `h_0 = 0` is skipped
//! (adding it would add exact zeros).

use crate::w4::normal;
use descent::backprop::backward_into;
use descent::optim::{Optimizer, Sgd, clip_grad_norm};
use descent::prelude::*;
use descent::tape::{ParamId, ParamStore};

/// Time steps.
pub const T: usize = 200;
/// Sequences per batch.
pub const B: usize = 32;
/// Input features.
pub const I: usize = 8;
/// Hidden units.
pub const H: usize = 64;
/// Global-norm clipping limit.
pub const CLIP: f64 = 5.0;
/// Learning rate.
pub const LR: f64 = 0.01;
/// Steps before the timed ones (the peers' `warm`).
pub const WARMUP: usize = 3;
/// Timed steps (the peers' `steps`).
pub const STEPS: usize = 30;

fn normal_f32(seed: u64, n: usize, scale: f64) -> Vec<f32> {
    normal(seed, n)
        .into_iter()
        .map(|v| (v * scale) as f32)
        .collect()
}

/// The inputs, one `[32, 8]` tensor per time step, and the `[32, 1]` target.
pub struct Data {
    /// `T` tensors `[B, I]`.
    pub xs: Vec<Tensor<f32>>,
    /// `[B, 1]`.
    pub target: Tensor<f32>,
}

impl Data {
    /// Seeds 501 and 502.
    pub fn new() -> Self {
        let x = normal_f32(501, T * B * I, 1.0);
        let xs = x
            .chunks_exact(B * I)
            .map(|s| Tensor::new(&[B, I], s.to_vec()).expect("[B, I]"))
            .collect();
        Data {
            xs,
            target: Tensor::new(&[B, 1], normal_f32(502, B, 1.0)).expect("[B, 1]"),
        }
    }
}

impl Default for Data {
    fn default() -> Self {
        Self::new()
    }
}

/// The parameters: Wx `[64, 8]`, Wh `[64, 64]`, b `[64]`, Wo `[1, 64]`, bo `[1]`.
pub struct Model {
    /// The store.
    pub store: ParamStore<f32>,
    /// Wx, Wh, b, Wo, bo.
    pub ids: [ParamId; 5],
    /// Plain SGD, learning rate 0.01.
    pub sgd: Sgd<f32>,
}

impl Model {
    /// Seeds 503, 504, 505; biases 0.
    pub fn new() -> Self {
        let (i, h) = (I as f64, H as f64);
        let mut store = ParamStore::new();
        let t = |shape: &[usize], v: Vec<f32>| Tensor::new(shape, v).expect("shape");
        let ids = [
            store.insert("Wx", t(&[H, I], normal_f32(503, H * I, 1.0 / i.sqrt()))),
            store.insert("Wh", t(&[H, H], normal_f32(504, H * H, 2.0 / h.sqrt()))),
            store.insert("b", Tensor::zeros(&[H])),
            store.insert("Wo", t(&[1, H], normal_f32(505, H, 1.0 / h.sqrt()))),
            store.insert("bo", Tensor::zeros(&[1])),
        ];
        Model {
            store,
            ids,
            sgd: Sgd::new(LR),
        }
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

/// Records the forward pass through the whole sequence and returns the loss.
pub fn loss<'t>(
    tape: &'t Tape<f32>,
    store: &ParamStore<f32>,
    ids: [ParamId; 5],
    data: &Data,
) -> Var<'t, f32> {
    let [wx, wh, b, wo, bo] = ids.map(|id| tape.param(store, id));
    let mut h: Option<Var<'t, f32>> = None;
    for x in &data.xs {
        let xw = tape.constant(x).matmul_t(wx);
        let pre = match h {
            Some(h) => xw + h.matmul_t(wh),
            None => xw,
        };
        h = Some((pre + b).tanh());
    }
    let out = h.expect("at least one time step").matmul_t(wo) + bo;
    out.mse(tape.constant(&data.target))
}

/// What one step reports.
#[derive(Clone, Copy, Debug)]
pub struct StepOut {
    /// The loss before the update.
    pub loss: f64,
    /// The global L2 norm of the five gradients before clipping.
    pub norm: f64,
    /// Nodes on the tape.
    pub nodes: usize,
}

/// One step: reset, record, backward into `grads`, clip the global norm to 5, SGD.
pub fn step(
    tape: &Tape<f32>,
    model: &mut Model,
    data: &Data,
    grads: &mut Gradients<f32>,
) -> StepOut {
    tape.reset();
    let loss = loss(tape, &model.store, model.ids, data);
    backward_into(loss, grads).expect("a scalar loss");
    let (value, nodes) = (f64::from(loss.item()), tape.len());
    // Released before the step, as in W3: the tape shares the parameters' values with
    // the store, so a step under a live tape would copy them (copy-on-write).
    tape.reset();
    let norm = clip_grad_norm(&model.store, grads, CLIP).expect("finite gradients");
    model
        .sgd
        .step(&mut model.store, &*grads)
        .expect("finite gradients of the store's parameters");
    StepOut {
        loss: value,
        norm,
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_key as key;

    #[test]
    fn inputs_are_the_peers_to_the_bit() {
        // The same keys over `common.w5_data()`'s arrays (numpy 2.4.6).
        let d = Data::new();
        let x: Vec<f32> = d.xs.iter().flat_map(|t| t.data().to_vec()).collect();
        assert_eq!(key(&x), 2_787_472_158_400_442_086);
        assert_eq!(key(d.target.data()), 1_201_542_655_053);
        let m = Model::new();
        let keys: Vec<u64> = m
            .ids
            .iter()
            .map(|&id| key(m.store.get(id).unwrap().data()))
            .collect();
        assert_eq!(
            keys,
            [
                290_478_205_304_659,
                17_820_580_634_592_582,
                0,
                4_220_988_770_491,
                0
            ]
        );
    }
}
