//! How far back a loss reaches in a recurrent network: the norm of ∂L/∂h_t as a
//! function of how many steps t lies before the end, for a vanilla tanh RNN with a
//! small and a large recurrent weight scale, a GRU and an LSTM (the curves of Pascanu,
//! Mikolov and Bengio, "On the difficulty of training recurrent neural networks",
//! 2013), and what clipping does to the exploding one.
//!
//! - every network: one layer, input 8, hidden 32, `descent::nn::Recurrent` (f64),
//!   PyTorch's initialisation from one seed; the same input sequence (100 steps, batch
//!   16, N(0, 1)); the loss reads the last state only, `L = mean_b Σ_j h_T[b, j] r_j`
//!   with a fixed random `r`. So ∂L/∂h_T is the same size for all, and every earlier
//!   ∂L/∂h_t is what survives the trip back through the recurrence.
//! - the vanilla RNN's recurrent weight `W_hh` is redrawn as N(0, s²/32): its spectral
//!   radius is about `s`. With s = 0.5 each step back multiplies the signal by at most
//!   about 0.5 (tanh' ≤ 1), so it vanishes geometrically; with s = 3 the product of
//!   Jacobians can grow, until tanh saturates and its derivative takes over.
//! - gating: the GRU's and the LSTM's additive paths (`z ⊙ h`, `f ⊙ c`) carry the signal
//!   further back.
//! - clipping: the exploding RNN again, with a gradient hook on every `h_t` that
//!   rescales ∂L/∂h_t to a norm of at most 1 before it flows on (clipping the signal
//!   per step); and the global-norm clip of its parameter gradient
//!   (`clip_grad_norm`), which bounds the update but keeps the curve's shape.
//!
//! It prints the norms every 10 steps back, and draws their logarithms to
//! `out/vanishing_over_time/curves.png` of the workspace. What it shows (one run):
//! 100 steps back, the small-scale RNN's signal is 5e-33 of what reaches the last
//! state, the large-scale one's 1e11 (its parameter gradient's norm is 3e12); the
//! per-step clip holds the exploding one near 0.1 all the way; at PyTorch's
//! initialisation the gates sit near one half, and the GRU and the LSTM vanish as
//! well (1.6e-20, 6.4e-21), while held open (gate bias 3) they carry 7e-3 and 3e-2 of
//! the signal 100 steps back: gating is a path for the gradient when the gates are
//! open, which is what training learns to do.
//!
//! Run it with `cargo run --release --example vanishing_over_time` (about a second).

#[path = "common/mod.rs"]
mod common;
use descent::nn::init::{self, Init};
use descent::nn::recurrent::{CellKind, Recurrent, RecurrentConfig};
use descent::optim::clip_grad_norm;
use descent::plot::{Curve, CurveOptions, save_curves_png};
use descent::prelude::*;
use std::error::Error;
use std::path::PathBuf;

const STEPS: usize = 100;
const BATCH: usize = 16;
const INPUT: usize = 8;
const HIDDEN: usize = 32;
const SEED: u64 = 11;

/// One network of the comparison.
struct Setup {
    label: &'static str,
    kind: CellKind,
    /// Redraw the vanilla RNN's `W_hh` as N(0, s²/hidden).
    recurrent_scale: Option<f64>,
    /// Clip ∂L/∂h_t to this norm at every step on the way back.
    clip_signal: Option<f64>,
    /// Set the input bias of gate block `.0` to `.1` (a gate held open).
    gate_bias: Option<(usize, f64)>,
}

/// ‖∂L/∂h_t‖ for t = 0..STEPS (mean over the batch of each sample's norm), and the
/// global norm of the parameter gradient before and after `clip_grad_norm(1)`.
fn norms_over_time(
    setup: &Setup,
    x: &Tensor<f64>,
    r: &Tensor<f64>,
) -> Result<(Vec<f64>, f64, f64), Box<dyn Error>> {
    let mut store = ParamStore::<f64>::new();
    let net = Recurrent::new(
        &mut store,
        "rnn",
        RecurrentConfig::new(setup.kind, INPUT, HIDDEN),
        &mut init::rng(SEED),
    );
    if let Some(s) = setup.recurrent_scale {
        let w = Init::Normal {
            mean: 0.0,
            std: s / (HIDDEN as f64).sqrt(),
        }
        .try_tensor(&[HIDDEN, HIDDEN], &mut init::rng(SEED + 1))?;
        *store
            .get_mut(net.layers()[0].weight_hh())
            .expect("in the store") = w;
    }
    if let Some((block, value)) = setup.gate_bias {
        let (b_ih, _) = net.layers()[0].biases().expect("biases");
        let b = store.get_mut(b_ih).expect("in the store");
        b.data_mut()[block * HIDDEN..(block + 1) * HIDDEN].fill(value);
    }
    let tape = Tape::new();
    let out = net.forward(&tape, &store, tape.constant(x.clone()), None);
    if let Some(max) = setup.clip_signal {
        for &h in &out.steps {
            let _ = h.hook(move |g| {
                let norm = g.grad.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm > max {
                    g.grad.iter_mut().for_each(|v| *v *= max / norm);
                }
            });
        }
    }
    let last = out.steps[STEPS - 1];
    let loss = (last * tape.constant(r.clone())).sum() / BATCH as f64;
    let mut grads = loss.backward();
    let per_step = out
        .steps
        .iter()
        .map(|&h| {
            let g = grads.wrt(h);
            let rows = g.data().chunks(HIDDEN);
            rows.map(|row| row.iter().map(|v| v * v).sum::<f64>().sqrt())
                .sum::<f64>()
                / BATCH as f64
        })
        .collect();
    let before = clip_grad_norm(&store, &mut grads, 1.0)?;
    let after = store
        .ids()
        .filter_map(|id| grads.param(id))
        .map(|g| g.data().iter().map(|v| v * v).sum::<f64>())
        .sum::<f64>()
        .sqrt();
    Ok((per_step, before, after))
}

