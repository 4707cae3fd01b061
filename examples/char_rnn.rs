//! A character-level LSTM language model on the first book of Cicero's *De finibus*
//! (`data/de_finibus_1.txt`, public domain; `data/README.md` says where it comes from).
//!
//! - data: the text's characters (a vocabulary of every character it uses); the last
//!   10% held out; training windows of 64 characters drawn from the first 90% by a
//!   seeded generator, the target at each position the next character;
//! - model (PyTorch names): `Embedding(vocab, 32)` ("embed"), a one-layer
//!   `LSTM(32, 256)` ("lstm"), `Linear(256, vocab)` ("head"), f32;
//! - training: mean cross-entropy over every position, Adam (lr 2e-3), batches of 32
//!   windows, gradients clipped to a global norm of 1 (the early steps' gradients
//!   spike past it; how many steps were clipped is printed);
//! - it prints the training and held-out loss (nats and bits per character) every 50
//!   steps, draws the loss curve to `out/char_rnn/loss.png`, samples 400 characters
//!   at temperature 0.7, and fails if the held-out loss is not below the unigram
//!   model's (the entropy of the character frequencies) by at least a third.
//!
//! Everything is seeded: a rerun prints the same numbers (timings aside).
//!
//! Run it with `cargo run --release --example char_rnn [steps]` (600 steps by default:
//! 109 s on two cores shared with other builds, load average 15; held-out loss 1.672
//! nats per character against the unigram model's 2.938).

#[path = "common/mod.rs"]
mod common;
use descent::nn::layers::Embedding;
use descent::nn::recurrent::{CellKind, Recurrent, RecurrentConfig, State};
use descent::nn::{Ctx, Linear, Module, init};
use descent::optim::{Adam, Optimizer, clip_grad_norm};
use descent::plot::{Curve, CurveOptions, CurveStyle, save_curves_png};
use descent::prelude::*;
use rand::Rng;
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

const WINDOW: usize = 64;
const BATCH: usize = 32;
const EMBED: usize = 32;
const HIDDEN: usize = 256;
const LR: f64 = 2e-3;
const CLIP: f64 = 1.0;
const STEPS: usize = 600;
const EVERY: usize = 50;
const SAMPLE: usize = 400;
const TEMPERATURE: f64 = 0.7;
const SEED: u64 = 7;

struct Model {
    embed: Embedding,
    lstm: Recurrent,
    head: Linear,
    vocab: usize,
}

impl Model {
    fn new(store: &mut ParamStore<f32>, vocab: usize) -> Self {
        let rng = &mut init::rng(SEED);
        Model {
            embed: Embedding::new(store, "embed", vocab, EMBED, rng),
            lstm: Recurrent::new(
                store,
                "lstm",
                RecurrentConfig::new(CellKind::Lstm, EMBED, HIDDEN),
                rng,
            ),
            head: Linear::new(store, "head", HIDDEN, vocab, rng),
            vocab,
        }
    }

    /// Logits `[batch · time, vocab]` for `chars` (`[batch, time]`, row-major), and the
    /// final state.
    fn logits<'t>(
        &self,
        cx: &mut Ctx<'t, '_, f32>,
        chars: &[usize],
        batch: usize,
        initial: Option<State<'t, f32>>,
    ) -> (Var<'t, f32>, State<'t, f32>) {
        let time = chars.len() / batch;
        let x = self
            .embed
            .lookup(cx, &[batch, time], chars)
            .expect("characters of the vocabulary");
        let out = self.lstm.forward(cx.tape(), cx.store(), x, initial);
        let logits = self
            .head
            .call(cx, out.output)
            .reshape(&[batch * time, self.vocab]);
        (logits, out.state)
    }
}

/// Inputs and next-character targets of `n` windows starting at random offsets of
/// `text` (which must hold at least `WINDOW + 1` characters).
fn windows(text: &[usize], n: usize, rng: &mut impl Rng) -> (Vec<usize>, Vec<usize>) {
    let (mut x, mut y) = (
        Vec::with_capacity(n * WINDOW),
        Vec::with_capacity(n * WINDOW),
    );
    for _ in 0..n {
        let s = rng.random_range(0..text.len() - WINDOW);
        x.extend_from_slice(&text[s..s + WINDOW]);
        y.extend_from_slice(&text[s + 1..s + WINDOW + 1]);
    }
    (x, y)
}

/// Mean cross-entropy over the held-out text, read in consecutive windows with the
/// state carried from one to the next (no gradient is recorded).
fn held_out_loss(model: &Model, store: &mut ParamStore<f32>, text: &[usize]) -> f64 {
    let tape = Tape::<f32>::new();
    let _off = tape.no_grad_guard();
    let mut state: Option<State<'_, f32>> = None;
    let (mut total, mut count) = (0.0, 0usize);
    let chunk = 256;
    let mut start = 0;
    while start + 1 < text.len() {
        let end = (start + chunk).min(text.len() - 1);
        let mut cx = Ctx::new(&tape, store).eval();
        let (logits, s) = model.logits(&mut cx, &text[start..end], 1, state);
        let loss = logits.cross_entropy(&text[start + 1..end + 1]);
        total += f64::from(loss.item()) * (end - start) as f64;
        count += end - start;
        state = Some(s.detached(&tape));
        start = end;
    }
    total / count as f64
}

