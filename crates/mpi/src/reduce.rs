//! The two reductions: the ordered chain and MPI's `allreduce`.
//!
//! # What the chain costs
//!
//! With `p` ranks and a gradient buffer of `P` bytes, cut into `k` segments of at
//! most [`SEGMENT`] elements:
//!
//! - bytes sent per rank: `P` to the next rank (ranks `0..p−1`), plus the broadcast
//!   from the last rank (a binomial tree or a pipeline in Open MPI: `P` per sending
//!   rank, `P · ⌈log₂ p⌉` from the root at most);
//! - latency: the chain is pipelined by segment, so the total arrives at the last
//!   rank after about `(p − 1 + k − 1)` segment hops, each `α + (P/k)·β`, then the
//!   broadcast, `⌈log₂ p⌉ (α + P β)` for a tree;
//! - `MPI_Allreduce` as a ring: `2 (p − 1) / p · P` bytes sent per rank, `2 (p − 1)`
//!   messages of `P / p` bytes in sequence.
//!
//! So the chain sends no more bytes per rank than the ring (`P` against `2P (p−1)/p`,
//! plus the broadcast), but its critical path grows with `p` rather than staying
//! near `2 P β`: see `docs/guide/distributed.md` for the numbers measured here.

use crate::DataParallel;
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::traits::*;
use std::ops::AddAssign;
use std::time::Instant;

/// Elements per message of the chain: 256 Ki elements (1 MiB of `f32`), so that a
/// large buffer flows down the chain in a pipeline while a small one is one message.
pub const SEGMENT: usize = 1 << 18;

impl DataParallel<'_> {
    /// Sums, in rank order and within a rank in the order of `local`, every rank's
    /// `local` buffers into `out` (which must be as long as each), starting from
    /// zeros: `out = ((0 + a₀) + a₁) + …` over all ranks' buffers in order. The last
    /// rank then broadcasts the total, so every rank holds it.
    pub(crate) fn chain_sum<T>(&self, out: &mut [T], local: &[&[T]], tag: i32)
    where
        T: Equivalence + Copy + Default + AddAssign,
    {
        let t = Instant::now();
        let (rank, size) = (self.rank, self.size);
        out.iter_mut().for_each(|x| *x = T::default());
        let chunks: Vec<&mut [T]> = out.chunks_mut(SEGMENT).collect();
        mpi::request::scope(|sends| {
            let mut pending = Vec::new();
            for (k, chunk) in chunks.into_iter().enumerate() {
                if rank > 0 {
                    mpi::request::scope(|sc| {
                        let req = self
                            .comm
                            .process_at_rank(rank as i32 - 1)
                            .immediate_receive_into_with_tag(sc, &mut *chunk, tag);
                        self.wait(req, &format!("the running sum from rank {}", rank - 1));
                    });
                }
                let (lo, n) = (k * SEGMENT, chunk.len());
                for g in local {
                    for (a, &b) in chunk.iter_mut().zip(&g[lo..lo + n]) {
                        *a += b;
                    }
                }
                if rank + 1 < size {
                    let done: &[T] = chunk;
                    pending.push(
                        self.comm
                            .process_at_rank(rank as i32 + 1)
                            .immediate_send_with_tag(sends, done, tag),
                    );
                }
            }
            for req in pending {
                self.wait(req, &format!("the running sum's send to rank {}", rank + 1));
            }
        });
        // The total, from the last rank, in the same segments: messages of a few MiB
        // were several times slower per byte than 1 MiB ones here (`pingpong`).
        let chunks: Vec<&mut [T]> = out.chunks_mut(SEGMENT).collect();
        mpi::request::scope(|sc| {
            let root = self.comm.process_at_rank(size as i32 - 1);
            let pending: Vec<_> = chunks
                .into_iter()
                .map(|c| root.immediate_broadcast_into(sc, c))
                .collect();
            for req in pending {
                self.wait(
                    req,
                    &format!("the summed gradients' broadcast from rank {}", size - 1),
                );
            }
        });
        self.comm_time.set(self.comm_time.get() + t.elapsed());
    }

    /// `MPI_Allreduce(MPI_SUM)` of `send` into `out`, with a bounded wait.
    pub(crate) fn all_reduce_sum<T: Equivalence>(&self, send: &[T], out: &mut [T]) {
        let t = Instant::now();
        mpi::request::scope(|sc| {
            let req = self
                .comm
                .immediate_all_reduce_into(sc, send, out, SystemOperation::sum());
            self.wait(req, "the gradients' all-reduce");
        });
        self.comm_time.set(self.comm_time.get() + t.elapsed());
    }
}
