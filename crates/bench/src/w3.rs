//! W3 `mlp-train`: a 784 -> 512 -> 256 -> 10 ReLU MLP (f32), softmax cross-entropy
//! (mean), batch 128, SGD with momentum 0.9 and learning rate 0.01 as
//! `torch.optim.SGD` computes it, 5 warm-up steps then 100 timed ones
//! (`shared/docs/WORKLOADS.md`, `shared/peers/README.md`).
//!
//! Data and initial values come from the SplitMix64 stream of `common.py`: teacher `T`
//! `[784, 10]` normal seed 300, `X [2048, 784]` normal seed 301 (rounded to f32),
//! labels `argmax(f64(X) @ T)`, layer `l`: `W` `unif_sym(1/√in)` seed `311 + 2l`, `b`
//! seed `312 + 2l` (rounded to f32). 16 batches of 128; step `k` uses batch `k mod 16`.
//!
//! The forward pass is written as the peers write it, `relu(x @ W1ᵀ + b1)` and so on
//! (PyTorch's `F.linear`), with `W` stored `[out, in]` ([`Layout::OutIn`], what
//! `descent::nn::Linear` does). [`Layout::InOut`] stores the same numbers transposed,
//! `[in, out]`, so the forward pass is `x @ W` with no transpose node: the arithmetic
//! is the same (SGD is element-wise), only the cost of the two copies per layer and
//! step (`Wᵀ` forward, its gradient transposed back) is gone. It measures what a
//! matrix product with a transposed operand would save.

use crate::w4::{normal, unif_sym};
use descent::backprop::backward_into;
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use descent::tape::{ParamId, ParamStore};
use descent::tensor::View;

/// Layer sizes.
pub const SIZES: [usize; 4] = [784, 512, 256, 10];
/// Samples per batch.
pub const BATCH: usize = 128;
/// Batches in the data set (2,048 samples).
pub const NBATCH: usize = 16;
/// Steps before the timed ones.
pub const WARMUP: usize = 5;
/// Timed steps.
pub const STEPS: usize = 100;
/// Learning rate.
pub const LR: f64 = 0.01;
/// Momentum.
pub const MOMENTUM: f64 = 0.9;
/// The peers' loss at the last (105th) step.
pub const PEER_FINAL_LOSS: f64 = 1.991_739_03;

/// Weights of the model: `Σ in·out` (the bias terms are not counted in the FLOP rule).
pub const WEIGHTS: usize = 784 * 512 + 512 * 256 + 256 * 10;

/// FLOPs of one step by WORKLOADS.md's rule: `6 × batch × weights` (forward 2, backward
/// 4 multiply-adds per weight and sample).
pub fn flops_per_step() -> f64 {
    6.0 * BATCH as f64 * WEIGHTS as f64
}

/// `common.w3_data()`.
#[derive(Clone, Debug)]
pub struct Data {
    /// `[2048, 784]`, row-major, f32.
    pub x: Vec<f32>,
    /// 2,048 labels in `0..10`.
    pub labels: Vec<usize>,
    /// `(name, shape, values)` of W1, b1, W2, b2, W3, b3.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Data {
    /// Draws everything from seeds 300, 301, 311..316.
    pub fn new() -> Self {
        let n = BATCH * NBATCH;
        let (d, c) = (SIZES[0], SIZES[3]);
        let teacher = normal(300, d * c); // [784, 10]
        let x: Vec<f32> = normal(301, n * d).into_iter().map(|v| v as f32).collect();
        let labels = x
            .chunks_exact(d)
            .map(|row| {
                let mut z = [0f64; 10];
                for (i, &xi) in row.iter().enumerate() {
                    let xi = f64::from(xi);
                    for (zc, &t) in z.iter_mut().zip(&teacher[i * c..(i + 1) * c]) {
                        *zc += xi * t;
                    }
                }
                // numpy's argmax: the first maximum.
                (0..c).fold(0, |best, j| if z[j] > z[best] { j } else { best })
            })
            .collect();
        let mut params = Vec::new();
        for l in 0..3 {
            let (i, o) = (SIZES[l], SIZES[l + 1]);
            let bound = 1.0 / (i as f64).sqrt();
            let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
            let seed = 311 + 2 * l as u64;
            params.push((
                format!("W{}", l + 1),
                vec![o, i],
                f32s(unif_sym(seed, o * i, bound)),
            ));
            params.push((
                format!("b{}", l + 1),
                vec![o],
                f32s(unif_sym(seed + 1, o, bound)),
            ));
        }
        Data { x, labels, params }
    }

    /// Batch `k mod 16`: `(x [128, 784] row-major, labels)`.
    pub fn batch(&self, k: usize) -> (&[f32], &[usize]) {
        let b = k % NBATCH;
        let d = SIZES[0];
        (
            &self.x[b * BATCH * d..(b + 1) * BATCH * d],
            &self.labels[b * BATCH..(b + 1) * BATCH],
        )
    }
}

impl Default for Data {
    fn default() -> Self {
        Self::new()
    }
}

/// How the weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[out, in]`, PyTorch's layout; the forward pass is `x.matmul_t(W)` (no
    /// transposed copy).
    OutIn,
    /// `[in, out]` (the same values transposed once at start); the forward pass is
    /// `x @ W`.
    InOut,
}

