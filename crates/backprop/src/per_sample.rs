//! Per-sample gradients in parallel: each sample's forward and backward pass on a
//! worker's own tape, reduced in a fixed order so the result does not depend on the
//! number of threads; optional per-sample clipping and Gaussian noise (one DP-SGD step).

use crate::{Error, Gradients, Keep, ParamGrads, backward_into};
use descent_tape::norm::global_norm;
use descent_tape::{Checkpoint, ParamGradients, ParamId, ParamStore, Tape, Var};
use descent_tensor::bins::{self, Parkable};
use descent_tensor::{Float, Tensor, vectorized};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
    /// alone needs memory for a few gradients per thread (or up to 4 MiB of them, for
    /// small models), whatever the batch size.
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
    /// checkpoint after them: a worker binds the parameters once per call, not once
    /// per sample.
    prefix: Option<(u64, Checkpoint)>,
}

/// Kept in the thread's [`bins`] between calls. A worker can hold more than one at a
/// time: waiting inside a sample (a large product split on rayon's pool), it may
/// steal another chunk of the same call, which takes a workspace of its own.
/// Parked boxed: a workspace (a tape and a gradient store) is large, and moving it in
/// and out of the bin for every sample cost W4 two `memcpy`s of it a sample.
impl<T: Float> Parkable for Box<Workspace<T>> {
    const PER_THREAD: usize = 4;
}

/// Numbers the calls of [`per_sample_grads`], so that a workspace knows whether the
/// parameters on its tape are this call's.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn with_workspace<T: Float, R>(f: impl FnOnce(&mut Workspace<T>) -> R) -> R {
    let mut ws: Box<Workspace<T>> = bins::take().unwrap_or_else(|| {
        Box::new(Workspace {
            tape: Tape::new(),
            // A sample's pass reads its parameters' gradients only.
            grads: Gradients::empty().keeping(Keep::Leaves),
            prefix: None,
        })
    });
    let out = f(&mut ws);
    bins::park(ws);
    out
}

