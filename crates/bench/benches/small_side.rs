//! Matrix products with a small side (8 to 64 rows against 512- to 2048-wide layers),
//! in the three layouts the tape uses, each through the `gemm` crate as every product
//! went before (`gemm_packed`) and through `kernels::gemm` as it is now (products with
//! a small side take `small_gemm`'s unpacked loops), alternating in one run. f32.
//!
//! ```text
//! taskset -c 0   env RAYON_NUM_THREADS=1 cargo bench -p descent-bench --bench small_side
//! taskset -c 0,1 env RAYON_NUM_THREADS=2 cargo bench -p descent-bench --bench small_side
//! ```
//!
//! Ids are `{layout}/{m}x{k}x{n}/{packed|now}` for `c[m, n] = op(a)[m, k] op(b)[k, n]`:
//! - `xWt`: `x·Wᵀ`, the forward pass of a layer with `W [out, in]` (`matmul_t`;
//!   `a` `[m, k]`, `b` stored `[n, k]`), overwriting `c`;
//! - `gW`: `g·W`, the input's gradient (`a` `[m, k]`, `b` `[k, n]`), added into `c`;
//! - `gtx`: `gᵀ·x`, the weight's gradient (`a` stored `[k, m]`, `b` `[k, n]`; the
//!   batch is the summed `k`), added into `c`.
//!
//! Throughput is in elements of `2mkn`, so criterion's `Gelem/s` reads as GFLOP/s.
//! `crates/bench/small_side_torch.py` times `torch.matmul` on the same shapes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use descent::tensor::kernels;
use descent_bench::w4::normal;
use std::hint::black_box;
use std::time::Duration;

/// `(layout, m, k, n)`: W10's products (batch 16, 512 -> 2048 -> 2048), issue 23's
/// (batch 32 against 1024 x 1024, and its 1024x32x256 weight gradient), and batches
/// of 8 and 64 against 1024 x 1024; W8's (an LSTM step, batch 32, hidden 128: the
/// recurrent product and its two gradients, and the input projection over all 50 steps).
pub const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("xWt", 16, 512, 2048),
    ("xWt", 16, 2048, 2048),
    ("gW", 16, 2048, 2048),
    ("gW", 16, 2048, 512),
    ("gtx", 2048, 16, 512),
    ("gtx", 2048, 16, 2048),
    ("xWt", 32, 1024, 1024),
    ("gW", 32, 1024, 1024),
    ("gtx", 1024, 32, 1024),
    ("gtx", 1024, 32, 256),
    ("xWt", 8, 1024, 1024),
    ("gW", 8, 1024, 1024),
    ("gtx", 1024, 8, 1024),
    ("xWt", 64, 1024, 1024),
    ("gW", 64, 1024, 1024),
    ("gtx", 1024, 64, 1024),
    ("xWt", 32, 128, 512),
    ("gW", 32, 512, 128),
    ("gtx", 512, 32, 128),
    ("xWt", 1600, 32, 512),
    ("gtx", 512, 1600, 32),
];

fn randn(seed: u64, n: usize) -> Vec<f32> {
    normal(seed, n).into_iter().map(|x| x as f32).collect()
}

fn small_side(c: &mut Criterion) {
    let mut g = c.benchmark_group("small_side");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for &(layout, m, k, n) in SHAPES {
        let a = randn(1, m * k);
        let b = randn(2, k * n);
        let mut out = vec![0f32; m * n];
        let (ta, tb, beta) = match layout {
            "xWt" => (false, true, 0.0),
            "gW" => (false, false, 1.0),
            _ => (true, false, 1.0),
        };
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for (name, packed) in [("packed", true), ("now", false)] {
            g.bench_function(format!("{layout}/{m}x{k}x{n}/{name}"), |bench| {
                bench.iter(|| {
                    if packed {
                        kernels::gemm_packed(&a, ta, &b, tb, m, k, n, beta, &mut out);
                    } else {
                        kernels::gemm(&a, ta, &b, tb, m, k, n, beta, &mut out);
                    }
                    black_box(&mut out);
                })
            });
        }
        // Accumulated sums grow without bound over the iterations: start each shape
        // from zeros (the values do not change the time of a product).
        out.fill(0.0);
    }
    g.finish();
}

criterion_group!(benches, small_side);
criterion_main!(benches);
