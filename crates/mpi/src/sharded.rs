//! [`ShardedOptimizer`]: the optimiser's step and state divided among the ranks
//! (ZeRO's first stage), with the bits of one process.
//!
//! Every rank of a plain data-parallel step takes the whole optimiser step on the
//! whole summed gradient. Sharded, the summed gradient is never assembled: the owner
//! of each shard of the flat buffer ([`crate::reduce`]) gets that shard's mean, steps
//! only those elements with its own part of the optimiser's state, and sends the new
//! parameter values to every other rank. The bytes are the same as the plain step's
//! (the gather carries parameters instead of gradients); the optimiser's work and
//! memory per rank are divided by the rank count.
//!
//! It is exact because descent's optimisers update each element from that element's
//! gradient, its own state and per-step numbers alone: an element stepped on its
//! owner is the element one process steps. An optimiser that looks across elements
//! (a per-parameter norm, as LARS or LAMB take) would not be, and is not offered here.

use crate::reduce::{SEGMENT, shard};
use crate::{DataParallel, Error};
use descent_optim::{FlatGrads, MicroBatches, Optimizer, OptimizerState};
use descent_tape::{ParamGradients, ParamId, ParamStore};
use descent_tensor::{Float, Tensor};
use mpi::datatype::Equivalence;
use mpi::traits::*;
use std::borrow::Cow;
use std::ops::Range;
use std::time::Instant;

/// The part of one trainable parameter that falls in one rank's shard.
#[derive(Clone, Debug)]
struct Piece {
    /// The parameter, in the full store.
    param: ParamId,
    /// The piece's elements, row-major, within the parameter.
    within: Range<usize>,
}

/// An optimiser whose step and state are divided among the ranks: each rank steps
/// only the elements of its shard of the flat parameter buffer and then sends them
/// to the others. Same bits as one process with gradient accumulation and the same
/// optimiser, for any rank count; a rank's optimiser state is `1/p` of the whole.
///
/// It always sums in micro-batch order (the [`DataParallel`]'s
/// [`Reduction`](crate::Reduction) does not apply).
///
/// Build it after [`DataParallel::broadcast_params`] (or a checkpoint's load): it
/// keeps this rank's shard of the parameters as the master copy that its optimiser
/// steps, so a change to the store's values made behind its back is overwritten by
/// the next [`ShardedOptimizer::step`]; rebuild it then.
///
/// ```no_run
/// use descent_mpi::{DataParallel, ShardedOptimizer};
/// use descent_optim::{MicroBatches, Sgd};
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
///
/// let universe = mpi::initialize().unwrap();
/// let world = universe.world();
/// let dp = DataParallel::new(&world);
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0, -2.0, 3.0]));
/// dp.broadcast_params(&mut store).unwrap();
/// let mut opt = ShardedOptimizer::new(&dp, &store, Sgd::new(0.1).momentum(0.9)).unwrap();
/// for _ in 0..3 {
///     // Σ ‖w‖² over 4 samples in micro-batches of 2.
///     let loss = opt
///         .gradient_mean(&dp, &store, MicroBatches::new(4, 2).unwrap(), |r| {
///             let (v, n) = (store.get(w).unwrap().clone(), r.len() as f64);
///             let g = v.data().iter().map(|x| 2.0 * x * n).collect::<Vec<_>>();
///             let l = v.data().iter().map(|x| x * x * n).sum::<f64>();
///             Ok::<_, descent_mpi::Error>((ParamGrads::from_iter([(w, Tensor::new(&[3], g).unwrap())]), l))
///         })
///         .unwrap();
///     opt.step(&dp, &mut store).unwrap();
///     if dp.rank() == 0 {
///         println!("loss {loss}");
///     }
/// }
/// ```
pub struct ShardedOptimizer<T: Float, O> {
    inner: O,
    /// This rank's pieces, as 1-d parameters in flat order: what `inner` steps.
    shadow: ParamStore<T>,
    /// Every rank's pieces, rank by rank, in flat order.
    pieces: Vec<Vec<Piece>>,
    /// This rank's shard of the mean gradient: `shadow`'s layout, contiguous.
    grads: FlatGrads<T>,
    /// Elements of the flat buffer (every trainable parameter).
    len: usize,
    rank: usize,
    /// How many ranks' shards of the last mean held a NaN or an infinity.
    non_finite_shards: f64,
}

