//! W7 `cnn-train`: one training step of the `cnn_digits` CNN (`docs/WORKLOADS.md`):
//! `Conv2d(1, 32, 3, padding 1)`, ReLU, `MaxPool2d(2)`, `Conv2d(32, 64, 3, padding 1)`,
//! ReLU, `MaxPool2d(2)`, `Flatten`, `Linear(256, 10)` on `[64, 1, 8, 8]` images, f32,
//! mean softmax cross-entropy, plain SGD with learning rate 0.1 (`torch.optim.SGD`).
//! 3 warm-up steps, then 20 timed ones; step `k` uses batch `k mod 8`. The peer is
//! `crates/bench/w7_torch.py` (the same `nn.Sequential`, eager).
//!
//! Data and initial values from the SplitMix64 stream of W3 (`common.py`'s `uniform`,
//! `normal` and `unif_sym`): images `X [512, 1, 8, 8]` uniform in `[0, 1)` seed 701
//! (rounded to f32), teacher `T [64, 10]` normal seed 702, labels `argmax(f64(X) @ T)`
//! over the 64 pixels; `0.weight [32, 1, 3, 3]` and `0.bias [32]` `unif_sym(1/3)` seeds
//! 711, 712; `3.weight [64, 32, 3, 3]` and `3.bias [64]` `unif_sym(1/√288)` seeds 713,
//! 714; `7.weight [10, 256]` and `7.bias [10]` `unif_sym(1/16)` seeds 715, 716 (PyTorch's
//! default bounds, `1/√fan_in`; rounded to f32).

use crate::w4::{normal, unif_sym, uniform};
use descent::backprop::backward_into;
use descent::nn::layers::{Flatten, ReLU};
use descent::nn::{Conv2d, Ctx, Linear, MaxPool2d, Module, Sequential, init};
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use descent::tensor::View;

/// Images per batch.
pub const BATCH: usize = 64;
/// Image side (8 × 8, one channel).
pub const SIDE: usize = 8;
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

/// The images, labels and initial parameters.
#[derive(Clone, Debug)]
pub struct Data {
    /// `[512, 1, 8, 8]`, row-major.
    pub x: Vec<f32>,
    /// 512 labels in `0..10`.
    pub labels: Vec<usize>,
    /// `(name, shape, values)`, under PyTorch's `nn.Sequential` names.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Data {
    /// Draws everything from seeds 701, 702, 711..716.
    pub fn new() -> Self {
        let n = BATCH * NBATCH;
        let pixels = SIDE * SIDE;
        let x: Vec<f32> = uniform(701, n * pixels)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let teacher = normal(702, pixels * CLASSES);
        let labels = x
            .chunks_exact(pixels)
            .map(|image| {
                let z: Vec<f64> = (0..CLASSES)
                    .map(|c| {
                        (0..pixels)
                            .map(|i| f64::from(image[i]) * teacher[i * CLASSES + c])
                            .sum()
                    })
                    .collect();
                (0..CLASSES).fold(0, |best, j| if z[j] > z[best] { j } else { best })
            })
            .collect();
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        let shapes: [(&str, Vec<usize>, f64); 6] = [
            ("0.weight", vec![32, 1, 3, 3], 9.0),
            ("0.bias", vec![32], 9.0),
            ("3.weight", vec![64, 32, 3, 3], 288.0),
            ("3.bias", vec![64], 288.0),
            ("7.weight", vec![CLASSES, 256], 256.0),
            ("7.bias", vec![CLASSES], 256.0),
        ];
        let params = shapes
            .into_iter()
            .zip(711..)
            .map(|((name, shape, fan_in), seed)| {
                let len = shape.iter().product();
                let values = f32s(unif_sym(seed, len, 1.0 / f64::sqrt(fan_in)));
                (name.to_owned(), shape, values)
            })
            .collect();
        Data { x, labels, params }
    }

    /// Batch `k mod 8`: `(x [64, 1, 8, 8] row-major, labels)`.
    pub fn batch(&self, k: usize) -> (&[f32], &[usize]) {
        let b = k % NBATCH;
        let len = BATCH * SIDE * SIDE;
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

/// The network, its parameters and the optimiser.
pub struct Model {
    /// Every parameter, as `cnn.0.weight` .. `cnn.7.bias`.
    pub store: ParamStore<f32>,
    /// The `Sequential` "cnn" of `examples/cnn_digits.rs`.
    pub net: Sequential<f32>,
    /// SGD, learning rate 0.1.
    pub sgd: Sgd<f32>,
}

impl Model {
    /// The initial parameters of `data` and a fresh optimiser.
    pub fn new(data: &Data) -> Self {
        let mut store = ParamStore::new();
        let rng = &mut init::rng(0);
        let mut net = Sequential::new("cnn");
        let padded = Conv2dOptions::new().padding(1);
        net.push(Conv2d::new(
            &mut store,
            net.next_name(),
            1,
            32,
            3,
            padded,
            rng,
        ));
        net.push(ReLU::new());
        net.push(MaxPool2d::new(Pool2dOptions::new(2)));
        net.push(Conv2d::new(
            &mut store,
            net.next_name(),
            32,
            64,
            3,
            padded,
            rng,
        ));
        net.push(ReLU::new());
        net.push(MaxPool2d::new(Pool2dOptions::new(2)));
        net.push(Flatten::new());
        net.push(Linear::new(&mut store, net.next_name(), 256, CLASSES, rng));
        for (name, shape, values) in &data.params {
            let id = store
                .find(&format!("cnn.{name}"))
                .expect("the model has every parameter of the data");
            *store.get_mut(id).expect("in the store") =
                Tensor::new(shape, values.clone()).expect("shape and values agree");
        }
        Model {
            store,
            net,
            sgd: Sgd::new(LR),
        }
    }

    /// The logits of images `x` (`[n, 1, 8, 8]` row-major) recorded on `tape`, in
    /// training mode (the same as evaluation here: no dropout or batch norm).
    pub fn logits<'t>(&mut self, tape: &'t Tape<f32>, x: &[f32]) -> Var<'t, f32> {
        let n = x.len() / (SIDE * SIDE);
        let x = tape.constant(View::new(&[n, 1, SIDE, SIDE], x));
        self.net.call(&mut Ctx::new(tape, &mut self.store), x)
    }
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
    let loss = model.logits(tape, x).cross_entropy(labels);
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

/// An evaluation pass over batch `k` (reset, forward, the loss read), recorded with
/// gradients on or, with `no_grad`, off. Returns the loss.
pub fn evaluate(tape: &Tape<f32>, model: &mut Model, data: &Data, k: usize, no_grad: bool) -> f64 {
    tape.reset();
    let _off = no_grad.then(|| tape.no_grad_guard());
    let (x, labels) = data.batch(k);
    f64::from(model.logits(tape, x).cross_entropy(labels).item())
}
