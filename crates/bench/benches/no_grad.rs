//! What `Tape::no_grad` saves, on a model built from modules (256 → 512 → 512 → 10,
//! with BatchNorm1d, LayerNorm and GELU; batch 64, f32):
//!
//! - `eval/recorded` and `eval/no_grad`: an evaluation forward pass (evaluation mode,
//!   the tape reset each time), gradients on and off. Recording keeps every value
//!   either way (handles read them), so the difference is the parameter-binding
//!   bookkeeping alone.
//! - `distill/recorded` and `distill/no_grad`: a distillation step, a frozen teacher's
//!   forward plus a student's forward and backward (the loss is the MSE between the
//!   two); the teacher recorded with gradients on (so backward walks it and computes
//!   its parameters' gradients) and inside `no_grad` (so backward never reaches it).
//!
//! Run with `cargo bench -p descent-bench --bench no_grad`.

use criterion::{Criterion, criterion_group, criterion_main};
use descent::nn::layers::{BatchNorm1d, GELU, LayerNorm};
use descent::nn::{Ctx, Linear, Module, Sequential, init};
use descent::prelude::*;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 64;

fn model(store: &mut ParamStore<f32>, name: &str, seed: u64) -> Sequential<f32> {
    let rng = &mut init::rng(seed);
    let mut m = Sequential::new(name);
    m.push(Linear::new(store, m.next_name(), 256, 512, rng));
    m.push(BatchNorm1d::new(store, m.next_name(), 512));
    m.push(GELU::new());
    m.push(Linear::new(store, m.next_name(), 512, 512, rng));
    m.push(LayerNorm::new(store, m.next_name(), &[512], 1e-5, true));
    m.push(GELU::new());
    m.push(Linear::new(store, m.next_name(), 512, 10, rng));
    m
}

fn bench(c: &mut Criterion) {
    let mut store = ParamStore::<f32>::new();
    let teacher = model(&mut store, "teacher", 1);
    let student = model(&mut store, "student", 2);
    let x = Tensor::<f32>::from_fn(&[BATCH, 256], |i| (i * 7 % 11) as f32 * 0.1 - 0.5);
    let tape = Tape::<f32>::new();

    let mut g = c.benchmark_group("eval");
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("recorded", |b| {
        b.iter(|| {
            tape.reset();
            let mut cx = Ctx::new(&tape, &mut store).eval();
            let y = teacher.call(&mut cx, tape.constant(&x));
            black_box(y.value());
        })
    });
    g.bench_function("no_grad", |b| {
        b.iter(|| {
            tape.reset();
            let mut cx = Ctx::new(&tape, &mut store).eval();
            let y = tape.no_grad(|| teacher.call(&mut cx, tape.constant(&x)));
            black_box(y.value());
        })
    });
    g.finish();

    let mut g = c.benchmark_group("distill");
    g.measurement_time(Duration::from_secs(4));
    for (name, off) in [("recorded", false), ("no_grad", true)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                tape.reset();
                let mut cx = Ctx::new(&tape, &mut store).eval();
                let input = tape.constant(&x);
                let target = if off {
                    tape.no_grad(|| teacher.call(&mut cx, input))
                } else {
                    teacher.call(&mut cx, input)
                };
                cx.set_training(true);
                let y = student.call(&mut cx, input);
                let grads = y.mse(target).backward();
                black_box(grads.params().count());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
