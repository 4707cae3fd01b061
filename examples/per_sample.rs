//! Differentially private training in the style of DP-SGD (Abadi et al., 2016) with
//! per-sample gradients: a 64 -> 32 -> 10 tanh MLP learns the 8x8 handwritten digits.
//!
//! Every step takes a batch of samples and calls
//! [`per_sample_grads`](descent::backprop::per_sample_grads), which records each
//! sample's loss on a worker's own tape, runs its backward pass, clips the sample's
//! gradient to a global L2 norm of at most `C`, and sums the clipped gradients in a
//! fixed order (the same bits on any number of threads). Gaussian noise of standard
//! deviation `σ·C` is added to the sum, which is then divided by the batch size
//! ([`PerSample::noisy_mean`](descent::backprop::PerSample::noisy_mean), seeded per
//! step), and one SGD step follows. Clipping bounds what any one sample can move the
//! parameters; the noise hides it.
//!
//! Each epoch prints the mean loss, the mean and largest per-sample gradient norm
//! (before clipping) and the fraction of samples that were clipped; the run ends with
//! the train and test accuracy. The privacy budget `ε` these settings spend is not
//! computed here (that takes a privacy accountant, such as Opacus' RDP accountant).
//!
//! - data: `data/digits.csv` (1,797 images, 64 pixels 0..16 scaled to [0, 1], label
//!   0..9; see `data/README.md`), split 80/20 with a seeded shuffle
//! - model: `W1 [32, 64]`, `b1 [32]`, `W2 [10, 32]`, `b2 [10]` (f32), uniform
//!   `±1/√fan_in`, seeded
//! - options: `--epochs E` (20), `--batch B` (64), `--lr η` (0.5), `--clip C` (1.0),
//!   `--noise σ` (1.0, 0 turns the noise off), `--seed S` (7)
//!
//! Run it with `cargo run --release --example per_sample` (`-- --noise 0` for clipping
//! alone). `RAYON_NUM_THREADS` sets the number of threads; the results do not change.

// Buffers of 1 KiB or more on cache lines, as the project recommends to a binary that
// trains (`docs/PERFORMANCE.md`, "Buffers on cache lines").
#[global_allocator]
static ALLOC: descent::LineAligned = descent::LineAligned;

use descent::backprop::{PerSampleOptions, per_sample_grads};
use descent::data::{CsvOptions, read_csv};
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use descent::tape::{ParamId, ParamStore};
use descent::tensor::View;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::error::Error;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv");
const IN: usize = 64;
const HID: usize = 32;
const OUT: usize = 10;

struct Sample {
    x: [f32; IN],
    label: usize,
}

struct Settings {
    epochs: usize,
    batch: usize,
    lr: f64,
    clip: f64,
    noise: f64,
    seed: u64,
}

