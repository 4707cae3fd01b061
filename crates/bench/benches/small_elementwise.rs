//! Element-wise loops of the sizes a small-batch layer runs (2^11 to 2^16 elements),
//! split as the tape's element-wise ops split them (`for_each_block_at_cost` with the
//! op's cost): the cheapest (`add`, a memory-bound sum of two inputs, cost 1) and two
//! dear ones (`exp` and `tanh`, `TRANSCENDENTAL_COST`). f32. The point is where a second
//! thread pays, so run it at one thread and at two:
//!
//! ```text
//! taskset -c 0   env RAYON_NUM_THREADS=1 cargo bench -p descent-bench --bench small_elementwise
//! taskset -c 0,1 env RAYON_NUM_THREADS=2 cargo bench -p descent-bench --bench small_elementwise
//! ```
//!
//! Ids are `{place}/gap{us}/{add|exp|tanh}/{elements}`, `place` and `gap` as in the
//! `layer_products` bench: `outside` or `on_pool` (called from a thread of rayon's
//! pool), and microseconds of one-thread work after each call, inside the timed time.
//! With a gap, the time beyond the gap is the loop's.

use criterion::{Criterion, criterion_group, criterion_main};
use descent::tensor::{Float, TRANSCENDENTAL_COST, for_each_block_at_cost};
use descent_bench::placement::{busy, placed};
use descent_bench::w4::normal;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Elements per call: W8's LSTM cell state (`[32, 128]`) is 2^12, its gates 2^14.
const SIZES: &[usize] = &[1 << 11, 1 << 12, 1 << 13, 1 << 14, 1 << 15, 1 << 16];

/// The loops measured.
#[derive(Clone, Copy)]
enum Loop {
    Add,
    Exp,
    Tanh,
}

impl Loop {
    const ALL: [Loop; 3] = [Loop::Add, Loop::Exp, Loop::Tanh];

    fn name(self) -> &'static str {
        match self {
            Loop::Add => "add",
            Loop::Exp => "exp",
            Loop::Tanh => "tanh",
        }
    }
}

/// `iters` calls of `op` over `len` elements, each followed by `gap` µs of work.
fn calls(iters: u64, len: usize, op: Loop, gap: u64) -> Duration {
    let a: Vec<f32> = normal(1, len).into_iter().map(|x| x as f32).collect();
    let b: Vec<f32> = normal(2, len).into_iter().map(|x| x as f32).collect();
    let mut y = vec![0.0f32; len];
    let start = Instant::now();
    for _ in 0..iters {
        let (a, b) = (black_box(&a[..]), &b[..]);
        match op {
            Loop::Add => for_each_block_at_cost(
                &mut y,
                1,
                1,
                #[inline(always)]
                |offset, out| {
                    let (a, b) = (&a[offset..][..out.len()], &b[offset..][..out.len()]);
                    for (j, y) in out.iter_mut().enumerate() {
                        *y = a[j] + b[j];
                    }
                },
            ),
            Loop::Exp => for_each_block_at_cost(
                &mut y,
                1,
                TRANSCENDENTAL_COST,
                #[inline(always)]
                |offset, out| {
                    for (y, &a) in out.iter_mut().zip(&a[offset..]) {
                        *y = a.kernel_exp();
                    }
                },
            ),
            Loop::Tanh => for_each_block_at_cost(
                &mut y,
                1,
                TRANSCENDENTAL_COST,
                #[inline(always)]
                |offset, out| {
                    for (y, &a) in out.iter_mut().zip(&a[offset..]) {
                        *y = a.kernel_tanh();
                    }
                },
            ),
        }
        busy(gap);
    }
    let took = start.elapsed();
    black_box(&y);
    took
}

fn small_elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("small_elementwise");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for on_pool in [false, true] {
        let place = if on_pool { "on_pool" } else { "outside" };
        for gap in [0, 30] {
            for op in Loop::ALL {
                for &len in SIZES {
                    let id = format!("{place}/gap{gap}/{}/{len}", op.name());
                    group.bench_function(id, |bench| {
                        bench.iter_custom(|iters| placed(on_pool, || calls(iters, len, op, gap)))
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, small_elementwise);
criterion_main!(benches);
