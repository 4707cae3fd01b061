//! W8 `lstm-train`: one training step of an LSTM over a sequence (`docs/WORKLOADS.md`):
//! input 32, hidden 128, one layer, 50 steps, batch 32, f32; a linear head (128 -> 10)
//! on the last hidden state, softmax cross-entropy (mean), plain SGD with learning rate
//! 0.1, as `torch.optim.SGD`. 3 warm-up steps, then 20 timed ones; step `k` uses batch
//! `k mod 8`. The peer is `crates/bench/w8_torch.py` (`nn.LSTM(batch_first=True)` and
//! `nn.Linear`, eager).
//!
//! Data and initial values from the SplitMix64 stream of W3 (`common.py`'s `normal`
//! and `unif_sym`): `X [256, 50, 32]` normal seed 801 (rounded to f32), teacher
//! `T [32, 10]` normal seed 802, labels `argmax(mean_t(f64(X)) @ T)`; `weight_ih_l0
//! [512, 32]`, `weight_hh_l0 [512, 128]`, `bias_ih_l0`, `bias_hh_l0 [512]` uniform
//! ±1/√128 seeds 811..814, the head's weight `[10, 128]` and bias `[10]` uniform
//! ±1/√128 seeds 815, 816 (rounded to f32).

use crate::w4::{normal, unif_sym};
use descent::backprop::backward_into;
use descent::nn::Linear;
use descent::nn::recurrent::{CellKind, Recurrent};
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use descent::tape::ParamStore;
use descent::tensor::View;

/// Samples per batch.
pub const BATCH: usize = 32;
/// Time steps of a sequence.
pub const SEQ: usize = 50;
/// Input features per step.
pub const INPUT: usize = 32;
/// Hidden units.
pub const HIDDEN: usize = 128;
/// Classes of the head.
pub const CLASSES: usize = 10;
/// Batches in the data set.
pub const NBATCH: usize = 8;
/// Steps before the timed ones.
pub const WARMUP: usize = 3;
/// Timed steps.
pub const STEPS: usize = 20;
/// Learning rate.
pub const LR: f64 = 0.1;

/// The inputs, labels and initial parameters.
#[derive(Clone, Debug)]
pub struct Data {
    /// `[256, 50, 32]`, row-major.
    pub x: Vec<f32>,
    /// 256 labels in `0..10`.
    pub labels: Vec<usize>,
    /// `(name, shape, values)`, under PyTorch's names.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Data {
    /// Draws everything from seeds 801, 802, 811..816.
    pub fn new() -> Self {
        Self::for_cell(CellKind::Lstm)
    }

    /// [`Data::new`] with the recurrent weights shaped for `kind` (`gates × 128` rows,
    /// under `lstm.*` whatever the kind), from the same seeds.
    pub fn for_cell(kind: CellKind) -> Self {
        let n = BATCH * NBATCH;
        let x: Vec<f32> = normal(801, n * SEQ * INPUT)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let teacher = normal(802, INPUT * CLASSES);
        let labels = x
            .chunks_exact(SEQ * INPUT)
            .map(|sample| {
                let mut mean = [0f64; INPUT];
                for step in sample.chunks_exact(INPUT) {
                    for (m, &v) in mean.iter_mut().zip(step) {
                        *m += f64::from(v) / SEQ as f64;
                    }
                }
                let z: Vec<f64> = (0..CLASSES)
                    .map(|c| (0..INPUT).map(|i| mean[i] * teacher[i * CLASSES + c]).sum())
                    .collect();
                (0..CLASSES).fold(0, |best, j| if z[j] > z[best] { j } else { best })
            })
            .collect();
        let bound = 1.0 / (HIDDEN as f64).sqrt();
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        let gates = kind.gates() * HIDDEN;
        let shapes: [(&str, Vec<usize>); 6] = [
            ("lstm.weight_ih_l0", vec![gates, INPUT]),
            ("lstm.weight_hh_l0", vec![gates, HIDDEN]),
            ("lstm.bias_ih_l0", vec![gates]),
            ("lstm.bias_hh_l0", vec![gates]),
            ("head.weight", vec![CLASSES, HIDDEN]),
            ("head.bias", vec![CLASSES]),
        ];
        let params = shapes
            .into_iter()
            .zip(811..)
            .map(|((name, shape), seed)| {
                let len = shape.iter().product();
                (name.to_owned(), shape, f32s(unif_sym(seed, len, bound)))
            })
            .collect();
        Data { x, labels, params }
    }

    /// Batch `k mod 8`: `(x [32, 50, 32] row-major, labels)`.
    pub fn batch(&self, k: usize) -> (&[f32], &[usize]) {
        let b = k % NBATCH;
        let len = BATCH * SEQ * INPUT;
        (
            &self.x[b * len..(b + 1) * len],
            &self.labels[b * BATCH..(b + 1) * BATCH],
        )
    }
}

impl Default for Data {
    fn default() -> Self {
        Self::new()
    }
}

/// The LSTM, the head, their parameters and the optimiser.
pub struct Model {
    /// Every parameter, under PyTorch's names.
    pub store: ParamStore<f32>,
    /// `lstm`: one layer, 32 -> 128 (a GRU under the same name with `--gru`).
    pub lstm: Recurrent,
    /// `head`: 128 -> 10.
    pub head: Linear,
    /// SGD, learning rate 0.1.
    pub sgd: Sgd<f32>,
}

impl Model {
    /// The initial parameters of `data` and a fresh optimiser.
    pub fn new(data: &Data) -> Self {
        Self::for_cell(data, CellKind::Lstm)
    }

    /// [`Model::new`] with a recurrent layer of `kind` (its weights from
    /// [`Data::for_cell`] of the same kind).
    pub fn for_cell(data: &Data, kind: CellKind) -> Self {
        let mut store = ParamStore::new();
        let rng = &mut descent::nn::init::rng(0);
        let lstm = match kind {
            CellKind::Lstm => Recurrent::lstm(&mut store, "lstm", INPUT, HIDDEN, 1, rng),
            CellKind::Gru => Recurrent::gru(&mut store, "lstm", INPUT, HIDDEN, 1, rng),
            other => panic!("W8 runs an LSTM or a GRU, not {other:?}"),
        };
        let head = Linear::new(
            &mut store,
            "head",
            HIDDEN,
            CLASSES,
            &mut descent::nn::init::rng(0),
        );
        for (name, shape, values) in &data.params {
            let id = store
                .find(name)
                .expect("the model has every parameter of the data");
            *store.get_mut(id).expect("in the store") =
                Tensor::new(shape, values.clone()).expect("shape and values agree");
        }
        Model {
            store,
            lstm,
            head,
            sgd: Sgd::new(LR),
        }
    }
}

/// The loss of batch `(x, labels)` recorded on `tape`.
pub fn loss<'t>(tape: &'t Tape<f32>, model: &Model, x: &[f32], labels: &[usize]) -> Var<'t, f32> {
    let x = tape.constant(View::new(&[labels.len(), SEQ, INPUT], x));
    let out = model.lstm.forward(tape, &model.store, x, None);
    let last = *out.steps.last().expect("50 steps");
    model
        .head
        .forward(tape, &model.store, last)
        .cross_entropy(labels)
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
