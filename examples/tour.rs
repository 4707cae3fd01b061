//! The tour: one small, complete training run that touches every part of descent.
//!
//! A 64 -> 128 -> 64 -> 10 ReLU MLP (`descent::nn::Mlp`, f32) learns the 8x8 handwritten digits
//! (`data/digits.csv`: 1,797 images, 64 pixels 0..16 scaled to [0, 1], label 0..9),
//! split 80/20 into training and test samples by a seeded shuffle.
//!
//! - every step records the forward pass on a reused tape, takes the cross-entropy of a
//!   mini-batch of 32 (`descent::data`: the CSV read by `read_csv`, batched by a
//!   `Loader` reshuffled every epoch from a seed), runs
//!   `backward`, clips the gradients in place to a global L2 norm of 1
//!   (`clip_grad_norm`, PyTorch's formula) and takes an Adam step straight from the
//!   walk's gradient store (lr 3e-3, halved
//!   every 5 epochs by a `StepLr` schedule);
//! - each epoch shows a progress bar (indicatif; hidden when stderr is not a terminal)
//!   and prints one summary line: mean training loss and accuracy over the epoch's
//!   batches, test loss and accuracy, the largest gradient norm before clipping and
//!   how many steps clipping changed;
//! - at the end it prints the test accuracy, the gradient flow report of the last step
//!   (`FlowReport`: per layer and parameter, gradient norms and their ratio to the
//!   parameter norms), and writes to `out/tour/` of the workspace:
//!   `loss.png` (the loss curves), `gradient_flow.png` (the flow report as a bar
//!   chart) and `model.safetensors` (the trained parameters, which PyTorch's
//!   `safetensors.torch.load_file` opens), reloaded once to check it.
//!
//! Everything is seeded: a rerun prints the same numbers. It takes a few seconds in
//! release mode.
//!
//! Run it with `cargo run --release --example tour`.

#[path = "common/mod.rs"]
mod common;
use descent::backprop::{FlowOptions, FlowReport};
use descent::data::{Batch, CsvOptions, Loader, TensorDataset, read_csv};
use descent::nn::{Activation, Mlp, checkpoint, init};
use descent::optim::{Adam, Optimizer, Scheduled, StepLr, clip_grad_norm};
use descent::plot::{self, Curve, CurveOptions, CurveStyle, PlotOptions};
use descent::prelude::*;
use descent::tape::ParamStore;
use indicatif::{ProgressBar, ProgressStyle};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv");
const PIXELS: usize = 64;
const CLASSES: usize = 10;
const SIZES: [usize; 4] = [PIXELS, 128, 64, CLASSES];
const EPOCHS: u64 = 20;
const BATCH: usize = 32;
const LR: f64 = 3e-3;
const CLIP: f64 = 1.0;
const SEED: u64 = 7;

/// Reads `data/digits.csv` (pixels 0..16 scaled to [0, 1], the label last) and splits
/// it 80/20 with a seeded shuffle.
fn load() -> Result<(TensorDataset<f32>, TensorDataset<f32>), Box<dyn Error>> {
    let digits = read_csv(DATA, &CsvOptions::classes(CLASSES).scale(1.0 / 16.0))?;
    if digits.sample_shape() != [PIXELS] {
        return Err(format!(
            "{DATA}: expected {PIXELS} pixels a row, found {:?}",
            digits.sample_shape()
        )
        .into());
    }
    Ok(digits.split(0.8, &mut init::rng(SEED))?)
}

/// Mean cross-entropy and accuracy of `net` on `data`, in one forward pass.
fn evaluate(net: &Mlp, store: &ParamStore<f32>, data: &TensorDataset<f32>) -> (f64, f64) {
    let tape = Tape::new();
    let Batch {
        inputs, targets, ..
    } = data.all();
    let labels = targets.classes().expect("class labels");
    let logits = net.forward(&tape, store, tape.constant(inputs));
    let loss = logits.cross_entropy(labels).item();
    (f64::from(loss), accuracy(&logits.value(), labels))
}

/// The fraction of rows of `logits` (`[n, 10]`) whose largest entry is the label.
fn accuracy(logits: &Tensor<f32>, labels: &[usize]) -> f64 {
    let right = logits
        .data()
        .chunks_exact(CLASSES)
        .zip(labels)
        .filter(|(row, label)| {
            let best = (0..CLASSES).max_by(|&a, &b| row[a].total_cmp(&row[b]));
            best == Some(**label)
        })
        .count();
    right as f64 / labels.len() as f64
}

