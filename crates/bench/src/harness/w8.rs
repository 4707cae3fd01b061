//! W8: one training step of a 50-step LSTM (batch 32, hidden 128) with a linear head.

use super::{Line, secs};
use crate::Args;
use descent::nn::recurrent::CellKind;
use descent::prelude::*;
use descent_bench::alloc_count;
use descent_bench::stats::Summary;
use descent_bench::w8;
use serde_json::json;
use std::time::Instant;

/// One repetition from the initial values: 3 warm-up steps, 20 timed. Returns
/// `(ms per step, final loss)`.
fn rep(
    tape: &Tape<f32>,
    data: &w8::Data,
    kind: CellKind,
    grads: &mut Gradients<f32>,
) -> (f64, f64) {
    let mut model = w8::Model::for_cell(data, kind);
    let mut t0 = Instant::now();
    let mut loss = f64::NAN;
    for k in 0..w8::WARMUP + w8::STEPS {
        if k == w8::WARMUP {
            t0 = Instant::now();
        }
        loss = w8::step(tape, &mut model, data, k, grads);
    }
    (secs(t0) / w8::STEPS as f64 * 1e3, loss)
}

pub fn bench(args: &Args) -> bool {
    let kind = if args.gru {
        CellKind::Gru
    } else {
        CellKind::Lstm
    };
    let data = w8::Data::for_cell(kind);
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for _ in 0..args.reps {
        let (ms, loss) = rep(&tape, &data, kind, &mut grads);
        times.push(ms);
        losses.push(loss);
    }
    let allocs = {
        let mut model = w8::Model::for_cell(&data, kind);
        for k in 0..3 {
            w8::step(&tape, &mut model, &data, k, &mut grads);
        }
        let c0 = alloc_count::counts();
        for k in 3..8 {
            w8::step(&tape, &mut model, &data, k, &mut grads);
        }
        (alloc_count::counts() - c0).calls() as f64 / 5.0
    };
    let same = losses.iter().all(|l| l.to_bits() == losses[0].to_bits());
    let ms = Summary::of(&times);
    let mut j = Line::new(args, "W8");
    j.add(json!({
        "steps": w8::STEPS,
        "warmup": w8::WARMUP,
        "ms_per_step": ms,
        "samples_per_s": w8::BATCH as f64 / (ms.median / 1e3),
        "final_loss": losses[0],
        "final_loss_all": losses,
        "correct": same && losses[0].is_finite(),
        "allocs_per_step": allocs,
        "cell": if args.gru { "gru" } else { "lstm" },
        "shape": format!(
            "{} 32 -> 128, 50 steps, batch 32, head 128 -> 10, f32, SGD 0.1",
            if args.gru { "GRU" } else { "LSTM" }
        ),
    }));
    j.print();
    same
}
