//! W10 `wide-mlp`: a 512 -> 2048 -> 2048 -> 10 ReLU MLP (f32), softmax cross-entropy
//! (mean), batch 16, one plain SGD step (learning rate 0.01, no momentum) per batch:
//! forward, loss, backward, update. 5 warm-up steps then 50 timed ones. A wide layer
//! with a small batch: the step is matrix products with 16 rows against 2048-wide
//! weights (`x·Wᵀ` forward, `g·W` for the input's gradient, `gᵀ·x` for the weight's),
//! where W3's 128-row products are square enough to run near the GEMM peak.
//!
//! Data and initial values come from the SplitMix64 streams of the peers' `common.py`,
//! as `crates/bench/w10_peers.py` draws them: teacher `T [512, 10]` normal seed 1000,
//! `X [128, 512]` normal seed 1001 (rounded to f32), labels `argmax(f64(X) @ T)`,
//! layer `l`: `W [out, in]` `unif_sym(1/√in)` seed `1011 + 2l`, `b` seed `1012 + 2l`
//! (rounded to f32). 8 batches of 16; step `k` uses batch `k mod 8`.

use crate::w4::{normal, unif_sym};
use descent::backprop::backward_into;
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use descent::tape::{ParamId, ParamStore};
use descent::tensor::View;

/// Layer sizes.
pub const SIZES: [usize; 4] = [512, 2048, 2048, 10];
/// Samples per batch.
pub const BATCH: usize = 16;
/// Batches in the data set (128 samples).
pub const NBATCH: usize = 8;
/// Steps before the timed ones.
pub const WARMUP: usize = 5;
/// Timed steps.
pub const STEPS: usize = 50;
/// Learning rate.
pub const LR: f64 = 0.01;
/// PyTorch eager's loss at the last (55th) step (`w10_peers.py --peer torch`, f32;
/// JAX's differs from it by 1.2e-7 relative).
pub const PEER_FINAL_LOSS: f64 = 1.941_626_548_767_089_8;

/// Weights of the model: `Σ in·out` (the bias terms are not counted in the FLOP rule).
pub const WEIGHTS: usize = 512 * 2048 + 2048 * 2048 + 2048 * 10;

/// FLOPs of one step by WORKLOADS.md's rule: `6 × batch × weights`.
///
/// ```
/// assert_eq!(descent_bench::w10::flops_per_step(), 6.0 * 16.0 * 5_263_360.0);
/// ```
pub fn flops_per_step() -> f64 {
    6.0 * BATCH as f64 * WEIGHTS as f64
}

