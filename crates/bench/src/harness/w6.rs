//! W6: a chain of a million scalar ops with 300 read-outs, recorded and walked by
//! descent and by a hand-written tape (the limit); `W6 --mem` measures the memory of
//! one run in a fresh process, `--only` times one side for profilers.

use super::{Line, TOL, secs};
use crate::Args;
use descent::prelude::*;
use descent_bench::alloc_count::{self, Counts};
use descent_bench::rss;
use descent_bench::stats::{Summary, median, rel_err};
use descent_bench::w6::{self, HandTape, Plan};
use serde_json::{Map, Value, json};
use std::time::Instant;

/// Results of one W6 run.
#[derive(Clone, Copy, Debug, PartialEq)]
struct W6Result {
    value: f64,
    dx: f64,
    dy: f64,
}

/// One descent run: `(reset s, forward s incl. reset, backward s, result, allocs fw, allocs bw)`.
/// Memory probes (if any) are taken at the phase boundaries, outside the timed regions.
fn descent_run(
    tape: &Tape,
    plan: Plan,
    mut after_forward: impl FnMut(),
) -> (f64, f64, f64, W6Result, Counts, Counts) {
    let c0 = alloc_count::counts();
    let t0 = Instant::now();
    tape.reset();
    let t_reset = secs(t0);
    let (loss, x, y) = w6::record(tape, plan);
    let t_fw = secs(t0);
    let c1 = alloc_count::counts();
    after_forward();
    let c1b = alloc_count::counts();
    let t1 = Instant::now();
    let grads = descent::backward(loss).expect("backward of a scalar loss");
    let t_bw = secs(t1);
    let c2 = alloc_count::counts();
    let r = W6Result {
        value: loss.item(),
        dx: grads.wrt(x).item(),
        dy: grads.wrt(y).item(),
    };
    drop(grads);
    (t_reset, t_fw, t_bw, r, c1 - c0, c2 - c1b)
}

/// One limit run: `(forward s, backward s, result)`.
fn limit_run(
    hand: &mut HandTape,
    plan: Plan,
    mut after_forward: impl FnMut(),
) -> (f64, f64, W6Result) {
    let t0 = Instant::now();
    let out = hand.record(plan);
    let t_fw = secs(t0);
    after_forward();
    let t1 = Instant::now();
    hand.backward(out);
    let t_bw = secs(t1);
    let r = W6Result {
        value: hand.value(out),
        dx: hand.adjoint(0),
        dy: hand.adjoint(1),
    };
    (t_fw, t_bw, r)
}

fn check(r: W6Result, n: usize) -> (Option<f64>, bool) {
    match w6::expected(n) {
        None => (None, true),
        Some((v, dx, dy)) => {
            let e = rel_err(r.value, v)
                .max(rel_err(r.dx, dx))
                .max(rel_err(r.dy, dy));
            (Some(e), e <= TOL)
        }
    }
}

/// A run's result as `<prefix>value`, `<prefix>dL_dx`, `<prefix>dL_dy`.
fn result_json(prefix: &str, r: W6Result) -> Value {
    let mut m = Map::new();
    m.insert(format!("{prefix}value"), json!(r.value));
    m.insert(format!("{prefix}dL_dx"), json!(r.dx));
    m.insert(format!("{prefix}dL_dy"), json!(r.dy));
    Value::Object(m)
}

/// Memory probe state: RSS before, RSS after forward, peak after backward (KiB).
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss0: u64,
    rss1: u64,
    hwm: u64,
    peak_reset: bool,
}

impl Mem {
    fn start() -> Self {
        let (rss0, _) = rss::rss_kib().unwrap_or_default();
        let peak_reset = rss::reset_peak();
        Mem {
            rss0,
            peak_reset,
            ..Self::default()
        }
    }
    fn after_forward(&mut self) {
        self.rss1 = rss::rss_kib().unwrap_or_default().0;
    }
    fn finish(&mut self) {
        self.hwm = rss::rss_kib().unwrap_or_default().1;
    }
    /// The figures, per node of a chain of `n`, under keys starting with `prefix`.
    fn to_json(self, prefix: &str, n: usize) -> Value {
        let per = |kib: u64| kib.saturating_sub(self.rss0) as f64 * 1024.0 / n as f64;
        let mut m = Map::new();
        for (key, v) in [
            ("tape_bytes_per_node", json!(per(self.rss1))),
            ("peak_bytes_per_node", json!(per(self.hwm))),
            ("rss_baseline_mib", json!(self.rss0 as f64 / 1024.0)),
            ("peak_rss_mib", json!(self.hwm as f64 / 1024.0)),
            ("peak_reset_ok", json!(self.peak_reset)),
        ] {
            m.insert(format!("{prefix}{key}"), v);
        }
        Value::Object(m)
    }
}

