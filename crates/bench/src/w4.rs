//! W4 `per-sample-grads`: one DP-SGD step on a 64 -> 128 -> 10 tanh MLP (f32), batch
//! 256: every sample's gradient, its global L2 norm, clipped to norm 1, averaged, one
//! SGD step with learning rate 0.1 (`shared/docs/WORKLOADS.md`, `shared/peers/README.md`).
//!
//! Data and initial values come from the SplitMix64 stream of `shared/peers/common.py`
//! (seeds 401..406), drawn in `f64` and rounded to `f32`, so the inputs are the peers'.
//! Each sample's loss is recorded on a worker's tape as
//! `cross_entropy((W2 tanh(W1 x + b1) + b2)ᵀ, label)` with `x` a `[64, 1]` column, and
//! [`descent::backprop::per_sample_grads`] computes the 256 gradients in parallel on
//! rayon's current pool.

use descent::backprop::{PerSample, PerSampleOptions, per_sample_grads};
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use descent::tape::{ParamId, ParamStore};
use descent::tensor::View;
use std::sync::Mutex;
use std::time::Instant;

/// Samples per batch.
pub const BATCH: usize = 256;
/// Input features.
pub const IN: usize = 64;
/// Hidden units.
pub const HID: usize = 128;
/// Classes.
pub const OUT: usize = 10;
/// Per-sample clip norm.
pub const CLIP: f64 = 1.0;
/// SGD learning rate.
pub const LR: f64 = 0.1;
/// Batches run before the timed ones in every repetition (the peers' `warm`).
pub const WARMUP: usize = 5;
/// Timed batches in every repetition (the peers' `steps`).
pub const BATCHES: usize = 50;

/// The SplitMix64 stream of `common.py`: `uniform(seed, n)[i]` is the `i`-th draw.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`: the top 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (-53f64).exp2()
    }
}

/// `common.uniform(seed, n)`.
pub fn uniform(seed: u64, n: usize) -> Vec<f64> {
    let mut r = SplitMix64(seed);
    (0..n).map(|_| r.uniform()).collect()
}

/// `common.normal(seed, n)`: Box-Muller on consecutive pairs of uniforms.
pub fn normal(seed: u64, n: usize) -> Vec<f64> {
    let u = uniform(seed, 2 * n);
    u.chunks_exact(2)
        .map(|p| (-2.0 * (1.0 - p[0]).ln()).sqrt() * (2.0 * std::f64::consts::PI * p[1]).cos())
        .collect()
}

/// `common.unif_sym(seed, n, bound)`: `(2u - 1)·bound`.
pub fn unif_sym(seed: u64, n: usize, bound: f64) -> Vec<f64> {
    uniform(seed, n)
        .into_iter()
        .map(|u| (2.0 * u - 1.0) * bound)
        .collect()
}

fn to_f32(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|x| x as f32).collect()
}

/// `common.w4_data()`: inputs, labels and the initial parameters (`W1 [128, 64]`,
/// `b1 [128]`, `W2 [10, 128]`, `b2 [10]`).
#[derive(Clone, Debug)]
pub struct Data {
    /// `[256, 64]`, row-major.
    pub x: Vec<f32>,
    /// 256 labels in `0..10`.
    pub labels: Vec<usize>,
    /// `(name, shape, values)` of W1, b1, W2, b2.
    pub params: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
}

impl Data {
    /// Draws everything from seeds 401..406.
    pub fn new() -> Self {
        let x = to_f32(normal(401, BATCH * IN));
        let labels = uniform(402, BATCH)
            .into_iter()
            .map(|u| (u * 10.0).floor() as usize)
            .collect();
        let (b1, b2) = (1.0 / 8.0, 1.0 / 128f64.sqrt());
        let params = vec![
            ("W1", vec![HID, IN], to_f32(unif_sym(403, HID * IN, b1))),
            ("b1", vec![HID], to_f32(unif_sym(404, HID, b1))),
            ("W2", vec![OUT, HID], to_f32(unif_sym(405, OUT * HID, b2))),
            ("b2", vec![OUT], to_f32(unif_sym(406, OUT, b2))),
        ];
        Data { x, labels, params }
    }

