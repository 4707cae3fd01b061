//! Per-sample gradients in parallel: each sample's forward and backward pass on a
//! worker's own tape, reduced in a fixed order so the result does not depend on the
//! number of threads; optional per-sample clipping and Gaussian noise (one DP-SGD step).

use crate::{Error, Gradients, ParamGrads, backward_into};
use descent_tape::{Checkpoint, ParamId, ParamStore, Tape, Var};
use descent_tensor::{Float, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use smallvec::SmallVec;
use std::any::Any;
use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to do with a sample whose loss or gradient is not finite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonFinitePolicy {
    /// Stop and return [`Error::NonFiniteSample`] naming the first such sample (by
    /// index; the lowest index wins, whatever the scheduling).
    #[default]
    Stop,
    /// Leave the sample out of the sum, list it in [`PerSample::skipped`], go on.
    Skip,
}

/// How [`per_sample_grads`] runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerSampleOptions {
    /// Clip each sample's gradient to this global L2 norm before summing
    /// (factor `min(1, c / ‖g‖)`). `None` sums them as they are.
    pub clip_norm: Option<f64>,
    /// Keep every sample's (clipped) gradients in the result. Off by default: the sum
    /// alone needs memory for a few gradients per thread, whatever the batch size.
    pub keep_per_sample: bool,
    /// What a non-finite sample does.
    pub on_non_finite: NonFinitePolicy,
    /// Samples per chunk. Each chunk is summed in sample order by one worker, then the
    /// chunks' sums are added in chunk order: this fixes the order of every addition,
    /// so the bits of the result do not depend on the thread count. Changing it
    /// changes the rounding (not the maths).
    pub chunk: usize,
}

impl Default for PerSampleOptions {
    fn default() -> Self {
        Self {
            clip_norm: None,
            keep_per_sample: false,
            on_non_finite: NonFinitePolicy::Stop,
            chunk: 8,
        }
    }
}

/// The outcome of a per-sample pass.
#[derive(Clone, Debug)]
pub struct PerSample<T: Float> {
    /// Sum over the samples of each (clipped) per-sample gradient, by parameter, in the
    /// store's order.
    pub sum: ParamGrads<T>,
    /// Number of samples summed (the batch less any skipped).
    pub count: usize,
    /// Each sample's loss, in sample order.
    pub losses: Vec<f64>,
    /// Each sample's global gradient L2 norm before clipping, in sample order.
    pub norms: Vec<f64>,
    /// Each sample's (clipped) gradients, when [`PerSampleOptions::keep_per_sample`].
    pub per_sample: Option<Vec<ParamGrads<T>>>,
    /// Indices of samples left out under [`NonFinitePolicy::Skip`].
    pub skipped: Vec<usize>,
}

impl<T: Float> PerSample<T> {
    /// The mean gradient: the sum divided by the number of samples summed.
    pub fn mean(&self) -> ParamGrads<T> {
        let mut m = self.sum.clone();
        if self.count > 0 {
            m.scale(T::from_f64(1.0 / self.count as f64));
        }
        m
    }

    /// The fraction of samples whose norm exceeded `clip_norm` (were scaled down).
    pub fn clipped_fraction(&self, clip_norm: f64) -> f64 {
        if self.norms.is_empty() {
            return 0.0;
        }
        self.norms.iter().filter(|&&n| n > clip_norm).count() as f64 / self.norms.len() as f64
    }