pub fn bench(args: &Args) -> bool {
    let plan = Plan::new(args.n.unwrap_or(w6::N_DEFAULT));
    if let Some(side) = &args.only {
        return only(args, plan, side == "limit");
    }
    let n = plan.n as f64;
    let tape = Tape::new();
    let mut hand = HandTape::new();

    // Warm-up runs, which also give the memory figures (first use of each tape).
    let mut mem = Mem::start();
    let (_, _, _, r0, _, _) = descent_run(&tape, plan, || mem.after_forward());
    mem.finish();
    let mut lmem = Mem::start();
    let (_, _, l0) = limit_run(&mut hand, plan, || lmem.after_forward());
    lmem.finish();
    // `--anomaly`: the same chain on a second tape with anomaly detection on.
    let tape_an = Tape::new();
    tape_an.set_anomaly_detection(true);
    if args.anomaly {
        descent_run(&tape_an, plan, || {});
    }
    let (mut an_tot, mut an_ratio) = (vec![], vec![]);
    let mut an_same = true;

    let (mut fw, mut bw, mut tot, mut reset) = (vec![], vec![], vec![], vec![]);
    let (mut lfw, mut lbw, mut ltot) = (vec![], vec![], vec![]);
    let (mut rfw, mut rbw, mut rtot) = (vec![], vec![], vec![]);
    let (mut afw, mut abw) = (Counts::default(), Counts::default());
    let mut same = true;
    for _ in 0..args.reps {
        let (t_reset, t_fw, t_bw, r, cf, cb) = descent_run(&tape, plan, || {});
        let (l_fw, l_bw, lr) = limit_run(&mut hand, plan, || {});
        same &= r == r0 && lr == l0;
        let (f, b, lf, lb) = (
            t_fw / n * 1e9,
            t_bw / n * 1e9,
            l_fw / n * 1e9,
            l_bw / n * 1e9,
        );
        fw.push(f);
        bw.push(b);
        tot.push(f + b);
        reset.push(t_reset / n * 1e9);
        lfw.push(lf);
        lbw.push(lb);
        ltot.push(lf + lb);
        rfw.push(f / lf);
        rbw.push(b / lb);
        rtot.push((f + b) / (lf + lb));
        (afw, abw) = (cf, cb);
        if args.anomaly {
            let (_, a_fw, a_bw, ar, _, _) = descent_run(&tape_an, plan, || {});
            an_same &= ar == r0;
            let a = (a_fw + a_bw) / n * 1e9;
            an_tot.push(a);
            an_ratio.push(a / (f + b));
        }
    }

    let (err, ok) = check(r0, plan.n);
    let (lerr, lok) = check(l0, plan.n);
    let identical = r0 == l0;
    let exp = w6::expected(plan.n);

    let mut j = Line::new(args, "W6");
    j.add(json!({
        "w6": "readout-300",
        "N": plan.n,
        "readouts": plan.readouts,
        "ftz_daz": false,
        "ns_per_op_forward": Summary::of(&fw),
        "ns_per_op_backward": Summary::of(&bw),
        "mem_note": "warm-up run, first use of a Tape::new(); clean only if W6 is the first workload",
        "nodes": plan.nodes(),
        "ns_per_op_total": Summary::of(&tot),
        "ns_per_op_reset": Summary::of(&reset),
        "expected_value": exp.map(|e| e.0),
        "expected_dL_dx": exp.map(|e| e.1),
        "expected_dL_dy": exp.map(|e| e.2),
        "max_rel_err": err,
        "correct": ok,
        "results_equal_across_reps": same,
        "bit_identical_to_limit": identical,
    }))
    .add(result_json("", r0))
    .add(mem.to_json("", plan.n))
    .add(json!({
        "limit_ns_per_op_forward": Summary::of(&lfw),
        "limit_ns_per_op_backward": Summary::of(&lbw),
        "limit_ns_per_op_total": Summary::of(&ltot),
        "limit_max_rel_err": lerr,
        "limit_correct": lok,
        "ratio_forward": median(&rfw),
        "ratio_backward": median(&rbw),
        "ratio_total": median(&rtot),
        "allocs_forward": afw.calls(),
        "allocs_backward": abw.calls(),
        "alloc_bytes_backward": abw.bytes,
    }))
    .add(result_json("limit_", l0))
    .add(lmem.to_json("limit_", plan.n));
    if args.anomaly {
        j.add(json!({
            "anomaly_ns_per_op_total": Summary::of(&an_tot),
            "anomaly_cost_ratio": median(&an_ratio),
            "anomaly_results_equal": an_same,
        }));
    }
    j.print();
    ok && lok && same && an_same
}

