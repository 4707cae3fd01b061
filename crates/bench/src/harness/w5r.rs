//! W5R: W5's RNN over 1,000 steps, plain against activation checkpointing: peak live
//! heap bytes of one training step (counting allocator), median step times in
//! alternating repetitions, and the two variants' gradients against each other.

use super::{Line, secs};
use crate::Args;
use descent::prelude::*;
use descent_bench::alloc_count;
use descent_bench::stats::{Summary, median};
use descent_bench::w5::{self, Model};
use descent_bench::w5r::{self, Data};
use serde_json::json;
use std::time::Instant;

/// Timed steps per repetition and variant (after one warm-up step).
const STEPS: usize = 5;

/// Peak live bytes and tape nodes of one step from a fresh tape and gradient store.
fn peak_of_step(data: &Data, recomputed: bool) -> (u64, usize) {
    let mut model = Model::new();
    alloc_count::reset_peak_live();
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    w5r::step(&tape, &mut model, data, &mut grads, recomputed);
    (alloc_count::peak_live(), tape.len())
}

pub fn bench(args: &Args) -> bool {
    let data = Data::new();
    // Memory first, the checkpointed variant before anything else has run on this
    // thread: its scratch tape and every buffer it uses are allocated inside the
    // measured step. The plain step may reuse buffers the first one left parked,
    // which can only lower its peak, so the ratio is not flattered.
    let (peak_recompute, nodes_recompute) = peak_of_step(&data, true);
    let (peak_plain, nodes_plain) = peak_of_step(&data, false);

    // Time: the two variants alternate within every repetition.
    let (mut plain, mut recomputed) = (Vec::new(), Vec::new());
    let mut same_loss = true;
    for _ in 0..args.reps {
        // The first step's loss, from the same parameters: the same forward pass, so
        // the same bits. (Later ones differ in the last bits: the gradients group
        // their terms differently, so the parameters drift apart by rounding.)
        let mut first_loss = [0.0; 2];
        for (variant, times) in [(false, &mut plain), (true, &mut recomputed)] {
            let tape = Tape::<f32>::new();
            let mut grads = Gradients::empty().keeping(Keep::Leaves);
            let mut model = Model::new();
            first_loss[usize::from(variant)] =
                w5r::step(&tape, &mut model, &data, &mut grads, variant).0;
            let t0 = Instant::now();
            for _ in 0..STEPS {
                w5r::step(&tape, &mut model, &data, &mut grads, variant);
            }
            times.push(secs(t0) / STEPS as f64 * 1e3);
        }
        same_loss &= first_loss[0].to_bits() == first_loss[1].to_bits();
    }

    // The gradients at the initial parameters: the same terms grouped differently.
    let [g_plain, g_recomputed] = w5r::gradients(&Model::new(), &data);
    let norm: f64 = g_plain
        .iter()
        .flatten()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    let max_diff = g_plain
        .iter()
        .flatten()
        .zip(g_recomputed.iter().flatten())
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    let grads_agree = max_diff <= 1e-5 * norm;

    let mem_ratio = peak_recompute as f64 / peak_plain as f64;
    let time_ratio = median(&recomputed) / median(&plain);
    let ok = same_loss && grads_agree;
    Line::new(args, "W5R")
        .add(json!({
            "time_steps": w5r::T,
            "segment": w5r::SEGMENT,
            "batch": w5::B,
            "hidden": w5::H,
            "steps_per_rep": STEPS,
            "ms_per_step_plain": Summary::of(&plain),
            "ms_per_step_recompute": Summary::of(&recomputed),
            "time_ratio": time_ratio,
            "peak_live_mib_plain": peak_plain as f64 / (1 << 20) as f64,
            "peak_live_mib_recompute": peak_recompute as f64 / (1 << 20) as f64,
            "memory_ratio": mem_ratio,
            "tape_nodes_plain": nodes_plain,
            "tape_nodes_recompute": nodes_recompute,
            "grad_norm": norm,
            "grad_max_abs_diff": max_diff,
            "first_loss_bit_equal": same_loss,
            "correct": ok,
        }))
        .print();
    ok
}