fn main() -> Result<(), Box<dyn Error>> {
    common::command_line(
        "The norm of dL/dh_t against how far back t is, for vanilla RNNs (small and large
recurrent weights), a GRU and an LSTM, with and without clipping.
Writes out/vanishing_over_time/curves.png.",
        "usage: vanishing_over_time",
        0,
    );
    let x = Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .try_tensor::<f64>(&[BATCH, STEPS, INPUT], &mut init::rng(SEED + 2))?;
    let r = Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .try_tensor::<f64>(&[1, HIDDEN], &mut init::rng(SEED + 3))?;
    let setup = |label, kind, recurrent_scale, clip_signal, gate_bias| Setup {
        label,
        kind,
        recurrent_scale,
        clip_signal,
        gate_bias,
    };
    let (rnn, gru, lstm) = (CellKind::RnnTanh, CellKind::Gru, CellKind::Lstm);
    let setups = [
        setup("RNN, recurrent scale 0.5", rnn, Some(0.5), None, None),
        setup("RNN, recurrent scale 3", rnn, Some(3.0), None, None),
        setup(
            "RNN, scale 3, signal clipped to 1",
            rnn,
            Some(3.0),
            Some(1.0),
            None,
        ),
        setup("GRU (PyTorch's initialisation)", gru, None, None, None),
        setup(
            "GRU, update gate held open (bias 3)",
            gru,
            None,
            None,
            Some((1, 3.0)),
        ),
        setup("LSTM (PyTorch's initialisation)", lstm, None, None, None),
        setup(
            "LSTM, forget gate held open (bias 3)",
            lstm,
            None,
            None,
            Some((1, 3.0)),
        ),
    ];
    println!(
        "‖∂L/∂h_t‖ (mean over the batch) by steps back from the last, {STEPS} steps, hidden {HIDDEN}\n"
    );
    print!("{:<36}", "steps back:");
    let backs: Vec<usize> = (0..STEPS).step_by(10).chain([STEPS - 1]).collect();
    for k in &backs {
        print!("{k:>10}");
    }
    println!("{:>14}{:>12}", "‖∇θ‖", "clipped");
    let mut curves = Vec::new();
    for setup in &setups {
        let (norms, before, after) = norms_over_time(setup, &x, &r)?;
        print!("{:<36}", setup.label);
        for &k in &backs {
            print!("{:>10.2e}", norms[STEPS - 1 - k]);
        }
        println!("{before:>14.3e}{after:>12.3e}");
        // log10 on a linear axis: the curves span over 40 decades.
        let points = (0..STEPS)
            .map(|k| (k as f64, norms[STEPS - 1 - k].log10()))
            .collect();
        curves.push(Curve::new(setup.label, points));
    }
    println!(
        "\n‖∇θ‖: the global norm of the parameter gradient; `clipped`: after clip_grad_norm(1),
which rescales every gradient by one factor and so bounds the step without changing
which steps back the gradient comes from."
    );
    let out: PathBuf = [env!("CARGO_MANIFEST_DIR"), "out", "vanishing_over_time"]
        .iter()
        .collect();
    std::fs::create_dir_all(&out)?;
    let png = out.join("curves.png");
    save_curves_png(
        &curves,
        &png,
        &CurveOptions {
            title: "How far back the loss reaches: ‖∂L/∂h_t‖".into(),
            x_desc: "steps back from the last state".into(),
            y_desc: "log10 ‖∂L/∂h_t‖".into(),
            log_y: false,
            ..CurveOptions::default()
        },
    )?;
    println!("wrote {}", png.display());
    Ok(())
}
