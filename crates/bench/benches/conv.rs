//! Convolution on a small CNN's shapes (f32, batch 32, 28 × 28, 3 × 3 kernels, padding 1,
//! with bias): the first layer (1 → 8 channels, input without gradient, as a network's
//! input) and the second (8 → 16, input with gradient), each forward alone and forward
//! plus backward (`sum` of the output as the loss; the input and parameters recorded
//! afresh on a reset tape inside the timed span, as a training step does).
//! `cargo bench -p descent-bench --bench conv`; `crates/bench/conv_torch.py` times the
//! same in PyTorch eager. Samples are split across rayon's global pool (one thread per
//! core unless `RAYON_NUM_THREADS` says otherwise).

use criterion::{Criterion, criterion_group, criterion_main};
use descent::prelude::*;
use std::hint::black_box;

/// `((7919 i + 104729 seed) mod 2003) / 1001.5 - 1`, as the oracle scripts fill inputs.
fn value(shape: &[usize], seed: usize) -> Tensor<f32> {
    Tensor::from_fn(shape, |i| {
        (((7919 * i + 104_729 * seed) % 2003) as f64 / 1001.5 - 1.0) as f32
    })
}

fn layer(c: &mut Criterion, cin: usize, cout: usize, input_grad: bool) {
    let x = value(&[32, cin, 28, 28], 1);
    let w = value(&[cout, cin, 3, 3], 2).map(|v| v * 0.3);
    let b = value(&[cout], 3);
    let o = Conv2dOptions::new().padding(1);
    let tape = Tape::<f32>::new();
    let mut group = c.benchmark_group(format!("conv2d/32x{cin}x28x28_to_{cout}"));
    group.bench_function("forward", |bench| {
        bench.iter(|| {
            tape.reset();
            let xv = tape.constant(x.clone());
            let (wv, bv) = (tape.var(w.clone()), tape.var(b.clone()));
            let _ = black_box(xv.conv2d(wv, Some(bv), o));
        })
    });
    group.bench_function("forward_backward", |bench| {
        bench.iter(|| {
            tape.reset();
            let xv = if input_grad {
                tape.var(x.clone())
            } else {
                tape.constant(x.clone())
            };
            let (wv, bv) = (tape.var(w.clone()), tape.var(b.clone()));
            let grads = xv.conv2d(wv, Some(bv), o).sum().backward();
            black_box(grads.wrt(wv).data()[0]);
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    layer(c, 1, 8, false);
    layer(c, 8, 16, true);
}

criterion_group!(conv, benches);
criterion_main!(conv);
