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
    /// A chain in micro-batch order, then a broadcast from the last rank: the bits of
    /// one process with gradient accumulation, for any rank count. Rank `r` sends the
    /// whole buffer (`P` bytes) once to rank `r + 1`, in segments so that the chain
    /// is pipelined, and the broadcast sends `P` bytes down a tree.
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
    /// The micro-batch buffers of the last step (a `Vec<FlatGrads<T>>`), reused by the
    /// next if the store's layout is unchanged: no allocation, no page faults.
    scratch: RefCell<Option<Box<dyn Any>>>,
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
        mut micro_grad: F,
    ) -> Result<(FlatGrads<T>, f64), E>
    where
        T: Float + Equivalence + 'static,
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        let share = self.my_share(batches);
        let mut locals: Vec<FlatGrads<T>> = self
            .scratch
            .borrow_mut()
            .take()
            .and_then(|b| b.downcast::<Vec<FlatGrads<T>>>().ok())
            .map(|b| *b)
            .unwrap_or_default();
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
        let mut total = FlatGrads::zeros_like(store);
        let loss = match self.reduction {
            Reduction::Ordered => {
                let slices: Vec<&[T]> = locals.iter().map(|f| f.as_slice()).collect();
                self.chain_sum(total.as_mut_slice(), &slices, 1);
                let one: Vec<[f64; 1]> = losses.iter().map(|&l| [l]).collect();
                let one: Vec<&[f64]> = one.iter().map(|l| &l[..]).collect();
                let mut loss = [0.0f64];
                self.chain_sum(&mut loss, &one, 2);
                loss[0]
            }
            Reduction::AllReduce => {
                let mut mine = FlatGrads::zeros_like(store);
                for f in &locals {
                    mine.add_slice(f.as_slice());
                }
                self.all_reduce_sum(mine.as_slice(), total.as_mut_slice());
                let mut loss = [0.0f64];
                self.all_reduce_sum(&[losses.iter().sum::<f64>()], &mut loss);
                loss[0]
            }
        };
        *self.scratch.borrow_mut() = Some(Box::new(locals));
        Ok((total, loss))
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
        let (mut sum, loss) = self.gradient_sum(store, batches, micro_grad)?;
        let n = batches.global_batch() as f64;
        sum.scale(T::from_f64(1.0 / n));
        Ok((sum, loss / n))
    }
}

/// `'name' [shape]` per parameter, in store order.
fn describe<T: Float>(store: &ParamStore<T>) -> Vec<String> {
    store
        .iter()
        .map(|(_, name, v)| format!("'{name}' {}", ShapeDisplay(v.shape())))
        .collect()
}