/// `W6 --mem`: one run, nothing before it, RSS around it.
pub fn mem(args: &Args) -> bool {
    let plan = Plan::new(args.n.unwrap_or(w6::N_DEFAULT));
    let mut j = Line::new(args, "W6");
    j.add(json!({
        "w6": "readout-300",
        "mode": "memory",
        "N": plan.n,
        "readouts": plan.readouts,
        "nodes": plan.nodes(),
    }));
    let (r, mut mem, fw, bw);
    if args.limit {
        j.set(
            "impl",
            json!("hand-written limit (Vec<f64> values, Vec<u8> ops, Vec<[u32;2]> parents, Vec<f64> adjoints)"),
        );
        let mut hand = HandTape::new();
        mem = Mem::start();
        let (f, b, res) = limit_run(&mut hand, plan, || mem.after_forward());
        mem.finish();
        (r, fw, bw) = (res, f, b);
        drop(hand);
    } else {
        j.set(
            "impl",
            json!(if args.prealloc {
                "descent, Tape::with_capacity(nodes)"
            } else {
                "descent, Tape::new()"
            }),
        );
        mem = Mem::start();
        let tape = if args.prealloc {
            Tape::with_capacity(plan.nodes())
        } else {
            Tape::new()
        };
        let (_, f, b, res, _, _) = descent_run(&tape, plan, || mem.after_forward());
        mem.finish();
        (r, fw, bw) = (res, f, b);
    }
    let (err, ok) = check(r, plan.n);
    j.add(mem.to_json("", plan.n))
        .add(result_json("", r))
        .add(json!({
            "max_rel_err": err,
            "correct": ok,
            "ns_per_op_forward_cold": fw / plan.n as f64 * 1e9,
            "ns_per_op_backward_cold": bw / plan.n as f64 * 1e9,
        }))
        .print();
    ok
}

/// `W6 --only descent|limit`: one side alone (warm-up + reps), for profilers.
fn only(args: &Args, plan: Plan, limit: bool) -> bool {
    let n = plan.n as f64;
    let (mut fw, mut bw) = (vec![], vec![]);
    let mut res = None;
    if limit {
        let mut hand = HandTape::new();
        for _ in 0..=args.reps {
            let (f, b, r) = limit_run(&mut hand, plan, || {});
            fw.push(f / n * 1e9);
            bw.push(b / n * 1e9);
            res = Some(r);
        }
    } else {
        let tape = Tape::new();
        for _ in 0..=args.reps {
            let (_, f, b, r, _, _) = descent_run(&tape, plan, || {});
            fw.push(f / n * 1e9);
            bw.push(b / n * 1e9);
            res = Some(r);
        }
    }
    // The first run was the warm-up.
    let (fw, bw) = (&fw[1..], &bw[1..]);
    let r = res.expect("at least one run");
    let (err, ok) = check(r, plan.n);
    Line::new(args, "W6")
        .add(json!({
            "w6": "readout-300",
            "mode": if limit { "only limit" } else { "only descent" },
            "N": plan.n,
            "ns_per_op_forward": Summary::of(fw),
            "ns_per_op_backward": Summary::of(bw),
            "max_rel_err": err,
            "correct": ok,
        }))
        .add(result_json("", r))
        .print();
    ok
}