impl<T: Float + Equivalence + 'static, O: Optimizer<T>> ShardedOptimizer<T, O> {
    /// Divides `inner` among the ranks of `dp` for the trainable parameters of
    /// `store`, whose values this rank's shard starts from.
    ///
    /// # Errors
    /// [`Error::Sharding`] when `inner` has parameter groups (they name parameters
    /// of the full store), or holds state already (load it through
    /// [`crate::checkpoint::load_sharded`] instead).
    pub fn new(dp: &DataParallel<'_>, store: &ParamStore<T>, inner: O) -> Result<Self, Error> {
        if inner.group_count() != 1 {
            return Err(Error::Sharding(format!(
                "{} has {} parameter groups; a sharded optimiser takes one",
                inner.name(),
                inner.group_count()
            )));
        }
        if !inner.state(store).is_empty() {
            return Err(Error::Sharding(format!(
                "{} holds state already; load a checkpoint with checkpoint::load_sharded",
                inner.name()
            )));
        }
        let layout: Vec<(ParamId, usize)> = store
            .iter()
            .filter(|(id, _, _)| store.requires_grad(*id))
            .map(|(id, _, v)| (id, v.len()))
            .collect();
        let len = layout.iter().map(|l| l.1).sum();
        let pieces: Vec<Vec<Piece>> = (0..dp.size())
            .map(|q| pieces_of(&layout, shard(len, q, dp.size())))
            .collect();
        let mut shadow = ParamStore::new();
        for p in &pieces[dp.rank()] {
            let name = store.name(p.param).expect("a parameter of the store");
            let values = store.get(p.param).expect("a parameter of the store").data()
                [p.within.clone()]
            .to_vec();
            let n = values.len();
            shadow.insert(
                format!("{name}[{}..{}]", p.within.start, p.within.end),
                Tensor::new(&[n], values).expect("a 1-d piece"),
            );
        }
        let grads = FlatGrads::zeros_like(&shadow);
        Ok(Self {
            inner,
            shadow,
            pieces,
            grads,
            len,
            rank: dp.rank(),
            non_finite_shards: 0.0,
        })
    }

    /// The optimiser this wraps (its hyper-parameters; its state covers this rank's
    /// shard only).
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The optimiser this wraps, to change its learning rate or other settings; every
    /// rank must make the same change.
    pub fn inner_mut(&mut self) -> &mut O {
        &mut self.inner
    }

    /// [`DataParallel::gradient_mean`] but this rank keeps only its shard of the mean,
    /// for [`ShardedOptimizer::step`]: the other shards are never sent back. Returns
    /// the mean loss (on every rank).
    ///
    /// # Errors
    /// As [`DataParallel::gradient_sum`]. The store must have the trainable
    /// parameters (names, shapes, order) it had when this was built.
    pub fn gradient_mean<G, E, F>(
        &mut self,
        dp: &DataParallel<'_>,
        store: &ParamStore<T>,
        batches: MicroBatches,
        micro_grad: F,
    ) -> Result<f64, E>
    where
        G: ParamGradients<T>,
        E: From<Error>,
        F: FnMut(Range<usize>) -> Result<(G, f64), E>,
    {
        if store.num_trainable_elements() != self.len {
            return Err(E::from(Error::Sharding(format!(
                "the store has {} trainable elements, {} when the sharded optimiser was built",
                store.num_trainable_elements(),
                self.len
            ))));
        }
        let (mut scratch, losses) = dp.local_gradients(store, batches, micro_grad)?;
        let t = Instant::now();
        let counts = dp.counts(batches);
        let slices: Vec<&[T]> = scratch.locals.iter().map(|f| f.as_slice()).collect();
        let scale = T::from_f64(1.0 / batches.global_batch() as f64);
        let finite = dp.scatter_sum(
            self.grads.as_mut_slice(),
            self.len,
            &slices,
            &counts,
            Some(scale),
            &mut scratch.received,
            1,
        );
        dp.comm_time.set(dp.comm_time.get() + t.elapsed());
        // Whether any rank's shard is not finite travels with the loss: the step
        // needs every rank to agree, and this costs no message of its own.
        let (loss, bad) =
            dp.ordered_loss_and_flags(&losses, &counts, if finite { 0.0 } else { 1.0 });
        self.non_finite_shards = bad;
        dp.keep_scratch(scratch);
        Ok(loss / batches.global_batch() as f64)
    }

    /// Steps this rank's shard with the mean of the last
    /// [`ShardedOptimizer::gradient_mean`], then gives every rank every shard's new
    /// values, in `store`.
    ///
    /// # Errors
    /// The optimiser's error (a bad setting), on every rank alike, or
    /// [`Error::NonFiniteGradient`] on every rank when any rank's shard of the
    /// gradient holds a NaN or an infinity; nothing is changed then, on any rank.
    pub fn step(&mut self, dp: &DataParallel<'_>, store: &mut ParamStore<T>) -> Result<(), Error> {
        // Every rank must refuse the step together, or the ranks' parameters part:
        // `gradient_mean` counted the bad shards on every rank.
        if self.non_finite_shards > 0.0 {
            let bad = descent_tape::non_finite_at(self.grads.as_slice());
            let worst = dp.min_over_ranks(bad.map_or(u64::MAX, |_| self.rank as u64));
            if worst >= dp.size() as u64 {
                return Err(Error::Sharding(
                    "a rank counted a non-finite gradient that no rank then found".into(),
                ));
            }
            let worst = worst as usize;
            let mine = match bad {
                Some((i, v)) if worst == self.rank => self.describe(store, i, v),
                _ => String::new(),
            };
            let what = dp.broadcast_bytes(worst, mine.as_bytes());
            return Err(Error::NonFiniteGradient {
                rank: worst,
                what: String::from_utf8_lossy(&what).into_owned(),
            });
        }
        self.inner.step(&mut self.shadow, &self.grads)?;
        let t = Instant::now();
        let ids: Vec<ParamId> = self.shadow.ids().collect();
        for (p, id) in self.pieces[self.rank].iter().zip(&ids) {
            let v = self.shadow.get(*id).expect("a shadow piece");
            store
                .get_mut(p.param)
                .expect("a parameter of the store")
                .data_mut()[p.within.clone()]
            .copy_from_slice(v.data());
        }
        self.gather(dp, store, &ids);
        dp.comm_time.set(dp.comm_time.get() + t.elapsed());
        Ok(())
    }

    /// `'name' element i (of the piece [a..b]) is v`, for an error.
    fn describe(&self, store: &ParamStore<T>, i: usize, v: f64) -> String {
        let mut at = i;
        for p in &self.pieces[self.rank] {
            if at < p.within.len() {
                let name = store.name(p.param).unwrap_or("?");
                return format!("'{name}' element {} is {v}", p.within.start + at);
            }
            at -= p.within.len();
        }
        format!("element {i} of the shard is {v}")
    }

    /// Every other rank's pieces received into `store`, this rank's sent from the
    /// shadow copy. All sends are posted first; the receives then go parameter by
    /// parameter (each borrowed mutably once), in flat order, which is the order each
    /// sender posts its pieces in.
    fn gather(&self, dp: &DataParallel<'_>, store: &mut ParamStore<T>, ids: &[ParamId]) {
        const TAG: i32 = 3;
        let own: Vec<&[T]> = ids
            .iter()
            .map(|id| self.shadow.get(*id).expect("a shadow piece").data())
            .collect();
        let mut incoming: Vec<(usize, &Piece)> = Vec::new();
        for (q, pieces) in self.pieces.iter().enumerate() {
            if q != self.rank {
                incoming.extend(pieces.iter().map(|p| (q, p)));
            }
        }
        mpi::request::scope(|outer| {
            let mut sends = Vec::new();
            for q in (0..dp.size()).filter(|&q| q != self.rank) {
                let to = dp.comm.process_at_rank(q as i32);
                for values in &own {
                    for piece in values.chunks(SEGMENT) {
                        sends.push((q, to.immediate_send_with_tag(outer, piece, TAG)));
                    }
                }
            }
            for group in incoming.chunk_by(|a, b| a.1.param == b.1.param) {
                let data = store
                    .get_mut(group[0].1.param)
                    .expect("a parameter of the store")
                    .data_mut();
                mpi::request::scope(|sc| {
                    let mut receives = Vec::new();
                    let (mut rest, mut at) = (data, 0);
                    for &(q, p) in group {
                        let (_, tail) = rest.split_at_mut(p.within.start - at);
                        let (head, tail) = tail.split_at_mut(p.within.len());
                        (rest, at) = (tail, p.within.end);
                        let from = dp.comm.process_at_rank(q as i32);
                        for piece in head.chunks_mut(SEGMENT) {
                            receives
                                .push((q, from.immediate_receive_into_with_tag(sc, piece, TAG)));
                        }
                    }
                    for (q, req) in receives {
                        dp.wait(req, &format!("rank {q}'s stepped parameters"));
                    }
                });
            }
            for (q, req) in sends {
                dp.wait(req, &format!("the stepped parameters' send to rank {q}"));
            }
        });
    }

    /// The whole optimiser state, as one process stepping the whole store would
    /// export it: every rank's part, assembled. Every rank must call it (it is a
    /// collective); every rank gets the whole.
    ///
    /// # Errors
    /// [`Error::Sharding`] if the ranks' parts do not fit together (a piece without
    /// a slot its parameter's other pieces have, or per-parameter numbers that
    /// differ between pieces).
    pub fn state(
        &self,
        dp: &DataParallel<'_>,
        store: &ParamStore<T>,
    ) -> Result<OptimizerState<T>, Error> {
        let mine = encode(
            &self.inner.state(&self.shadow),
            &self.shadow.ids().collect::<Vec<_>>(),
        );
        let parts: Vec<Part> = (0..dp.size())
            .map(|q| decode(&dp.broadcast_bytes(q, if q == self.rank { &mine } else { &[] })))
            .collect::<Result<_, _>>()?;
        let mut out = OptimizerState {
            counters: parts[0].counters.clone(),
            ..Default::default()
        };
        // (rank, piece index) of every piece, parameter by parameter in flat order.
        let all: Vec<(usize, usize, &Piece)> = self
            .pieces
            .iter()
            .enumerate()
            .flat_map(|(q, ps)| ps.iter().enumerate().map(move |(k, p)| (q, k, p)))
            .collect();
        for group in all.chunk_by(|a, b| a.2.param == b.2.param) {
            let param = group[0].2.param;
            let name = store.name(param).unwrap_or("?").to_string();
            let shape = store
                .get(param)
                .expect("a parameter of the store")
                .shape()
                .to_vec();
            let (q0, k0, _) = group[0];
            for (_, slot, _) in parts[q0].buffers.iter().filter(|b| b.0 == k0) {
                let mut values = Vec::new();
                for &(q, k, _) in group {
                    let piece = parts[q].buffers.iter().find(|b| b.0 == k && &b.1 == slot);
                    let piece = piece.ok_or_else(|| {
                        Error::Sharding(format!("'{name}': rank {q}'s piece has no '{slot}'"))
                    })?;
                    values.extend(piece.2.iter().map(|&v| T::from_f64(v)));
                }
                let t = Tensor::new(&shape, values)
                    .map_err(|e| Error::Sharding(format!("'{name}' '{slot}': {e}")))?;
                out.buffers.push((param, Cow::Owned(slot.clone()), t));
            }
            for (_, slot, v) in parts[q0].scalars.iter().filter(|s| s.0 == k0) {
                for &(q, k, _) in group {
                    let same = parts[q]
                        .scalars
                        .iter()
                        .any(|s| s.0 == k && &s.1 == slot && s.2.to_bits() == v.to_bits());
                    if !same {
                        return Err(Error::Sharding(format!(
                            "'{name}' '{slot}': rank {q}'s piece has another value than rank {q0}'s ({v})"
                        )));
                    }
                }
                out.scalars.push((param, Cow::Owned(slot.clone()), *v));
            }
        }
        Ok(out)
    }

    /// Loads a whole optimiser state (from [`ShardedOptimizer::state`], or a
    /// one-process optimiser's [`Optimizer::state`] for the same store): this rank
    /// keeps its shard of it, and takes its shard's values from `store` afresh. Every
    /// rank must load the same state and store.
    ///
    /// # Errors
    /// The optimiser's own error when the state does not fit it (a missing slot).
    pub fn load_state(
        &mut self,
        store: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let ids: Vec<ParamId> = self.shadow.ids().collect();
        let mut mine = OptimizerState {
            counters: state.counters.clone(),
            ..Default::default()
        };
        for (p, &id) in self.pieces[self.rank].iter().zip(&ids) {
            for (_, slot, t) in state.buffers.iter().filter(|b| b.0 == p.param) {
                let v = t.data()[p.within.clone()].to_vec();
                let n = v.len();
                let t = Tensor::new(&[n], v).expect("a 1-d piece");
                mine.buffers.push((id, slot.clone(), t));
            }
            for (_, slot, v) in state.scalars.iter().filter(|s| s.0 == p.param) {
                mine.scalars.push((id, slot.clone(), *v));
            }
        }
        self.inner.load_state(&self.shadow, mine)?;
        for (p, &id) in self.pieces[self.rank].iter().zip(&ids) {
            let v = &store.get(p.param).expect("a parameter of the store").data()[p.within.clone()];
            self.shadow
                .get_mut(id)
                .expect("a shadow piece")
                .data_mut()
                .copy_from_slice(v);
        }
        Ok(())
    }
}

