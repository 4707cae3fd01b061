//! W2 `micrograd-moons`: micrograd's demo, a 2 -> 16 -> 16 -> 1 ReLU MLP (f64) on the
//! 100 two-moons points, mean hinge loss plus `1e-4 · Σ p²`, 100 full-batch SGD steps
//! with learning rate `1 - 0.9·k/100` (`shared/docs/WORKLOADS.md`,
//! `shared/peers/README.md`).
//!
//! Two forms of the same model:
//! - [`scalar_step`]: every number is its own node (micrograd's graph, ~66,000 nodes a
//!   step), in micrograd's arithmetic order, as `examples/moons.rs` records it;
//! - [`tensor_loss`]: batched, `X [100, 2] @ W1ᵀ + b1` and so on, as the PyTorch and JAX
//!   peers compute it.
//!
//! Weights come from the SplitMix64 stream of `common.py` (seeds 201, 202, 203,
//! `unif_sym(1.0)`), biases 0.

use crate::w4::unif_sym;
use descent::backprop::backward_into;
use descent::prelude::*;
use descent::tape::{ParamId, ParamStore};

/// `data/moons100.csv` of the repository (identical to `shared/data/moons100.csv`).
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/moons100.csv");
/// Layer sizes.
pub const SIZES: [usize; 4] = [2, 16, 16, 1];
/// Weight seeds, one per layer.
pub const SEEDS: [u64; 3] = [201, 202, 203];
/// Optimiser steps.
pub const STEPS: usize = 100;
/// The L2 penalty factor.
pub const L2: f64 = 1e-4;
/// The peers' loss at the last step (k = 99).
pub const PEER_FINAL_LOSS: f64 = 0.027_707_824_041_473_6;
/// The peers' accuracy after the last update.
pub const PEER_FINAL_ACCURACY: f64 = 1.0;

/// The learning rate of step `k`.
pub fn lr(k: usize) -> f64 {
    1.0 - 0.9 * k as f64 / 100.0
}

/// The points: `x` row-major `[n, 2]`, labels in {-1, 1}.
#[derive(Clone, Debug)]
pub struct Data {
    /// `[n, 2]`, row-major.
    pub x: Vec<f64>,
    /// `n` labels, -1 or 1.
    pub y: Vec<f64>,
}

impl Data {
    /// Reads `x1,x2,y` rows (with a header) from `path`.
    pub fn load(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<f64> = line
                .split(',')
                .map(|f| f.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{path}:{}: {e}", i + 1))?;
            let &[x1, x2, label] = f.as_slice() else {
                return Err(format!("{path}:{}: expected `x1,x2,y`", i + 1));
            };
            x.extend([x1, x2]);
            y.push(label);
        }
        if y.is_empty() {
            return Err(format!("{path}: no data rows"));
        }
        Ok(Data { x, y })
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// The initial weight matrices `[out, in]`, row-major, one per layer.
pub fn initial_weights() -> [Vec<f64>; 3] {
    [0, 1, 2].map(|l| unif_sym(SEEDS[l], SIZES[l + 1] * SIZES[l], 1.0))
}

/// Share of points with `score > 0` iff `y > 0`.
pub fn accuracy(scores: impl IntoIterator<Item = f64>, data: &Data) -> f64 {
    let right = scores
        .into_iter()
        .zip(&data.y)
        .filter(|(s, y)| (*s > 0.0) == (**y > 0.0))
        .count();
    right as f64 / data.len() as f64
}

// ------------------------------------------------------------------ scalar nodes

/// The initial parameters in micrograd's order: layer by layer, neuron by neuron, its
/// weights then its bias.
pub fn initial_scalar_params() -> Vec<f64> {
    let mut params = Vec::new();
    for (l, w) in initial_weights().iter().enumerate() {
        for row in w.chunks(SIZES[l]) {
            params.extend_from_slice(row);
            params.push(0.0);
        }
    }
    params
}

/// Records the scores of all points and the loss from the parameter nodes `params`,
/// in micrograd's order (see `examples/moons.rs`). `scores` is refilled.
pub fn scalar_forward<'t>(
    tape: &'t Tape<f64>,
    params: &[Var<'t, f64>],
    data: &Data,
    scores: &mut Vec<Var<'t, f64>>,
) -> Var<'t, f64> {
    scores.clear();
    let mut data_loss: Option<Var<'t, f64>> = None;
    let mut acts: Vec<Var<'t, f64>> = Vec::with_capacity(16);
    let mut next: Vec<Var<'t, f64>> = Vec::with_capacity(16);
    for (x, &y) in data.x.chunks_exact(2).zip(&data.y) {
        acts.clear();
        acts.extend(x.iter().map(|&x| tape.constant(x)));
        let mut offset = 0;
        for l in 0..SIZES.len() - 1 {
            let (inputs, outputs) = (SIZES[l], SIZES[l + 1]);
            let last = l == SIZES.len() - 2;
            next.clear();
            next.extend((0..outputs).map(|j| {
                let neuron = &params[offset + j * (inputs + 1)..][..inputs + 1];
                let (w, b) = neuron.split_at(inputs);
                let act = w.iter().zip(&acts).fold(b[0], |act, (&w, &x)| act + w * x);
                if last { act } else { act.relu() }
            }));
            std::mem::swap(&mut acts, &mut next);
            offset += outputs * (inputs + 1);
        }
        let score = acts[0];
        let hinge = (1.0 - y * score).relu();
        data_loss = Some(data_loss.map_or(hinge, |sum| sum + hinge));
        scores.push(score);
    }
    let data_loss = data_loss.expect("at least one point") * (1.0 / data.len() as f64);
    let penalty = params
        .iter()
        .map(|&p| p * p)
        .reduce(|sum, sq| sum + sq)
        .expect("at least one parameter");
    data_loss + penalty * L2
}

/// What a run of [`STEPS`] steps ends with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunEnd {
    /// The loss at the last step (k = 99).
    pub final_loss: f64,
    /// Nodes on the tape at the last step.
    pub nodes: usize,
}

