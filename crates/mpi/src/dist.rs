//! [`DataParallel`]: a communicator, bounded waits, start-up checks and broadcasts.

use crate::Error;
use descent_optim::{FlatGrads, MicroBatches};
use descent_tape::{ParamGradients, ParamStore};
use descent_tensor::{Float, ShapeDisplay};
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::request::{Request, Scope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::time::{Duration, Instant};

/// The exit code of a job ended because a wait passed its deadline (a peer died or
/// hangs): `MPI_Abort`'s error code, which `mpirun` returns.
pub const EXIT_PEER_LOST: i32 = 75;

/// How the ranks' gradients are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Sums in micro-batch order, sharded: the bits of one process with gradient
    /// accumulation, for any rank count. Each rank owns `1/p` of the buffer, receives
    /// every micro-batch's values there, adds them in order and sends the sum to
    /// every rank: `(m + 1) P (p − 1)/p` bytes sent per rank with `m` micro-batches,
    /// a ring all-reduce's `2P (p − 1)/p` when `m` is 1.
    #[default]
    Ordered,
    /// `MPI_Allreduce` with `MPI_SUM` over each rank's own partial sum: Open MPI picks
    /// the algorithm (a ring for large buffers, about `2P (p − 1) / p` bytes sent per
    /// rank), and with it the order of the additions. **Not bit-stable**: the result
    /// changes with the rank count (and may with the message size or Open MPI's
    /// version); only the maths is the same.
    AllReduce,
}

/// Data-parallel training over the ranks of a communicator (usually
/// `universe.world()`): see the crate's overview for an example.
pub struct DataParallel<'c> {
    pub(crate) comm: &'c SimpleCommunicator,
    pub(crate) rank: usize,
    pub(crate) size: usize,
    pub(crate) timeout: Duration,
    pub(crate) reduction: Reduction,
    /// Seconds spent in reductions and broadcasts since the last
    /// [`DataParallel::take_comm_time`] (waiting for a slower peer included).
    pub(crate) comm_time: Cell<Duration>,
    /// The buffers of the last step (a [`Scratch<T>`]), reused by the next if the
    /// store's layout is unchanged: no allocation, no page faults.
    scratch: RefCell<Option<Box<dyn Any>>>,
}

/// What a step's reduction needs besides its result, kept from step to step.
pub(crate) struct Scratch<T: Float> {
    /// This rank's micro-batches' gradients, flat.
    pub(crate) locals: Vec<FlatGrads<T>>,
    /// The other ranks' micro-batches over this rank's shard (ordered), or this
    /// rank's own partial sum (all-reduce).
    pub(crate) received: Vec<T>,
}

impl<T: Float> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            locals: Vec::new(),
            received: Vec::new(),
        }
    }
}