/// One rank's part of the state, by piece index.
struct Part {
    buffers: Vec<(usize, String, Vec<f64>)>,
    scalars: Vec<(usize, String, f64)>,
    counters: Vec<(Cow<'static, str>, u64)>,
}

/// A rank's state as bytes: a text header (one line per buffer, scalar and counter;
/// slot and counter names hold no spaces), then every buffer's values as `f64`
/// (exact for `f32` and `f64`).
fn encode<T: Float>(state: &OptimizerState<T>, ids: &[ParamId]) -> Vec<u8> {
    let index = |id: &ParamId| ids.iter().position(|i| i == id).expect("a shadow piece");
    let mut head = String::new();
    let mut values = Vec::new();
    for (id, slot, t) in &state.buffers {
        head += &format!("B {} {slot} {}\n", index(id), t.len());
        values.extend(t.data().iter().flat_map(|v| v.as_f64().to_le_bytes()));
    }
    for (id, slot, v) in &state.scalars {
        head += &format!("S {} {slot} {}\n", index(id), v.to_bits());
    }
    for (name, v) in &state.counters {
        head += &format!("C {name} {v}\n");
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend(head.as_bytes());
    out.extend(values);
    out
}

fn decode(bytes: &[u8]) -> Result<Part, Error> {
    let bad = || Error::Sharding("a rank's optimiser state arrived malformed".into());
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    ) as usize;
    let head = std::str::from_utf8(bytes.get(8..8 + n).ok_or_else(bad)?).map_err(|_| bad())?;
    let mut values = bytes[8 + n..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")));
    let mut part = Part {
        buffers: Vec::new(),
        scalars: Vec::new(),
        counters: Vec::new(),
    };
    for line in head.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["B", k, slot, len] => {
                let len: usize = len.parse().map_err(|_| bad())?;
                let v: Vec<f64> = values.by_ref().take(len).collect();
                if v.len() != len {
                    return Err(bad());
                }
                part.buffers
                    .push((k.parse().map_err(|_| bad())?, slot.to_string(), v));
            }
            ["S", k, slot, bits] => part.scalars.push((
                k.parse().map_err(|_| bad())?,
                slot.to_string(),
                f64::from_bits(bits.parse().map_err(|_| bad())?),
            )),
            ["C", name, v] => part
                .counters
                .push((Cow::Owned(name.to_string()), v.parse().map_err(|_| bad())?)),
            _ => return Err(bad()),
        }
    }
    Ok(part)
}

