//! Exploding gradients in a vanilla RNN, and how global-norm clipping tames them
//! (workload W5, `deep-rnn`, of the six reference workloads W1..W6 that descent is
//! measured on: `docs/WORKLOADS.md`).
//!
//! - model: `h_t = tanh(x_t Wxᵀ + b + h_{t-1} Whᵀ)`, `h_0 = 0`, input 8, hidden 64, a
//!   linear read-out `y = h_T Woᵀ + bo` of the last state; f32; loss: mean squared
//!   error of `y` against a target; backpropagation through all 200 steps; batch 32.
//!   The layers are `descent_nn::Linear`s: `rnn.input` (Wx, b), `rnn.recurrent` (Wh,
//!   no bias) and `readout` (Wo, bo), bound once per step and applied 200 times.
//! - data and initial values: W5's SplitMix64 recipe of `shared/peers/common.py`
//!   (X `[200, 32, 8]` normal seed 501, target `[32, 1]` normal seed 502, Wx normal/√8
//!   seed 503, Wh normal·s/8 seed 504, Wo normal/8 seed 505, biases 0), with one
//!   change: the recurrent scale is `s = 1.8` where W5 has 2.0.
//! - training: plain SGD, learning rate 0.2, 100 steps, twice from the same initial
//!   weights: run 1 without clipping, run 2 with `clip_grad_norm(5.0)`. Each step
//!   prints the loss and the gradient norm before clipping of both runs side by side.
//!
//! # Why s = 1.8 and a learning rate of 0.2
//!
//! Wh is a 64×64 matrix of N(0, s²/64) entries, so its spectral radius is about `s`
//! (1.90 for seed 504 at s = 1.8, 2.11 at 2.0). At W5's s = 2.0 the tanh network is
//! already chaotic: its gradient norm is 1.0e4 at step 0, and with W5's learning rate
//! 0.01 and no clipping the gradient of step 1 is NaN (it overflows along the 200
//! steps; PyTorch on the same data does the same). With clipping W5 stays finite, but
//! in that chaotic regime the loss does not fall within 100 steps (1.33 at step 0,
//! 1.34 at step 99): a fine demonstration of overflow, a poor one of rescue. Try
//! `cargo run --release --example exploding_rnn -- --wh-scale 2 --lr 0.01`.
//!
//! Just below the edge of chaos, at s = 1.8, the gradient norm at step 0 is 9.5 and
//! the network learns. A learning rate of 0.2 is one it can afford when each step is
//! bounded (clipped, a step moves the weights by at most 0.2 · 5 = 1), but not when it
//! is not: unclipped, a gradient spike a few steps in (norm 44 at step 3, 1.5e4 at step
//! 5) throws Wh into the chaotic regime; the hidden state saturates, and the read-out's
//! own update, with `|h|² ≈ 64`, has a curvature far above `2/lr`, so it oscillates with
//! growing amplitude until the loss overflows to infinity, about 25 steps in. The
//! clipped run goes through the same kind of spike (norm 24.5 at step 7), clipped to 5,
//! and its loss falls by six orders of magnitude. (At s ≤ 1.7 the gradient stays near
//! 5 and nothing explodes at this learning rate; at s = 2 and lr 0.2 the clipped run
//! does not learn either: its loss ends at 6.7.) The numbers in these comments are
//! from one machine; another summation order in the matrix kernels may move the exact
//! steps a little.
//!
//! Run it with `cargo run --release --example exploding_rnn` (a few seconds).
//! `tests/exploding_rnn.rs` checks both behaviours on a 30-step sequence.

// Buffers of 1 KiB or more on cache lines, as the project recommends to a binary that
// trains (`docs/PERFORMANCE.md`, "Buffers on cache lines").
#[global_allocator]
static ALLOC: descent::LineAligned = descent::LineAligned;

use descent::nn::Linear;
use descent::optim::{Error as OptimError, Optimizer, Sgd, clip_grad_norm};
use descent::prelude::*;
use descent::tape::ParamStore;

/// Input features per time step.
pub const INPUT: usize = 8;
/// Hidden units.
pub const HIDDEN: usize = 64;

/// What one training run does.
#[derive(Clone, Debug)]
pub struct Config {
    /// Time steps of the sequence (W5: 200).
    pub seq_len: usize,
    /// Sequences per batch (W5: 32).
    pub batch: usize,
    /// Wh's entries are N(0, (wh_scale/8)²) (W5: 2.0).
    pub wh_scale: f64,
    /// SGD learning rate.
    pub lr: f64,
    /// Optimiser steps.
    pub steps: usize,
    /// Global-norm clipping limit, if any.
    pub clip: Option<f64>,
}

