//! `per_sample_grads`: bit-for-bit determinism across thread counts, agreement with a
//! plain sequential loop, DP noise, errors, and a memory bound that does not grow with
//! the batch.
//!
//! The test binary counts live heap bytes (a global allocator below) so that the memory
//! test can bound the peak. That test takes [`EXCLUSIVE`] for writing; every other test
//! takes it for reading, so nothing else allocates while it measures.

use descent_backprop::{
    Backward, Error, NonFinitePolicy, ParamGrads, PerSample, PerSampleOptions, per_sample_grads,
};
use descent_tape::{ParamId, ParamStore, Tape, Var};
use descent_tensor::{Float, Tensor, View};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

// ------------------------------------------------------------------ live-byte counter

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, keeping the live byte count and its peak.
struct PeakAlloc;

thread_local! {
    /// The calling thread's net bytes (allocated minus freed), for the allocator's own
    /// test: other threads' traffic does not reach it.
    static MINE: Cell<isize> = const { Cell::new(0) };
}

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
    // `try_with`: during thread teardown the slot may be gone; then it is not counted.
    let _ = MINE.try_with(|m| m.set(m.get() + by as isize));
}

fn shrank(by: usize) {
    LIVE.fetch_sub(by, Ordering::Relaxed);
    let _ = MINE.try_with(|m| m.set(m.get() - by as isize));
}

// SAFETY: every method forwards to `System` with exactly the pointer, layout and size it
// was given and returns what `System` returned; the only extra work is atomic counter
// updates and a const-initialised thread-local `Cell` without a destructor, which
// neither allocate (no re-entry) nor unwind.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`; the caller
        // upholds `realloc`'s contract for `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Held for writing by the memory test, for reading by every other test.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

/// The counters themselves: allocation, growth, shrinking and freeing each move the
/// calling thread's count by exactly the bytes involved, and the peak covers the live
/// count. Small enough to run under Miri, which checks the `unsafe impl GlobalAlloc`
/// above (`.ci/run`'s Miri step).
#[test]
fn peak_alloc_tracks_live_bytes() {
    const MIB: isize = 1 << 20;
    fn moved_by<R>(f: impl FnOnce() -> R) -> (R, isize) {
        let before = MINE.with(Cell::get);
        let r = f();
        (r, MINE.with(Cell::get) - before)
    }

    let (mut v, d) = moved_by(|| vec![7u8; 2 * MIB as usize]);
    assert_eq!(d, 2 * MIB, "alloc");
    let ((), d) = moved_by(|| v.reserve_exact(2 * MIB as usize));
    assert_eq!(d, 2 * MIB, "growing realloc");
    assert!(PEAK.load(Ordering::Relaxed) >= 4 * MIB as usize);
    let ((), d) = moved_by(|| {
        v.truncate(MIB as usize);
        v.shrink_to_fit();
    });
    assert_eq!(d, -3 * MIB, "shrinking realloc");
    assert!(
        v[0] == 7 && v[MIB as usize - 1] == 7,
        "the data moved intact"
    );
    let (z, d) = moved_by(|| vec![0u64; MIB as usize / 8]);
    assert_eq!(d, MIB, "alloc_zeroed");
    assert_eq!(z[MIB as usize / 8 - 1], 0);
    let ((), d) = moved_by(|| drop((v, z)));
    assert_eq!(d, -2 * MIB, "dealloc");
}

// ------------------------------------------------------------------ model and data

/// SplitMix64, for reproducible weights and data without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (-53f64).exp2()
    }
    fn sym(&mut self, bound: f64) -> f64 {
        (2.0 * self.uniform() - 1.0) * bound
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * (1.0 - u).ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A one-hidden-layer tanh MLP, `[out, in]` weights, cross-entropy on its logits.
#[derive(Clone, Copy, Debug)]
struct Mlp {
    w1: ParamId,
    b1: ParamId,
    w2: ParamId,
    b2: ParamId,
    inp: usize,
    hid: usize,
    out: usize,
}

struct Sample<T> {
    x: Vec<T>,
    label: usize,
}

fn tensor<T: Float>(shape: &[usize], mut f: impl FnMut() -> f64) -> Tensor<T> {
    Tensor::from_fn(shape, |_| T::from_f64(f()))
}

fn model<T: Float>(inp: usize, hid: usize, out: usize, seed: u64) -> (ParamStore<T>, Mlp) {
    let mut r = Rng(seed);
    let mut store = ParamStore::new();
    let (s1, s2) = (1.0 / (inp as f64).sqrt(), 1.0 / (hid as f64).sqrt());
    let w1 = store.insert("w1", tensor(&[hid, inp], || r.sym(2.0 * s1)));
    let b1 = store.insert("b1", tensor(&[hid], || r.sym(s1)));
    let w2 = store.insert("w2", tensor(&[out, hid], || r.sym(2.0 * s2)));
    let b2 = store.insert("b2", tensor(&[out], || r.sym(s2)));
    let m = Mlp {
        w1,
        b1,
        w2,
        b2,
        inp,
        hid,
        out,
    };
    (store, m)
}

fn data<T: Float>(n: usize, m: &Mlp, seed: u64) -> Vec<Sample<T>> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| Sample {
            x: (0..m.inp).map(|_| T::from_f64(r.normal())).collect(),
            label: (r.uniform() * m.out as f64) as usize,
        })
        .collect()
}

