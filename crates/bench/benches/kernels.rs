//! Micro-benchmarks of the hot kernels through the op-level API (f32): W3's three
//! matrix products and W4's matrix-vector product (plain `matmul` with `W [in, out]` and `matmul_t` with `W [out, in]`,
//! the form W3 and `descent::nn::Linear` use), element-wise ops on a `[128, 512]`
//! tensor, and softmax cross-entropy; each forward and backward; and shapes beyond
//! the workloads (`large/...`: 1024 × 1024 element-wise ops, reductions and a
//! transpose, softmax and cross-entropy over 1,000 classes).
//! `cargo bench -p descent-bench --bench kernels`.
//!
//! - `forward`: one op recorded on a tape; the tape reset and the leaves recorded
//!   (copied into the tape) before it are outside the timed span.
//! - `backward`: `backward_into` a reused `Gradients` over a tape recorded once, outside
//!   the timing. The walk only reads the tape, so every iteration is the same walk.
//!   Matrix products and element-wise ops are reduced by `sum` to a scalar loss, so
//!   their backward includes `sum`'s (one fill of the output's gradient);
//!   `elementwise/sum/[128,512]/backward` times that share alone. A gradient buffer is
//!   zeroed on first use in each walk: that is part of every backward.
//! - Matrix products count FLOPs as elements: `2mkn` forward, `4mkn` backward (both
//!   operands' gradients), so criterion's `Gelem/s` reads as GFLOP/s. Ids are
//!   `matmul/{m}x{k}x{n}/...` for `[m, k] @ [k, n]` and `matmul_t/{m}x{k}x{n}/...`
//!   for `[m, k] @ [n, k]ᵀ`.
//! - Products of at least 2^20 multiply-adds split across rayon's global pool (one
//!   thread per core unless `RAYON_NUM_THREADS` says otherwise); pin with
//!   `taskset -c 0` for one-thread figures comparable to `docs/GEMM.md`.

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use descent::backprop::backward_into;
use descent::prelude::*;
use descent::tensor::{Float, kernels};
use descent_bench::w4::normal;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The element-wise benches' shape: W3's first hidden layer.
const EW: [usize; 2] = [128, 512];

/// A `shape` tensor of standard normal draws from `seed` (rounded to f32).
fn randn(seed: u64, shape: &[usize]) -> Tensor<f32> {
    let n = shape.iter().product();
    let v = normal(seed, n).into_iter().map(|x| x as f32).collect();
    Tensor::new(shape, v).expect("n values for the shape")
}

/// Runs `f` (one op) and adds its duration to `acc`.
fn timed<R>(acc: &mut Duration, f: impl FnOnce() -> R) {
    let t = Instant::now();
    black_box(f());
    *acc += t.elapsed();
}

/// Times the span `record` marks with [`timed`], on a tape reset before each iteration
/// (the reset and whatever `record` does outside [`timed`] are not counted).
fn forward(b: &mut Bencher<'_>, tape: &Tape<f32>, record: impl Fn(&Tape<f32>, &mut Duration)) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            tape.reset();
            record(tape, &mut total);
        }
        total
    })
}

/// Times `backward_into(loss)` into a reused `Gradients` (warmed by criterion's warm-up).
fn backward(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, loss: Var<'_, f32>) {
    let mut grads = Gradients::empty();
    g.bench_function(id, |b| {
        b.iter(|| {
            backward_into(black_box(loss), &mut grads).expect("a scalar loss");
            black_box(&grads);
        })
    });
}