impl Config {
    /// This example's run: W5's shapes, s = 1.8, learning rate 0.2, 100 steps.
    pub fn example() -> Self {
        Self {
            seq_len: 200,
            batch: 32,
            wh_scale: 1.8,
            lr: 0.2,
            steps: 100,
            clip: None,
        }
    }
}

/// The SplitMix64 stream of `shared/peers/common.py`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`: the top 53 bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (-53f64).exp2()
    }

    /// Box–Muller on two consecutive uniforms, as `common.normal` pairs them.
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// `common.normal_arr(seed, shape, scale)` rounded to f32.
fn normal_tensor(seed: u64, shape: &[usize], scale: f64) -> Tensor<f32> {
    let mut r = SplitMix64(seed);
    Tensor::from_fn(shape, |_| (r.normal() * scale) as f32)
}

/// The inputs, one `[batch, 8]` tensor per time step, and the `[batch, 1]` target.
pub struct Data {
    xs: Vec<Tensor<f32>>,
    target: Tensor<f32>,
}

impl Data {
    /// W5's data (seeds 501 and 502) for a sequence of `seq_len` steps.
    pub fn w5(seq_len: usize, batch: usize) -> Self {
        let x = normal_tensor(501, &[seq_len, batch, INPUT], 1.0);
        let xs = x
            .data()
            .chunks(batch * INPUT)
            .map(|step| Tensor::new(&[batch, INPUT], step.to_vec()).expect("batch × input"))
            .collect();
        Self {
            xs,
            target: normal_tensor(502, &[batch, 1], 1.0),
        }
    }
}

/// The RNN's three layers; the values live in a `ParamStore`.
pub struct Rnn {
    input: Linear,
    recurrent: Linear,
    readout: Linear,
}

impl Rnn {
    /// W5's initial values (seeds 503, 504, 505; biases 0) with Wh scaled by `wh_scale`.
    pub fn w5(store: &mut ParamStore<f32>, wh_scale: f64) -> Self {
        let (i, h) = (INPUT as f64, HIDDEN as f64);
        let wx = normal_tensor(503, &[HIDDEN, INPUT], 1.0 / i.sqrt());
        let wh = normal_tensor(504, &[HIDDEN, HIDDEN], wh_scale / h.sqrt());
        let wo = normal_tensor(505, &[1, HIDDEN], 1.0 / h.sqrt());
        let layer = |store: &mut ParamStore<f32>, name, w, b| {
            Linear::from_tensors(store, name, w, b).expect("shapes made here")
        };
        Self {
            input: layer(store, "rnn.input", wx, Some(Tensor::zeros(&[HIDDEN]))),
            recurrent: layer(store, "rnn.recurrent", wh, None),
            readout: layer(store, "readout", wo, Some(Tensor::zeros(&[1]))),
        }
    }

    /// Records the forward pass through the whole sequence and returns the loss.
    pub fn loss<'t>(
        &self,
        tape: &'t Tape<f32>,
        store: &ParamStore<f32>,
        data: &Data,
    ) -> Var<'t, f32> {
        // Bound once: Wxᵀ and Whᵀ are recorded once per step, not once per time step.
        let input = self.input.bind(tape, store);
        let recurrent = self.recurrent.bind(tape, store);
        let mut h: Option<Var<'t, f32>> = None; // h_0 = 0: its product is skipped
        for x in &data.xs {
            let mut pre = input.forward(tape.constant(x.clone()));
            if let Some(h) = h {
                pre = pre + recurrent.forward(h);
            }
            h = Some(pre.tanh());
        }
        let last = h.expect("a sequence of at least one step");
        let y = self.readout.forward(tape, store, last);
        y.mse(tape.constant(data.target.clone()))
    }
}

/// One step's record.
#[derive(Clone, Copy, Debug)]
pub struct StepLog {
    /// The loss before the step's update.
    pub loss: f64,
    /// The global L2 norm of the gradient, before clipping.
    pub norm: f64,
}

/// A run's records, and where it diverged if it did.
#[derive(Clone, Debug)]
pub struct RunLog {
    /// One record per step taken (the diverging step included).
    pub steps: Vec<StepLog>,
    /// `(step, why)` for the first step whose loss was not finite or whose update was
    /// refused for a non-finite gradient; the run stops there.
    pub diverged: Option<(usize, String)>,
}

