//! W3: a 784-512-256-10 ReLU MLP trained with softmax cross-entropy and SGD with
//! momentum, beside the time its matrix products take at the machine's GEMM peak.

use super::{CEILING_TRIALS, Line, add, ceiling_median, secs};
use crate::Args;
use descent::optim::Optimizer;
use descent::prelude::*;
use descent_bench::alloc_count::{self, Counts};
use descent_bench::ceiling;
use descent_bench::stats::{Summary, median, rel_err};
use descent_bench::w3;
use serde_json::{Map, json};
use std::time::Instant;

/// Single-precision GEMM peak of this machine, 1 thread, GFLOP/s, of descent's backend,
/// the `gemm` crate (`docs/GEMM.md`, run C, 512³).
const GEMM_PEAK_F32_GFLOPS: f64 = 110.0;
/// W3's tolerance on the final loss (f32, different GEMM summation orders).
const W3_TOL: f64 = 1e-5;

/// One W3 repetition from the initial values: 5 warm-up steps, 100 timed. Returns
/// `(ms per step, final loss)`.
fn w3_rep(
    tape: &Tape<f32>,
    data: &w3::Data,
    grads: &mut Gradients<f32>,
    layout: w3::Layout,
) -> (f64, f64) {
    let mut model = w3::Model::new(data, layout);
    let mut t0 = Instant::now();
    let mut loss = f64::NAN;
    for k in 0..w3::WARMUP + w3::STEPS {
        if k == w3::WARMUP {
            t0 = Instant::now();
        }
        loss = w3::step(tape, &mut model, data, k, grads, w3::Update::Plain);
    }
    (secs(t0) / w3::STEPS as f64 * 1e3, loss)
}

