//! Recording + backward of a 10,000-op scalar chain (W6's chain, a read-out every 300
//! ops) on descent's tape and on the hand-written limit tape, so the ratio can be
//! reproduced with `cargo bench -p descent-bench --bench tape`; and the same with
//! anomaly detection on, to state its cost.

use criterion::{Criterion, criterion_group, criterion_main};
use descent::prelude::*;
use descent_bench::w6::{self, HandTape, Plan};
use std::hint::black_box;
use std::time::Duration;

const N: usize = 10_000;

fn chain(c: &mut Criterion) {
    let plan = Plan::new(N);
    let mut g = c.benchmark_group("chain10k");
    g.throughput(criterion::Throughput::Elements(N as u64));

    let tape = Tape::with_capacity(plan.nodes());
    g.bench_function("descent/record", |b| {
        b.iter(|| {
            tape.reset();
            let (loss, _, _) = w6::record(&tape, black_box(plan));
            black_box(loss.id());
        })
    });
    g.bench_function("descent/record+backward", |b| {
        b.iter(|| {
            tape.reset();
            let (loss, x, y) = w6::record(&tape, black_box(plan));
            let grads = descent::backward(loss).expect("scalar loss");
            black_box((grads.wrt(x).item(), grads.wrt(y).item()))
        })
    });
    // The same with anomaly detection on: every value and gradient checked.
    let checked = Tape::with_capacity(plan.nodes());
    checked.set_anomaly_detection(true);
    g.bench_function("descent/record+backward (anomaly detection)", |b| {
        b.iter(|| {
            checked.reset();
            let (loss, x, y) = w6::record(&checked, black_box(plan));
            let grads = descent::backward(loss).expect("finite chain");
            black_box((grads.wrt(x).item(), grads.wrt(y).item()))
        })
    });

    let mut hand = HandTape::new();
    g.bench_function("limit/record", |b| {
        b.iter(|| black_box(hand.record(black_box(plan))))
    });
    g.bench_function("limit/record+backward", |b| {
        b.iter(|| {
            let out = hand.record(black_box(plan));
            hand.backward(out);
            black_box((hand.adjoint(0), hand.adjoint(1)))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = chain
}
criterion_main!(benches);