impl<'c> DataParallel<'c> {
    /// Training over the ranks of `comm`, with [`Reduction::Ordered`] and waits of at
    /// most 60 s (or `DESCENT_MPI_TIMEOUT` seconds, when that variable is set).
    pub fn new(comm: &'c SimpleCommunicator) -> Self {
        let secs = std::env::var("DESCENT_MPI_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(60.0);
        Self {
            comm,
            rank: comm.rank() as usize,
            size: comm.size() as usize,
            timeout: Duration::from_secs_f64(secs),
            reduction: Reduction::Ordered,
            comm_time: Cell::new(Duration::ZERO),
            scratch: RefCell::new(None),
        }
    }

    /// The longest any one wait (a message, a broadcast, a reduction) may take before
    /// the job is ended with `MPI_Abort` ([`EXIT_PEER_LOST`]). Set it above the
    /// slowest rank's compute time for a step: a rank waits for its predecessor's
    /// whole share.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How gradients are combined (the default is [`Reduction::Ordered`]).
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The reduction in use.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The time spent communicating (reductions and broadcasts, including waits for
    /// slower ranks) since the last call, which resets it.
    pub fn take_comm_time(&self) -> Duration {
        self.comm_time.replace(Duration::ZERO)
    }

    /// The micro-batches of `batches` this rank computes.
    pub fn my_share(&self, batches: MicroBatches) -> Range<usize> {
        batches.share(self.rank, self.size)
    }

    /// Waits for `req` until the deadline; past it, prints what was awaited and ends
    /// the job with `MPI_Abort`: no wait hangs.
    pub(crate) fn wait<'a, D: ?Sized, S: Scope<'a>>(&self, mut req: Request<'a, D, S>, what: &str) {
        let start = Instant::now();
        let deadline = start + self.timeout;
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => req = r,
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "descent-mpi: rank {} of {}: {what} did not complete within {:.1} s; a peer has died \
                     or hangs. Ending the job (MPI_Abort, exit code {EXIT_PEER_LOST}); restart from the \
                     last checkpoint.",
                    self.rank,
                    self.size,
                    self.timeout.as_secs_f64()
                );
                self.comm.abort(EXIT_PEER_LOST);
            }
            // Open MPI moves a large message only while both sides call into it, so a
            // waiting rank polls: keeping its core for the first 2 ms (as Open MPI's
            // own blocking calls do), then yielding it between polls (another rank on
            // the same core runs meanwhile) up to 100 ms, then sleeping 200 µs between
            // polls. Sleeping from the start cost several milliseconds a
            // message on a loaded machine (each wake-up waits for a core).
            let waited = start.elapsed();
            if waited < Duration::from_millis(2) {
                std::hint::spin_loop();
            } else if waited < Duration::from_millis(100) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Broadcasts a buffer from `root` into `buf` on every rank, with a bounded wait.
    pub(crate) fn broadcast<B: Equivalence>(&self, root: usize, buf: &mut [B], what: &str) {
        let t = Instant::now();
        mpi::request::scope(|sc| {
            let req = self
                .comm
                .process_at_rank(root as i32)
                .immediate_broadcast_into(sc, buf);
            self.wait(req, what);
        });
        self.comm_time.set(self.comm_time.get() + t.elapsed());
    }

    /// Rank `root`'s bytes on every rank (`bytes` is read on `root` only).
    pub fn broadcast_bytes(&self, root: usize, bytes: &[u8]) -> Vec<u8> {
        let mut len = [bytes.len() as u64];
        self.broadcast(root, &mut len, "a broadcast's length");
        let mut out = if self.rank == root {
            bytes.to_vec()
        } else {
            vec![0u8; len[0] as usize]
        };
        self.broadcast(root, &mut out, "a broadcast");
        out
    }

    /// The smallest of every rank's `value`.
    pub(crate) fn min_over_ranks(&self, value: u64) -> u64 {
        let mut out = [0u64];
        let t = Instant::now();
        let send = [value];
        mpi::request::scope(|sc| {
            let req =
                self.comm
                    .immediate_all_reduce_into(sc, &send, &mut out, SystemOperation::min());
            self.wait(req, "a reduction (minimum)");
        });
        self.comm_time.set(self.comm_time.get() + t.elapsed());
        out[0]
    }

    /// Checks that every rank holds the same parameters (names and shapes, in order)
    /// as rank 0, then gives every rank rank 0's values. Frozen parameters are
    /// broadcast too.
    ///
    /// # Errors
    /// [`Error::ParamMismatch`] on every rank, naming the lowest rank that differs,
    /// the first position where it does, and both parameters there; nothing is
    /// broadcast then.
    pub fn broadcast_params<T: Float + Equivalence>(
        &self,
        store: &mut ParamStore<T>,
    ) -> Result<(), Error> {
        let mine = describe(store);
        let joined = mine.join("\n");
        let root =
            String::from_utf8_lossy(&self.broadcast_bytes(0, joined.as_bytes())).into_owned();
        let theirs: Vec<String> = if root.is_empty() {
            Vec::new()
        } else {
            root.split('\n').map(str::to_string).collect()
        };
        let first_diff = (0..mine.len().max(theirs.len())).find(|&i| mine.get(i) != theirs.get(i));
        let bad_rank = self.min_over_ranks(if first_diff.is_some() {
            self.rank as u64
        } else {
            u64::MAX
        });
        if bad_rank != u64::MAX {
            let bad_rank = bad_rank as usize;
            let report = match first_diff {
                Some(i) if self.rank == bad_rank => {
                    let show =
                        |v: Option<&String>| v.cloned().unwrap_or_else(|| "nothing".to_string());
                    format!("{i}\n{}\n{}", show(theirs.get(i)), show(mine.get(i)))
                }
                _ => String::new(),
            };
            let report =
                String::from_utf8_lossy(&self.broadcast_bytes(bad_rank, report.as_bytes()))
                    .into_owned();
            let mut lines = report.splitn(3, '\n');
            let index = lines.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            return Err(Error::ParamMismatch {
                rank: bad_rank,
                index,
                expected: lines.next().unwrap_or("").to_string(),
                found: lines.next().unwrap_or("").to_string(),
            });
        }
        let ids: Vec<_> = store.ids().collect();
        for id in ids {
            let value = store.get_mut(id).expect("an id of the store");
            self.broadcast(0, value.data_mut(), "the parameters' broadcast");
        }
        Ok(())
    }

    /// The gradients of the global batch `batches` summed over all its samples, and
    /// the loss summed likewise, on every rank. `micro_grad(positions)` is called for
    /// this rank's micro-batches only ([`DataParallel::my_share`]), in order, and
    /// returns their gradients and loss summed over the micro-batch's samples.
    ///
    /// With [`Reduction::Ordered`] the result is, bit for bit,
    /// [`descent_optim::accumulate`] on one process.
    ///
    /// # Errors
    /// The closure's error, or an accumulation error, converted. An error on one rank
    /// is not seen by the others, which then wait for it until their deadline: treat
    /// an error here as fatal (return it from `main`, which ends the job).
    pub fn gradient_sum<T, G, E, F>(
        &self,
        store: &ParamStore<T>,
        batches: MicroBatches,
        micro_grad: F,
    ) -> Result<(FlatGrads<T>, f64), E>
    where
        T: Float + Equivalence + 'static,
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        let mut total = FlatGrads::zeros_like(store);
        let loss = self.gradient_sum_into(store, batches, &mut total, micro_grad)?;
        Ok((total, loss))
    }

