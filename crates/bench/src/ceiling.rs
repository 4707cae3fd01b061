//! What more threads can give on this machine at the moment of a measurement.
//!
//! The project's machine is a shared two-vCPU VM whose second core comes and goes:
//! two independent integer loops run on two threads finish anywhere from 1.0x to
//! 1.9x faster than one after the other, from one second to the next. A workload's
//! 1 → 2 thread speed-up means little without that ceiling measured beside it.
//!
//! The probe is a chain of dependent integer operations, which waits on latency: it
//! does not see a slowdown that only throughput-bound vector work suffers (as when
//! the host runs something beside a vCPU on the same physical core). W4 therefore also
//! reports each thread's own time a sample ([`crate::w4::timed_by_worker`]).

use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;

/// About three milliseconds of dependent integer arithmetic (long enough that waking a
/// sleeping pool thread does not count): no memory traffic, no
/// synchronisation, so nothing of the workload's own scaling.
fn piece(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..2_000_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 17;
    }
    x
}

/// The speed-up of `n` equal independent pieces of work spread over rayon's current
/// pool of `n` threads, against the same pieces one after another on the calling
/// thread: the median ratio over `trials` trials. `None` on a pool of one thread.
///
/// ```
/// let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
/// let c = pool.install(|| descent_bench::ceiling::parallel_ceiling(3)).unwrap();
/// assert!(c > 0.0 && c.is_finite());
/// ```
pub fn parallel_ceiling(trials: usize) -> Option<f64> {
    let n = rayon::current_num_threads();
    if n < 2 || trials == 0 {
        return None;
    }
    let mut ratios: Vec<f64> = (0..trials)
        .map(|t| {
            let seeds: Vec<u64> = (0..n as u64).map(|i| i + 1 + t as u64).collect();
            let start = Instant::now();
            for &s in &seeds {
                black_box(piece(black_box(s)));
            }
            let serial = start.elapsed().as_secs_f64();
            let start = Instant::now();
            let _: Vec<u64> = seeds.par_iter().map(|&s| piece(black_box(s))).collect();
            serial / start.elapsed().as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some(ratios[ratios.len() / 2])
}