/// One sample's loss: `cross_entropy(W2 tanh(W1 x + b1) + b2, label)`.
fn loss<'t, T: Float>(
    tape: &'t Tape<T>,
    store: &ParamStore<T>,
    m: &Mlp,
    s: &Sample<T>,
) -> Var<'t, T> {
    let x = tape.constant(View::new(&[m.inp, 1], &s.x));
    let b1 = tape.param(store, m.b1).reshape(&[m.hid, 1]);
    let h = (tape.param(store, m.w1).matmul(x) + b1).tanh();
    let b2 = tape.param(store, m.b2).reshape(&[m.out, 1]);
    let logits = tape.param(store, m.w2).matmul(h) + b2;
    logits.reshape(&[1, m.out]).cross_entropy(&[s.label])
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn run<T: Float>(
    store: &ParamStore<T>,
    m: &Mlp,
    samples: &[Sample<T>],
    options: PerSampleOptions,
) -> PerSample<T> {
    per_sample_grads(store, samples, options, |tape, s| loss(tape, store, m, s)).unwrap()
}

/// Every element's bits (as `f64`, which `f32` converts to exactly), in order.
fn bits<T: Float>(g: &ParamGrads<T>) -> Vec<u64> {
    g.iter()
        .flat_map(|(_, t)| t.data().iter().map(|x| x.as_f64().to_bits()))
        .collect()
}

fn f64_bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ------------------------------------------------------------------ the sequential reference

/// What a plain loop computes: per sample a fresh tape, backward, the norm, the clip,
/// accumulated in `f64`. Gradients are by parameter in the store's order.
struct Reference {
    sum: Vec<Vec<f64>>,
    /// `Σ |term|` for each element: the scale of the rounding error of any summation order.
    abs: Vec<Vec<f64>>,
    per: Vec<Vec<Vec<f64>>>,
    losses: Vec<f64>,
    norms: Vec<f64>,
}