/// Computes every sample's gradient with respect to the parameters in `store`, in
/// parallel on rayon's current pool, and returns their sum (optionally per-sample
/// clipped), every sample's loss and gradient norm, and (optionally) every sample's
/// gradients.
///
/// `loss` builds one sample's scalar loss on the tape it is given, binding the
/// parameters it uses with `tape.param(store, id)`. Parameters it does not bind get
/// zero gradient from that sample; frozen ones
/// ([`ParamStore::set_requires_grad`](descent_tape::ParamStore::set_requires_grad)) are
/// not in the result. Each worker binds every trainable parameter of `store` on its
/// tape once per call (sharing the store's values, no copy), before a
/// [`Tape::checkpoint`], and rewinds to it before each sample, so `tape.param` hands
/// the closure those nodes; the tape starts with them, and handles must not be kept
/// from one sample to the next (they are stale after the rewind). A worker's parked
/// tape keeps holding the values until its next call, so an optimiser step between
/// calls copies each stepped value once ([`ParamStore::get_mut`](descent_tape::ParamStore::get_mut),
/// without allocating once warm), where each worker used to copy all of them a call.
///
/// Second-order quantities per sample work through the closure: it may record
/// gradients on its tape with [`grad`](crate::grad) (or [`vjp`](crate::vjp),
/// [`jvp`](crate::jvp)) and put them in the loss it returns, such as a per-sample
/// gradient-norm penalty `lᵢ + λ‖∇_w lᵢ‖²` or an input-gradient penalty
/// `lᵢ + λ‖∇_x lᵢ‖²`; the pass then gives each sample's gradient of that loss (which
/// holds second derivatives), clipped and summed as any other. The recorded backward
/// is rewound with the sample, like the rest of its nodes. What it does not give: a
/// per-sample Hessian or Hessian-vector product as a result of its own (the closure
/// returns one scalar); run [`hvp`](crate::hvp) on a sample's tape for that. A
/// differentiable rule that refuses a point (a tie in `max_axis`, say) returns an error
/// the closure has to handle (unwrapping it panics, naming the op).
/// `tests/per_sample_second_order.rs` checks both penalties against their derivatives
/// by hand.
///
/// The result is bit-for-bit the same for any number of threads: samples are grouped
/// in fixed chunks ([`PerSampleOptions::chunk`]), each summed in order, and the chunk
/// sums added in order.
///
/// Workers take chunks in order as they become free, and each finished chunk is added
/// into the total as soon as the chunks before it are: no worker waits for another
/// until the batch ends. With a pool of one thread (or a single chunk) the work runs
/// on the calling thread. Every thread that runs samples keeps its tape and gradient
/// store for the next call (a warm tape allocates nothing); they are freed when the
/// thread ends.
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
    // Frozen parameters (and buffers, frozen entries) get no gradient and are left
    // out of the result, so that no optimiser step sees them.
    let ids: Vec<ParamId> = store.ids().filter(|&id| store.requires_grad(id)).collect();
    let shapes: Vec<Vec<usize>> = ids
        .iter()
        .map(|&id| store.get(id).expect("an id of the store").shape().to_vec())
        .collect();
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
                // The sample's gradient by parameter, in binding order (every parameter
                // is bound above, in the store's order); one norm routine for the
                // project (`descent_tape::norm`), whose result is NaN or infinite
                // exactly when an element is (or the norm itself passes f64's range).
                let reached = || (0..grads.count()).filter_map(|i| Some((i, grads.bound(i)?)));
                let norm = global_norm(reached().map(|(_, (_, g))| g.data()));
                let finite = value.is_finite()
                    && (norm.is_finite()
                        || reached().all(|(_, (_, g))| g.data().iter().all(|x| x.is_finite())));
                if !finite {
                    return match options.on_non_finite {
                        NonFinitePolicy::Stop => Err(Error::NonFiniteSample {
                            sample: index,
                            loss: value,
                        }),
                        NonFinitePolicy::Skip => Ok(None),
                    };
                }
                let factor = match options.clip_norm {
                    Some(c) if norm > c => T::from_f64(c / norm),
                    _ => T::one(),
                };
                let mut kept = options.keep_per_sample.then(zero);
                for (pos, (id, g)) in reached() {
                    let dst = accumulator_entry(acc, pos, id);
                    vectorized(
                        #[inline(always)]
                        || {
                            for (d, &x) in dst.iter_mut().zip(g.data()) {
                                *d += factor * x;
                            }
                        },
                    );
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

    // Chunk sums handed back once added into the total, for later chunks: a call
    // allocates a window's worth at most, whatever the batch size.
    let spare_sums: Mutex<Vec<ParamGrads<T>>> = Mutex::new(Vec::new());
    let run_chunk = |c: usize| -> Result<ChunkOut<T>, Error> {
        let start = c * options.chunk;
        let end = (start + options.chunk).min(samples.len());
        // A sum an earlier chunk has given back, zeroed, or a new one.
        let spare = lock(&spare_sums).pop();
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
    let workers = rayon::current_num_threads().clamp(1, chunks);
    let sum_bytes = shapes
        .iter()
        .map(|s| s.iter().product::<usize>() * size_of::<T>())
        .sum::<usize>();
    let window = (4 * workers)
        .max(WINDOW_BYTES / sum_bytes.max(1))
        .min(chunks);
    let stream = Stream {
        run_chunk: &run_chunk,
        spare_sums: &spare_sums,
        chunks,
        workers,
        window,
        order: Mutex::new(Order {
            claimed: 0,
            next: 0,
            active: workers,
            ready: VecDeque::with_capacity(window),
            draining: false,
            failed: None,
        }),
        total: Mutex::new(PerSample {
            sum: zero(),
            count: 0,
            losses: Vec::with_capacity(samples.len()),
            norms: Vec::with_capacity(samples.len()),
            per_sample: options.keep_per_sample.then(Vec::new),
            skipped: Vec::new(),
        }),
    };
    // One parallel region per call: no worker waits for the others until the last
    // chunk. One worker runs on the calling thread; more run on the pool, to which a
    // caller from outside hands over once per call (were it to work beside them, the
    // helper it wakes would often find its processor taken by the caller).
    if workers == 1 {
        rayon::in_place_scope(|s| stream.work(s));
    } else {
        rayon::scope(|s| stream.run(s));
    }
    let Stream { order, total, .. } = stream;
    match into_inner(order).failed {
        Some(e) => Err(e),
        None => Ok(into_inner(total)),
    }
}

/// The accumulator's entry for `id`, bound at position `pos` of the sample's tape. The
/// accumulator holds the parameters in binding order, so the position finds it without
/// a lookup by id (a hash a parameter a sample, measurable on W4).
fn accumulator_entry<T: Float>(acc: &mut ParamGrads<T>, pos: usize, id: ParamId) -> &mut [T] {
    let in_place = pos < ParamGradients::count(acc) && ParamGradients::entry(acc, pos).0 == id;
    if in_place {
        ParamGradients::entry_mut(acc, pos)
    } else {
        acc.get_mut(id).map(Tensor::data_mut)
    }
    .expect("accumulator has every parameter")
}

/// Chunk sums that may wait to be added, beyond four per worker, while they take less
/// than this many bytes: a slow chunk then holds up fewer workers.
const WINDOW_BYTES: usize = 4 << 20;

/// The shared state of one call's workers: chunks are claimed in order from a
/// counter, and their results added into the total in chunk order as they come in.
struct Stream<'a, T: Float> {
    run_chunk: &'a (dyn Fn(usize) -> Result<ChunkOut<T>, Error> + Sync),
    spare_sums: &'a Mutex<Vec<ParamGrads<T>>>,
    chunks: usize,
    /// Workers wanted: the pool's threads, or fewer chunks.
    workers: usize,
    /// A chunk is claimed only while fewer than this many chunks separate it from the
    /// next one to add: the chunk sums held at once stay bounded whatever the batch.
    window: usize,
    order: Mutex<Order<T>>,
    /// Touched only by the worker that holds [`Order::draining`].
    total: Mutex<PerSample<T>>,
}

