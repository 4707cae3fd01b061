//! A W3-sized data-parallel step (docs/WORKLOADS.md: a 784 → 512 → 256 → 10 ReLU
//! MLP, f32, softmax cross-entropy, global batch 128, SGD with momentum 0.9), timed on
//! however many ranks it is started with. The global batch is cut into micro-batches
//! of 64, so 1 rank computes both and 2 ranks one each.
//!
//! ```text
//! cargo build --release --manifest-path crates/mpi/Cargo.toml --example w3_step
//! RAYON_NUM_THREADS=1 mpirun -x RAYON_NUM_THREADS -np 1 crates/mpi/target/release/examples/w3_step
//! RAYON_NUM_THREADS=1 mpirun -x RAYON_NUM_THREADS -np 2 crates/mpi/target/release/examples/w3_step
//! ```
//!
//! Each rank prints one line per mode (the ordered reduction, MPI's all-reduce, then
//! the ordered reduction with a [`ShardedOptimizer`]): the
//! median step time, its median time computing its micro-batches' gradients, the
//! median time it spent communicating (the reduction and broadcast, waits for a slower
//! rank included) and its share of the step, and the loss after the last step. Options: `--steps N` (30 timed, after 5 warm-up steps).
//!
//! The data are not W3's teacher-labelled ones (a SplitMix64 stream, labels by a
//! fixed rule): the sizes, and so the work and the bytes, are W3's.

use descent_backprop::Backward;
use descent_mpi::{DataParallel, Reduction, ShardedOptimizer};
use descent_optim::{FlatGrads, MicroBatches, Optimizer, Sgd};
use descent_tape::{ParamStore, Tape};
use descent_tensor::Tensor;
use mpi::traits::*;
use std::error::Error;
use std::ops::Range;
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [784, 512, 256, 10];
const GLOBAL: usize = 128;
const MICRO: usize = 64;
const WARMUP: usize = 5;

fn uniform(seed: u64, n: usize, bound: f64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound) as f32
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut steps = 30usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--steps" => steps = args.next().ok_or("--steps needs a value")?.parse()?,
            _ => return Err(format!("unknown argument {a} (--steps N)").into()),
        }
    }
    let universe = mpi::initialize().ok_or("MPI is initialised already")?;
    let world = universe.world();
    let x = uniform(301, GLOBAL * SIZES[0], 1.0);
    let labels: Vec<usize> = x
        .chunks_exact(SIZES[0])
        .map(|row| {
            (row.iter()
                .take(10)
                .map(|v| v.to_bits() as usize)
                .sum::<usize>())
                % 10
        })
        .collect();
    for (mode, reduction) in [
        ("ordered", Reduction::Ordered),
        ("all-reduce", Reduction::AllReduce),
        ("sharded", Reduction::Ordered),
    ] {
        let dp = DataParallel::new(&world).with_reduction(reduction);
        let mut store = ParamStore::<f32>::new();
        let mut ids = Vec::new();
        for l in 0..3 {
            let (i, o) = (SIZES[l], SIZES[l + 1]);
            let bound = 1.0 / (i as f64).sqrt();
            ids.push(store.insert(
                format!("W{l}"),
                Tensor::new(&[i, o], uniform(311 + 2 * l as u64, i * o, bound))?,
            ));
            ids.push(store.insert(
                format!("b{l}"),
                Tensor::new(&[o], uniform(312 + 2 * l as u64, o, bound))?,
            ));
        }
        dp.broadcast_params(&mut store)?;
        let mut opt = Sgd::new(0.01).momentum(0.9);
        let mut sharded = if mode == "sharded" {
            Some(ShardedOptimizer::new(&dp, &store, opt.clone())?)
        } else {
            None
        };
        let batches = MicroBatches::new(GLOBAL, MICRO)?;
        let (mut times, mut comms, mut computes, mut opts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let compute = std::cell::Cell::new(Duration::ZERO);
        let mut mean = FlatGrads::zeros_like(&store);
        let mut last = 0.0;
        for k in 0..WARMUP + steps {
            world.barrier();
            dp.take_comm_time();
            let t = Instant::now();
            compute.set(Duration::ZERO);
            let micro = |r: Range<usize>| {
                let c = Instant::now();
                let tape = Tape::new();
                let n = r.len();
                let xb = tape.constant(Tensor::new(
                    &[n, SIZES[0]],
                    x[r.start * SIZES[0]..r.end * SIZES[0]].to_vec(),
                )?);
                let p = |k: usize| tape.param(&store, ids[k]);
                let h1 = (xb.matmul(p(0)) + p(1)).relu();
                let h2 = (h1.matmul(p(2)) + p(3)).relu();
                let loss = (h2.matmul(p(4)) + p(5)).cross_entropy(&labels[r]) * n as f32;
                let grads = loss.backward();
                let out = (grads, f64::from(loss.item()));
                compute.set(compute.get() + c.elapsed());
                Ok::<_, Box<dyn Error>>(out)
            };
            let loss = match &mut sharded {
                Some(sh) => sh.gradient_mean(&dp, &store, batches, micro)?,
                None => dp.gradient_mean_into(&store, batches, &mut mean, micro)?,
            };
            let reducing = dp.take_comm_time();
            let o = Instant::now();
            match &mut sharded {
                Some(sh) => sh.step(&dp, &mut store)?,
                None => opt.step(&mut store, &mean)?,
            }
            // The sharded step's gather of parameters counts as communicating.
            let gathering = dp.take_comm_time();
            let opt_time = o.elapsed().saturating_sub(gathering);
            let elapsed = t.elapsed();
            if k >= WARMUP {
                times.push(elapsed);
                comms.push(reducing + gathering);
                computes.push(compute.get());
                opts.push(opt_time);
            }
            last = loss;
        }
        let (t, c, g, u) = (median(times), median(comms), median(computes), median(opts));
        // Every rank reports (rank 0 first, then the others, one at a time).
        for r in 0..dp.size() {
            world.barrier();
            if r != dp.rank() {
                continue;
            }
            println!(
                "{{\"rank\": {}, \"ranks\": {}, \"threads\": {}, \"reduction\": \"{mode}\", \"step_ms\": {:.3}, \"compute_ms\": {:.3}, \"comm_ms\": {:.3}, \"comm_share\": {:.3}, \"optimizer_ms\": {:.3}, \"elements\": {}, \"loss\": {last:e}, \"load\": \"{}\"}}",
                dp.rank(),
                dp.size(),
                rayon::current_num_threads(),
                t.as_secs_f64() * 1e3,
                g.as_secs_f64() * 1e3,
                c.as_secs_f64() * 1e3,
                c.as_secs_f64() / t.as_secs_f64(),
                u.as_secs_f64() * 1e3,
                store.num_elements(),
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim()
            );
        }
    }
    Ok(())
}