fn sequential<T: Float, S>(
    store: &ParamStore<T>,
    samples: &[S],
    clip: Option<f64>,
    loss: impl for<'t> Fn(&'t Tape<T>, &S) -> Var<'t, T>,
) -> Reference {
    let zeros = || -> Vec<Vec<f64>> { store.iter().map(|(_, _, v)| vec![0.0; v.len()]).collect() };
    let mut r = Reference {
        sum: zeros(),
        abs: zeros(),
        per: Vec::new(),
        losses: Vec::new(),
        norms: Vec::new(),
    };
    for s in samples {
        let tape = Tape::new();
        let l = loss(&tape, s);
        let grads = ParamGrads::from(&l.backward());
        let mut g: Vec<Vec<f64>> = zeros();
        for ((id, _, _), dst) in store.iter().zip(g.iter_mut()) {
            if let Some(t) = grads.get(id) {
                for (d, x) in dst.iter_mut().zip(t.data()) {
                    *d = x.as_f64();
                }
            }
        }
        let norm = g.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        let factor = match clip {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        for (k, p) in g.iter_mut().enumerate() {
            for (i, x) in p.iter_mut().enumerate() {
                *x *= factor;
                r.sum[k][i] += *x;
                r.abs[k][i] += x.abs();
            }
        }
        r.per.push(g);
        r.losses.push(l.item().as_f64());
        r.norms.push(norm);
    }
    r
}

/// `got` agrees with `want` to `tol` relative to `scale` element by element (exactly
/// where the scale is zero).
fn assert_close(
    what: &str,
    got: &ParamGrads<f64>,
    want: &[Vec<f64>],
    scale: &[Vec<f64>],
    tol: f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: parameter count");
    for (k, (_, g)) in got.iter().enumerate() {
        assert_eq!(g.len(), want[k].len(), "{what}: parameter {k} length");
        for (i, (&a, &b)) in g.data().iter().zip(&want[k]).enumerate() {
            let bound = tol * scale[k][i];
            assert!(
                (a - b).abs() <= bound,
                "{what}: parameter {k} element {i}: {a} vs {b} (|diff| {} > {bound})",
                (a - b).abs()
            );
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ------------------------------------------------------------------ (a) determinism

fn determinism<T: Float>() {
    let (store, m) = model::<T>(6, 16, 4, 11);
    let samples = data::<T>(203, &m, 12);
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2, 8].map(|n| (n, pool(n))).into();
    let c = median(&run(&store, &m, &samples, PerSampleOptions::default()).norms);
    for clip_norm in [None, Some(c)] {
        for chunk in [8, 3, 1] {
            let options = PerSampleOptions {
                clip_norm,
                chunk,
                ..PerSampleOptions::default()
            };
            let base = pools[0].1.install(|| run(&store, &m, &samples, options));
            let (sum, mean) = (bits(&base.sum), bits(&base.mean()));
            for (n, pool) in &pools {
                for rep in 0..3 {
                    let r = pool.install(|| run(&store, &m, &samples, options));
                    let at = format!("{n} threads, run {rep}, clip {clip_norm:?}, chunk {chunk}");
                    assert_eq!(bits(&r.sum), sum, "sum: {at}");
                    assert_eq!(bits(&r.mean()), mean, "mean: {at}");
                    assert_eq!(f64_bits(&r.losses), f64_bits(&base.losses), "losses: {at}");
                    assert_eq!(f64_bits(&r.norms), f64_bits(&base.norms), "norms: {at}");
                    assert_eq!(r.count, samples.len(), "{at}");
                }
            }
            // And on the global pool, outside any `install`.
            assert_eq!(bits(&run(&store, &m, &samples, options).sum), sum);
        }
    }
}

#[test]
fn bits_do_not_depend_on_thread_count_f64() {
    let _g = shared();
    determinism::<f64>();
}

#[test]
fn bits_do_not_depend_on_thread_count_f32() {
    let _g = shared();
    determinism::<f32>();
}

/// Samples of a few columns each through a wide layer, so that each sample's products
/// (512 x 1024 x 4, 2^21 multiply-adds, in forward and in both gradients) are split
/// across the threads of the pool inside the workers that run the samples, where a
/// caller outside the pool would not split them: the bits do not depend on the thread
/// count, nor on whether the call comes from a thread of the pool or from outside it.
#[test]
fn bits_do_not_depend_on_thread_count_with_wide_layers() {
    const COLS: usize = 4;
    let _g = shared();
    let (store, m) = model::<f32>(1024, 512, 10, 21);
    let mut r = Rng(22);
    let samples: Vec<Sample<f32>> = (0..10)
        .map(|_| Sample {
            x: (0..m.inp * COLS).map(|_| r.normal() as f32).collect(),
            label: (r.uniform() * m.out as f64) as usize,
        })
        .collect();
    let run = |options| {
        per_sample_grads(&store, &samples, options, |tape, s| {
            // x a variable: W1·x's backward runs both gradients, as a pair.
            let x = tape.var(View::new(&[m.inp, COLS], &s.x));
            let b1 = tape.param(&store, m.b1).reshape(&[m.hid, 1]);
            let h = (tape.param(&store, m.w1).matmul(x) + b1).tanh();
            let b2 = tape.param(&store, m.b2).reshape(&[m.out, 1]);
            let logits = tape.param(&store, m.w2).matmul(h) + b2;
            logits.transpose(0, 1).cross_entropy(&[s.label; COLS])
        })
        .unwrap()
    };
    let options = PerSampleOptions {
        chunk: 2,
        ..PerSampleOptions::default()
    };
    let base = pool(1).install(|| run(options));
    for n in [2, 3] {
        let r = pool(n).install(|| run(options));
        assert_eq!(bits(&r.sum), bits(&base.sum), "sum on {n} threads");
        assert_eq!(
            f64_bits(&r.norms),
            f64_bits(&base.norms),
            "norms on {n} threads"
        );
    }
    assert_eq!(bits(&run(options).sum), bits(&base.sum), "outside the pool");
}

// ------------------------------------------------------------------ (b) agreement with a loop

fn agreement(clip: bool) {
    let (store, m) = model::<f64>(5, 12, 3, 21);
    let samples = data::<f64>(157, &m, 22);
    let unclipped = sequential(&store, &samples, None, |t, s| loss(t, &store, &m, s));
    let clip_norm = clip.then(|| median(&unclipped.norms));
    let want = sequential(&store, &samples, clip_norm, |t, s| loss(t, &store, &m, s));
    if let Some(c) = clip_norm {
        let clipped = want.norms.iter().filter(|&&n| n > c).count();
        assert!(
            (40..=120).contains(&clipped),
            "the test should clip some samples and not others: {clipped} of 157"
        );
    }
    let options = PerSampleOptions {
        clip_norm,
        keep_per_sample: true,
        ..PerSampleOptions::default()
    };
    let got = pool(2).install(|| run(&store, &m, &samples, options));

    assert_eq!(got.count, samples.len());
    assert!(got.skipped.is_empty());
    // The same ops on the same inputs: the same losses. The norms agree to rounding
    // (the engine may sum the squares in another order than this loop).
    assert_eq!(got.losses, want.losses, "losses");
    for (i, (a, b)) in got.norms.iter().zip(&want.norms).enumerate() {
        assert!((a - b).abs() <= 1e-12 * b, "norm of sample {i}: {a} vs {b}");
    }
    assert_close("sum", &got.sum, &want.sum, &want.abs, 1e-12);
    let n = samples.len() as f64;
    let mean_want: Vec<Vec<f64>> = want
        .sum
        .iter()
        .map(|p| p.iter().map(|x| x / n).collect())
        .collect();
    let mean_scale: Vec<Vec<f64>> = want
        .abs
        .iter()
        .map(|p| p.iter().map(|x| x / n).collect())
        .collect();
    assert_close("mean", &got.mean(), &mean_want, &mean_scale, 1e-12);

    let kept = got.per_sample.as_ref().expect("keep_per_sample");
    assert_eq!(kept.len(), samples.len());
    for (i, (k, w)) in kept.iter().zip(&want.per).enumerate() {
        let scale: Vec<Vec<f64>> = w
            .iter()
            .map(|p| p.iter().map(|x| x.abs()).collect())
            .collect();
        assert_close(&format!("sample {i}"), k, w, &scale, 1e-12);
        // Clipped gradients have the clip norm; the others are left alone.
        let norm = k.global_norm();
        match clip_norm {
            Some(c) if want.norms[i] > c => assert!((norm - c).abs() <= 1e-12 * c),
            _ => assert!((norm - want.norms[i]).abs() <= 1e-12 * want.norms[i]),
        }
        // Keys in the store's order.
        let ids: Vec<ParamId> = k.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, store.ids().collect::<Vec<_>>());
    }
    if let Some(c) = clip_norm {
        let frac = want.norms.iter().filter(|&&x| x > c).count() as f64 / n;
        assert_eq!(got.clipped_fraction(c), frac);
    }
}

#[test]
fn agrees_with_a_sequential_loop_without_clipping() {
    let _g = shared();
    agreement(false);
}

#[test]
fn agrees_with_a_sequential_loop_with_clipping() {
    let _g = shared();
    agreement(true);
}

#[test]
fn unbound_parameters_get_zero_gradient() {
    let _g = shared();
    let (mut store, m) = model::<f64>(3, 4, 2, 31);
    let extra = store.insert("unused", Tensor::from([1.0, 2.0, 3.0]));
    let samples = data::<f64>(20, &m, 32);
    let out = run(&store, &m, &samples, PerSampleOptions::default());
    assert_eq!(out.sum.get(extra).unwrap().data(), &[0.0, 0.0, 0.0]);
    assert_eq!(out.sum.len(), 5);
}

// ------------------------------------------------------------------ (c) noise

#[test]
fn noisy_mean_is_seeded() {
    let _g = shared();
    let (store, m) = model::<f32>(6, 16, 4, 41);
    let samples = data::<f32>(64, &m, 42);
    let options = PerSampleOptions {
        clip_norm: Some(1.0),
        ..PerSampleOptions::default()
    };
    let out = run(&store, &m, &samples, options);
    let a = bits(&out.noisy_mean(1.1, 1.0, 7).unwrap());
    let b = pool(8).install(|| bits(&out.noisy_mean(1.1, 1.0, 7).unwrap()));
    assert_eq!(a, b, "same seed, same noise");
    let c = bits(&out.noisy_mean(1.1, 1.0, 8).unwrap());
    let differ = a.iter().zip(&c).filter(|(x, y)| x != y).count();
    assert!(
        differ > a.len() * 9 / 10,
        "another seed, other noise: {differ} of {} differ",
        a.len()
    );
    // A rerun of the whole pass gives the same noisy mean.
    let again = run(&store, &m, &samples, options);
    assert_eq!(bits(&again.noisy_mean(1.1, 1.0, 7).unwrap()), a);
}

#[test]
fn noise_has_the_documented_standard_deviation() {
    let _g = shared();
    let mut store = ParamStore::<f64>::new();
    let n = 200_000;
    let w = store.insert("w", Tensor::from_fn(&[n], |i| i as f64));
    // The loss does not depend on `w`: every gradient is zero, so the noisy mean is
    // noise / count alone.
    let samples = [0.0f64; 4];
    let out = per_sample_grads(&store, &samples, PerSampleOptions::default(), |tape, &s| {
        (tape.param(&store, w) * 0.0).sum() + s
    })
    .unwrap();
    assert!(out.sum.get(w).unwrap().data().iter().all(|&x| x == 0.0));
    let (multiplier, clip) = (1.3, 0.7);
    let noisy = out.noisy_mean(multiplier, clip, 2024).unwrap();
    let v = noisy.get(w).unwrap().data();
    let mean = v.iter().sum::<f64>() / n as f64;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let expected = multiplier * clip / samples.len() as f64;
    // Standard errors: of the mean, std/√n ≈ 0.2%; of the std, std/√(2n) ≈ 0.16%.
    assert!(mean.abs() < 0.02 * expected, "mean {mean}, std {expected}");
    assert!(
        (std / expected - 1.0).abs() < 0.02,
        "std {std}, expected {expected}"
    );
}

#[test]
fn zero_noise_multiplier_gives_the_mean() {
    let _g = shared();
    let (store, m) = model::<f64>(6, 16, 4, 51);
    let samples = data::<f64>(50, &m, 52);
    let options = PerSampleOptions {
        clip_norm: Some(0.5),
        ..PerSampleOptions::default()
    };
    let out = run(&store, &m, &samples, options);
    let noisy = out.noisy_mean(0.0, 0.5, 3).unwrap();
    // Equal as numbers (adding +0.0 turns a -0.0 into +0.0, which `==` ignores).
    assert_eq!(noisy, out.mean());
    let err = out.noisy_mean(f64::NAN, 0.5, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Argument {
                op: "noisy_mean",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn negative_noise_is_an_error() {
    let _g = shared();
    let (store, m) = model::<f64>(3, 4, 2, 53);
    let samples = data::<f64>(5, &m, 54);
    let out = run(&store, &m, &samples, PerSampleOptions::default());
    let err = out.noisy_mean(-1.0, 0.5, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Argument {
                op: "noisy_mean",
                ..
            }
        ),
        "{err}"
    );
}

// ------------------------------------------------------------------ (d) errors

#[test]
fn empty_batch_is_an_error() {
    let _g = shared();
    let (store, m) = model::<f64>(3, 4, 2, 61);
    let none: Vec<Sample<f64>> = Vec::new();
    let err = per_sample_grads(&store, &none, PerSampleOptions::default(), |t, s| {
        loss(t, &store, &m, s)
    })
    .unwrap_err();
    assert_eq!(err, Error::EmptyBatch);
    assert_eq!(err.to_string(), "per_sample_grads: the batch is empty");
}

#[test]
fn bad_options_are_errors() {
    let _g = shared();
    let (store, m) = model::<f64>(3, 4, 2, 62);
    let samples = data::<f64>(5, &m, 63);
    for options in [
        PerSampleOptions {
            chunk: 0,
            ..PerSampleOptions::default()
        },
        PerSampleOptions {
            clip_norm: Some(0.0),
            ..PerSampleOptions::default()
        },
        PerSampleOptions {
            clip_norm: Some(f64::NAN),
            ..PerSampleOptions::default()
        },
    ] {
        let err =
            per_sample_grads(&store, &samples, options, |t, s| loss(t, &store, &m, s)).unwrap_err();
        assert!(matches!(err, Error::Argument { .. }), "{options:?}: {err}");
    }
}

#[test]
fn non_scalar_loss_names_sample_and_shape() {
    let _g = shared();
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([1.0, 2.0, 3.0]));
    let samples: Vec<usize> = (0..100).collect();
    for threads in [1, 8] {
        let err = pool(threads)
            .install(|| {
                per_sample_grads(&store, &samples, PerSampleOptions::default(), |tape, &i| {
                    let p = tape.param(&store, w) * (i as f64);
                    // Samples 23 and 71 forget to reduce.
                    if i == 23 || i == 71 { p } else { p.sum() }
                })
            })
            .unwrap_err();
        assert_eq!(
            err,
            Error::SampleNotScalar {
                sample: 23,
                shape: [3].as_slice().into(),
            },
            "{threads} threads"
        );
        let msg = err.to_string();
        assert!(msg.contains("sample 23") && msg.contains("[3]"), "{msg}");
    }
}

/// Samples for the non-finite tests: a value per sample, the loss `(w·x)²` with `x`
/// filled with it; NaN samples give a NaN loss.
fn finite_check_samples(bad: &[usize]) -> Vec<f64> {
    (0..200)
        .map(|i| {
            if bad.contains(&i) {
                f64::NAN
            } else {
                (i as f64 * 0.37).sin()
            }
        })
        .collect()
}

fn square_loss<'t>(
    tape: &'t Tape<f64>,
    store: &ParamStore<f64>,
    w: ParamId,
    x: f64,
) -> Var<'t, f64> {
    let p = (tape.param(store, w) * x).sum();
    p * p
}

#[test]
fn non_finite_sample_stops_at_the_lowest_index() {
    let _g = shared();
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([0.5, -0.25, 1.0]));
    // Several bad samples, in different chunks and waves; the lowest is 77.
    let bad = [150, 77, 199, 78, 120];
    let samples = finite_check_samples(&bad);
    for threads in [1, 2, 8] {
        for _ in 0..3 {
            let err = pool(threads)
                .install(|| {
                    per_sample_grads(&store, &samples, PerSampleOptions::default(), |t, &x| {
                        square_loss(t, &store, w, x)
                    })
                })
                .unwrap_err();
            match err {
                Error::NonFiniteSample { sample, loss } => {
                    assert_eq!(sample, 77, "{threads} threads");
                    assert!(loss.is_nan());
                }
                e => panic!("{threads} threads: {e}"),
            }
        }
    }
    // A finite loss with a non-finite gradient is caught too: d√|s|/ds is infinite at 0.
    let err = per_sample_grads(
        &store,
        &[1.0, 0.0, 2.0],
        PerSampleOptions::default(),
        |t, &x| (tape_sum(t, &store, w) * x).abs().sqrt(),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::NonFiniteSample { sample: 1, loss } if loss == 0.0),
        "{err}"
    );
    assert!(err.to_string().contains("sample 1"), "{err}");
}