    /// The samples: `(x row, label)`.
    pub fn samples(&self) -> Vec<(&[f32], usize)> {
        self.x
            .chunks_exact(IN)
            .zip(self.labels.iter().copied())
            .collect()
    }
}

impl Default for Data {
    fn default() -> Self {
        Self::new()
    }
}

/// The parameters of the MLP, in a store, W1, b1, W2, b2 in that order.
pub struct Model {
    /// The store.
    pub store: ParamStore<f32>,
    /// W1, b1, W2, b2.
    pub ids: [ParamId; 4],
}

impl Model {
    /// The initial parameters of `data`.
    pub fn new(data: &Data) -> Self {
        let mut store = ParamStore::new();
        let ids = [0, 1, 2, 3].map(|i| {
            let (name, shape, v) = &data.params[i];
            let t = Tensor::new(shape, v.clone()).expect("shape matches the draws");
            store.insert(*name, t)
        });
        Model { store, ids }
    }
}

/// One sample's loss on `tape`: `cross_entropy((W2 tanh(W1 x + b1) + b2)ᵀ, label)`.
pub fn loss<'t>(
    tape: &'t Tape<f32>,
    store: &ParamStore<f32>,
    [w1, b1, w2, b2]: [ParamId; 4],
    x: &[f32],
    label: usize,
) -> Var<'t, f32> {
    let x = tape.constant(View::new(&[IN, 1], x));
    let b1 = tape.param(store, b1).reshape(&[HID, 1]);
    let h = (tape.param(store, w1).matmul(x) + b1).tanh();
    let b2 = tape.param(store, b2).reshape(&[OUT, 1]);
    let logits = tape.param(store, w2).matmul(h) + b2;
    logits.reshape(&[1, OUT]).cross_entropy(&[label])
}

/// The options of every batch: clip to [`CLIP`], keep only the sum.
pub fn options() -> PerSampleOptions {
    PerSampleOptions {
        clip_norm: Some(CLIP),
        ..PerSampleOptions::default()
    }
}

/// One batch: per-sample gradients (clipped), their mean, one SGD step. Returns the
/// per-sample result (its mean is the averaged clipped gradient before the step).
pub fn step(model: &mut Model, samples: &[(&[f32], usize)], sgd: &mut Sgd<f32>) -> PerSample<f32> {
    step_observed(model, samples, sgd, || {})
}

/// [`step`], calling `before_sample` on the worker thread as each sample starts.
fn step_observed(
    model: &mut Model,
    samples: &[(&[f32], usize)],
    sgd: &mut Sgd<f32>,
    before_sample: impl Fn() + Sync,
) -> PerSample<f32> {
    let (store, ids) = (&model.store, model.ids);
    let out = per_sample_grads(store, samples, options(), |tape, &(x, label)| {
        before_sample();
        loss(tape, store, ids, x, label)
    })
    .expect("W4 samples have finite scalar losses");
    let mean = out.mean();
    sgd.step(&mut model.store, &mean)
        .expect("finite gradients of the store's parameters");
    out
}

/// How fast each thread ran its samples in [`timed_by_worker`]: the workload's own view
/// of what the machine gave each thread, apart from any waiting between threads.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerTimes {
    /// One entry per thread that ran samples: rayon's pool threads in index order,
    /// then the calling thread (which runs everything on a pool of one).
    pub workers: Vec<WorkerTime>,
}

/// One thread's figures over the traced batches.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerTime {
    /// The pool thread's index, or `None` for the calling thread.
    pub thread: Option<usize>,
    /// Samples it ran.
    pub samples: usize,
    /// Median microseconds from one of its sample starts to its next in the same
    /// batch: a sample's forward and backward pass, its clipping and accumulation, and
    /// the thread's share of chunk bookkeeping.
    pub sample_us: f64,
    /// Median microseconds from a batch's start to the thread's first sample, over
    /// the batches it took part in.
    pub first_start_us: f64,
    /// Batches it took part in.
    pub batches: usize,
}

/// A value on cache lines of its own, so that threads writing neighbouring slots do
/// not pass a line back and forth.
#[repr(align(128))]
struct Padded<X>(X);