/// The data set and the initial parameters (the peers' draws).
#[derive(Clone, Debug)]
pub struct Data {
    /// `[128, 512]`, row-major, f32.
    pub x: Vec<f32>,
    /// 128 labels in `0..10`.
    pub labels: Vec<usize>,
    /// `(name, shape, values)` of W1, b1, W2, b2, W3, b3; `W` is `[out, in]`.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Data {
    /// Draws everything from seeds 1000, 1001, 1011..1016.
    pub fn new() -> Self {
        let n = BATCH * NBATCH;
        let (d, c) = (SIZES[0], SIZES[3]);
        let teacher = normal(1000, d * c);
        let x: Vec<f32> = normal(1001, n * d).into_iter().map(|v| v as f32).collect();
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
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        let mut params = Vec::new();
        for l in 0..3 {
            let (i, o) = (SIZES[l], SIZES[l + 1]);
            let bound = 1.0 / (i as f64).sqrt();
            let seed = 1011 + 2 * l as u64;
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

    /// Batch `k mod 8`: `(x [16, 512] row-major, labels)`.
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

/// The parameters (W1, b1, W2, b2, W3, b3) and the optimiser.
pub struct Model {
    /// The store.
    pub store: ParamStore<f32>,
    /// W1, b1, W2, b2, W3, b3.
    pub ids: [ParamId; 6],
    /// Plain SGD, learning rate 0.01.
    pub sgd: Sgd<f32>,
}

impl Model {
    /// The initial parameters of `data` and a fresh optimiser.
    pub fn new(data: &Data) -> Self {
        let mut store = ParamStore::new();
        let ids: Vec<ParamId> = data
            .params
            .iter()
            .map(|(name, shape, v)| {
                store.insert(
                    name.clone(),
                    Tensor::new(shape, v.clone()).expect("shape matches the draws"),
                )
            })
            .collect();
        Model {
            store,
            ids: ids.try_into().expect("six parameters"),
            sgd: Sgd::new(LR),
        }
    }
}

/// The loss of one batch on `tape`:
/// `cross_entropy(relu(relu(x @ W1ᵀ + b1) @ W2ᵀ + b2) @ W3ᵀ + b3, labels)`.
pub fn loss<'t>(tape: &'t Tape<f32>, model: &Model, x: &[f32], labels: &[usize]) -> Var<'t, f32> {
    let [w1, b1, w2, b2, w3, b3] = model.ids.map(|id| tape.param(&model.store, id));
    let x = tape.constant(View::new(&[labels.len(), SIZES[0]], x));
    let h = (x.matmul_t(w1) + b1).relu();
    let h = (h.matmul_t(w2) + b2).relu();
    (h.matmul_t(w3) + b3).cross_entropy(labels)
}

/// One training step on batch `k`: reset, record, backward into `grads`, SGD. Returns
/// the loss.
pub fn step(
    tape: &Tape<f32>,
    model: &mut Model,
    data: &Data,
    k: usize,
    grads: &mut Gradients<f32>,
) -> f64 {
    tape.reset();
    let (x, labels) = data.batch(k);
    let loss = loss(tape, model, x, labels);
    backward_into(loss, grads).expect("a scalar loss");
    let value = f64::from(loss.item());
    // Released before the step, as in W3: the tape shares the parameters' values with
    // the store, so a step under a live tape would copy them (copy-on-write).
    tape.reset();
    model
        .sgd
        .step(&mut model.store, &*grads)
        .expect("finite gradients of the store's parameters");
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_key as key;

    #[test]
    fn inputs_are_the_peers_to_the_bit() {
        // `python crates/bench/w10_peers.py --keys` (numpy 2.4, shared/peers/common.py).
        let d = Data::new();
        assert_eq!(key(&d.x), 4_575_387_592_340_147_993);
        let labels: usize = d.labels.iter().enumerate().map(|(i, l)| (i + 1) * l).sum();
        assert_eq!(labels, 37_535);
        assert_eq!(&d.labels[..10], &[4, 5, 3, 7, 2, 5, 5, 5, 9, 3]);
        let keys: Vec<u64> = d.params.iter().map(|(_, _, v)| key(v)).collect();
        assert_eq!(
            keys,
            [
                4_368_926_109_067_237_024,
                4_319_773_015_814_190,
                10_653_549_999_312_542_859,
                4_415_461_667_628_761,
                435_472_495_977_952_462,
                111_458_440_849
            ]
        );
    }

    #[test]
    fn the_first_loss_is_the_peers_in_f64_to_f32_rounding() {
        // PyTorch in f64 over the same f32 inputs, batch 0 (`F.linear`, `relu`,
        // `F.cross_entropy`): 2.273769273946229. descent computes in f32.
        let data = Data::new();
        let mut model = Model::new(&data);
        let tape = Tape::<f32>::new();
        let mut grads = Gradients::empty();
        let first = step(&tape, &mut model, &data, 0, &mut grads);
        let err = (first - 2.273_769_273_946_229).abs() / 2.273_769_273_946_229;
        assert!(err < 1e-6, "first loss {first}");
        // The step moved the parameters: the same batch's loss is lower.
        let again = step(&tape, &mut model, &data, 0, &mut grads);
        assert!(again < first, "{again} after {first}");
    }
}