/// The pieces of the flat buffer's `range` (every trainable parameter, `layout`'s
/// `(id, len)` in order), parameter by parameter.
fn pieces_of(layout: &[(ParamId, usize)], range: Range<usize>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut offset = 0;
    for &(param, len) in layout {
        let (lo, hi) = (range.start.max(offset), range.end.min(offset + len));
        if lo < hi {
            out.push(Piece {
                param,
                within: lo - offset..hi - offset,
            });
        }
        offset += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_parameters_at_shard_edges() {
        let mut store = ParamStore::<f32>::new();
        let a = store.insert("a", Tensor::<f32>::zeros(&[5]));
        let b = store.insert("b", Tensor::<f32>::zeros(&[3]));
        let c = store.insert("c", Tensor::<f32>::zeros(&[2, 2]));
        let layout = [(a, 5), (b, 3), (c, 4)];
        let cut = |q| -> Vec<(ParamId, Range<usize>)> {
            pieces_of(&layout, shard(12, q, 3))
                .into_iter()
                .map(|p| (p.param, p.within))
                .collect()
        };
        assert_eq!(cut(0), vec![(a, 0..4)]);
        assert_eq!(cut(1), vec![(a, 4..5), (b, 0..3)]);
        assert_eq!(cut(2), vec![(c, 0..4)]);
        // More ranks than elements: some shards are empty.
        assert!(pieces_of(&layout[1..2], shard(3, 0, 4)).is_empty());
    }

    #[test]
    fn a_ranks_state_survives_its_bytes() {
        let mut shadow = ParamStore::<f32>::new();
        let p0 = shadow.insert("w[0..2]", Tensor::<f32>::zeros(&[2]));
        let p1 = shadow.insert("b[0..1]", Tensor::<f32>::zeros(&[1]));
        let state = OptimizerState {
            buffers: vec![
                (p0, Cow::Borrowed("exp_avg"), Tensor::from([1.5f32, -0.0])),
                (
                    p1,
                    Cow::Borrowed("exp_avg"),
                    Tensor::from([f32::MIN_POSITIVE]),
                ),
            ],
            scalars: vec![(p1, Cow::Borrowed("step"), 3.0)],
            counters: vec![(Cow::Borrowed("schedule_steps"), 7)],
        };
        let part = decode(&encode(&state, &[p0, p1])).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(part.buffers.len(), 2);
        assert_eq!(
            (part.buffers[0].0, part.buffers[0].1.as_str()),
            (0, "exp_avg")
        );
        assert_eq!(bits(&part.buffers[0].2), bits(&[1.5, -0.0]));
        assert_eq!(
            bits(&part.buffers[1].2),
            bits(&[f64::from(f32::MIN_POSITIVE)])
        );
        assert_eq!(part.scalars, vec![(1, "step".to_string(), 3.0)]);
        assert_eq!(part.counters, vec![(Cow::Borrowed("schedule_steps"), 7)]);
        assert!(decode(&[1, 2, 3]).is_err());
    }
}