pub fn bench(args: &Args) -> bool {
    let data = w3::Data::new();
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    let tape_an = Tape::<f32>::new();
    tape_an.set_anomaly_detection(true);
    let mut grads_an = Gradients::empty().keeping(Keep::Leaves);

    let (mut times, mut losses) = (Vec::new(), Vec::new());
    let (mut an_times, mut an_ratio) = (Vec::new(), Vec::new());
    let mut an_same = true;
    let (mut wt_times, mut wt_ratio, mut wt_loss) = (Vec::new(), Vec::new(), f64::NAN);
    let mut ceilings = Vec::new();
    for _ in 0..args.reps {
        ceilings.extend(ceiling::parallel_ceiling(CEILING_TRIALS));
        let (ms, loss) = w3_rep(&tape, &data, &mut grads, w3::Layout::OutIn);
        times.push(ms);
        ceilings.extend(ceiling::parallel_ceiling(CEILING_TRIALS));
        losses.push(loss);
        let (wms, wloss) = w3_rep(&tape, &data, &mut grads, w3::Layout::InOut);
        wt_times.push(wms);
        wt_ratio.push(wms / ms);
        wt_loss = wloss;
        if args.anomaly {
            let (ams, aloss) = w3_rep(&tape_an, &data, &mut grads_an, w3::Layout::OutIn);
            an_same &= aloss.to_bits() == loss.to_bits();
            an_times.push(ams);
            an_ratio.push(ams / ms);
        }
    }

    // Allocations per step in steady state, in both update forms.
    let allocs = |update: w3::Update| -> (f64, f64) {
        let mut model = w3::Model::new(&data, w3::Layout::OutIn);
        let mut g = Gradients::empty().keeping(Keep::Leaves);
        for k in 0..3 {
            w3::step(&tape, &mut model, &data, k, &mut g, update);
        }
        let c0 = alloc_count::counts();
        for k in 3..13 {
            w3::step(&tape, &mut model, &data, k, &mut g, update);
        }
        let c = alloc_count::counts() - c0;
        (c.calls() as f64 / 10.0, c.bytes as f64 / 10.0)
    };
    // Parameter bytes copied per step: binding copied every parameter before the tape
    // shared them with the store (`param_bytes_bound`); now only a step under a live
    // tape copies (copy-on-write), which W3's step avoids by resetting first.
    let param_copies = {
        let mut model = w3::Model::new(&data, w3::Layout::OutIn);
        let mut g = Gradients::empty().keeping(Keep::Leaves);
        for k in 0..13 {
            w3::step(&tape, &mut model, &data, k, &mut g, w3::Update::Plain);
        }
        let bound: usize = model.store.iter().map(|(_, _, v)| v.len() * 4).sum();
        (model.store.copies().bytes as f64 / 13.0, bound)
    };
    let (a_plain, b_plain) = allocs(w3::Update::Plain);
    let (a_copied, b_copied) = allocs(w3::Update::Copied);
    // The step by phase: record, backward, update (the checked step, in place).
    let phases = {
        let mut model = w3::Model::new(&data, w3::Layout::OutIn);
        let mut g = Gradients::empty().keeping(Keep::Leaves);
        let mut c = [Counts::default(); 3];
        let copies0 = model.store.copies();
        for k in 0..13 {
            let c0 = alloc_count::counts();
            tape.reset();
            let (x, labels) = data.batch(k);
            let loss = w3::loss(&tape, &model, x, labels);
            let c1 = alloc_count::counts();
            descent::backprop::backward_into(loss, &mut g).expect("a scalar loss");
            let c2 = alloc_count::counts();
            model
                .sgd
                .step(&mut model.store, &g)
                .expect("finite gradients");
            let c3 = alloc_count::counts();
            if k >= 3 {
                c = [add(c[0], c1 - c0), add(c[1], c2 - c1), add(c[2], c3 - c2)];
            }
        }
        let mut j = Map::new();
        for (name, c) in ["record", "backward", "update"].iter().zip(c) {
            j.insert(name.to_string(), json!(c.calls() as f64 / 10.0));
            j.insert(format!("{name}_bytes"), json!(c.bytes as f64 / 10.0));
        }
        // This loop steps under the live tape (reset at the start of the next step):
        // the step copies what the tape holds.
        let copied = model.store.copies().bytes - copies0.bytes;
        j.insert(
            "param_bytes_copied_tape_alive".into(),
            json!(copied as f64 / 13.0),
        );
        j
    };

    let ms = Summary::of(&times);
    let gflop = w3::flops_per_step() / 1e9;
    let limit_ms = gflop / GEMM_PEAK_F32_GFLOPS * 1e3;
    let err = rel_err(losses[0], w3::PEER_FINAL_LOSS);
    let same = losses.iter().all(|l| l.to_bits() == losses[0].to_bits());
    let ok = err <= W3_TOL && same;

    let mut j = Line::new(args, "W3");
    j.add(json!({
        "parallel_ceiling": ceiling_median(&ceilings),
        "steps": w3::STEPS,
        "warmup": w3::WARMUP,
        "ms_per_step": ms,
        "samples_per_s": w3::BATCH as f64 / (ms.median / 1e3),
        "achieved_gflops": gflop / (ms.median / 1e3),
        "final_loss": losses[0],
        "final_loss_all": losses,
        "peer_final_loss": w3::PEER_FINAL_LOSS,
        "final_loss_rel_err": err,
        "correct": ok,
        "update": "backward_into a reused Gradients; sgd.step(&mut store, &grads): checked, in place",
        "allocs_per_step": a_plain,
        "alloc_bytes_per_step": b_plain,
        "allocs_per_step_by_phase": phases,
        "param_bytes_copied_per_step": param_copies.0,
        "param_bytes_bound_per_step": param_copies.1,
        "allocs_per_step_copied": a_copied,
        "alloc_bytes_per_step_copied": b_copied,
    }))
    .add(json!({
        "copied": "ParamGrads::from(&loss.backward()) then sgd.step (allocation figures only)",
        "gflop_per_step": gflop,
        "limit_gemm_peak_gflops": GEMM_PEAK_F32_GFLOPS,
        "limit_ms_per_step": limit_ms,
        "ratio_vs_limit": ms.median / limit_ms,
        "limit_note": "6 x batch x weights at the 1-thread f32 GEMM peak of docs/GEMM.md (gemm crate, 110 GFLOP/s)",
        "layout": "W [out, in] as the peers, x.matmul_t(w) + b (F.linear; no transposed copy)",
        "ms_per_step_w_in_out": Summary::of(&wt_times),
        "ratio_w_in_out": median(&wt_ratio),
        "final_loss_w_in_out": wt_loss,
        "final_loss_w_in_out_rel_err": rel_err(wt_loss, w3::PEER_FINAL_LOSS),
    }));
    if args.anomaly {
        j.add(json!({
            "anomaly_ms_per_step": Summary::of(&an_times),
            "anomaly_cost_ratio": median(&an_ratio),
            "anomaly_results_equal": an_same,
        }));
    }
    j.print();
    ok && an_same
}