fn tape_sum<'t>(tape: &'t Tape<f64>, store: &ParamStore<f64>, w: ParamId) -> Var<'t, f64> {
    tape.param(store, w).sum()
}

#[test]
fn non_finite_samples_can_be_skipped() {
    let _g = shared();
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([0.5, -0.25, 1.0]));
    let bad = [150, 77, 199, 78, 120, 3];
    let samples = finite_check_samples(&bad);
    let good: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    let want = sequential(&store, &good, Some(0.3), |t, &x| {
        square_loss(t, &store, w, x)
    });
    let options = PerSampleOptions {
        clip_norm: Some(0.3),
        on_non_finite: NonFinitePolicy::Skip,
        keep_per_sample: true,
        ..PerSampleOptions::default()
    };
    let mut first: Option<Vec<u64>> = None;
    for threads in [1, 2, 8] {
        let out = pool(threads)
            .install(|| {
                per_sample_grads(&store, &samples, options, |t, &x| {
                    square_loss(t, &store, w, x)
                })
            })
            .unwrap();
        assert_eq!(out.skipped, vec![3, 77, 78, 120, 150, 199]);
        assert_eq!(out.count, 194);
        assert_eq!(out.per_sample.as_ref().unwrap().len(), 194);
        assert_eq!(out.losses.len(), 200);
        for &i in &bad {
            assert!(out.losses[i].is_nan() && out.norms[i].is_nan());
        }
        let kept_losses: Vec<f64> = out.losses.iter().copied().filter(|x| !x.is_nan()).collect();
        assert_eq!(kept_losses, want.losses);
        assert_close(
            "sum over the good samples",
            &out.sum,
            &want.sum,
            &want.abs,
            1e-12,
        );
        let mean_want: Vec<Vec<f64>> = want
            .sum
            .iter()
            .map(|p| p.iter().map(|x| x / 194.0).collect())
            .collect();
        let mean_scale: Vec<Vec<f64>> = want
            .abs
            .iter()
            .map(|p| p.iter().map(|x| x / 194.0).collect())
            .collect();
        assert_close(
            "mean over the good samples",
            &out.mean(),
            &mean_want,
            &mean_scale,
            1e-12,
        );
        let b = bits(&out.sum);
        assert_eq!(
            first.get_or_insert_with(|| b.clone()),
            &b,
            "{threads} threads"
        );
    }
}