fn matmul(c: &mut Criterion) {
    type Product = for<'t> fn(Var<'t, f32>, Var<'t, f32>) -> Var<'t, f32>;
    // `W [in, out]` for `matmul`, `W [out, in]` for `matmul_t` (W3, `nn::Linear`).
    let ops: [(&str, bool, Product); 2] = [
        ("matmul", false, |a, w| a.matmul(w)),
        ("matmul_t", true, |a, w| a.matmul_t(w)),
    ];
    for (op, out_in, prod) in ops {
        let mut g = c.benchmark_group(op);
        // W3: x [128, 784] -> 512 -> 256 -> 10; then W4's per-sample first layer, a
        // matrix-vector product (`[128, 64] @ [64, 1]`: the unpacked `dot4` path, and
        // outer and transposed products in its backward).
        for (layer, (m, k, n)) in [
            (128, 784, 512),
            (128, 512, 256),
            (128, 256, 10),
            (128, 64, 1),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 1000 + 10 * layer as u64;
            let x = randn(seed, &[m, k]);
            let w = randn(seed + 1, &if out_in { [n, k] } else { [k, n] });
            let mkn = (m * k * n) as u64;
            let shape = format!("{m}x{k}x{n}");

            let tape = Tape::new();
            g.throughput(Throughput::Elements(2 * mkn));
            g.bench_function(format!("{shape}/forward"), |b| {
                forward(b, &tape, |tape, acc| {
                    let (a, w) = (tape.var(&x), tape.var(&w));
                    timed(acc, || prod(a, w));
                })
            });

            let tape = Tape::new();
            let loss = prod(tape.var(&x), tape.var(&w)).sum();
            g.throughput(Throughput::Elements(4 * mkn));
            backward(&mut g, &format!("{shape}/backward"), loss);
        }
        g.finish();
    }
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("elementwise");
    g.throughput(Throughput::Elements(EW.iter().product::<usize>() as u64));
    let xa = randn(2000, &EW);
    let xb = randn(2001, &EW);
    let shape = "[128,512]";

    type Unary = for<'t> fn(Var<'t, f32>) -> Var<'t, f32>;
    type Binary = for<'t> fn(Var<'t, f32>, Var<'t, f32>) -> Var<'t, f32>;
    let unary: [(&str, Unary); 3] = [
        ("relu", |x| x.relu()),
        ("tanh", |x| x.tanh()),
        ("exp", |x| x.exp()),
    ];
    let binary: [(&str, Binary); 2] = [("add", |a, b| a + b), ("mul", |a, b| a * b)];

    for (name, f) in binary {
        let tape = Tape::new();
        g.bench_function(format!("{name}/{shape}/forward"), |b| {
            forward(b, &tape, |tape, acc| {
                let (a, b) = (tape.var(&xa), tape.var(&xb));
                timed(acc, || f(a, b));
            })
        });
        let tape = Tape::new();
        let loss = f(tape.var(&xa), tape.var(&xb)).sum();
        backward(&mut g, &format!("{name}/{shape}/backward"), loss);
    }
    for (name, f) in unary {
        let tape = Tape::new();
        g.bench_function(format!("{name}/{shape}/forward"), |b| {
            forward(b, &tape, |tape, acc| {
                let x = tape.var(&xa);
                timed(acc, || f(x));
            })
        });
        let tape = Tape::new();
        let loss = f(tape.var(&xa)).sum();
        backward(&mut g, &format!("{name}/{shape}/backward"), loss);
    }

    // The reduction the backward benches above go through, alone.
    let tape = Tape::new();
    g.bench_function(format!("sum/{shape}/forward"), |b| {
        forward(b, &tape, |tape, acc| {
            let x = tape.var(&xa);
            timed(acc, || x.sum());
        })
    });
    let tape = Tape::new();
    let loss = tape.var(&xa).sum();
    backward(&mut g, &format!("sum/{shape}/backward"), loss);
    g.finish();
}

fn cross_entropy(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_entropy");
    for (seed, n) in [(3000, 128), (3001, 256)] {
        let classes = 10;
        let logits = randn(seed, &[n, classes]);
        let labels: Vec<usize> = (0..n).map(|i| (7 * i + 3) % classes).collect();
        let shape = format!("[{n},{classes}]");
        g.throughput(Throughput::Elements((n * classes) as u64));

        let tape = Tape::new();
        g.bench_function(format!("{shape}/forward"), |b| {
            forward(b, &tape, |tape, acc| {
                let z = tape.var(&logits);
                timed(acc, || z.cross_entropy(&labels));
            })
        });
        let tape = Tape::new();
        let loss = tape.var(&logits).cross_entropy(&labels);
        backward(&mut g, &format!("{shape}/backward"), loss);
    }
    g.finish();
}

