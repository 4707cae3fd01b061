//! W7: one training step of the `cnn_digits` CNN (batch 64, f32), and the cost of an
//! evaluation pass of the same network recorded with and without `no_grad`.

use super::{Line, secs};
use crate::Args;
use descent::prelude::*;
use descent_bench::alloc_count;
use descent_bench::stats::Summary;
use descent_bench::w7;
use serde_json::json;
use std::time::Instant;

/// One repetition from the initial values: 3 warm-up steps, 20 timed. Returns
/// `(ms per step, final loss)`.
fn rep(tape: &Tape<f32>, data: &w7::Data, grads: &mut Gradients<f32>) -> (f64, f64) {
    let mut model = w7::Model::new(data);
    let mut t0 = Instant::now();
    let mut loss = f64::NAN;
    for k in 0..w7::WARMUP + w7::STEPS {
        if k == w7::WARMUP {
            t0 = Instant::now();
        }
        loss = w7::step(tape, &mut model, data, k, grads);
    }
    (secs(t0) / w7::STEPS as f64 * 1e3, loss)
}

/// Evaluation passes over the 8 batches, recorded (`no_grad` false) and not, the two
/// interleaved pass by pass so that both see the same machine: ms per pass, the median
/// of `reps` rounds of 8 passes each, and the losses of the first round (which must
/// agree to the bit).
fn eval_costs(tape: &Tape<f32>, data: &w7::Data, reps: usize) -> ([Summary; 2], bool) {
    let mut model = w7::Model::new(data);
    let mut times = [Vec::new(), Vec::new()];
    let mut losses = [Vec::new(), Vec::new()];
    for round in 0..reps + 1 {
        for (side, no_grad) in [false, true].into_iter().enumerate() {
            let t0 = Instant::now();
            for k in 0..w7::NBATCH {
                let loss = w7::evaluate(tape, &mut model, data, k, no_grad);
                if round == 0 {
                    losses[side].push(loss.to_bits());
                }
            }
            // Round 0 warms up.
            if round > 0 {
                times[side].push(secs(t0) / w7::NBATCH as f64 * 1e3);
            }
        }
    }
    (
        [Summary::of(&times[0]), Summary::of(&times[1])],
        losses[0] == losses[1],
    )
}

pub fn bench(args: &Args) -> bool {
    let data = w7::Data::new();
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for _ in 0..args.reps {
        let (ms, loss) = rep(&tape, &data, &mut grads);
        times.push(ms);
        losses.push(loss);
    }
    let allocs = {
        let mut model = w7::Model::new(&data);
        for k in 0..3 {
            w7::step(&tape, &mut model, &data, k, &mut grads);
        }
        let c0 = alloc_count::counts();
        for k in 3..8 {
            w7::step(&tape, &mut model, &data, k, &mut grads);
        }
        (alloc_count::counts() - c0).calls() as f64 / 5.0
    };
    let ([recorded, no_grad], eval_same) = eval_costs(&tape, &data, 4 * args.reps);
    let same = losses.iter().all(|l| l.to_bits() == losses[0].to_bits());
    let ms = Summary::of(&times);
    let mut j = Line::new(args, "W7");
    j.add(json!({
        "steps": w7::STEPS,
        "warmup": w7::WARMUP,
        "ms_per_step": ms,
        "samples_per_s": w7::BATCH as f64 / (ms.median / 1e3),
        "final_loss": losses[0],
        "final_loss_all": losses,
        "correct": same && losses[0].is_finite() && eval_same,
        "allocs_per_step": allocs,
        "eval_ms_recorded": recorded,
        "eval_ms_no_grad": no_grad,
        "eval_no_grad_saving": 1.0 - no_grad.median / recorded.median,
        "shape": "CNN conv(1->32,3,p1) relu pool2 conv(32->64,3,p1) relu pool2 linear(256->10), \
                  [64, 1, 8, 8], f32, SGD 0.1",
    }));
    j.print();
    same && eval_same
}