// ------------------------------------------------------------------ (e) memory

#[test]
fn ten_thousand_samples_in_bounded_memory() {
    let _g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    let (store, m) = model::<f64>(16, 48, 10, 71);
    let samples = data::<f64>(10_000, &m, 72);
    let grad_bytes = store.num_elements() * size_of::<f64>();
    let options = PerSampleOptions {
        clip_norm: Some(1.0),
        ..PerSampleOptions::default()
    };
    // Warm the workers' tapes, so the measurement sees the steady state.
    run(&store, &m, &samples[..256], options);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = run(&store, &m, &samples, options);
    let peak = PEAK.load(Ordering::Relaxed) - before;

    assert!(out.per_sample.is_none());
    assert_eq!(out.count, 10_000);
    // The result's own vectors: the losses and the norms.
    let figures = 2 * 10_000 * size_of::<f64>();
    let copies = (peak.saturating_sub(figures)) as f64 / grad_bytes as f64;
    println!(
        "peak {peak} bytes over the baseline: {figures} for losses and norms, the rest \
         {copies:.1} gradient copies of {grad_bytes} bytes (10,000 samples, {} threads)",
        rayon::current_num_threads()
    );
    assert!(
        copies < 200.0,
        "peak {peak} bytes: {copies:.0} gradient copies, should not grow with the batch"
    );

    let want = sequential(&store, &samples, Some(1.0), |t, s| loss(t, &store, &m, s));
    assert_eq!(out.losses, want.losses);
    assert_close("sum of 10,000", &out.sum, &want.sum, &want.abs, 1e-12);
}