/// Shapes beyond the workloads, where per-element cost dominates: element-wise ops
/// on `[1024, 1024]`, softmax and cross-entropy over 1,000 classes for 512 rows, a
/// sum over the last axis, a max over the first and over the last, a transpose; each forward and
/// backward, as the other groups. `fresh_backward` times `backward()` (a new
/// gradient store a call, as a loop that does not keep one) of a GELU on
/// `[1024, 1024]`, against `gelu/.../backward`'s reused store.
/// `crates/bench/large_shapes_torch.py` times the same in PyTorch.
fn large(c: &mut Criterion) {
    let mut g = c.benchmark_group("large");
    let big = [1024, 1024];
    let x = randn(5000, &big);
    let logits = randn(5001, &[512, 1000]);
    let labels: Vec<usize> = (0..512).map(|i| (37 * i) % 1000).collect();

    type Unary = for<'t> fn(Var<'t, f32>) -> Var<'t, f32>;
    let ops: [(&str, &Tensor<f32>, Unary); 8] = [
        ("sigmoid/[1024,1024]", &x, |x| x.sigmoid()),
        ("gelu/[1024,1024]", &x, |x| x.gelu()),
        ("exp/[1024,1024]", &x, |x| x.exp()),
        ("sum_axis_last/[1024,1024]", &x, |x| x.sum_axis(-1, false)),
        ("max_axis_first/[1024,1024]", &x, |x| x.max_axis(0, false)),
        ("max_axis_last/[1024,1024]", &x, |x| x.max_axis(-1, false)),
        ("transpose/[1024,1024]", &x, |x| x.transpose(0, 1)),
        ("softmax/[512,1000]", &logits, |x| x.softmax(-1)),
    ];
    for (name, input, f) in ops {
        g.throughput(Throughput::Elements(input.len() as u64));
        let tape = Tape::new();
        g.bench_function(format!("{name}/forward"), |b| {
            forward(b, &tape, |tape, acc| {
                let v = tape.var(input);
                timed(acc, || f(v));
            })
        });
        // A weighted sum, so that the backward sees a gradient that is not constant.
        let tape = Tape::new();
        let out = f(tape.var(input));
        let w = tape.constant(randn(5002, &out.shape()));
        backward(&mut g, &format!("{name}/backward"), (out * w).sum());
    }

    g.throughput(Throughput::Elements(logits.len() as u64));
    let tape = Tape::new();
    g.bench_function("cross_entropy/[512,1000]/forward", |b| {
        forward(b, &tape, |tape, acc| {
            let z = tape.var(&logits);
            timed(acc, || z.cross_entropy(&labels));
        })
    });
    let tape = Tape::new();
    let loss = tape.var(&logits).cross_entropy(&labels);
    backward(&mut g, "cross_entropy/[512,1000]/backward", loss);

    g.throughput(Throughput::Elements(x.len() as u64));
    let tape = Tape::new();
    let loss = (tape.var(&x).gelu() * tape.constant(randn(5003, &big))).sum();
    g.bench_function("fresh_backward/gelu/[1024,1024]", |b| {
        b.iter(|| black_box(descent::backward(black_box(loss)).expect("a scalar loss")))
    });
    g.finish();
}

/// The matrix-vector kernel alone (`kernels::gemm` with `n = 1`, no tape): W4's
/// `[128, 64] @ [64, 1]` in `f32` and `f64`, each row summed by `Float::dot4`.
fn matvec(c: &mut Criterion) {
    fn bench<T: Float>(g: &mut BenchmarkGroup<'_, WallTime>, (m, k): (usize, usize)) {
        let a: Vec<T> = normal(4000, m * k).into_iter().map(T::from_f64).collect();
        let v: Vec<T> = normal(4001, k).into_iter().map(T::from_f64).collect();
        let mut out = vec![T::zero(); m];
        g.throughput(Throughput::Elements((2 * m * k) as u64));
        g.bench_function(format!("{}/{m}x{k}", T::NAME), |b| {
            b.iter(|| {
                kernels::gemm(
                    black_box(&a),
                    false,
                    &v,
                    false,
                    m,
                    k,
                    1,
                    T::zero(),
                    &mut out,
                )
            })
        });
    }
    let mut g = c.benchmark_group("matvec");
    bench::<f32>(&mut g, (128, 64));
    bench::<f64>(&mut g, (128, 64));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = matmul, matvec, elementwise, cross_entropy, large
}
criterion_main!(benches);