    /// [`DataParallel::gradient_sum`] into `total`, which a training loop keeps from
    /// step to step: no buffer is allocated once the first step has run (a fresh
    /// 2 MB buffer a step cost W3's step on two ranks about a tenth of a millisecond
    /// in page faults here). `total` is replaced by a buffer of the store's layout if
    /// it does not have it; its values are overwritten.
    ///
    /// ```no_run
    /// # use descent_mpi::DataParallel;
    /// # use descent_optim::{FlatGrads, MicroBatches};
    /// # use descent_tape::{ParamGrads, ParamStore};
    /// # use descent_tensor::Tensor;
    /// # let universe = mpi::initialize().unwrap();
    /// # let world = universe.world();
    /// let dp = DataParallel::new(&world);
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([1.0]));
    /// let mut sum = FlatGrads::zeros_like(&store);
    /// // Σ w² over the 4 samples, in micro-batches of 2: gradient 8w.
    /// let loss = dp
    ///     .gradient_sum_into(&store, MicroBatches::new(4, 2).unwrap(), &mut sum, |r| {
    ///         let (w0, n) = (store.get(w).unwrap().data()[0], r.len() as f64);
    ///         let g = ParamGrads::from_iter([(w, Tensor::from([2.0 * w0 * n]))]);
    ///         Ok::<_, descent_mpi::Error>((g, w0 * w0 * n))
    ///     })
    ///     .unwrap();
    /// assert_eq!((sum.as_slice(), loss), (&[8.0][..], 4.0));
    /// ```
    ///
    /// # Errors
    /// As [`DataParallel::gradient_sum`].
    pub fn gradient_sum_into<T, G, E, F>(
        &self,
        store: &ParamStore<T>,
        batches: MicroBatches,
        total: &mut FlatGrads<T>,
        micro_grad: F,
    ) -> Result<f64, E>
    where
        T: Float + Equivalence + 'static,
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        self.reduce_into(store, batches, total, None, micro_grad)
    }

    /// The sum of [`DataParallel::gradient_sum_into`], times `scale` if there is one
    /// (the ordered reduction scales each element right after its sum, in cache).
    fn reduce_into<T, G, E, F>(
        &self,
        store: &ParamStore<T>,
        batches: MicroBatches,
        total: &mut FlatGrads<T>,
        scale: Option<T>,
        micro_grad: F,
    ) -> Result<f64, E>
    where
        T: Float + Equivalence + 'static,
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        if !total.fits(store) {
            *total = FlatGrads::zeros_like(store);
        }
        let (mut scratch, losses) = self.local_gradients(store, batches, micro_grad)?;
        let locals = &scratch.locals;
        let loss = match self.reduction {
            Reduction::Ordered => {
                let counts = self.counts(batches);
                let slices: Vec<&[T]> = locals.iter().map(|f| f.as_slice()).collect();
                let received = &mut scratch.received;
                self.ordered_sum(total.as_mut_slice(), &slices, &counts, scale, received, 1);
                self.ordered_loss(&losses, &counts)
            }
            Reduction::AllReduce => {
                let mine = &mut scratch.received;
                mine.clear();
                mine.resize(total.len(), T::zero());
                for f in &scratch.locals {
                    for (a, &b) in mine.iter_mut().zip(f.as_slice()) {
                        *a += b;
                    }
                }
                self.all_reduce_sum(mine, total.as_mut_slice());
                if let Some(s) = scale {
                    total.scale(s);
                }
                let mut loss = [0.0f64];
                self.all_reduce_sum(&[losses.iter().sum::<f64>()], &mut loss);
                loss[0]
            }
        };
        self.keep_scratch(scratch);
        Ok(loss)
    }

    /// How many micro-batches of `batches` each rank computes.
    pub(crate) fn counts(&self, batches: MicroBatches) -> Vec<usize> {
        (0..self.size)
            .map(|q| batches.share(q, self.size).len())
            .collect()
    }

    /// The sum of every rank's micro-batch losses, in micro-batch order, on every rank.
    pub(crate) fn ordered_loss(&self, losses: &[f64], counts: &[usize]) -> f64 {
        self.ordered_loss_and_flags(losses, counts, 0.0).0
    }

    /// [`DataParallel::ordered_loss`], and the sum over ranks of `flag` in the same
    /// exchange (the sharded step's count of ranks with a non-finite shard).
    pub(crate) fn ordered_loss_and_flags(
        &self,
        losses: &[f64],
        counts: &[usize],
        flag: f64,
    ) -> (f64, f64) {
        // The flag rides with this rank's first loss (a rank without micro-batches
        // sends one of its own), so each is added exactly once, in rank order.
        let mut rows: Vec<[f64; 2]> = losses.iter().map(|&l| [l, 0.0]).collect();
        let mut counts = counts.to_vec();
        match rows.first_mut() {
            Some(first) => first[1] = flag,
            // −0.0: adding it leaves every number as it is, +0.0 and −0.0 included.
            None => rows.push([-0.0, flag]),
        }
        for c in counts.iter_mut().filter(|c| **c == 0) {
            *c = 1;
        }
        let rows: Vec<&[f64]> = rows.iter().map(|r| &r[..]).collect();
        let mut out = [0.0f64; 2];
        self.ordered_sum(&mut out, &rows, &counts, None, &mut Vec::new(), 2);
        (out[0], out[1])
    }

    /// Runs `micro_grad` over this rank's micro-batches of `batches`, in order, and
    /// copies each one's gradients into the step's scratch (kept from the last step
    /// when the store's layout is unchanged; hand it back with
    /// [`DataParallel::keep_scratch`]). Returns the scratch and the losses.
    pub(crate) fn local_gradients<T, G, E, F>(
        &self,
        store: &ParamStore<T>,
        batches: MicroBatches,
        mut micro_grad: F,
    ) -> Result<(Scratch<T>, Vec<f64>), E>
    where
        T: Float + Equivalence + 'static,
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        let share = self.my_share(batches);
        let mut scratch: Scratch<T> = self
            .scratch
            .borrow_mut()
            .take()
            .and_then(|b| b.downcast::<Scratch<T>>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        let locals = &mut scratch.locals;
        locals.retain(|f| f.fits(store));
        locals.truncate(share.len());
        while locals.len() < share.len() {
            locals.push(FlatGrads::zeros_like(store));
        }
        let mut losses = Vec::new();
        for (i, flat) in share.zip(locals.iter_mut()) {
            let (g, l) = micro_grad(batches.range(i))?;
            flat.set(&g).map_err(|e| E::from(Error::from(e)))?;
            losses.push(l);
        }
        Ok((scratch, losses))
    }

    /// Keeps `scratch` for the next step.
    pub(crate) fn keep_scratch<T: Float>(&self, scratch: Scratch<T>) {
        *self.scratch.borrow_mut() = Some(Box::new(scratch));
    }

    /// [`DataParallel::gradient_sum`] multiplied by `1 / global_batch`: the mean
    /// gradient and loss, as [`descent_optim::accumulate_mean`] forms them.
    ///
    /// # Errors
    /// As [`DataParallel::gradient_sum`].
    pub fn gradient_mean<T, G, E, F>(
        &self,
        store: &ParamStore<T>,
        batches: MicroBatches,
        micro_grad: F,
    ) -> Result<(FlatGrads<T>, f64), E>
    where
        T: Float + Equivalence + 'static,
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        let mut mean = FlatGrads::zeros_like(store);
        let loss = self.gradient_mean_into(store, batches, &mut mean, micro_grad)?;
        Ok((mean, loss))
    }

    /// [`DataParallel::gradient_mean`] into `mean`, kept from step to step as
    /// [`DataParallel::gradient_sum_into`] explains; returns the mean loss.
    ///
    /// ```no_run
    /// # use descent_mpi::DataParallel;
    /// # use descent_optim::{FlatGrads, MicroBatches, Optimizer, Sgd};
    /// # use descent_tape::{ParamGrads, ParamStore};
    /// # use descent_tensor::Tensor;
    /// # let universe = mpi::initialize().unwrap();
    /// # let world = universe.world();
    /// let dp = DataParallel::new(&world);
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([1.0]));
    /// let mut mean = FlatGrads::zeros_like(&store);
    /// let mut sgd = Sgd::new(0.1);
    /// for _ in 0..3 {
    ///     // Σ w² over each micro-batch's samples, and its gradient.
    ///     let batches = MicroBatches::new(4, 2).unwrap();
    ///     let loss = dp
    ///         .gradient_mean_into(&store, batches, &mut mean, |r| {
    ///             let (w0, n) = (store.get(w).unwrap().data()[0], r.len() as f64);
    ///             let g = ParamGrads::from_iter([(w, Tensor::from([2.0 * w0 * n]))]);
    ///             Ok::<_, descent_mpi::Error>((g, w0 * w0 * n))
    ///         })
    ///         .unwrap();
    ///     sgd.step(&mut store, &mean).unwrap();
    /// }
    /// ```
    ///
    /// # Errors
    /// As [`DataParallel::gradient_sum`].
    pub fn gradient_mean_into<T, G, E, F>(
        &self,
        store: &ParamStore<T>,
        batches: MicroBatches,
        mean: &mut FlatGrads<T>,
        micro_grad: F,
    ) -> Result<f64, E>
    where
        T: Float + Equivalence + 'static,
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        let n = batches.global_batch() as f64;
        let loss =
            self.reduce_into(store, batches, mean, Some(T::from_f64(1.0 / n)), micro_grad)?;
        Ok(loss / n)
    }
}

/// `'name' [shape]` per parameter, in store order.
fn describe<T: Float>(store: &ParamStore<T>) -> Vec<String> {
    store
        .iter()
        .map(|(_, name, v)| format!("'{name}' {}", ShapeDisplay(v.shape())))
        .collect()
}