/// A parameter of 100,000 `f64` elements, and one sample's loss `(w·x)²` with `x` all
/// equal to the sample's value: large enough gradients that the chunk sums allowed to
/// wait (four per worker) are far fewer than the chunks.
fn wide_store() -> (ParamStore<f64>, ParamId) {
    let mut store = ParamStore::<f64>::new();
    let w = tensor(&[100_000], {
        let mut k = 0.0;
        move || {
            k += 1.0;
            (k * 0.001f64).sin()
        }
    });
    let id = store.insert("w", w);
    (store, id)
}

/// One chunk held up (its sample sleeps) while another worker is free: the free worker
/// may run ahead only a few chunks, not to the end of the batch, so the chunk sums
/// waiting to be added stay few; and the result is the same, bit for bit.
#[test]
fn a_slow_chunk_does_not_let_the_others_pile_up() {
    let _g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    let (store, w) = wide_store();
    let grad_bytes = store.num_elements() * size_of::<f64>();
    let samples: Vec<f64> = (0..48).map(|i| (i as f64 * 0.7).cos()).collect();
    let options = PerSampleOptions {
        chunk: 1,
        ..PerSampleOptions::default()
    };
    // The first sample waits until the others have started 24 samples, or a second
    // has passed: without a bound they would get there long before.
    let started = AtomicUsize::new(0);
    // The threads that ran the samples after the 25th.
    let late = std::sync::Mutex::new(std::collections::HashSet::new());
    let call = |slow: bool| {
        started.store(0, Ordering::Relaxed);
        per_sample_grads(&store, &samples, options, |t, &x| {
            if slow && x == samples[0] {
                let t0 = std::time::Instant::now();
                while started.load(Ordering::Relaxed) < 24 && t0.elapsed().as_secs() < 1 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            } else {
                started.fetch_add(1, Ordering::Relaxed);
            }
            if samples.iter().position(|&s| s == x) > Some(24) {
                late.lock().unwrap().insert(std::thread::current().id());
            }
            square_loss(t, &store, w, x)
        })
        .unwrap()
    };
    let want = pool(1).install(|| call(false));
    let two = pool(2);
    // Warm both workers' tapes, so the measurement sees the steady state.
    two.install(|| call(false));
    late.lock().unwrap().clear();

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = two.install(|| call(true));
    let copies = (PEAK.load(Ordering::Relaxed) - before) as f64 / grad_bytes as f64;
    println!("peak {copies:.1} gradient copies of {grad_bytes} bytes with one slow chunk");
    // The window: eight chunk sums; with the total, each worker's chunk in progress and
    // its tape, about a dozen. Running ahead would hold 24 or more.
    assert!(copies < 20.0, "{copies:.1} gradient copies held at once");
    assert_eq!(bits(&out.sum), bits(&want.sum));
    assert_eq!(f64_bits(&out.losses), f64_bits(&want.losses));
    // The worker that left when the window filled came back once the slow chunk was in.
    assert_eq!(
        late.lock().unwrap().len(),
        2,
        "threads running the late samples"
    );
}