/// Runs `batches` batches from `model` like [`step`], with every sample's start time
/// recorded by the thread that runs it (a clock read and an uncontended lock per
/// sample), and summarises them by thread.
///
/// ```
/// use descent::optim::Sgd;
/// use descent_bench::w4::{self, Data, Model};
/// let data = Data::new();
/// let (mut model, mut sgd) = (Model::new(&data), Sgd::new(w4::LR));
/// let times = w4::timed_by_worker(&mut model, &data.samples(), &mut sgd, 1);
/// let ran: usize = times.workers.iter().map(|w| w.samples).sum();
/// assert_eq!(ran, w4::BATCH);
/// ```
pub fn timed_by_worker(
    model: &mut Model,
    samples: &[(&[f32], usize)],
    sgd: &mut Sgd<f32>,
    batches: usize,
) -> WorkerTimes {
    let slots = rayon::current_num_threads() + 1;
    let slot_of = |t: Option<usize>| t.unwrap_or(slots - 1);
    let starts: Vec<Padded<Mutex<Vec<Instant>>>> = (0..slots)
        .map(|_| Padded(Mutex::new(Vec::with_capacity(BATCH))))
        .collect();
    let mut periods = vec![Vec::new(); slots];
    let mut firsts = vec![Vec::new(); slots];
    let mut counts = vec![0usize; slots];
    for _ in 0..batches {
        let t0 = Instant::now();
        step_observed(model, samples, sgd, || {
            let slot = slot_of(rayon::current_thread_index());
            starts[slot]
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Instant::now());
        });
        for (slot, cell) in starts.iter().enumerate() {
            let mut times = cell.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&first) = times.first() {
                firsts[slot].push(first.duration_since(t0).as_secs_f64() * 1e6);
            }
            counts[slot] += times.len();
            periods[slot].extend(
                times
                    .windows(2)
                    .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e6),
            );
            times.clear();
        }
    }
    let workers = (0..slots)
        .filter(|&s| counts[s] > 0)
        .map(|s| WorkerTime {
            thread: (s < slots - 1).then_some(s),
            samples: counts[s],
            // NaN for a thread that never ran two samples in one batch.
            sample_us: if periods[s].is_empty() {
                f64::NAN
            } else {
                crate::stats::median(&periods[s])
            },
            first_start_us: crate::stats::median(&firsts[s]),
            batches: firsts[s].len(),
        })
        .collect();
    WorkerTimes { workers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_key as key;

    #[test]
    fn inputs_are_the_peers_to_the_bit() {
        // The same key over `common.w4_data()`'s arrays (numpy 2.4.6).
        let d = Data::new();
        assert_eq!(key(&d.x), 288_742_750_158_598_143);
        let keys: Vec<u64> = d.params.iter().map(|(_, _, v)| key(v)).collect();
        assert_eq!(
            keys,
            [
                70_161_278_317_601_099,
                17_232_770_994_356,
                1_724_199_327_320_266,
                120_804_418_394
            ]
        );
        let labels: usize = d.labels.iter().enumerate().map(|(i, l)| (i + 1) * l).sum();
        assert_eq!(labels, 154_191);
        assert_eq!(&d.labels[..8], &[6, 9, 8, 3, 9, 3, 7, 4]);
    }

    #[test]
    fn worker_times_count_every_sample_once() {
        let data = Data::new();
        let samples = data.samples();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            let times = pool.install(|| {
                let mut model = Model::new(&data);
                let mut sgd = Sgd::new(LR);
                timed_by_worker(&mut model, &samples, &mut sgd, 2)
            });
            let total: usize = times.workers.iter().map(|w| w.samples).sum();
            assert_eq!(total, 2 * BATCH, "{threads} threads: {times:?}");
            assert!(times.workers.len() <= threads, "{times:?}");
            for w in &times.workers {
                assert!(w.thread.is_some_and(|t| t < threads), "{w:?}");
                assert!(w.batches >= 1 && w.batches <= 2, "{w:?}");
                assert!(w.sample_us > 0.0 && w.first_start_us >= 0.0, "{w:?}");
            }
        }
    }
}
