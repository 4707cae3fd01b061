//! The two reductions: the ordered, sharded one and MPI's `allreduce`.
//!
//! # How the ordered reduction works, and what it costs
//!
//! The buffer of `n` elements (`P` bytes) is cut into `p` shards, one per rank
//! ([`shard`]). Two phases, every message of both in flight at once:
//!
//! 1. **Scatter.** Each rank sends every other rank that rank's shard of each of its
//!    micro-batch gradients. The owner of a shard then holds every micro-batch's
//!    values there and adds them in micro-batch order, starting from zeros: for each
//!    element, `((0 + g₀) + g₁) + …`, the additions one process makes with gradient
//!    accumulation, so the bits are its bits.
//! 2. **Gather.** Each owner sends its summed shard to every other rank.
//!
//! Bytes sent per rank: `m · P (p − 1)/p` in the scatter (`m` its micro-batches) and
//! `P (p − 1)/p` in the gather: with one micro-batch per rank, `2P (p − 1)/p`, what a
//! ring all-reduce sends. With `m` micro-batches per rank the scatter carries each of
//! them (a rank after the first cannot add its micro-batches before the ones before
//! it are in), `m + 1` times `P (p − 1)/p` in all. Messages: `(p − 1)(m + 1)` per
//! rank, cut into pieces of at most [`SEGMENT`] elements, all posted together, so
//! the time is about two transfers of `P / p` bytes per peer, `2 (p − 1) (α + P β / p)`
//! when a rank's messages go out one after another.
//!
//! Before this, the ordered reduction was a chain (rank `r` received the running sum
//! from `r − 1`, added, handed it on; the last rank broadcast the total): `2P` bytes
//! through every rank one after the other, a critical path growing with `p`.
//! `docs/guide/distributed.md` has both measured.

use crate::DataParallel;
use descent_tensor::Float;
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::traits::*;
use std::ops::Range;
use std::time::Instant;

/// Elements per message: 256 Ki elements (1 MiB of `f32`). Messages of a few MiB were
/// several times slower per byte than 1 MiB ones here (`pingpong`).
pub const SEGMENT: usize = 1 << 18;

/// Added to a reduction's tag for its gather phase, so that no message of one phase
/// can match a receive of the other.
const GATHER_TAG: i32 = 1 << 12;

/// The elements of a buffer of `n` that rank `q` of `p` owns: contiguous, in rank
/// order, sizes differing by at most one.
pub(crate) fn shard(n: usize, q: usize, p: usize) -> Range<usize> {
    n * q / p..n * (q + 1) / p
}

/// `total = ((0 + terms[0]) + terms[1]) + …`, element by element, then times `scale`
/// if there is one, a block at a time so that the running sum stays in the L1 cache:
/// one pass over each term and one over `total`, where zeroing `total`, adding each
/// term in turn and scaling took a pass over `total` each (W3's shard is larger than
/// this machine's L2). Each element's operations are the same, in the same order.
/// Returns whether every element of the result is finite (checked block by block
/// while in cache, for the sharded step's refusal of a NaN).
fn sum_in_order<T: Float>(total: &mut [T], terms: &[&[T]], scale: Option<T>) -> bool {
    const BLOCK: usize = 2048;
    let mut finite = true;
    for (k, block) in total.chunks_mut(BLOCK).enumerate() {
        block.iter_mut().for_each(|x| *x = T::default());
        for term in terms {
            for (a, &b) in block.iter_mut().zip(&term[k * BLOCK..]) {
                *a += b;
            }
        }
        if let Some(s) = scale {
            block.iter_mut().for_each(|x| *x *= s);
        }
        finite &= block.iter().fold(true, |ok, x| ok & x.is_finite());
    }
    finite
}