    /// One DP-SGD gradient: the sum plus Gaussian noise of standard deviation
    /// `noise_multiplier × clip_norm` on every element, divided by the number of
    /// samples (as Opacus does). The noise comes from a ChaCha8 stream seeded with
    /// `seed`, drawn in parameter order: the same seed gives the same noise everywhere.
    pub fn noisy_mean(
        &self,
        noise_multiplier: f64,
        clip_norm: f64,
        seed: u64,
    ) -> Result<ParamGrads<T>, Error> {
        let std = noise_multiplier * clip_norm;
        // rand_distr accepts a negative standard deviation (it mirrors the draws), so
        // the range is checked here.
        let valid = std.is_finite() && std >= 0.0;
        let normal = Normal::new(0.0, std)
            .ok()
            .filter(|_| valid)
            .ok_or(Error::Argument {
                op: "noisy_mean",
                reason: format!("noise standard deviation {std} must be finite and >= 0"),
            })?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = self.sum.clone();
        for (_, g) in out.iter_mut() {
            for x in g.data_mut() {
                *x += T::from_f64(normal.sample(&mut rng));
            }
        }
        if self.count > 0 {
            out.scale(T::from_f64(1.0 / self.count as f64));
        }
        Ok(out)
    }
}

/// One sample's contribution, before it is added to its chunk's sum.
struct SampleOut<T: Float> {
    loss: f64,
    norm: f64,
    grads: Option<ParamGrads<T>>,
}

/// A chunk's result: its sum and its samples' figures.
struct ChunkOut<T: Float> {
    sum: ParamGrads<T>,
    count: usize,
    /// Inline for chunks of up to the default 8 samples: no allocation per chunk.
    losses: SmallVec<[f64; 8]>,
    norms: SmallVec<[f64; 8]>,
    kept: Vec<ParamGrads<T>>,
    skipped: Vec<usize>,
}

/// A worker's tape and gradient store, reused across samples and calls: once warm, a
/// sample allocates no tape.
struct Workspace<T: Float> {
    tape: Tape<T>,
    grads: Gradients<T>,
    /// The call whose parameters are bound at the start of the tape, and the
    /// checkpoint after them: a worker copies the parameters once per call, not once
    /// per sample.
    prefix: Option<(u64, Checkpoint)>,
}

thread_local! {
    /// One workspace per worker thread and element type.
    static WORKSPACES: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Numbers the calls of [`per_sample_grads`], so that a workspace knows whether the
/// parameters on its tape are this call's.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn with_workspace<T: Float, R>(f: impl FnOnce(&mut Workspace<T>) -> R) -> R {
    let mut taken: Option<Box<Workspace<T>>> = WORKSPACES.with(|w| {
        let mut w = w.borrow_mut();
        let i = w.iter().position(|b| b.is::<Workspace<T>>())?;
        w.swap_remove(i).downcast().ok()
    });
    let ws = taken.get_or_insert_with(|| {
        Box::new(Workspace {
            tape: Tape::new(),
            grads: Gradients::empty(),
            prefix: None,
        })
    });
    let out = f(ws);
    if let Some(ws) = taken {
        WORKSPACES.with(|w| w.borrow_mut().push(ws));
    }
    out
}

