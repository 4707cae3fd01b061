//! micrograd's demo on scalar nodes: a 2-16-16-1 MLP learns the two-moons problem
//! (workload W2, `micrograd-moons`, of the six reference workloads W1..W6 that descent
//! is measured on: `docs/WORKLOADS.md`).
//!
//! Every number of the model is its own node: each step resets one reused tape, binds
//! the 337 parameters as scalar variables (`tape.var(p)`), builds the loss for all 100
//! points out of scalar `*`, `+`, `-` and `relu` (about 66,000 nodes), runs backward and
//! updates every parameter by its gradient. No tensor is involved: this is the graph
//! micrograd builds, recorded on a tape instead of a web of closures.
//!
//! - data: `data/moons100.csv` (`x1,x2,y`, `y` in {-1, 1}; see `data/README.md`)
//! - model: 2 -> 16 -> 16 -> 1, ReLU on the hidden layers, linear output, f64; weights
//!   `[out, in]` uniform(-1, 1) from the SplitMix64 stream of `shared/peers/common.py`
//!   (seeds 201, 202, 203), biases 0
//! - loss: mean over the points of `relu(1 - y·score)` plus `1e-4 · Σ p²` over all
//!   parameters; full batch, 100 steps of SGD with learning rate `1 - 0.9·k/100`
//!
//! The forward arithmetic follows micrograd's order exactly: a neuron is
//! `((b + w₀x₀) + w₁x₁) + …`, the data loss is the left-to-right sum of the 100 hinge
//! terms times `1/100`, and the penalty is the left-to-right sum of `p²` in micrograd's
//! parameter order (layer by layer, neuron by neuron, weights then bias) times `1e-4`;
//! the loss at step 0 is micrograd's to the bit. Gradients of nodes used more than once
//! are summed in a different order (the tape: reverse creation order; micrograd: the
//! reverse of its set-based depth-first order), so after 100 steps the final loss
//! differs from micrograd's by a few ulps. The reference value in `docs/WORKLOADS.md` comes
//! from the batched peers (matrix products, `mean` as a sum divided by 100, the penalty
//! summed tensor by tensor), whose order no scalar graph reproduces: expect ~1e-15.
//!
//! Run it with `cargo run --release --example moons`.

#[path = "common/mod.rs"]
mod common;
use descent::data::{CsvOptions, read_csv};
use descent::prelude::*;
use std::error::Error;
use std::time::{Duration, Instant};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/moons100.csv");
const SIZES: [usize; 4] = [2, 16, 16, 1];
const SEEDS: [u64; 3] = [201, 202, 203];
const STEPS: usize = 100;
const L2: f64 = 1e-4;
/// Loss at the last step (k = 99) printed by the reference implementations
/// (`docs/WORKLOADS.md`, W2).
const PEER_FINAL_LOSS: f64 = 0.027_707_824_041_473_6;
/// Loss at the last step from micrograd 0.1.0 itself (`shared/peers/micrograd_workloads.py
/// --workload W2`), whose forward arithmetic this example follows.
const MICROGRAD_FINAL_LOSS: f64 = 0.027_707_824_041_473_532;

/// The SplitMix64 stream of `shared/peers/common.py`, so that the initial weights are
/// the reference implementations' to the bit.
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
}

/// `n` draws uniform in `(-bound, bound)` as `(2u - 1)·bound` (common.py's `unif_sym`).
fn unif_sym(seed: u64, n: usize, bound: f64) -> Vec<f64> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| (2.0 * rng.uniform() - 1.0) * bound)
        .collect()
}

/// The initial parameters in micrograd's order: for each layer, for each neuron (output
/// row), its weights, then its bias.
fn initial_parameters() -> Vec<f64> {
    let mut params = Vec::new();
    for (l, &seed) in SEEDS.iter().enumerate() {
        let (inputs, outputs) = (SIZES[l], SIZES[l + 1]);
        let w = unif_sym(seed, outputs * inputs, 1.0); // [outputs, inputs], row-major
        for row in w.chunks(inputs) {
            params.extend_from_slice(row);
            params.push(0.0);
        }
    }
    params
}

struct Point {
    x: [f64; 2],
    y: f64,
}

/// The points of `path` (columns `x1,x2,y`, `y` in {-1, 1}).
fn load(path: &str) -> Result<Vec<Point>, Box<dyn Error>> {
    let data = read_csv::<f64>(path, &CsvOptions::values())?;
    if data.sample_shape() != [2] {
        return Err(format!("{path}: expected the columns x1,x2,y").into());
    }
    let labels = data.targets().values().expect("numeric targets").data();
    let rows = data.inputs().data().chunks_exact(2).zip(labels);
    rows.enumerate()
        .map(|(i, (x, &y))| match y {
            -1.0 | 1.0 => Ok(Point { x: [x[0], x[1]], y }),
            _ => Err(format!("{path}: sample {i}: label {y} is not -1 or 1").into()),
        })
        .collect()
}