fn settings() -> Result<Settings, Box<dyn Error>> {
    let mut s = Settings {
        epochs: 20,
        batch: 64,
        lr: 0.5,
        clip: 1.0,
        noise: 1.0,
        seed: 7,
    };
    use lexopt::Arg::{Long, Short};
    use lexopt::ValueExt;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        match arg {
            Long("epochs") => s.epochs = args.value()?.parse()?,
            Long("batch") => s.batch = args.value()?.parse()?,
            Long("lr") => s.lr = args.value()?.parse()?,
            Long("clip") => s.clip = args.value()?.parse()?,
            Long("noise") => s.noise = args.value()?.parse()?,
            Long("seed") => s.seed = args.value()?.parse()?,
            Short('h') | Long("help") => {
                println!(
                    "DP-SGD on the 8x8 digits with per-sample gradients.\n\n\
                     usage: per_sample [--epochs E (20)] [--batch B (64)] [--lr η (0.5)] \
                     [--clip C (1.0)] [--noise σ (1.0; 0: no noise)] [--seed S (7)]"
                );
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if s.batch == 0 || s.epochs == 0 {
        return Err("--batch and --epochs must be at least 1".into());
    }
    Ok(s)
}

/// The digits of `path` (64 pixels 0..16, scaled to [0, 1], and a label 0..9).
fn load(path: &str) -> Result<Vec<Sample>, Box<dyn Error>> {
    let data = read_csv::<f32>(path, &CsvOptions::classes(OUT).scale(1.0 / 16.0))?;
    if data.sample_shape() != [IN] {
        return Err(format!("{path}: expected {IN} pixels and a label a row").into());
    }
    let labels = data.targets().classes().expect("class labels");
    let pixels = data.inputs().data().chunks_exact(IN);
    Ok(pixels
        .zip(labels)
        .map(|(p, &label)| Sample {
            x: p.try_into().expect("IN pixels"),
            label,
        })
        .collect())
}

struct Model {
    store: ParamStore<f32>,
    w1: ParamId,
    b1: ParamId,
    w2: ParamId,
    b2: ParamId,
}

impl Model {
    fn new(rng: &mut ChaCha8Rng) -> Self {
        let mut store = ParamStore::new();
        let mut uniform = |shape: &[usize], fan_in: usize| {
            let bound = 1.0 / (fan_in as f32).sqrt();
            Tensor::from_fn(shape, |_| rng.random_range(-bound..bound))
        };
        let w1 = store.insert("w1", uniform(&[HID, IN], IN));
        let b1 = store.insert("b1", uniform(&[HID], IN));
        let w2 = store.insert("w2", uniform(&[OUT, HID], HID));
        let b2 = store.insert("b2", uniform(&[OUT], HID));
        Model {
            store,
            w1,
            b1,
            w2,
            b2,
        }
    }

    /// One sample's loss on `tape`: `cross_entropy((W2 tanh(W1 x + b1) + b2)ᵀ, label)`,
    /// with `x` a `[64, 1]` column.
    fn loss<'t>(&self, tape: &'t Tape<f32>, s: &Sample) -> Var<'t, f32> {
        let p = |id| tape.param(&self.store, id);
        let x = tape.constant(View::new(&[IN, 1], &s.x));
        let h = (p(self.w1).matmul(x) + p(self.b1).reshape(&[HID, 1])).tanh();
        let logits = p(self.w2).matmul(h) + p(self.b2).reshape(&[OUT, 1]);
        logits.reshape(&[1, OUT]).cross_entropy(&[s.label])
    }

    /// The fraction of `samples` classified correctly, in one batched forward pass.
    fn accuracy(&self, samples: &[Sample]) -> f64 {
        let tape = Tape::new();
        let p = |id| tape.param(&self.store, id);
        let xs: Vec<f32> = samples.iter().flat_map(|s| s.x).collect();
        let x = tape.constant(View::new(&[samples.len(), IN], &xs));
        let h = (x.matmul_t(p(self.w1)) + p(self.b1)).tanh();
        let logits = (h.matmul_t(p(self.w2)) + p(self.b2)).value();
        let right = logits
            .data()
            .chunks_exact(OUT)
            .zip(samples)
            .filter(|(row, s)| {
                let best = (0..OUT).max_by(|&a, &b| row[a].total_cmp(&row[b]));
                best == Some(s.label)
            })
            .count();
        right as f64 / samples.len() as f64
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let s = settings()?;
    let mut data = load(DATA)?;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    data.shuffle(&mut rng);
    let test = data.split_off(data.len() * 4 / 5);
    let train = data;
    let mut model = Model::new(&mut rng);
    let mut sgd = Sgd::new(s.lr);
    let options = PerSampleOptions {
        clip_norm: Some(s.clip),
        ..PerSampleOptions::default()
    };
    println!(
        "digits: {} train / {} test samples; batch {}, lr {}, clip norm C = {}, noise \
         multiplier σ = {} (noise std on the mean gradient σC/B = {:.4}); {} threads",
        train.len(),
        test.len(),
        s.batch,
        s.lr,
        s.clip,
        s.noise,
        s.noise * s.clip / s.batch as f64,
        rayon_threads(),
    );
    println!("epoch   loss    mean |g_i|  max |g_i|  clipped  test acc");
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut step = 0u64;
    for epoch in 1..=s.epochs {
        order.shuffle(&mut rng);
        let (mut loss, mut norm_sum, mut norm_max, mut clipped, mut n) = (0.0, 0.0, 0f64, 0, 0);
        for batch in order.chunks(s.batch) {
            let samples: Vec<&Sample> = batch.iter().map(|&i| &train[i]).collect();
            let out = per_sample_grads(&model.store, &samples, options, |tape, s| {
                model.loss(tape, s)
            })?;
            // The noise stream of step k is seeded by (seed, k): a rerun gives the same
            // model, on any number of threads.
            let grad = out.noisy_mean(s.noise, s.clip, s.seed.wrapping_mul(1_000_003) + step)?;
            sgd.step(&mut model.store, &grad)?;
            step += 1;
            loss += out.losses.iter().sum::<f64>();
            norm_sum += out.norms.iter().sum::<f64>();
            norm_max = out.norms.iter().copied().fold(norm_max, f64::max);
            clipped += out.norms.iter().filter(|&&g| g > s.clip).count();
            n += out.count;
        }
        println!(
            "{epoch:>5}  {:.4}  {:>10.4}  {:>9.4}  {:>6.1}%  {:>7.1}%",
            loss / n as f64,
            norm_sum / n as f64,
            norm_max,
            100.0 * clipped as f64 / n as f64,
            100.0 * model.accuracy(&test),
        );
    }
    println!(
        "final accuracy: train {:.1}%, test {:.1}%",
        100.0 * model.accuracy(&train),
        100.0 * model.accuracy(&test)
    );
    Ok(())
}

/// The number of threads per-sample passes run on (rayon's current pool).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