/// Computes every sample's gradient with respect to the parameters in `store`, in
/// parallel on rayon's current pool, and returns their sum (optionally per-sample
/// clipped), every sample's loss and gradient norm, and (optionally) every sample's
/// gradients.
///
/// `loss` builds one sample's scalar loss on the tape it is given, binding the
/// parameters it uses with `tape.param(store, id)`. Parameters it does not bind get
/// zero gradient from that sample. Each worker copies every parameter of `store` onto
/// its tape once per call, before a [`Tape::checkpoint`], and rewinds to it before
/// each sample, so `tape.param` hands the closure those nodes without copying again;
/// the tape starts with them, and handles must not be kept from one sample to the
/// next (they are stale after the rewind).
///
/// The result is bit-for-bit the same for any number of threads: samples are grouped
/// in fixed chunks ([`PerSampleOptions::chunk`]), each summed in order, and the chunk
/// sums added in order.
///
/// # Errors
/// [`Error::EmptyBatch`] for no samples; [`Error::SampleNotScalar`] when the closure's
/// loss is not a scalar; [`Error::NonFiniteSample`] for a non-finite loss or gradient
/// under [`NonFinitePolicy::Stop`]; a tape error from the closure's handles.
///
/// ```
/// use descent_backprop::{per_sample_grads, PerSampleOptions};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0, -1.0]));
/// let samples = vec![([1.0, 0.0], 2.0), ([0.0, 1.0], 0.0), ([3.0, 4.0], 1.0)];
/// let out = per_sample_grads(&store, &samples, PerSampleOptions::default(), |tape, (x, y)| {
///     let pred = (tape.param(&store, w) * tape.constant(*x)).sum();
///     let err = pred - *y;
///     err * err
/// })
/// .unwrap();
/// assert_eq!(out.losses, vec![1.0, 1.0, 4.0]);
/// // d/dw (w·x - y)² = 2(w·x - y) x, summed over the samples.
/// assert_eq!(out.sum.get(w).unwrap().data(), &[-2.0 - 12.0, -2.0 - 16.0]);
/// ```
pub fn per_sample_grads<T, S, F>(
    store: &ParamStore<T>,
    samples: &[S],
    options: PerSampleOptions,
    loss: F,
) -> Result<PerSample<T>, Error>
where
    T: Float,
    S: Sync,
    F: for<'t> Fn(&'t Tape<T>, &S) -> Var<'t, T> + Sync,
{
    if samples.is_empty() {
        return Err(Error::EmptyBatch);
    }
    if options.chunk == 0 {
        return Err(Error::Argument {
            op: "per_sample_grads",
            reason: "the chunk size must be at least 1".into(),
        });
    }
    if let Some(c) = options.clip_norm
        && !(c.is_finite() && c > 0.0)
    {
        return Err(Error::Argument {
            op: "per_sample_grads",
            reason: format!("the clip norm must be finite and > 0, got {c}"),
        });
    }
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let ids: Vec<ParamId> = store.ids().collect();
    let shapes: Vec<Vec<usize>> = store.iter().map(|(_, _, v)| v.shape().to_vec()).collect();
    let zero = || -> ParamGrads<T> {
        ids.iter()
            .zip(&shapes)
            .map(|(&id, s)| (id, Tensor::zeros(s)))
            .collect()
    };

    let run_sample =
        |index: usize, acc: &mut ParamGrads<T>| -> Result<Option<SampleOut<T>>, Error> {
            with_workspace::<T, _>(|ws| {
                let Workspace {
                    tape,
                    grads,
                    prefix,
                } = ws;
                // Every parameter is bound once per call on each worker, before the
                // checkpoint each sample rewinds to; the closure's `tape.param` then
                // finds its node. A closure that resets the tape itself makes the
                // checkpoint stale, and the parameters are bound again.
                let rewound = match prefix {
                    Some((c, mark)) if *c == call => tape.rewind(mark).is_ok(),
                    _ => false,
                };
                if !rewound {
                    tape.reset();
                    for &id in &ids {
                        let _ = tape.try_param(store, id).map_err(Error::Tape)?;
                    }
                    *prefix = Some((call, tape.checkpoint()));
                }
                let l = loss(tape, &samples[index]);
                l.validate("per_sample_grads").map_err(Error::Tape)?;
                let shape = l.shape();
                if !shape.is_empty() {
                    return Err(Error::SampleNotScalar {
                        sample: index,
                        shape,
                    });
                }
                let value = l.item().as_f64();
                backward_into(l, grads)?;
                // The sample's gradient by parameter (zeros for those it did not bind).
                let mut lanes = [0.0f64; 8];
                for &id in &ids {
                    if let Some(g) = grads.param(id) {
                        add_squares(g.data(), &mut lanes);
                    }
                }
                let sq = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
                    + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
                let each = || ids.iter().filter_map(|&id| grads.param(id));
                // A non-finite element makes the sum non-finite; only then (or on an
                // overflow of finite squares) is every element looked at.
                let finite = value.is_finite()
                    && (sq.is_finite() || each().all(|g| g.data().iter().all(|x| x.is_finite())));
                if !finite {
                    return match options.on_non_finite {
                        NonFinitePolicy::Stop => Err(Error::NonFiniteSample {
                            sample: index,
                            loss: value,
                        }),
                        NonFinitePolicy::Skip => Ok(None),
                    };
                }
                // Squares that overflowed, or a sum so small that squares may have
                // fallen below the smallest normal number: the norm again, scaled.
                let norm = if sq.is_finite() && sq >= SMALLEST_FAST_SQUARE_SUM {
                    sq.sqrt()
                } else {
                    scaled_norm(each().map(|g| g.data()))
                };
                let factor = match options.clip_norm {
                    Some(c) if norm > c => T::from_f64(c / norm),
                    _ => T::one(),
                };
                let mut kept = options.keep_per_sample.then(zero);
                for &id in &ids {
                    let Some(g) = grads.param(id) else { continue };
                    let dst = acc.get_mut(id).expect("accumulator has every parameter");
                    for (d, &x) in dst.data_mut().iter_mut().zip(g.data()) {
                        *d += factor * x;
                    }
                    if let Some(kept) = kept.as_mut() {
                        let own = kept.get_mut(id).expect("zeros of every parameter");
                        for (d, &x) in own.data_mut().iter_mut().zip(g.data()) {
                            *d = factor * x;
                        }
                    }
                }
                Ok(Some(SampleOut {
                    loss: value,
                    norm,
                    grads: kept,
                }))
            })
        };

    // Chunk sums handed back after each wave's reduction, for the next wave's chunks:
    // a call allocates one wave's worth, whatever the batch size.
    let spare_sums: Mutex<Vec<ParamGrads<T>>> = Mutex::new(Vec::new());
    let run_chunk = |c: usize| -> Result<ChunkOut<T>, Error> {
        let start = c * options.chunk;
        let end = (start + options.chunk).min(samples.len());
        // A sum the previous wave has given back, zeroed, or a new one.
        let spare = spare_sums.lock().ok().and_then(|mut v| v.pop());
        let sum = match spare {
            Some(mut sum) => {
                sum.iter_mut()
                    .for_each(|(_, g)| g.data_mut().fill(T::zero()));
                sum
            }
            None => zero(),
        };
        let mut out = ChunkOut {
            sum,
            count: 0,
            losses: SmallVec::new(),
            norms: SmallVec::new(),
            kept: Vec::new(),
            skipped: Vec::new(),
        };
        for i in start..end {
            match run_sample(i, &mut out.sum)? {
                Some(s) => {
                    out.count += 1;
                    out.losses.push(s.loss);
                    out.norms.push(s.norm);
                    if let Some(g) = s.grads {
                        out.kept.push(g);
                    }
                }
                None => {
                    out.skipped.push(i);
                    out.losses.push(f64::NAN);
                    out.norms.push(f64::NAN);
                }
            }
        }
        Ok(out)
    };

    let chunks = samples.len().div_ceil(options.chunk);
    // Chunks run in waves of a bounded size, so the memory held is a few chunk sums per
    // thread, not one per chunk; each wave's sums are added in chunk order.
    let wave = 4 * rayon::current_num_threads().max(1);
    let mut total = PerSample {
        sum: zero(),
        count: 0,
        losses: Vec::with_capacity(samples.len()),
        norms: Vec::with_capacity(samples.len()),
        per_sample: options.keep_per_sample.then(Vec::new),
        skipped: Vec::new(),
    };
    // The waves run from one of the pool's threads: called from outside the pool,
    // the caller hands over once, not once per wave (each handover puts a thread to
    // sleep and wakes another).
    rayon::scope(|_| {
        let mut results = Vec::with_capacity(wave);
        let mut wave_sums: Vec<ParamGrads<T>> = Vec::with_capacity(wave);
        let mut first = 0;
        while first < chunks {
            let last = (first + wave).min(chunks);
            (first..last)
                .into_par_iter()
                .map(run_chunk)
                .collect_into_vec(&mut results);
            // The first error in chunk order wins, whatever the scheduling.
            for r in results.drain(..) {
                let c = r?;
                total.count += c.count;
                total.losses.extend(c.losses);
                total.norms.extend(c.norms);
                total.skipped.extend(c.skipped);
                if let Some(all) = total.per_sample.as_mut() {
                    all.extend(c.kept);
                }
                wave_sums.push(c.sum);
            }
            add_in_chunk_order(&mut total.sum, &wave_sums);
            if let Ok(mut spare) = spare_sums.lock() {
                spare.append(&mut wave_sums);
            }
            wave_sums.clear();
            first = last;
        }
        Ok(total)
    })
}

