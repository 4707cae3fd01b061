//! A layer's three matrix products, as the tape runs them: the forward `x·Wᵀ`
//! (`kernels::gemm`, `W [out, in]` stored as is), and in backward the input's gradient
//! `g·W` and the weight's `gᵀ·x` (added into it) through `kernels::gemm_pair`, as the
//! matrix-product rule calls it. f32. The point is how they use a second thread, so
//! run it at one thread and at two:
//!
//! ```text
//! taskset -c 0   env RAYON_NUM_THREADS=1 cargo bench -p descent-bench --bench layer_products
//! taskset -c 0,1 env RAYON_NUM_THREADS=2 cargo bench -p descent-bench --bench layer_products
//! ```
//!
//! Ids are `{place}/gap{us}/{forward|backward}/{batch}x{in}x{out}`:
//! - `place`: `outside`, called from the bench's own thread, outside rayon's pool (a
//!   training loop on the main thread); `on_pool`, called from a thread of the pool (a
//!   loop inside `pool.install`);
//! - `gap`: microseconds of one-thread work after each call, inside the timed time, as
//!   a training step runs other ops between two products (an idle thread of the pool
//!   goes to sleep within tens of microseconds, and waking it costs more than handing
//!   work to a thread that is still looking for some);
//! - each product has `batch·in·out` multiply-adds.
//!
//! With a gap, the time beyond the gap is the products'.

use criterion::{Criterion, criterion_group, criterion_main};
use descent::tensor::kernels::{Product, gemm, gemm_pair};
use descent_bench::placement::{busy, placed};
use descent_bench::w4::normal;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// `(batch, in, out)`: 2^18 to 2^22 multiply-adds a product; W8's LSTM step (batch 32,
/// hidden 128, four gates) is 32x128x512, and W7's convolutions run products of the
/// shapes of 64x128x288.
const SHAPES: &[(usize, usize, usize)] = &[
    (32, 64, 128),
    (16, 128, 128),
    (32, 64, 256),
    (8, 256, 256),
    (32, 128, 256),
    (16, 256, 256),
    (32, 128, 512),
    (64, 128, 256),
    (64, 128, 288),
    (32, 256, 512),
];

fn randn(seed: u64, n: usize) -> Vec<f32> {
    normal(seed, n).into_iter().map(|x| x as f32).collect()
}

/// `iters` forward products (or backward pairs) of the layer `(batch, inp, out)`, each
/// followed by `gap` µs of work.
fn calls(
    iters: u64,
    (batch, inp, out): (usize, usize, usize),
    backward: bool,
    gap: u64,
) -> Duration {
    let x = randn(1, batch * inp);
    let w = randn(2, out * inp);
    let g = randn(3, batch * out);
    let mut y = vec![0.0f32; batch * out];
    let mut gx = vec![0.0f32; batch * inp];
    let mut gw = vec![0.0f32; out * inp];
    let start = Instant::now();
    for _ in 0..iters {
        if backward {
            gemm_pair(
                Product {
                    a: black_box(&g),
                    ta: false,
                    b: &w,
                    tb: false,
                    m: batch,
                    k: out,
                    n: inp,
                    beta: 0.0,
                    c: &mut gx,
                },
                Product {
                    a: &g,
                    ta: true,
                    b: &x,
                    tb: false,
                    m: out,
                    k: batch,
                    n: inp,
                    beta: 1.0,
                    c: &mut gw,
                },
            );
        } else {
            gemm(black_box(&x), false, &w, true, batch, inp, out, 0.0, &mut y);
        }
        busy(gap);
    }
    let took = start.elapsed();
    black_box((&y, &gx, &gw));
    took
}

fn layer_products(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer_products");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for on_pool in [false, true] {
        let place = if on_pool { "on_pool" } else { "outside" };
        for gap in [0, 30] {
            for backward in [false, true] {
                let pass = if backward { "backward" } else { "forward" };
                for &shape in SHAPES {
                    let (b, i, o) = shape;
                    let id = format!("{place}/gap{gap}/{pass}/{b}x{i}x{o}");
                    group.bench_function(id, |bench| {
                        bench.iter_custom(|iters| {
                            placed(on_pool, || calls(iters, shape, backward, gap))
                        })
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, layer_products);
criterion_main!(benches);
