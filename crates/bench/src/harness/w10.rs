//! W10: a 512-2048-2048-10 ReLU MLP, batch 16, one SGD step (a wide layer with a small
//! batch), beside the time its matrix products take at the machine's GEMM peak.

use super::{Line, secs};
use crate::Args;
use descent::prelude::*;
use descent_bench::alloc_count;
use descent_bench::stats::{Summary, rel_err};
use descent_bench::w10;
use serde_json::json;
use std::time::Instant;

/// Single-precision GEMM peak of this machine, 1 thread, GFLOP/s (`docs/GEMM.md`).
const GEMM_PEAK_F32_GFLOPS: f64 = 110.0;
/// The tolerance on the final loss (f32, different GEMM summation orders).
const W10_TOL: f64 = 1e-5;

/// One repetition from the initial values: 5 warm-up steps, 50 timed. Returns
/// `(ms per step, final loss)`.
fn rep(tape: &Tape<f32>, data: &w10::Data, grads: &mut Gradients<f32>) -> (f64, f64) {
    let mut model = w10::Model::new(data);
    let mut t0 = Instant::now();
    let mut loss = f64::NAN;
    for k in 0..w10::WARMUP + w10::STEPS {
        if k == w10::WARMUP {
            t0 = Instant::now();
        }
        loss = w10::step(tape, &mut model, data, k, grads);
    }
    (secs(t0) / w10::STEPS as f64 * 1e3, loss)
}

pub fn bench(args: &Args) -> bool {
    let data = w10::Data::new();
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    rep(&tape, &data, &mut grads); // warm-up repetition
    for _ in 0..args.reps {
        let (ms, loss) = rep(&tape, &data, &mut grads);
        times.push(ms);
        losses.push(loss);
    }
    let (allocs, bytes) = {
        let mut model = w10::Model::new(&data);
        for k in 0..3 {
            w10::step(&tape, &mut model, &data, k, &mut grads);
        }
        let c0 = alloc_count::counts();
        for k in 3..8 {
            w10::step(&tape, &mut model, &data, k, &mut grads);
        }
        let c = alloc_count::counts() - c0;
        (c.calls() as f64 / 5.0, c.bytes as f64 / 5.0)
    };
    let ms = Summary::of(&times);
    let gflop = w10::flops_per_step() / 1e9;
    let limit_ms = gflop / GEMM_PEAK_F32_GFLOPS * 1e3;
    let err = rel_err(losses[0], w10::PEER_FINAL_LOSS);
    let same = losses.iter().all(|l| l.to_bits() == losses[0].to_bits());
    let ok = err <= W10_TOL && same;
    let mut j = Line::new(args, "W10");
    j.add(json!({
        "steps": w10::STEPS,
        "warmup": w10::WARMUP,
        "ms_per_step": ms,
        "samples_per_s": w10::BATCH as f64 / (ms.median / 1e3),
        "achieved_gflops": gflop / (ms.median / 1e3),
        "gflop_per_step": gflop,
        "limit_ms_per_step": limit_ms,
        "limit_note": "6 x batch x weights at the 1-thread f32 GEMM peak of docs/GEMM.md (110 GFLOP/s)",
        "final_loss": losses[0],
        "final_loss_all": losses,
        "peer_final_loss": w10::PEER_FINAL_LOSS,
        "final_loss_rel_err": err,
        "correct": ok,
        "allocs_per_step": allocs,
        "alloc_bytes_per_step": bytes,
        "shape": "MLP 512 -> 2048 -> 2048 -> 10, ReLU, batch 16, f32, cross-entropy, SGD 0.01",
    }));
    j.print();
    ok
}