/// Elements a thread adds at a time when a wave's chunk sums are added into the total.
const REDUCE_BLOCK: usize = 2048;

/// Adds `parts` into `total`, one part after another for every element, as
/// `add_assign` would one part at a time, so the bits are the same; but split by
/// element across the pool, so that the reduction between waves is not serial.
fn add_in_chunk_order<T: Float>(total: &mut ParamGrads<T>, parts: &[ParamGrads<T>]) {
    for (id, dst) in total.iter_mut() {
        let srcs: SmallVec<[&[T]; 16]> = parts
            .iter()
            .map(|p| {
                p.get(id)
                    .expect("every chunk sum has every parameter")
                    .data()
            })
            .collect();
        let add_block = |(b, d): (usize, &mut [T])| {
            let (start, len) = (b * REDUCE_BLOCK, d.len());
            for s in &srcs {
                for (x, &y) in d.iter_mut().zip(&s[start..start + len]) {
                    *x += y;
                }
            }
        };
        let data = dst.data_mut();
        if data.len() >= 2 * REDUCE_BLOCK {
            data.par_chunks_mut(REDUCE_BLOCK)
                .enumerate()
                .for_each(add_block);
        } else {
            data.chunks_mut(REDUCE_BLOCK)
                .enumerate()
                .for_each(add_block);
        }
    }
}