/// One scalar step on `tape`: reset, bind the parameters as scalar leaves, record the
/// loss, backward into `grads`, update. Returns `(loss, nodes)`.
pub fn scalar_step(
    tape: &Tape<f64>,
    params: &mut [f64],
    data: &Data,
    grads: &mut Gradients<f64>,
    lr: f64,
) -> (f64, usize) {
    tape.reset();
    let vars: Vec<Var<'_, f64>> = params.iter().map(|&p| tape.var(p)).collect();
    let mut scores = Vec::with_capacity(data.len());
    let loss = scalar_forward(tape, &vars, data, &mut scores);
    backward_into(loss, grads).expect("a scalar loss");
    for (p, &v) in params.iter_mut().zip(&vars) {
        *p -= lr * grads.wrt(v).item();
    }
    (loss.item(), tape.len())
}

/// [`STEPS`] scalar steps from the initial parameters; returns the end state and the
/// parameters after the last update.
pub fn scalar_run(tape: &Tape<f64>, data: &Data) -> (RunEnd, Vec<f64>) {
    let mut params = initial_scalar_params();
    let mut grads = Gradients::empty();
    let mut end = RunEnd {
        final_loss: f64::NAN,
        nodes: 0,
    };
    for k in 0..STEPS {
        let (loss, nodes) = scalar_step(tape, &mut params, data, &mut grads, lr(k));
        end = RunEnd {
            final_loss: loss,
            nodes,
        };
    }
    (end, params)
}

/// Accuracy of scalar parameters (one extra forward pass).
pub fn scalar_accuracy(tape: &Tape<f64>, params: &[f64], data: &Data) -> f64 {
    tape.reset();
    let vars: Vec<Var<'_, f64>> = params.iter().map(|&p| tape.var(p)).collect();
    let mut scores = Vec::new();
    // Only the scores are read; the loss node is recorded but not needed here.
    let _loss = scalar_forward(tape, &vars, data, &mut scores);
    accuracy(scores.iter().map(|s| s.item()), data)
}

// ------------------------------------------------------------------ tensors

/// The batched model: W1, b1, W2, b2, W3, b3 in a store.
pub struct TensorModel {
    /// The store.
    pub store: ParamStore<f64>,
    /// W1, b1, W2, b2, W3, b3.
    pub ids: [ParamId; 6],
}

