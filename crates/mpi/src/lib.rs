//! # descent-mpi
//!
//! Data-parallel training across processes and machines on MPI ([rsmpi] over Open
//! MPI), with **the same bits as one process**: the parameters after any number of
//! steps are those of one process doing gradient accumulation
//! ([`descent_optim::accumulate`]), for any number of processes (ranks) and threads.
//!
//! - Start-up, [`DataParallel::broadcast_params`]: every rank's parameter names and
//!   shapes are checked against rank 0's (an error names the first mismatch, its rank
//!   and its shape), then rank 0's values are broadcast.
//! - A step, [`DataParallel::gradient_mean`]: each global batch is cut into fixed
//!   micro-batches ([`descent_optim::MicroBatches`]); each rank takes a contiguous
//!   share and computes those micro-batches' gradients (summed over their samples);
//!   the shares are combined **in micro-batch order** ([`Reduction::Ordered`]): the
//!   flat buffer is cut into one shard per rank, every rank sends each shard's owner
//!   its micro-batches' values there, the owner adds them all in micro-batch order
//!   and sends the summed shard to every rank. Every addition is the one one process
//!   makes, so every bit is, and with one micro-batch per rank it sends what a ring
//!   all-reduce sends. The sum is then scaled by `1 / global_batch` once, and every
//!   rank takes the same optimiser step. [`Reduction::AllReduce`] is MPI's own
//!   `MPI_Allreduce` instead: fewer bytes when ranks hold several micro-batches each,
//!   but its order of additions depends on the rank count and on Open MPI's
//!   algorithm choice, so it is **not bit-stable**.
//! - Sharded ([`ShardedOptimizer`], ZeRO's first stage): the mean gradient is not
//!   assembled; each rank steps only its shard of the parameters, with only its shard
//!   of the optimiser's state, and sends the new values to the others. Same bits,
//!   same bytes sent, the optimiser's work and memory divided by the rank count;
//!   its checkpoints are the plain step's, byte for byte.
//! - DP-SGD ([`noisy_mean`]): per-sample clipping inside each micro-batch on its
//!   rank, the noise drawn once from a stream seeded by the step that every rank
//!   shares, in parameter order.
//! - Checkpoints ([`checkpoint`]): written by rank 0 only, atomically (descent-nn's
//!   checkpoint module, with the optimiser's state and the position in the data), read
//!   by rank 0 and broadcast, so a run resumes on any number of ranks, bit for bit.
//! - Faults: every wait is bounded ([`DataParallel::with_timeout`]): a request not
//!   done by its deadline ends the whole job with `MPI_Abort` and a message naming
//!   the rank and what it waited for. A rank that dies is also noticed by `mpirun`,
//!   which ends the job.
//!
//! The crate is outside the default workspace (Open MPI and libclang are needed to
//! build it); `crates/mpi/run_tests.sh` builds and runs its checks under `mpirun`
//! for 1 to 4 ranks. See `docs/guide/distributed.md`.
//!
//! ```no_run
//! use descent_mpi::DataParallel;
//! use descent_optim::{MicroBatches, Optimizer, Sgd};
//! use descent_tape::{ParamGrads, ParamStore};
//! use descent_tensor::Tensor;
//!
//! let universe = mpi::initialize().unwrap();
//! let world = universe.world();
//! let mut dp = DataParallel::new(&world);
//! let mut store = ParamStore::<f32>::new();
//! let w = store.insert("w", Tensor::from([0.0f32]));
//! dp.broadcast_params(&mut store).unwrap();
//! let xs: Vec<f32> = (0..10).map(|i| i as f32).collect();
//! let mut sgd = Sgd::new(0.01);
//! for _ in 0..5 {
//!     // d/dw Σ (w − x)² over each micro-batch's samples.
//!     let (mean, loss) = dp
//!         .gradient_mean(&store, MicroBatches::new(10, 3).unwrap(), |r| {
//!             let w0 = store.get(w).unwrap().data()[0];
//!             let g: f32 = xs[r.clone()].iter().map(|x| 2.0 * (w0 - x)).sum();
//!             let l: f64 = xs[r].iter().map(|x| f64::from((w0 - x) * (w0 - x))).sum();
//!             Ok::<_, descent_mpi::Error>((ParamGrads::from_iter([(w, Tensor::from([g]))]), l))
//!         })
//!         .unwrap();
//!     sgd.step(&mut store, &mean).unwrap();
//!     if dp.rank() == 0 {
//!         println!("loss {loss}");
//!     }
//! }
//! ```
//!
//! [rsmpi]: https://github.com/rsmpi/rsmpi
#![warn(missing_docs)]

pub mod checkpoint;
mod dist;
mod error;
mod noise;
mod reduce;
mod sharded;

pub use dist::{DataParallel, EXIT_PEER_LOST, Reduction};
pub use error::Error;
pub use noise::noisy_mean;
pub use sharded::ShardedOptimizer;
