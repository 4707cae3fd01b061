//! W1: `x ← x − lr · d/dx ln(cosh x)` on scalar nodes, a fresh graph every step, beside
//! its closed-form limit and the tape's arithmetic without the tape.

use super::{Line, TOL, add, secs};
use crate::Args;
use descent::prelude::*;
use descent_bench::alloc_count::{self, Counts};
use descent_bench::stats::{Summary, median, rel_err};
use descent_bench::w1::{self, Mode};
use serde_json::json;
use std::time::Instant;

pub fn bench(args: &Args) -> bool {
    let steps = args.n.unwrap_or(w1::STEPS);
    let tape = Tape::new();
    // Warm-up: one complete run of each variant.
    let x_var = w1::run(&tape, steps, Mode::Fresh);
    let x_scalar = w1::run(&tape, steps, Mode::Reused);
    let x_limit = w1::run_limit(steps);
    let x_floor = w1::run_floor(steps);

    let (mut t_var, mut t_scalar, mut t_limit) = (Vec::new(), Vec::new(), Vec::new());
    let mut t_floor = Vec::new();
    let (mut r_var, mut r_scalar) = (Vec::new(), Vec::new());
    let mut xs = Vec::new();
    for _ in 0..args.reps {
        let t = Instant::now();
        let x = w1::run(&tape, steps, Mode::Fresh);
        let dv = secs(t) / steps as f64 * 1e6;
        let t = Instant::now();
        let xl = w1::run_limit(steps);
        let dl = secs(t) / steps as f64 * 1e6;
        let t = Instant::now();
        let xsc = w1::run(&tape, steps, Mode::Reused);
        let ds = secs(t) / steps as f64 * 1e6;
        let t = Instant::now();
        let xf = w1::run_floor(steps);
        t_floor.push(secs(t) / steps as f64 * 1e6);
        assert_eq!(xf, x_floor);
        t_var.push(dv);
        t_limit.push(dl);
        t_scalar.push(ds);
        r_var.push(dv / dl);
        r_scalar.push(ds / dl);
        xs.push(x);
        assert_eq!(xl, x_limit);
        assert_eq!(xsc, x_scalar);
    }

    // Allocations per step in steady state (the tape is warm), by phase.
    let allocs = |mode: Mode| -> [Counts; 3] {
        let mut phase = [Counts::default(); 3];
        let mut x = w1::X0;
        let mut grads = Gradients::empty();
        for _ in 0..steps {
            let c0 = alloc_count::counts();
            tape.reset();
            let xv = tape.var(x);
            let loss = xv.cosh().ln();
            let c1 = alloc_count::counts();
            match mode {
                Mode::Fresh => grads = loss.backward(),
                Mode::Reused => descent::backprop::backward_into(loss, &mut grads).expect("scalar"),
            }
            let c2 = alloc_count::counts();
            x -= w1::LR * grads.wrt(xv).item();
            let c3 = alloc_count::counts();
            phase[0] = add(phase[0], c1 - c0);
            phase[1] = add(phase[1], c2 - c1);
            phase[2] = add(phase[2], c3 - c2);
        }
        phase
    };
    let per_step = |c: Counts| c.calls() as f64 / steps as f64;
    let [rec_v, bw_v, up_v] = allocs(Mode::Fresh);
    let [rec_s, bw_s, up_s] = allocs(Mode::Reused);

    let expected = (steps == w1::STEPS).then_some(w1::EXPECTED_X);
    let err = expected.map(|e| rel_err(xs[0], e));
    let ok = err.is_none_or(|e| e <= TOL) && rel_err(x_scalar, xs[0]) <= TOL;

    let by_phase = json!({
        "record_fresh": per_step(rec_v),
        "backward_fresh": per_step(bw_v),
        "update_fresh": per_step(up_v),
        "record_reused": per_step(rec_s),
        "backward_reused": per_step(bw_s),
        "update_reused": per_step(up_s),
        "bytes_per_step_fresh": (rec_v.bytes + bw_v.bytes + up_v.bytes) as f64 / steps as f64,
        "deallocs_per_step_fresh":
            (rec_v.deallocs + bw_v.deallocs + up_v.deallocs) as f64 / steps as f64,
    });

    let mut j = Line::new(args, "W1");
    j.add(json!({
        "steps": steps,
        "us_per_step": Summary::of(&t_var),
        "final_x": xs[0],
        "final_x_all_equal": xs.iter().all(|&x| x == xs[0]),
        "mode": "tape.var(x), loss.backward() each step",
        "final_x_expected": expected,
        "final_x_rel_err": err,
        "correct": ok,
        "us_per_step_reused_grads": Summary::of(&t_scalar),
        "final_x_reused_grads": x_scalar,
        "limit_us_per_step": Summary::of(&t_limit),
        "limit_final_x": x_limit,
        "limit_final_x_rel_err": expected.map(|e| rel_err(x_limit, e)),
    }))
    .add(json!({
        "floor_us_per_step": Summary::of(&t_floor),
        "floor_final_x_equal": x_floor == x_scalar,
        "ratio_vs_limit": median(&r_var),
        "ratio_vs_limit_reused_grads": median(&r_scalar),
        "allocs_per_step": per_step(add(add(rec_v, bw_v), up_v)),
        "allocs_per_step_reused_grads": per_step(add(add(rec_s, bw_s), up_s)),
        "allocs_per_step_tape_recording": per_step(rec_s),
        "allocs_per_step_by_phase": by_phase,
        "warmup_final_x": x_var,
    }))
    .print();
    ok
}