impl TensorModel {
    /// The initial parameters.
    pub fn new() -> Self {
        let mut store = ParamStore::new();
        let [w1, w2, w3] = initial_weights();
        let mut ids = Vec::new();
        for (l, w) in [w1, w2, w3].into_iter().enumerate() {
            let (i, o) = (SIZES[l], SIZES[l + 1]);
            let t = Tensor::new(&[o, i], w).expect("[out, in]");
            ids.push(store.insert(format!("W{}", l + 1), t));
            ids.push(store.insert(format!("b{}", l + 1), Tensor::zeros(&[o])));
        }
        TensorModel {
            store,
            ids: ids.try_into().expect("six parameters"),
        }
    }
}

impl Default for TensorModel {
    fn default() -> Self {
        Self::new()
    }
}

/// The scores `[n]` and the loss, as the peers write it:
/// `h = relu(X @ W1ᵀ + b1); h = relu(h @ W2ᵀ + b2); s = (h @ W3ᵀ + b3)[:, 0];
/// loss = mean(relu(1 - y·s)) + 1e-4 · Σ_p sum(p·p)`.
pub fn tensor_loss<'t>(
    tape: &'t Tape<f64>,
    store: &ParamStore<f64>,
    ids: [ParamId; 6],
    x: Var<'t, f64>,
    y: Var<'t, f64>,
) -> (Var<'t, f64>, Var<'t, f64>) {
    let p = ids.map(|id| tape.param(store, id));
    let [w1, b1, w2, b2, w3, b3] = p;
    let h = (x.matmul_t(w1) + b1).relu();
    let h = (h.matmul_t(w2) + b2).relu();
    let n = y.shape()[0];
    let s = (h.matmul_t(w3) + b3).reshape(&[n]);
    let data_loss = (1.0 - y * s).relu().mean();
    let reg = p
        .iter()
        .map(|&q| (q * q).sum())
        .reduce(|a, b| a + b)
        .expect("six parameters");
    (s, data_loss + L2 * reg)
}

/// One tensor step: reset, record, backward into `grads`, `p -= lr·g` for every
/// parameter. Returns the loss.
pub fn tensor_step(
    tape: &Tape<f64>,
    model: &mut TensorModel,
    data: &Data,
    grads: &mut Gradients<f64>,
    lr: f64,
) -> f64 {
    tape.reset();
    let n = data.len();
    let x = tape.constant(descent::tensor::View::new(&[n, 2], &data.x));
    let y = tape.constant(descent::tensor::View::new(&[n], &data.y));
    let (_, loss) = tensor_loss(tape, &model.store, model.ids, x, y);
    backward_into(loss, grads).expect("a scalar loss");
    for (id, g) in grads.params() {
        let p = model.store.get_mut(id).expect("a parameter of the store");
        for (p, &g) in p.data_mut().iter_mut().zip(g.data()) {
            *p -= lr * g;
        }
    }
    loss.item()
}

/// [`STEPS`] tensor steps from the initial parameters.
pub fn tensor_run(tape: &Tape<f64>, data: &Data) -> (RunEnd, TensorModel) {
    let mut model = TensorModel::new();
    let mut grads = Gradients::empty();
    let mut final_loss = f64::NAN;
    for k in 0..STEPS {
        final_loss = tensor_step(tape, &mut model, data, &mut grads, lr(k));
    }
    let nodes = tape.len();
    (RunEnd { final_loss, nodes }, model)
}

/// Accuracy of the batched model (one extra forward pass).
pub fn tensor_accuracy(tape: &Tape<f64>, model: &TensorModel, data: &Data) -> f64 {
    tape.reset();
    let n = data.len();
    let x = tape.constant(descent::tensor::View::new(&[n, 2], &data.x));
    let y = tape.constant(descent::tensor::View::new(&[n], &data.y));
    let (s, _) = tensor_loss(tape, &model.store, model.ids, x, y);
    accuracy(s.value().data().to_vec(), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_key as key;

    #[test]
    fn weights_are_the_peers_to_the_bit() {
        // The same key over `common.w2_data()`'s weights (numpy 2.4.6).
        let keys = initial_weights().map(|w| key(&w));
        assert_eq!(
            keys,
            [
                11_977_689_258_872_656_112,
                12_324_091_510_080_736_632,
                16_733_648_023_484_701_878
            ]
        );
    }
}