/// Saves the trained parameters as safetensors, then loads them into a freshly
/// initialised copy of the network and checks it scores the same.
fn save_checkpoint(
    net: &Mlp,
    store: &ParamStore<f32>,
    test: &TensorDataset<f32>,
    path: &Path,
) -> Result<(), Box<dyn Error>> {
    checkpoint::save(store, path)?;
    let mut fresh = ParamStore::new();
    let copy = Mlp::new(
        &mut fresh,
        net.name(),
        &SIZES,
        net.activation(),
        &mut init::rng(SEED + 100),
    );
    checkpoint::load_into(&mut fresh, path)?;
    let (before, after) = (evaluate(net, store, test), evaluate(&copy, &fresh, test));
    if before != after {
        return Err(format!("the reloaded checkpoint scores {after:?}, not {before:?}").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    common::command_line(
        "The tour: a 64-128-64-10 MLP learns the 8x8 digits; every part of descent on the way.
Writes out/tour/loss.png, out/tour/gradient_flow.png and out/tour/model.safetensors.",
        "usage: tour",
        0,
    );
    let start = Instant::now();
    let (train, test) = load()?;
    let out: PathBuf = [env!("CARGO_MANIFEST_DIR"), "out", "tour"].iter().collect();
    std::fs::create_dir_all(&out)?;

    let mut store = ParamStore::<f32>::new();
    let net = Mlp::new(
        &mut store,
        "net",
        &SIZES,
        Activation::Relu,
        &mut init::rng(SEED),
    );
    let loader = Loader::new(&train, BATCH)?.shuffle(SEED);
    let steps_per_epoch = loader.batches_per_epoch();
    let mut opt = Scheduled::new(Adam::new(LR), StepLr::new(5 * steps_per_epoch, 0.5));
    println!(
        "digits: {} training / {} test images; MLP {SIZES:?}, ReLU, {} parameters (f32)",
        train.len(),
        test.len(),
        store.num_elements(),
    );
    println!(
        "mini-batches of {BATCH} ({steps_per_epoch} steps an epoch), Adam lr {LR} halved \
         every 5 epochs, gradients clipped to a global norm of {CLIP}\n"
    );

    let style = ProgressStyle::with_template(
        "epoch {prefix:>2} [{bar:30}] {pos:>2}/{len} {msg} ({elapsed})",
    )?
    .progress_chars("=> ");
    let tape = Tape::<f32>::with_capacity(64);
    let mut step_losses = Vec::new();
    let (mut train_curve, mut test_curve) = (vec![], vec![]);
    let mut flow = None;
    let (test_loss, test_acc) = evaluate(&net, &store, &test);
    test_curve.push((0.0, test_loss));
    println!(
        "{:<42}test loss {test_loss:.4}  acc {:5.1}%",
        "epoch  0  (the initial weights)",
        100.0 * test_acc
    );
    for epoch in 0..EPOCHS {
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(style.clone());
        bar.set_prefix((epoch + 1).to_string());
        let (mut loss_sum, mut right, mut seen) = (0.0, 0.0, 0);
        let (mut max_norm, mut clipped) = (0f64, 0);
        for (i, batch) in loader.epoch(epoch).enumerate() {
            tape.reset();
            let labels = batch.targets.classes().expect("class labels");
            let logits = net.forward(&tape, &store, tape.constant(batch.inputs));
            let loss = logits.cross_entropy(labels);
            let mut grads = loss.backward();
            if epoch + 1 == EPOCHS && i + 1 == steps_per_epoch {
                // The last step's gradient flow, before clipping and before the update.
                flow = Some(FlowReport::from_gradients(
                    &grads,
                    &store,
                    FlowOptions::default(),
                ));
            }
            let norm = clip_grad_norm(&store, &mut grads, CLIP)?;
            max_norm = max_norm.max(norm);
            clipped += usize::from(norm > CLIP);
            let l = f64::from(loss.item());
            step_losses.push(l);
            loss_sum += l * labels.len() as f64;
            right += accuracy(&logits.value(), labels) * labels.len() as f64;
            seen += labels.len();
            // Everything read from the tape: released before the step, which then
            // changes the parameters in place instead of copying them for the tape.
            tape.reset();
            opt.step(&mut store, &grads)?;
            bar.set_message(format!(
                "loss {:.4}  acc {:5.1}%",
                loss_sum / seen as f64,
                100.0 * right / seen as f64
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (train_loss, train_acc) = (loss_sum / seen as f64, right / seen as f64);
        let (test_loss, test_acc) = evaluate(&net, &store, &test);
        // The epoch's mean training loss is drawn mid-epoch, the test loss at its end.
        train_curve.push((epoch as f64 + 0.5, train_loss));
        test_curve.push(((epoch + 1) as f64, test_loss));
        println!(
            "epoch {:>2}  train loss {train_loss:.4}  acc {:5.1}%   test loss {test_loss:.4}  \
             acc {:5.1}%   max ‖g‖ {max_norm:.2} (clipped {clipped}/{steps_per_epoch})",
            epoch + 1,
            100.0 * train_acc,
            100.0 * test_acc,
        );
    }

    let (_, test_acc) = evaluate(&net, &store, &test);
    println!("\ntest accuracy: {:.2}%", 100.0 * test_acc);
    let flow = flow.expect("the last step records the flow report");
    println!("\nthe last step's gradient flow:\n{flow}");

    // The pictures and the checkpoint.
    let per_step: Vec<(f64, f64)> = step_losses
        .iter()
        .enumerate()
        .map(|(k, &l)| ((k + 1) as f64 / steps_per_epoch as f64, l))
        .collect();
    let curves = [
        Curve::new("training loss, each mini-batch", per_step).style(CurveStyle::Faint),
        Curve::new("training loss, mean of each epoch", train_curve).style(CurveStyle::Points),
        Curve::new("test loss", test_curve).style(CurveStyle::Points),
    ];
    let loss_png = out.join("loss.png");
    plot::save_curves_png(
        &curves,
        &loss_png,
        &CurveOptions {
            title: "Digits MLP: cross-entropy loss".into(),
            x_desc: "epoch".into(),
            ..CurveOptions::default()
        },
    )?;
    let flow_png = out.join("gradient_flow.png");
    plot::save_png(
        &flow,
        &flow_png,
        &PlotOptions {
            title: "Gradient flow of the last training step".into(),
            ..PlotOptions::default()
        },
    )?;
    let model = out.join("model.safetensors");
    save_checkpoint(&net, &store, &test, &model)?;

    println!("wrote {}", loss_png.display());
    println!("wrote {}", flow_png.display());
    println!("wrote {} (reloaded and checked)", model.display());
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    if test_acc < 0.95 {
        return Err(format!("test accuracy {:.2}% is below 95%", 100.0 * test_acc).into());
    }
    Ok(())
}