/// Below this sum of squares a gradient's norm is computed again by [`scaled_norm`]:
/// the squares summed by [`add_squares`] in `f32` lose at most 2^-149 each to
/// underflow, under 10^-36 for a billion elements, far below this sum's rounding.
const SMALLEST_FAST_SQUARE_SUM: f64 = 1e-20;

/// Adds the squares of `g` into eight `f64` lanes. Runs of eight squares per lane are
/// summed in `T` first, then added in `f64`: converting every element to `f64`
/// cost more than the rest of the norm. For `f32` the result's relative error stays
/// below 10^-6 while the sum is finite and at least [`SMALLEST_FAST_SQUARE_SUM`];
/// outside that, the caller computes the norm with [`scaled_norm`].
fn add_squares<T: Float>(g: &[T], lanes: &mut [f64; 8]) {
    let mut runs = g.chunks_exact(64);
    for run in &mut runs {
        let mut part = [T::zero(); 8];
        for c in run.chunks_exact(8) {
            for k in 0..8 {
                part[k] += c[k] * c[k];
            }
        }
        for k in 0..8 {
            lanes[k] += part[k].as_f64();
        }
    }
    for (k, &x) in runs.remainder().iter().enumerate() {
        let x = x.as_f64();
        lanes[k % 8] += x * x;
    }
}

/// The L2 norm of every element of `grads`, divided by the largest magnitude before
/// squaring, so that no square overflows or underflows (for finite elements).
fn scaled_norm<'g, T: Float>(grads: impl Iterator<Item = &'g [T]> + Clone) -> f64 {
    let largest = grads
        .clone()
        .flat_map(|g| g.iter())
        .fold(0.0f64, |m, x| m.max(x.as_f64().abs()));
    if largest == 0.0 {
        return 0.0;
    }
    let sum: f64 = grads
        .flat_map(|g| g.iter())
        .map(|x| {
            let r = x.as_f64() / largest;
            r * r
        })
        .sum();
    largest * sum.sqrt()
}
