//! W9: a Hessian-vector product of W3's loss, and one plain gradient of it in the same
//! run (the ratio HVP / gradient), both compositions of the HVP timed.

use super::{Line, secs};
use crate::Args;
use descent::backprop::HvpMode;
use descent::prelude::*;
use descent_bench::stats::Summary;
use descent_bench::{w3, w9};
use serde_json::json;
use std::time::Instant;

/// Timed calls per repetition, after two warm-up calls.
const CALLS: usize = 10;

/// Milliseconds per call of `f`, over [`CALLS`] calls after two warm-up ones.
fn per_call(mut f: impl FnMut()) -> f64 {
    f();
    f();
    let t0 = Instant::now();
    for _ in 0..CALLS {
        f();
    }
    secs(t0) / CALLS as f64 * 1e3
}

pub fn bench(args: &Args) -> bool {
    let data = w3::Data::new();
    let model = w9::model(&data);
    let v = w9::direction(&model);
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    let (mut grad_ms, mut ror_ms, mut for_ms, mut ratio) = (vec![], vec![], vec![], vec![]);
    for _ in 0..args.reps {
        let g = per_call(|| {
            w9::gradient(&tape, &model, &data, &mut grads);
        });
        let r = per_call(|| {
            w9::hvp(&tape, &model, &data, &v, HvpMode::ReverseOverReverse);
        });
        let f = per_call(|| {
            w9::hvp(&tape, &model, &data, &v, HvpMode::ForwardOverReverse);
        });
        grad_ms.push(g);
        ror_ms.push(r);
        for_ms.push(f);
        ratio.push(r.min(f) / g);
    }
    // The two compositions agree (f32: to rounding, relative to the product's norm).
    let a = w9::hvp(&tape, &model, &data, &v, HvpMode::ReverseOverReverse);
    let b = w9::hvp(&tape, &model, &data, &v, HvpMode::ForwardOverReverse);
    let (mut diff, mut norm) = (0f64, 0f64);
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.data().iter().zip(y.data()) {
            diff += f64::from(p - q).powi(2);
            norm += f64::from(*p).powi(2);
        }
    }
    let rel = (diff / norm).sqrt();
    let ok = rel <= 1e-4 && norm > 0.0;
    let mut j = Line::new(args, "W9");
    j.add(json!({
        "w9": "mlp-hvp",
        "calls": CALLS,
        "ms_gradient": Summary::of(&grad_ms),
        "ms_hvp_reverse_over_reverse": Summary::of(&ror_ms),
        "ms_hvp_forward_over_reverse": Summary::of(&for_ms),
        "hvp_over_gradient": Summary::of(&ratio),
        "hvp_norm": norm.sqrt(),
        "modes_rel_diff": rel,
        "correct": ok,
    }));
    j.print();
    ok
}