impl DataParallel<'_> {
    /// Sums, in micro-batch order, every rank's `local` buffers into `out` (as long as
    /// each), starting from zeros: for each element, `((0 + a₀) + a₁) + …` over all
    /// ranks' buffers, rank by rank, and within a rank in the order of `local`.
    /// `counts[q]` is how many buffers rank `q` contributes (`counts[rank]` is
    /// `local.len()`). Every rank ends with the total, multiplied by `scale` if
    /// there is one (each element after its sum, as a separate pass would). `received`
    /// is scratch space.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ordered_sum<T>(
        &self,
        out: &mut [T],
        local: &[&[T]],
        counts: &[usize],
        scale: Option<T>,
        received: &mut Vec<T>,
        tag: i32,
    ) where
        T: Float + Equivalence,
    {
        let t = Instant::now();
        let mine = shard(out.len(), self.rank, self.size);
        let n = out.len();
        self.scatter_sum(&mut out[mine], n, local, counts, scale, received, tag);
        self.gather_shards(out, tag + GATHER_TAG);
        self.comm_time.set(self.comm_time.get() + t.elapsed());
    }

    /// The scatter half of [`DataParallel::ordered_sum`]: this rank's shard of the
    /// ordered sum (times `scale`) of buffers of `n` elements into `own`. The other
    /// ranks' shards are not sent back. Returns whether `own` is all finite.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scatter_sum<T>(
        &self,
        own: &mut [T],
        n: usize,
        local: &[&[T]],
        counts: &[usize],
        scale: Option<T>,
        received: &mut Vec<T>,
        tag: i32,
    ) -> bool
    where
        T: Float + Equivalence,
    {
        let (rank, size) = (self.rank, self.size);
        assert_eq!(counts.len(), size, "one count per rank");
        assert_eq!(counts[rank], local.len(), "this rank's count");
        let mine = shard(n, rank, size);
        let m = mine.len();
        assert_eq!(own.len(), m, "this rank's shard");
        // Every other rank's micro-batches over this rank's shard, rank by rank.
        let others: usize = counts.iter().sum::<usize>() - local.len();
        received.resize(m * others, T::default());
        mpi::request::scope(|sc| {
            let mut receives = Vec::new();
            let mut slots = received.chunks_mut(m.max(1));
            for (q, &count) in counts.iter().enumerate() {
                if q == rank || m == 0 {
                    continue;
                }
                let from = self.comm.process_at_rank(q as i32);
                for slot in slots.by_ref().take(count) {
                    for piece in slot.chunks_mut(SEGMENT) {
                        receives.push((q, from.immediate_receive_into_with_tag(sc, piece, tag)));
                    }
                }
            }
            let mut sends = Vec::new();
            for q in (0..size).filter(|&q| q != rank) {
                let theirs = shard(n, q, size);
                if theirs.is_empty() {
                    continue;
                }
                let to = self.comm.process_at_rank(q as i32);
                for g in local {
                    for piece in g[theirs.clone()].chunks(SEGMENT) {
                        sends.push((q, to.immediate_send_with_tag(sc, piece, tag)));
                    }
                }
            }
            for (q, req) in receives {
                self.wait(req, &format!("rank {q}'s gradients for this rank's shard"));
            }
            for (q, req) in sends {
                self.wait(req, &format!("the gradients' send to rank {q}"));
            }
        });
        // The terms of the sum over this shard, in micro-batch order.
        let mut theirs = received.chunks(m.max(1));
        let mut terms: Vec<&[T]> = Vec::with_capacity(counts.iter().sum());
        for (q, &count) in counts.iter().enumerate() {
            if q == rank {
                terms.extend(local.iter().map(|g| &g[mine.clone()]));
            } else if m > 0 {
                terms.extend(theirs.by_ref().take(count));
            }
        }
        sum_in_order(own, &terms, scale)
    }

    /// Gives every rank every owner's shard of `out` ([`shard`]): this rank's is sent
    /// to all others, theirs received into place.
    fn gather_shards<T: Equivalence>(&self, out: &mut [T], tag: i32) {
        let (rank, size, n) = (self.rank, self.size, out.len());
        let mut shards = Vec::with_capacity(size);
        let mut rest = out;
        for q in 0..size {
            let (head, tail) = rest.split_at_mut(shard(n, q, size).len());
            shards.push(head);
            rest = tail;
        }
        let own: &[T] = std::mem::take::<&mut [T]>(&mut shards[rank]);
        mpi::request::scope(|sc| {
            let mut receives = Vec::new();
            for (q, theirs) in shards.into_iter().enumerate() {
                let from = self.comm.process_at_rank(q as i32);
                for piece in theirs.chunks_mut(SEGMENT) {
                    receives.push((q, from.immediate_receive_into_with_tag(sc, piece, tag)));
                }
            }
            let mut sends = Vec::new();
            for q in (0..size).filter(|&q| q != rank) {
                let to = self.comm.process_at_rank(q as i32);
                for piece in own.chunks(SEGMENT) {
                    sends.push((q, to.immediate_send_with_tag(sc, piece, tag)));
                }
            }
            for (q, req) in receives {
                self.wait(req, &format!("rank {q}'s summed shard"));
            }
            for (q, req) in sends {
                self.wait(req, &format!("the summed shard's send to rank {q}"));
            }
        });
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
