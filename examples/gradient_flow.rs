//! Vanishing gradients, seen: the same deep MLP twice, once with sigmoid activations
//! and a small initialisation, once with ReLU and He initialisation, and the gradient
//! flow report (`descent::backprop::FlowReport`) of one backward pass of each.
//!
//! - data: 64 seeded samples of 16 standard-normal features; the target is
//!   `tanh(x₀ + x₁ - x₂)`
//! - model: 16 -> 32 (x8) -> 1, nine `Linear` layers (`net.0` … `net.8`), biases 0,
//!   loss the mean squared error, f32
//! - sigmoid: weights N(0, 0.05²). Each sigmoid layer multiplies the backward signal by
//!   at most 0.25 times the weight's gain, so the gradient shrinks layer by layer
//!   towards the input, and the first layers are flagged `vanishing` (‖g‖ < 1e-7)
//! - ReLU: He-normal weights N(0, 2/fan_in), which keep the signal's size through the
//!   layers in both directions: no layer is flagged
//!
//! It prints both text reports and saves both as bar charts (SVG and PNG, drawn by
//! `descent::backprop::plot`) in `out/gradient_flow/` of the workspace, or in the
//! directory given as the first argument, and prints their paths.
//!
//! Run it with `cargo run --release --example gradient_flow [OUT_DIR]`.

#[path = "common/mod.rs"]
mod common;
use descent::backprop::{FlowOptions, FlowReport};
use descent::nn::init::{self, Init, Nonlinearity};
use descent::nn::{Activation, Mlp};
use descent::plot::{PlotOptions, save_png, save_svg};
use descent::prelude::*;
use descent::tape::ParamStore;
use std::error::Error;
use std::path::PathBuf;

const SEED: u64 = 7;
const BATCH: usize = 64;
const SIZES: [usize; 10] = [16, 32, 32, 32, 32, 32, 32, 32, 32, 1];

/// The batch: `x` standard normal, `y = tanh(x₀ + x₁ - x₂)`.
fn data() -> (Tensor<f32>, Tensor<f32>) {
    let mut rng = init::rng(SEED);
    let x: Tensor<f32> = Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor(&[BATCH, SIZES[0]], &mut rng);
    let d = x.data();
    let n = SIZES[0];
    let y = Tensor::from_fn(&[BATCH, 1], |i| {
        (d[i * n] + d[i * n + 1] - d[i * n + 2]).tanh()
    });
    (x, y)
}

/// One backward pass of the MLP with this activation and weight initialiser, and the
/// report of its gradient flow.
fn flow(activation: Activation, weight: Init) -> Result<FlowReport, Box<dyn Error>> {
    let (x, y) = data();
    let mut store = ParamStore::<f32>::new();
    let net = Mlp::with_init(
        &mut store,
        "net",
        &SIZES,
        activation,
        weight,
        Some(Init::Zeros),
        &mut init::rng(SEED + 1),
    )?;
    let tape = Tape::new();
    let prediction = net.forward(&tape, &store, tape.constant(&x));
    let loss = prediction.mse(tape.constant(&y));
    println!("loss {:.6}", loss.item());
    let grads = loss.backward();
    Ok(FlowReport::from_gradients(
        &grads,
        &store,
        FlowOptions::default(),
    ))
}

fn main() -> Result<(), Box<dyn Error>> {
    let out: PathBuf = match common::command_line(
        "Vanishing gradients, seen: the same deep MLP twice, once with sigmoid activations",
        "usage: gradient_flow [OUT_DIR]  (default: out/gradient_flow/ in the workspace)",
        1,
    )
    .pop()
    {
        Some(dir) => dir.into(),
        None => [env!("CARGO_MANIFEST_DIR"), "out", "gradient_flow"]
            .iter()
            .collect(),
    };
    std::fs::create_dir_all(&out)?;

    let runs = [
        (
            "sigmoid",
            "sigmoid, weights N(0, 0.05²): the gradient vanishes towards the input",
            Activation::Sigmoid,
            Init::Normal {
                mean: 0.0,
                std: 0.05,
            },
        ),
        (
            "relu",
            "ReLU, He-normal weights: the gradient reaches every layer",
            Activation::Relu,
            Init::KaimingNormal {
                gain: Nonlinearity::Relu.gain(),
            },
        ),
    ];
    for (name, title, activation, weight) in runs {
        println!("== {title}");
        let report = flow(activation, weight)?;
        print!("{report}");
        let options = PlotOptions {
            title: format!("Gradient flow: {title}"),
            ..PlotOptions::default()
        };
        let (svg, png) = (
            out.join(format!("{name}.svg")),
            out.join(format!("{name}.png")),
        );
        save_svg(&report, &svg, &options)?;
        save_png(&report, &png, &options)?;
        println!("wrote {}\nwrote {}", svg.display(), png.display());
        println!();
    }
    Ok(())
}
