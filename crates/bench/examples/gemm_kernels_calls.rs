//! The `gemm` crate's AVX2 and AVX-512 kernels side by side on a layer's three
//! products (`x·Wᵀ`, `g·W`, `gᵀ·x`) over a grid of batch sizes and widths, call by
//! call, the two alternating: the measurement behind `GemmKernels::ByProcessor`'s
//! choice (`docs/PERFORMANCE.md`, "AVX-512 by processor"). Prints the median of each
//! set's calls and their ratio; on a processor without AVX-512F both columns are AVX2.
//!
//! ```text
//! taskset -c 0   cargo run --release -p descent-bench --example gemm_kernels_calls -- 1
//! taskset -c 0,1 cargo run --release -p descent-bench --example gemm_kernels_calls -- 2
//! ```
//! Argument: rayon's pool size. Every product goes through `kernels::gemm`, so a shape
//! that the project's own loops take (`x·Wᵀ` of up to 16 rows) shows the same time
//! under both settings.

use descent::tensor::{GemmKernels, kernels, set_gemm_kernels};
use descent_bench::w4::normal;
use std::time::Instant;

const BATCHES: &[usize] = &[8, 32, 128, 512];
/// `(in, out)` of a layer.
const LAYERS: &[(usize, usize)] = &[(64, 64), (256, 256), (784, 512), (1024, 1024), (2048, 2048)];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(1, |s| s.parse().expect("a thread count"));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the global pool, once");
    println!("{threads} thread(s): median µs a call, AVX2 against AVX-512 kernels");
    println!("layout  batch   in   out      avx2    avx512  avx512/avx2");
    for &(input, out) in LAYERS {
        for &batch in BATCHES {
            for layout in ["xWt", "gW", "gtx"] {
                // (ta, tb, m, k, n) of `kernels::gemm` for the layer's product.
                let (ta, tb, m, k, n) = match layout {
                    "xWt" => (false, true, batch, input, out),
                    "gW" => (false, false, batch, out, input),
                    _ => (true, false, out, batch, input),
                };
                let a: Vec<f32> = normal(1, m * k).into_iter().map(|x| x as f32).collect();
                let b: Vec<f32> = normal(2, k * n).into_iter().map(|x| x as f32).collect();
                let mut c = vec![0f32; m * n];
                let mut call = |kernels: GemmKernels| {
                    set_gemm_kernels(kernels);
                    let t = Instant::now();
                    kernels::gemm(&a, ta, &b, tb, m, k, n, 0.0, &mut c);
                    std::hint::black_box(&mut c);
                    t.elapsed().as_secs_f64() * 1e6
                };
                let flops = 2.0 * (m * k * n) as f64;
                let reps = (3e9 / flops).clamp(7.0, 301.0) as usize;
                for _ in 0..3 {
                    call(GemmKernels::Avx2);
                    call(GemmKernels::Avx512);
                }
                let (mut x, mut y) = (Vec::new(), Vec::new());
                for _ in 0..reps {
                    x.push(call(GemmKernels::Avx2));
                    y.push(call(GemmKernels::Avx512));
                }
                let (x, y) = (median(x), median(y));
                println!(
                    "{layout:5} {batch:6} {input:5} {out:5} {x:9.1} {y:9.1}   {:.2}",
                    y / x
                );
            }
        }
    }
    set_gemm_kernels(GemmKernels::ByProcessor);
}