/// `SAMPLE` characters continuing `prompt`, each drawn from the softmax of the logits
/// divided by the temperature.
fn sample(
    model: &Model,
    store: &mut ParamStore<f32>,
    prompt: &[usize],
    rng: &mut impl Rng,
) -> Vec<usize> {
    let tape = Tape::<f32>::new();
    let _off = tape.no_grad_guard();
    let mut cx = Ctx::new(&tape, store).eval();
    let (mut logits, mut state) = model.logits(&mut cx, prompt, 1, None);
    let mut out = Vec::with_capacity(SAMPLE);
    for _ in 0..SAMPLE {
        let row = logits.value();
        let last = &row.data()[row.len() - model.vocab..];
        let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = last
            .iter()
            .map(|&l| (f64::from(l - max) / TEMPERATURE).exp())
            .collect();
        let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
        let mut next = model.vocab - 1;
        for (c, w) in weights.iter().enumerate() {
            if u < *w {
                next = c;
                break;
            }
            u -= w;
        }
        out.push(next);
        (logits, state) = model.logits(&mut cx, &[next], 1, Some(state));
    }
    out
}

fn main() -> Result<(), Box<dyn Error>> {
    let free = common::command_line(
        "A character-level LSTM learns Cicero's Latin: training and held-out loss every 50 steps,
the loss curve in out/char_rnn/loss.png, then 400 sampled characters.",
        "usage: char_rnn [steps]",
        1,
    );
    let steps: usize = match free.first() {
        Some(s) => s
            .to_str()
            .and_then(|s| s.parse().ok())
            .ok_or("steps: a number")?,
        None => STEPS,
    };
    let start = Instant::now();
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "data", "de_finibus_1.txt"]
        .iter()
        .collect();
    let text = std::fs::read_to_string(&path)?;
    let mut alphabet: Vec<char> = text.chars().collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    let index = |c: char| alphabet.binary_search(&c).expect("in the alphabet");
    let encoded: Vec<usize> = text.chars().map(index).collect();
    let split = encoded.len() * 9 / 10;
    let (train, held_out) = encoded.split_at(split);
    let vocab = alphabet.len();
    // The unigram model's loss: the entropy of the training text's character counts.
    let mut counts = vec![0usize; vocab];
    for &c in train {
        counts[c] += 1;
    }
    let unigram: f64 = counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = n as f64 / train.len() as f64;
            -p * p.ln()
        })
        .sum();

    let mut store = ParamStore::<f32>::new();
    let model = Model::new(&mut store, vocab);
    let params: usize = store.iter().map(|(_, _, t)| t.len()).sum();
    println!(
        "{} characters ({} held out), vocabulary {vocab}; LSTM {EMBED}->{HIDDEN}, {params} parameters",
        encoded.len(),
        held_out.len()
    );
    println!(
        "unigram model: {unigram:.3} nats/char ({:.3} bits)\n",
        unigram / std::f64::consts::LN_2
    );

    let rng = &mut init::rng(SEED + 1);
    let mut adam = Adam::new(LR);
    let tape = Tape::<f32>::new();
    let (mut train_curve, mut held_curve) = (Vec::new(), Vec::new());
    let (mut window_loss, mut clipped) = (0.0, 0);
    let mut last_held = f64::INFINITY;
    // One store for every step, keeping only the parameters' gradients: the step
    // reads nothing else, and each rule's buffer is reused while still in cache.
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    for step in 1..=steps {
        tape.reset();
        let (x, y) = windows(train, BATCH, rng);
        let mut cx = Ctx::new(&tape, &mut store);
        let (logits, _) = model.logits(&mut cx, &x, BATCH, None);
        let loss = logits.cross_entropy(&y);
        let l = f64::from(loss.item());
        train_curve.push((step as f64, l));
        window_loss += l;
        backward_into(loss, &mut grads)?;
        if clip_grad_norm(&store, &mut grads, CLIP)? > CLIP {
            clipped += 1;
        }
        // Released before the step, the tape no longer shares the parameters' values,
        // so the step updates them in place instead of copying them.
        tape.reset();
        adam.step(&mut store, &grads)?;
        if step % EVERY == 0 || step == steps {
            last_held = held_out_loss(&model, &mut store, held_out);
            held_curve.push((step as f64, last_held));
            let n = if step % EVERY == 0 {
                EVERY
            } else {
                step % EVERY
            };
            println!(
                "step {step:>4}  train {:.3}  held-out {last_held:.3} nats/char ({:.3} bits)  clipped {clipped}/{n}",
                window_loss / n as f64,
                last_held / std::f64::consts::LN_2
            );
            window_loss = 0.0;
            clipped = 0;
        }
    }

    let out: PathBuf = [env!("CARGO_MANIFEST_DIR"), "out", "char_rnn"]
        .iter()
        .collect();
    std::fs::create_dir_all(&out)?;
    let png = out.join("loss.png");
    save_curves_png(
        &[
            Curve::new("training batch", train_curve).style(CurveStyle::Faint),
            Curve::new("held out", held_curve).style(CurveStyle::Points),
            Curve::new(
                "unigram model",
                vec![(1.0, unigram), (steps as f64, unigram)],
            ),
        ],
        &png,
        &CurveOptions {
            title: "char_rnn: cross-entropy (nats per character)".into(),
            x_desc: "step".into(),
            y_desc: "loss".into(),
            ..CurveOptions::default()
        },
    )?;
    println!("\nloss curve: {}", png.display());

    let prompt: Vec<usize> = "Non eram nescius, Brute, ".chars().map(index).collect();
    let text: String = sample(&model, &mut store, &prompt, &mut init::rng(SEED + 2))
        .into_iter()
        .map(|c| alphabet[c])
        .collect();
    println!("\nsampled at temperature {TEMPERATURE}:\nNon eram nescius, Brute, {text}\n");
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    if steps >= STEPS && last_held > unigram * 2.0 / 3.0 {
        return Err(format!(
            "held-out loss {last_held:.3} is not a third below the unigram model's {unigram:.3}"
        )
        .into());
    }
    Ok(())
}