/// The scores of all points and the loss, recorded on `tape` from the parameter nodes
/// `params` (in [`initial_parameters`]' order).
fn forward<'t>(
    tape: &'t Tape<f64>,
    params: &[Var<'t, f64>],
    data: &[Point],
) -> (Vec<Var<'t, f64>>, Var<'t, f64>) {
    let mut scores = Vec::with_capacity(data.len());
    let mut data_loss: Option<Var<'t, f64>> = None;
    for point in data {
        let mut acts: Vec<Var<'t, f64>> = point.x.iter().map(|&x| tape.constant(x)).collect();
        let mut offset = 0;
        for l in 0..SIZES.len() - 1 {
            let (inputs, outputs) = (SIZES[l], SIZES[l + 1]);
            let last = l == SIZES.len() - 2;
            acts = (0..outputs)
                .map(|j| {
                    let neuron = &params[offset + j * (inputs + 1)..][..inputs + 1];
                    let (w, b) = neuron.split_at(inputs);
                    let act = w.iter().zip(&acts).fold(b[0], |act, (&w, &x)| act + w * x);
                    if last { act } else { act.relu() }
                })
                .collect();
            offset += outputs * (inputs + 1);
        }
        let score = acts[0];
        let hinge = (1.0 - point.y * score).relu();
        data_loss = Some(data_loss.map_or(hinge, |sum| sum + hinge));
        scores.push(score);
    }
    let data_loss = data_loss.expect("at least one point") * (1.0 / data.len() as f64);
    let penalty = params
        .iter()
        .map(|&p| p * p)
        .reduce(|sum, sq| sum + sq)
        .expect("at least one parameter");
    (scores, data_loss + penalty * L2)
}

/// Share of points on the right side of the decision boundary: `score > 0` iff `y > 0`.
fn accuracy(scores: &[Var<'_, f64>], data: &[Point]) -> f64 {
    let right = scores
        .iter()
        .zip(data)
        .filter(|(s, p)| (s.item() > 0.0) == (p.y > 0.0))
        .count();
    right as f64 / data.len() as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    common::command_line(
        "micrograd's demo on scalar nodes: a 2-16-16-1 MLP learns the two-moons problem (workload W2).",
        "usage: moons",
        0,
    );
    let data = load(DATA)?;
    let mut params = initial_parameters();
    println!(
        "{} points, {} parameters, MLP {:?}, {STEPS} steps of full-batch SGD",
        data.len(),
        params.len(),
        SIZES
    );

    let tape = Tape::<f64>::new();
    let (mut t_forward, mut t_backward, mut t_update) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut final_loss = f64::NAN;
    let mut nodes = 0;
    for k in 0..STEPS {
        let t0 = Instant::now();
        tape.reset();
        let vars: Vec<Var<'_, f64>> = params.iter().map(|&p| tape.var(p)).collect();
        let (scores, loss) = forward(&tape, &vars, &data);
        let t1 = Instant::now();
        let grads = loss.backward();
        let t2 = Instant::now();
        let lr = 1.0 - 0.9 * k as f64 / 100.0;
        for (p, &v) in params.iter_mut().zip(&vars) {
            *p -= lr * grads.wrt(v).item();
        }
        let t3 = Instant::now();
        (t_forward, t_backward, t_update) = (
            t_forward + (t1 - t0),
            t_backward + (t2 - t1),
            t_update + (t3 - t2),
        );

        final_loss = loss.item();
        nodes = tape.len();
        if k % 10 == 0 || k == STEPS - 1 {
            println!(
                "step {k:>3}  loss {final_loss}  accuracy {:.2}",
                accuracy(&scores, &data)
            );
        }
    }

    // One more forward pass, with the parameters after the last update.
    tape.reset();
    let vars: Vec<Var<'_, f64>> = params.iter().map(|&p| tape.var(p)).collect();
    let (scores, _) = forward(&tape, &vars, &data);
    let final_accuracy = accuracy(&scores, &data);

    let ms = |d: Duration| d.as_secs_f64() * 1e3 / STEPS as f64;
    println!();
    println!("final loss (step {}):  {final_loss}", STEPS - 1);
    let relative = |peer: f64| (final_loss - peer).abs() / peer.abs();
    println!(
        "peers' final loss:     {PEER_FINAL_LOSS}  (WORKLOADS.md; relative difference {:.3e})",
        relative(PEER_FINAL_LOSS)
    );
    println!(
        "micrograd's:           {MICROGRAD_FINAL_LOSS}  (relative difference {:.3e})",
        relative(MICROGRAD_FINAL_LOSS)
    );
    println!("final accuracy (after the last update): {final_accuracy}");
    println!("nodes on the tape per step: {nodes}");
    println!(
        "time per step: {:.3} ms (forward {:.3}, backward {:.3}, update {:.3})",
        ms(t_forward + t_backward + t_update),
        ms(t_forward),
        ms(t_backward),
        ms(t_update)
    );
    Ok(())
}
