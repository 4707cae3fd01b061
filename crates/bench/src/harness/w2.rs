//! W2: micrograd's moons demo (a 2-16-16-1 MLP, hinge loss, 100 steps), on scalar nodes
//! as micrograd builds it and on batched tensors.

use super::{Line, secs};
use crate::Args;
use descent::prelude::*;
use descent_bench::alloc_count;
use descent_bench::stats::{Summary, rel_err};
use descent_bench::w2;
use serde_json::json;
use std::time::Instant;

/// micrograd's time per W2 step on this machine (the speed issue's figure; the peer
/// `micrograd_workloads.py --workload W2` takes ~3.5 minutes a run).
const MICROGRAD_W2_MS: f64 = 1947.0;
/// W2's tolerance on the final loss (f64, different summation orders).
const W2_TOL: f64 = 1e-13;

pub fn bench(args: &Args) -> bool {
    let data = match w2::Data::load(w2::DATA) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("W2: {e}");
            return false;
        }
    };
    let tape = Tape::<f64>::new();
    // Warm-up: one complete run of each form.
    let (s0, sp) = w2::scalar_run(&tape, &data);
    let s_acc = w2::scalar_accuracy(&tape, &sp, &data);
    let (t0, tm) = w2::tensor_run(&tape, &data);
    let t_acc = w2::tensor_accuracy(&tape, &tm, &data);

    let (mut ts, mut tt) = (Vec::new(), Vec::new());
    let mut same = true;
    for _ in 0..args.reps {
        let t = Instant::now();
        let (s, _) = w2::scalar_run(&tape, &data);
        ts.push(secs(t) / w2::STEPS as f64 * 1e3);
        let t = Instant::now();
        let (r, _) = w2::tensor_run(&tape, &data);
        tt.push(secs(t) / w2::STEPS as f64 * 1e3);
        same &= s == s0 && r == t0;
    }

    // Allocations per step in steady state (the tape and the gradients are warm).
    let alloc_per_step = |scalar: bool| -> f64 {
        let mut grads = Gradients::empty();
        let mut params = w2::initial_scalar_params();
        let mut model = w2::TensorModel::new();
        let mut step = |k: usize| {
            if scalar {
                w2::scalar_step(&tape, &mut params, &data, &mut grads, w2::lr(k));
            } else {
                w2::tensor_step(&tape, &mut model, &data, &mut grads, w2::lr(k));
            }
        };
        for k in 0..3 {
            step(k);
        }
        let c0 = alloc_count::counts();
        for k in 3..13 {
            step(k);
        }
        (alloc_count::counts() - c0).calls() as f64 / 10.0
    };

    let mut ok = true;
    for (variant, end, acc, times, scalar) in [
        ("scalar nodes f64 (micrograd's graph)", s0, s_acc, &ts, true),
        ("batched tensors f64", t0, t_acc, &tt, false),
    ] {
        let err = rel_err(end.final_loss, w2::PEER_FINAL_LOSS);
        let good = err <= W2_TOL && acc == w2::PEER_FINAL_ACCURACY;
        ok &= good;
        let ms = Summary::of(times);
        let mut j = Line::new(args, "W2");
        j.add(json!({
            "variant": variant,
            "steps": w2::STEPS,
            "ms_per_step": ms,
            "final_loss": end.final_loss,
            "final_accuracy": acc,
            "peer_final_loss": w2::PEER_FINAL_LOSS,
            "final_loss_rel_err": err,
            "final_loss_abs_err": (end.final_loss - w2::PEER_FINAL_LOSS).abs(),
            "correct": good,
            "results_equal_across_reps": same,
            "nodes_per_step": end.nodes,
            "allocs_per_step": alloc_per_step(scalar),
        }));
        if scalar {
            j.add(json!({
                "ns_per_node": ms.median * 1e6 / end.nodes as f64,
                "micrograd_ms_per_step_issue": MICROGRAD_W2_MS,
                "speedup_vs_micrograd_issue": MICROGRAD_W2_MS / ms.median,
            }));
        }
        j.print();
    }
    ok && same
}