/// A closure that itself runs parallel work on the pool, with one sample slow: a worker
/// waiting inside it runs queued jobs, other workers among them, so a worker must never
/// block until the slow chunk is added (it would deadlock); the call finishes with the
/// single-thread result.
#[test]
fn nested_parallel_work_in_the_closure_finishes() {
    use rayon::prelude::*;
    let _g = shared();
    let (store, w) = wide_store();
    let samples: Vec<f64> = (0..40).map(|i| (i as f64 * 0.3).sin()).collect();
    let options = PerSampleOptions {
        chunk: 1,
        ..PerSampleOptions::default()
    };
    let call = |slow: bool| {
        per_sample_grads(&store, &samples, options, |t, &x| {
            if slow && x == samples[3] {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let n = store.get(w).unwrap().len();
            let xs: Vec<f64> = (0..n)
                .into_par_iter()
                .with_min_len(1000)
                .map(|_| x)
                .collect();
            let p = (t.param(&store, w) * t.constant(Tensor::from(xs))).sum();
            p * p
        })
        .unwrap()
    };
    let want = pool(1).install(|| call(false));
    for threads in [2, 3] {
        let out = pool(threads).install(|| call(true));
        assert_eq!(bits(&out.sum), bits(&want.sum), "{threads} threads");
        assert_eq!(f64_bits(&out.losses), f64_bits(&want.losses));
    }
}

// ------------------------------------------------------------------ extreme norms

/// The exact norm of `g`'s elements, scaled so no square overflows or underflows.
fn exact_norm(g: &[f64]) -> f64 {
    let m = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if m == 0.0 {
        return 0.0;
    }
    m * g.iter().map(|x| (x / m) * (x / m)).sum::<f64>().sqrt()
}

/// Gradients whose squares overflow or underflow the element type, or whose norm is
/// ordinary but tiny elements sit beside large ones: every sample's norm must be the
/// exact norm, and clipping must scale by it. The loss `sum(w * x)` has gradient `x`.
fn extreme_norms<T: Float>(magnitudes: &[f64]) {
    let _shared = shared();
    let mut store = ParamStore::<T>::new();
    let w = store.insert("w", Tensor::<T>::zeros(&[100]));
    let samples: Vec<Vec<T>> = magnitudes
        .iter()
        .map(|&m| {
            (0..100)
                .map(|i| T::from_f64(m * (1.0 + (i as f64 * 0.37).sin()) * (-1f64).powi(i)))
                .collect()
        })
        .collect();
    let opts = PerSampleOptions {
        clip_norm: Some(1.0),
        keep_per_sample: true,
        ..PerSampleOptions::default()
    };
    let out = per_sample_grads(&store, &samples, opts, |tape, x| {
        (tape.param(&store, w) * tape.constant(View::new(&[100], x))).sum()
    })
    .unwrap();
    let kept = out.per_sample.as_ref().unwrap();
    for (k, x) in samples.iter().enumerate() {
        let xs: Vec<f64> = x.iter().map(|v| v.as_f64()).collect();
        let want = exact_norm(&xs);
        let got = out.norms[k];
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "{}: sample {k} (magnitude {:e}): norm {got:e}, exact {want:e}",
            T::NAME,
            magnitudes[k]
        );
        // Clipped to norm 1 when larger: each element x / norm.
        let factor = if want > 1.0 { 1.0 / want } else { 1.0 };
        for (g, v) in kept[k].get(w).unwrap().data().iter().zip(&xs) {
            let e = v * factor;
            assert!(
                (g.as_f64() - e).abs() <= 1e-6 * e.abs().max(f64::MIN_POSITIVE),
                "{}: sample {k}: {} vs {e:e}",
                T::NAME,
                g.as_f64()
            );
        }
    }
}