/// Trains from W5's initial values under `cfg` and records every step.
pub fn train(cfg: &Config) -> RunLog {
    let data = Data::w5(cfg.seq_len, cfg.batch);
    let mut store = ParamStore::<f32>::new();
    let rnn = Rnn::w5(&mut store, cfg.wh_scale);
    let mut sgd = Sgd::new(cfg.lr);
    let tape = Tape::with_capacity(8 * cfg.seq_len + 16);
    let mut log = RunLog {
        steps: Vec::with_capacity(cfg.steps),
        diverged: None,
    };
    for step in 0..cfg.steps {
        tape.reset();
        let loss = rnn.loss(&tape, &store, &data);
        let value = f64::from(loss.item());
        let mut grads = loss.backward();
        let norm = grads.global_norm();
        log.steps.push(StepLog { loss: value, norm });
        if !value.is_finite() {
            log.diverged = Some((step, format!("the loss is {value}")));
            break;
        }
        let update = match cfg.clip {
            Some(limit) => clip_grad_norm(&store, &mut grads, limit).map(|_before| ()),
            None => Ok(()),
        }
        .and_then(|()| sgd.step(&mut store, &grads));
        match update {
            Ok(()) => {}
            Err(e @ OptimError::NonFinite { .. }) => {
                log.diverged = Some((step, e.to_string()));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    log
}

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config::example();
    use lexopt::Arg::{Long, Short};
    use lexopt::ValueExt;
    const FLAGS: &str =
        "flags: --wh-scale S (1.8), --lr η (0.2), --steps N (100), --seq-len T (200)";
    let mut args = lexopt::Parser::from_env();
    let text = |e: lexopt::Error| e.to_string();
    while let Some(arg) = args.next().map_err(text)? {
        match arg {
            Long("wh-scale") => cfg.wh_scale = args.value().map_err(text)?.parse().map_err(text)?,
            Long("lr") => cfg.lr = args.value().map_err(text)?.parse().map_err(text)?,
            Long("steps") => cfg.steps = args.value().map_err(text)?.parse().map_err(text)?,
            Long("seq-len") => cfg.seq_len = args.value().map_err(text)?.parse().map_err(text)?,
            Short('h') | Long("help") => {
                println!(
                    "exploding gradients in a vanilla RNN, with and without clipping\n\n{FLAGS}"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("{} ({FLAGS})", text(arg.unexpected()))),
        }
    }
    if cfg.seq_len == 0 {
        return Err("--seq-len must be at least 1".into());
    }
    Ok(cfg)
}

fn cell(log: &RunLog, step: usize) -> String {
    match (log.steps.get(step), &log.diverged) {
        (Some(s), _) => format!("{:>11.4e} {:>11.4e}", s.loss, s.norm),
        (None, Some((at, _))) if step > *at => format!("{:>23}", "(stopped)"),
        _ => String::new(),
    }
}

fn main() {
    let base = match parse_args() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("exploding_rnn: {e}");
            std::process::exit(2);
        }
    };
    const CLIP: f64 = 5.0;
    println!(
        "vanilla tanh RNN: sequence {}, batch {}, input {INPUT}, hidden {HIDDEN}, f32; \
         Wh scale {}, SGD lr {}, {} steps",
        base.seq_len, base.batch, base.wh_scale, base.lr, base.steps
    );
    let unclipped = train(&base);
    let clipped = train(&Config {
        clip: Some(CLIP),
        ..base.clone()
    });

    println!();
    println!(
        "{:>4}  {:^23}  {:^23}",
        "", "run 1: no clipping", "run 2: clip norm at 5"
    );
    println!(
        "{:>4}  {:>11} {:>11}  {:>11} {:>11}",
        "step", "loss", "grad norm", "loss", "grad norm"
    );
    for step in 0..base.steps {
        let flag = match clipped.steps.get(step) {
            Some(s) if s.norm > CLIP => " clipped",
            _ => "",
        };
        println!(
            "{step:>4}  {}  {}{flag}",
            cell(&unclipped, step),
            cell(&clipped, step)
        );
    }
    println!("(grad norm: the global L2 norm of all five gradients, before clipping)");

    println!();
    match &unclipped.diverged {
        Some((step, why)) => {
            let peak = unclipped.steps.iter().map(|s| s.norm).fold(0.0, f64::max);
            println!("run 1 (no clipping): diverged at step {step}: {why}");
            println!("  largest finite gradient norm before that: {peak:.3e}");
        }
        None => println!(
            "run 1 (no clipping): did not diverge in {} steps (final loss {:.4e})",
            base.steps,
            unclipped.steps.last().map_or(f64::NAN, |s| s.loss)
        ),
    }
    match &clipped.diverged {
        Some((step, why)) => println!("run 2 (clipped at {CLIP}): diverged at step {step}: {why}"),
        None => {
            let first = clipped.steps.first().map_or(f64::NAN, |s| s.loss);
            let last = clipped.steps.last().map_or(f64::NAN, |s| s.loss);
            let active = clipped.steps.iter().filter(|s| s.norm > CLIP).count();
            let peak = clipped.steps.iter().map(|s| s.norm).fold(0.0, f64::max);
            println!(
                "run 2 (clipped at {CLIP}): finite throughout; loss {first:.4e} -> {last:.4e} \
                 over {} steps; clipping active on {active} steps; largest norm {peak:.3e}",
                clipped.steps.len()
            );
        }
    }
}