/// The parameters (W1, b1, W2, b2, W3, b3) and the optimiser.
pub struct Model {
    /// The store.
    pub store: ParamStore<f32>,
    /// W1, b1, W2, b2, W3, b3.
    pub ids: [ParamId; 6],
    /// SGD, momentum 0.9, learning rate 0.01.
    pub sgd: Sgd<f32>,
    /// How the weights are stored.
    pub layout: Layout,
}

impl Model {
    /// The initial parameters of `data` in `layout` and a fresh optimiser.
    pub fn new(data: &Data, layout: Layout) -> Self {
        let mut store = ParamStore::new();
        let ids: Vec<ParamId> = data
            .params
            .iter()
            .map(|(name, shape, v)| {
                let (shape, v) = match (layout, shape.as_slice()) {
                    (Layout::InOut, &[o, i]) => {
                        let mut t = vec![0f32; v.len()];
                        for r in 0..o {
                            for c in 0..i {
                                t[c * o + r] = v[r * i + c];
                            }
                        }
                        (vec![i, o], t)
                    }
                    _ => (shape.clone(), v.clone()),
                };
                store.insert(
                    name.clone(),
                    Tensor::new(&shape, v).expect("shape matches the draws"),
                )
            })
            .collect();
        Model {
            store,
            ids: ids.try_into().expect("six parameters"),
            sgd: Sgd::new(LR).momentum(MOMENTUM),
            layout,
        }
    }
}

/// The loss of one batch on `tape`:
/// `cross_entropy(relu(relu(x @ W1ᵀ + b1) @ W2ᵀ + b2) @ W3ᵀ + b3, labels)`.
pub fn loss<'t>(tape: &'t Tape<f32>, model: &Model, x: &[f32], labels: &[usize]) -> Var<'t, f32> {
    let [w1, b1, w2, b2, w3, b3] = model.ids.map(|id| tape.param(&model.store, id));
    let x = tape.constant(View::new(&[labels.len(), SIZES[0]], x));
    let lin = |x: Var<'t, f32>, w: Var<'t, f32>, b| match model.layout {
        Layout::OutIn => x.matmul_t(w) + b,
        Layout::InOut => x.matmul(w) + b,
    };
    let h = lin(x, w1, b1).relu();
    let h = lin(h, w2, b2).relu();
    lin(h, w3, b3).cross_entropy(labels)
}

/// How a step hands the gradients to the optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// The one form the guide shows: `backward_into` a reused `Gradients`, then
    /// `sgd.step(&mut store, &grads)`, which checks every gradient (known parameter,
    /// shape, finite) and then reads it in place: no copy.
    Plain,
    /// For comparison only: `Optimizer::update` on each parameter straight from the
    /// gradient views, with none of the step's checks (the bench's form before the
    /// checked step read gradients in place).
    Unchecked,
    /// For comparison only: the guide's form before the checked step read gradients in
    /// place: `ParamGrads::from(&loss.backward())` (a copy of every gradient), then
    /// `sgd.step`.
    Copied,
}

/// One training step on batch `k`: reset, record, backward, reset (which releases the
/// parameters the tape shares with the store, so the step copies none), SGD. Returns
/// the loss.
pub fn step(
    tape: &Tape<f32>,
    model: &mut Model,
    data: &Data,
    k: usize,
    grads: &mut Gradients<f32>,
    update: Update,
) -> f64 {
    tape.reset();
    let (x, labels) = data.batch(k);
    let loss = loss(tape, model, x, labels);
    match update {
        Update::Plain => {
            backward_into(loss, grads).expect("a scalar loss");
            // Released before the step: the tape shares the parameters' values with
            // the store, so a step under a live tape would copy them (copy-on-write).
            let value = f64::from(loss.item());
            tape.reset();
            model
                .sgd
                .step(&mut model.store, &*grads)
                .expect("finite gradients of the store's parameters");
            value
        }
        Update::Unchecked => {
            backward_into(loss, grads).expect("a scalar loss");
            let value = f64::from(loss.item());
            tape.reset();
            model.sgd.begin_step();
            for (id, g) in grads.params() {
                let p = model.store.get_mut(id).expect("a parameter of the store");
                model.sgd.update(id, p.data_mut(), g.data());
            }
            value
        }
        Update::Copied => {
            let g = descent::backprop::ParamGrads::from(&loss.backward());
            let value = f64::from(loss.item());
            tape.reset();
            model
                .sgd
                .step(&mut model.store, &g)
                .expect("finite gradients of the store's parameters");
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_key as key;

    #[test]
    fn inputs_are_the_peers_to_the_bit() {
        // The same keys over `common.w3_data()`'s arrays (numpy 2.4.6).
        let d = Data::new();
        assert_eq!(key(&d.x), 17_695_683_880_874_534_286);
        let labels: usize = d.labels.iter().enumerate().map(|(i, l)| (i + 1) * l).sum();
        assert_eq!(labels, 9_058_002);
        assert_eq!(&d.labels[..10], &[3, 4, 7, 4, 6, 0, 0, 3, 3, 4]);
        let keys: Vec<u64> = d.params.iter().map(|(_, _, v)| key(v)).collect();
        assert_eq!(
            keys,
            [
                1_863_175_612_317_832_589,
                279_268_154_438_193,
                17_916_213_159_877_799_456,
                68_871_361_477_317,
                6_895_460_580_090_217,
                58_120_637_329
            ]
        );
    }
}
