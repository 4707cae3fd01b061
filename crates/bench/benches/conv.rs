//! Convolution on two small CNNs' shapes (f32, 3 × 3 kernels, padding 1, with bias), each
//! layer forward alone and forward plus backward (`sum` of the output as the loss; the
//! input and parameters recorded afresh on a reset tape inside the timed span, as a
//! training step does); the first layer's input without gradient (as a network's input),
//! the second's with:
//! - batch 32 of 28 × 28: 1 → 8 and 8 → 16 channels (`crates/bench/conv_torch.py` times
//!   the same in PyTorch eager);
//! - batch 32 of a CIFAR-sized network's layers: 3 → 32 on 32 × 32, 32 → 64 on 16 × 16,
//!   64 → 128 on 8 × 8 (`conv_torch.py` times these too);
//! - W7's (the `cnn_digits` CNN, batch 64 of 8 × 8): 1 → 32 on `[64, 1, 8, 8]`, 32 → 64 on
//!   `[64, 32, 4, 4]`, and the 2 × 2 max pooling after the first (W7 in `descent-bench`
//!   times the whole step beside PyTorch eager, `w7_torch.py`).
//!
//! `cargo bench -p descent-bench --bench conv` (`-- 64x` for W7's shapes alone). Samples
//! are split across rayon's global pool (one thread per core unless `RAYON_NUM_THREADS`
//! says otherwise).

use criterion::{Criterion, criterion_group, criterion_main};
use descent::prelude::*;
use std::hint::black_box;

/// `((7919 i + 104729 seed) mod 2003) / 1001.5 - 1`, as the oracle scripts fill inputs.
fn value(shape: &[usize], seed: usize) -> Tensor<f32> {
    Tensor::from_fn(shape, |i| {
        (((7919 * i + 104_729 * seed) % 2003) as f64 / 1001.5 - 1.0) as f32
    })
}

fn layer(c: &mut Criterion, batch: usize, cin: usize, cout: usize, side: usize, input_grad: bool) {
    let x = value(&[batch, cin, side, side], 1);
    let w = value(&[cout, cin, 3, 3], 2).map(|v| v * 0.3);
    let b = value(&[cout], 3);
    let o = Conv2dOptions::new().padding(1);
    let tape = Tape::<f32>::new();
    let mut group = c.benchmark_group(format!("conv2d/{batch}x{cin}x{side}x{side}_to_{cout}"));
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

fn pool(c: &mut Criterion) {
    let x = value(&[64, 32, 8, 8], 4);
    let tape = Tape::<f32>::new();
    let mut group = c.benchmark_group("max_pool2d/64x32x8x8");
    group.bench_function("forward_backward", |bench| {
        bench.iter(|| {
            tape.reset();
            let xv = tape.var(x.clone());
            let grads = xv.max_pool2d(Pool2dOptions::new(2)).sum().backward();
            black_box(grads.wrt(xv).data()[0]);
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    layer(c, 32, 1, 8, 28, false);
    layer(c, 32, 8, 16, 28, true);
    layer(c, 32, 3, 32, 32, false);
    layer(c, 32, 32, 64, 16, true);
    layer(c, 32, 64, 128, 8, true);
    layer(c, 64, 1, 32, 8, false);
    layer(c, 64, 32, 64, 4, true);
    pool(c);
}

criterion_group!(conv, benches);
criterion_main!(conv);