#[test]
fn norms_of_gradients_whose_squares_overflow_or_underflow_f32() {
    // f32 squares overflow above about 1.8e19 and leave the normal range below 1e-19.
    extreme_norms::<f32>(&[1.0, 3e19, 1e30, 1e-20, 1e-30, 1e-40, 0.5e-3, 0.0]);
}

#[test]
fn norms_of_gradients_whose_squares_overflow_or_underflow_f64() {
    extreme_norms::<f64>(&[1.0, 1e160, 1e300, 1e-160, 1e-300, 0.5e-3, 0.0]);
}

/// A closure that panics on one sample: the panic reaches the caller (whichever
/// thread ran the sample, with one worker or several), and the next call on the same
/// pool gives the ordinary result.
#[test]
fn a_panicking_closure_reaches_the_caller_and_the_pool_recovers() {
    let _g = shared();
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([0.5, -0.25, 1.0]));
    let samples = finite_check_samples(&[]);
    let options = PerSampleOptions {
        chunk: 3,
        ..PerSampleOptions::default()
    };
    let call = |bad: Option<usize>| {
        per_sample_grads(&store, &samples, options, |t, &x| {
            if bad.is_some_and(|b| samples[b] == x) {
                panic!("sample {} refused", bad.unwrap());
            }
            square_loss(t, &store, w, x)
        })
    };
    let want = pool(1).install(|| call(None)).unwrap();
    for threads in [1, 2, 3] {
        let pool = pool(threads);
        for bad in [0, 77, 199] {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| call(Some(bad)))
            }));
            let message = caught.expect_err("the panic reaches the caller");
            let text = message
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert_eq!(text, format!("sample {bad} refused"), "{threads} threads");
            let again = pool.install(|| call(None)).unwrap();
            assert_eq!(
                bits(&again.sum),
                bits(&want.sum),
                "{threads} threads after {bad}"
            );
            assert_eq!(f64_bits(&again.losses), f64_bits(&want.losses));
        }
    }
}