/// Which chunks are claimed, which are ready, which is added next.
struct Order<T: Float> {
    /// Chunks handed out so far (the next one to hand out).
    claimed: usize,
    /// The next chunk to add into the total.
    next: usize,
    /// Workers inside [`Stream::work`].
    active: usize,
    /// `ready[i]` is chunk `next + i`'s result, once its worker has finished it.
    ready: VecDeque<Option<Result<ChunkOut<T>, Error>>>,
    /// A worker is adding ready chunks into the total; others only leave theirs.
    draining: bool,
    /// The error of the first failed chunk in chunk order; no chunk is claimed after.
    failed: Option<Error>,
}

fn into_inner<X>(m: Mutex<X>) -> X {
    m.into_inner().unwrap_or_else(PoisonError::into_inner)
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<'a, T: Float> Stream<'a, T> {
    /// Starts the other workers, then works.
    fn run(&'a self, scope: &rayon::Scope<'a>) {
        for _ in 1..self.workers {
            scope.spawn(|s| self.work(s));
        }
        self.work(scope);
    }

    /// Claims and runs chunks until none is left or the window is full. A worker
    /// never waits for another: when the window is full it leaves, and the worker
    /// that adds the chunk holding the window up starts a new one. (A worker that
    /// waited could deadlock, were it run by a thread whose stack holds, below it,
    /// the chunk it waits for: rayon runs queued jobs while it waits in a `join`.)
    fn work(&'a self, scope: &rayon::Scope<'a>) {
        loop {
            let c = {
                let mut order = lock(&self.order);
                if order.failed.is_some()
                    || order.claimed == self.chunks
                    || order.claimed >= order.next + self.window
                {
                    order.active -= 1;
                    return;
                }
                order.claimed += 1;
                order.claimed - 1
            };
            let out = (self.run_chunk)(c);
            self.finish(c, out, scope);
        }
    }

    /// Leaves chunk `c`'s result, then, unless another worker is at it, adds every
    /// ready chunk into the total in chunk order.
    fn finish(&'a self, c: usize, out: Result<ChunkOut<T>, Error>, scope: &rayon::Scope<'a>) {
        let mut order = lock(&self.order);
        if order.failed.is_some() {
            return;
        }
        let slot = c - order.next;
        if order.ready.len() <= slot {
            order.ready.resize_with(slot + 1, || None);
        }
        order.ready[slot] = Some(out);
        if order.draining {
            return;
        }
        order.draining = true;
        while let Some(Some(_)) = order.ready.front() {
            let out = order.ready.pop_front().flatten().expect("checked ready");
            order.next += 1;
            match out {
                Ok(chunk) => {
                    drop(order);
                    self.add(chunk);
                    order = lock(&self.order);
                }
                Err(e) => {
                    order.failed = Some(e);
                    order.ready.clear();
                }
            }
            // Workers that left on a full window, back for the chunks it now admits.
            while order.failed.is_none()
                && order.active < self.workers
                && order.claimed < self.chunks
                && order.claimed < order.next + self.window
            {
                order.active += 1;
                scope.spawn(|s| self.work(s));
            }
        }
        order.draining = false;
    }

    /// Adds a chunk into the total, element by element (the same additions, in the
    /// same order, for any number of threads), and keeps its sum for a later chunk.
    fn add(&self, chunk: ChunkOut<T>) {
        let mut total = lock(&self.total);
        total.count += chunk.count;
        total.losses.extend(chunk.losses);
        total.norms.extend(chunk.norms);
        total.skipped.extend(chunk.skipped);
        if let Some(all) = total.per_sample.as_mut() {
            all.extend(chunk.kept);
        }
        total.sum.add_assign(&chunk.sum);
        drop(total);
        lock(self.spare_sums).push(chunk.sum);
    }
}
