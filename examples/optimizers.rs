//! Every optimiser on the same small regression problem, side by side.
//!
//! - data: 128 points `x` uniform in [-1, 1]², target `y = sin(2 x₁) + ½ x₂² - 0.3 x₁ x₂`,
//!   from a SplitMix64 stream with a fixed seed
//! - model: 2 -> 16 -> 1 MLP, tanh hidden layer, f64; weights and biases uniform in
//!   ±1/√fan_in (PyTorch's `nn.Linear` initialisation), the same for every optimiser
//! - loss: mean squared error, full batch, 500 steps
//!
//! Each optimiser runs with a learning rate picked by hand for this problem (not tuned
//! hard) and PyTorch's other defaults; the table gives the loss of the parameters after
//! 50, 200 and 500 steps. Every optimiser's arithmetic is checked against `torch.optim`
//! in `crates/optim/tests/torch_reference.rs`.
//!
//! Run it with `cargo run --release --example optimizers`.

#[path = "common/mod.rs"]
mod common;
use descent::optim::*;
use descent::prelude::*;
use descent::tape::{ParamId, ParamStore};
use std::time::Instant;

const POINTS: usize = 128;
const HIDDEN: usize = 16;
const STEPS: usize = 500;
const REPORT_AT: [usize; 3] = [50, 200, 500];
const SEED: u64 = 2024;

/// SplitMix64: a tiny, fixed, portable random stream.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-bound, bound)`.
    fn symmetric(&mut self, bound: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 * (-53f64).exp2();
        (2.0 * u - 1.0) * bound
    }
}

/// The inputs `[POINTS, 2]` and targets `[POINTS, 1]`.
fn data(rng: &mut SplitMix64) -> (Tensor<f64>, Tensor<f64>) {
    let x = Tensor::from_fn(&[POINTS, 2], |_| rng.symmetric(1.0));
    let y = Tensor::from_fn(&[POINTS, 1], |i| {
        let (a, b) = (x.data()[2 * i], x.data()[2 * i + 1]);
        (2.0 * a).sin() + 0.5 * b * b - 0.3 * a * b
    });
    (x, y)
}

struct Mlp {
    w1: ParamId,
    b1: ParamId,
    w2: ParamId,
    b2: ParamId,
}

/// The model's parameters, drawn from `seed` (so every optimiser starts alike).
fn model(seed: u64) -> (ParamStore<f64>, Mlp) {
    let mut rng = SplitMix64(seed);
    let mut store = ParamStore::new();
    let mut layer = |store: &mut ParamStore<f64>, name: &str, fan_in: usize, fan_out: usize| {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let w = Tensor::from_fn(&[fan_in, fan_out], |_| rng.symmetric(bound));
        let b = Tensor::from_fn(&[fan_out], |_| rng.symmetric(bound));
        (
            store.insert(format!("{name}.weight"), w),
            store.insert(format!("{name}.bias"), b),
        )
    };
    let (w1, b1) = layer(&mut store, "hidden", 2, HIDDEN);
    let (w2, b2) = layer(&mut store, "output", HIDDEN, 1);
    (store, Mlp { w1, b1, w2, b2 })
}

/// `mse(tanh(x W₁ + b₁) W₂ + b₂, y)`, recorded on `tape` with the parameters bound.
fn loss<'t>(
    tape: &'t Tape<f64>,
    store: &ParamStore<f64>,
    m: &Mlp,
    x: &Tensor<f64>,
    y: &Tensor<f64>,
) -> Var<'t, f64> {
    let x = tape.constant(x);
    let hidden = (x.matmul(tape.param(store, m.w1)) + tape.param(store, m.b1)).tanh();
    let out = hidden.matmul(tape.param(store, m.w2)) + tape.param(store, m.b2);
    out.mse(tape.constant(y))
}

/// Trains a fresh copy of the model with `opt`; the losses after each of `REPORT_AT`
/// steps.
fn train(opt: &mut dyn Optimizer<f64>, x: &Tensor<f64>, y: &Tensor<f64>) -> Vec<f64> {
    let (mut store, m) = model(SEED + 1);
    let tape = Tape::new();
    let mut losses = Vec::new();
    for step in 1..=STEPS {
        tape.reset();
        let l = loss(&tape, &store, &m, x, y);
        let grads = l.backward();
        opt.step(&mut store, &grads)
            .unwrap_or_else(|e| panic!("{}: {e}", opt.name()));
        if REPORT_AT.contains(&step) {
            tape.reset();
            losses.push(loss(&tape, &store, &m, x, y).item());
        }
    }
    losses
}

fn main() {
    common::command_line(
        "Every optimiser on the same small regression problem, side by side.",
        "usage: optimizers",
        0,
    );
    let (x, y) = data(&mut SplitMix64(SEED));
    let initial = {
        let (store, m) = model(SEED + 1);
        let tape = Tape::new();
        loss(&tape, &store, &m, &x, &y).item()
    };
    let warmup_cosine = LinearWarmup::new(25, Cosine::new(STEPS - 25, 0.0)).start_factor(0.1);
    let runs: Vec<(&str, Box<dyn Optimizer<f64>>)> = vec![
        ("SGD (lr 0.1)", Box::new(Sgd::new(0.1))),
        (
            "SGD momentum 0.9 (lr 0.05)",
            Box::new(Sgd::new(0.05).momentum(0.9)),
        ),
        (
            "SGD Nesterov 0.9 (lr 0.05)",
            Box::new(Sgd::new(0.05).momentum(0.9).nesterov(true)),
        ),
        ("Adagrad (lr 0.1)", Box::new(Adagrad::new(0.1))),
        ("RMSprop (lr 0.01)", Box::new(RmsProp::new(0.01))),
        (
            "RMSprop centred+mom (0.005)",
            Box::new(RmsProp::new(0.005).centered(true).momentum(0.5)),
        ),
        ("Adadelta (lr 1.0)", Box::new(Adadelta::default())),
        ("Adam (lr 0.01)", Box::new(Adam::new(0.01))),
        (
            "Adam AMSGrad (lr 0.01)",
            Box::new(Adam::new(0.01).amsgrad(true)),
        ),
        ("AdamW (lr 0.01, wd 0.01)", Box::new(AdamW::new(0.01))),
        ("AdaMax (lr 0.02)", Box::new(Adamax::new(0.02))),
        ("NAdam (lr 0.01)", Box::new(NAdam::new(0.01))),
        (
            "Adam 0.05, warm-up + cosine",
            Box::new(Scheduled::new(Adam::new(0.05), warmup_cosine)),
        ),
    ];

    println!(
        "2-{HIDDEN}-1 tanh MLP, {POINTS} points, full batch, MSE; loss at step 0: {initial:.6}"
    );
    println!();
    print!("| {:<27} |", "optimiser");
    for n in REPORT_AT {
        print!(" {:>11} |", format!("{n} steps"));
    }
    println!(" {:>8} |", "time");
    print!("|{}|", "-".repeat(29));
    for _ in REPORT_AT {
        print!("{}:|", "-".repeat(12));
    }
    println!("{}:|", "-".repeat(9));
    for (name, mut opt) in runs {
        let start = Instant::now();
        let losses = train(opt.as_mut(), &x, &y);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        print!("| {name:<27} |");
        for l in losses {
            print!(" {l:>11.6} |");
        }
        println!(" {:>6.1}ms |", ms);
    }
}
