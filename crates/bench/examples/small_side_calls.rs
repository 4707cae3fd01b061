//! The shapes of `benches/small_side.rs`, timed call by call with the two paths
//! alternating (`gemm_packed`, then `kernels::gemm`, then again), printing the median
//! of each path's calls: on a shared machine, a median of single calls skips the calls
//! another process pre-empted, as `small_side_torch.py` does for PyTorch, so the two
//! tables compare.
//!
//! ```text
//! taskset -c 0   cargo run --release -p descent-bench --example small_side_calls -- 1 200
//! taskset -c 0,1 cargo run --release -p descent-bench --example small_side_calls -- 2 200
//! ```
//! Arguments: rayon's pool size, calls per path (after 20 warm-up calls each), and
//! optionally the kernel set, `avx2` or `avx512` (`-` or nothing: chosen by
//! processor), and the element type, `f32` (default) or `f64`.

use descent::tensor::{GemmKernels, kernels, set_gemm_kernels};
use descent_bench::w4::normal;
use std::time::Instant;

const SHAPES: &[(&str, usize, usize, usize)] = &[
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
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args
        .next()
        .map_or(1, |s| s.parse().expect("a thread count"));
    let reps: usize = args
        .next()
        .map_or(200, |s| s.parse().expect("a call count"));
    match args.next().as_deref() {
        None | Some("-") => {}
        Some("avx2") => set_gemm_kernels(GemmKernels::Avx2),
        Some("avx512") => set_gemm_kernels(GemmKernels::Avx512),
        Some(other) => panic!("kernels {other}: avx2 or avx512"),
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the global pool, once");
    let f64s = match args.next().as_deref() {
        None | Some("f32") => false,
        Some("f64") => true,
        Some(other) => panic!("element type {other}: f32 or f64"),
    };
    println!(
        "descent, {threads} thread(s), {}: median µs a call and GFLOP/s; packed = the gemm crate, now = kernels::gemm",
        if f64s { "f64" } else { "f32" }
    );
    for &(layout, m, k, n) in SHAPES {
        if f64s {
            time_shape::<f64>(layout, m, k, n, reps);
        } else {
            time_shape::<f32>(layout, m, k, n, reps);
        }
    }
}

/// Times one shape, the two paths alternating, and prints the medians.
fn time_shape<T: descent::tensor::Float>(layout: &str, m: usize, k: usize, n: usize, reps: usize) {
    let cast = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
    let a = cast(normal(1, m * k));
    let b = cast(normal(2, k * n));
    let mut c = vec![T::zero(); m * n];
    let (ta, tb, beta) = match layout {
        "xWt" => (false, true, T::zero()),
        "gW" => (false, false, T::one()),
        _ => (true, false, T::one()),
    };
    let mut call = |packed: bool| {
        let t = Instant::now();
        if packed {
            kernels::gemm_packed(&a, ta, &b, tb, m, k, n, beta, &mut c);
        } else {
            kernels::gemm(&a, ta, &b, tb, m, k, n, beta, &mut c);
        }
        std::hint::black_box(&mut c);
        t.elapsed().as_secs_f64() * 1e6
    };
    for _ in 0..20 {
        call(true);
        call(false);
    }
    let (mut p, mut q) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        p.push(call(true));
        q.push(call(false));
    }
    let (p, q) = (median(p), median(q));
    let gf = |us: f64| 2.0 * (m * k * n) as f64 / us / 1e3;
    println!(
        "{layout:4} {m}x{k}x{n:<6} packed {p:9.1} us {:6.1} GF   now {q:9.1} us {:6.1} GF   packed/now {:.2}",
        gf(p),
        gf(q),
        p / q
    );
}
