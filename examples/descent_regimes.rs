//! Batch, stochastic and mini-batch gradient descent on one problem.
//!
//! The same small network (2 -> 16 -> 16 -> 1, tanh, logistic output) learns the
//! two-moons data (`data/moons100.csv`, 100 points) three ways, from the same initial
//! weights, for the same number of epochs:
//!
//! - batch gradient descent: one step per epoch, on all 100 points;
//! - stochastic gradient descent: 100 steps per epoch, one point each;
//! - mini-batch gradient descent: 7 steps per epoch, batches of 16 (the last one 4).
//!
//! Each epoch visits the points in a fresh order drawn from a fixed seed
//! (`DataLoader::shuffle`), so every run prints the same numbers. The table shows the
//! trade the seed article describes: per epoch, small batches take more (noisier)
//! steps and get further; per step, the full batch is the steadiest.
//!
//! Run it with `cargo run --release --example descent_regimes`.

#[path = "common/mod.rs"]
mod common;
use descent::data::{CsvOptions, read_csv};
use descent::nn::{Activation, Mlp, init};
use descent::optim::{DataLoader, Optimizer, Sgd};
use descent::prelude::*;
use descent::tape::ParamStore;
use std::error::Error;

const EPOCHS: u64 = 40;
const SEED: u64 = 7;

/// The points and their labels (0 or 1).
type Moons = (Vec<[f64; 2]>, Vec<f64>);

fn read_moons() -> Result<Moons, Box<dyn Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/moons100.csv");
    let data = read_csv::<f64>(path, &CsvOptions::values())?;
    if data.sample_shape() != [2] {
        return Err(format!("{path}: expected the columns x1,x2,y").into());
    }
    let xs = data
        .inputs()
        .data()
        .chunks_exact(2)
        .map(|x| [x[0], x[1]])
        .collect();
    let labels = data.targets().values().expect("numeric targets").data();
    let ys = labels
        .iter()
        .map(|&y| if y > 0.0 { 1.0 } else { 0.0 })
        .collect();
    Ok((xs, ys))
}

/// Trains a fresh copy of the network with batches from `loader` and learning rate
/// `lr`; returns the full-data loss after each epoch, the steps taken, and accuracy.
fn train(
    loader: &DataLoader,
    lr: f64,
    xs: &[[f64; 2]],
    ys: &[f64],
) -> Result<(Vec<f64>, usize, f64), Box<dyn Error>> {
    let mut store = ParamStore::<f64>::new();
    let mlp = Mlp::new(
        &mut store,
        "net",
        &[2, 16, 16, 1],
        Activation::Tanh,
        &mut init::rng(SEED),
    );
    let mut opt = Sgd::new(lr);
    let tape = Tape::<f64>::new();
    let batch_of = |idx: &[usize]| -> (Tensor<f64>, Tensor<f64>) {
        let x =
            Tensor::new(&[idx.len(), 2], idx.iter().flat_map(|&i| xs[i]).collect()).expect("n x 2");
        let y = Tensor::new(&[idx.len(), 1], idx.iter().map(|&i| ys[i]).collect()).expect("n x 1");
        (x, y)
    };
    let all: Vec<usize> = (0..xs.len()).collect();
    let full_loss = |store: &ParamStore<f64>| -> (f64, f64) {
        tape.reset();
        let (x, y) = batch_of(&all);
        let logits = mlp.forward(&tape, store, tape.constant(&x));
        let loss = logits.bce_with_logits(tape.constant(&y)).item();
        let hits = logits
            .value()
            .data()
            .iter()
            .zip(y.data())
            .filter(|(l, t)| (**l > 0.0) == (**t > 0.5))
            .count();
        (loss, hits as f64 / xs.len() as f64)
    };
    let mut curve = Vec::new();
    let mut steps = 0;
    for epoch in 0..EPOCHS {
        for idx in loader.epoch(epoch) {
            tape.reset();
            let (x, y) = batch_of(&idx);
            let logits = mlp.forward(&tape, &store, tape.constant(&x));
            let loss = logits.bce_with_logits(tape.constant(&y));
            let grads = loss.backward();
            opt.step(&mut store, &grads)?;
            steps += 1;
        }
        curve.push(full_loss(&store).0);
    }
    Ok((curve, steps, full_loss(&store).1))
}

fn main() -> Result<(), Box<dyn Error>> {
    common::command_line(
        "Batch, stochastic and mini-batch gradient descent on the two-moons data, side by side.",
        "usage: descent_regimes",
        0,
    );
    let (xs, ys) = read_moons()?;
    let n = xs.len();
    let runs = [
        ("batch (100)", DataLoader::full_batch(n)?, 1.0),
        (
            "stochastic (1)",
            DataLoader::stochastic(n)?.shuffle(SEED),
            0.05,
        ),
        (
            "mini-batch (16)",
            DataLoader::new(n, 16)?.shuffle(SEED),
            0.3,
        ),
    ];
    println!("full-data loss after each listed epoch ({EPOCHS} epochs, same initial weights)\n");
    print!("{:<16} {:>6}", "regime", "lr");
    for e in [1, 5, 10, 20, 40] {
        print!(" {:>9}", format!("epoch {e}"));
    }
    println!(" {:>7} {:>9}", "steps", "accuracy");
    for (name, loader, lr) in &runs {
        let (curve, steps, accuracy) = train(loader, *lr, &xs, &ys)?;
        print!("{name:<16} {lr:>6}");
        for e in [1usize, 5, 10, 20, 40] {
            print!(" {:>9.5}", curve[e - 1]);
        }
        println!(" {steps:>7} {:>8.0}%", accuracy * 100.0);
    }
    Ok(())
}
