//! Gradients by parameter: the view a training step reads ([`ParamGradients`]), and
//! owned gradients for accumulating or building by hand ([`ParamGrads`]).

use crate::ParamId;
use descent_tensor::{Float, Tensor, View};
use std::collections::HashMap;

/// Gradients of parameters in a fixed order: what optimisers and clipping read (and
/// clipping rescales in place). A training step borrows whatever holds the gradients
/// and copies nothing:
///
/// - `descent_backprop::Gradients`, the store a backward walk fills: its entries are
///   the parameters bound on the tape, in binding order (zeros for a bound parameter no
///   gradient reached);
/// - [`ParamGrads`]: owned gradients, summed over micro-batches or built by hand.
///
/// Entries are read by position, so a step over `n` parameters does `n` O(1) reads.
///
/// ```
/// use descent_tape::{ParamGradients, ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([3.0, 4.0]));
/// let grads: ParamGrads<f64> = [(w, Tensor::from([0.5, 0.5]))].into_iter().collect();
/// let view: &dyn ParamGradients<f64> = &grads;
/// assert_eq!(view.count(), 1);
/// assert_eq!(view.entry(0).0, w);
/// assert_eq!(view.entry(0).1.data(), &[0.5, 0.5]);
/// ```
pub trait ParamGradients<T: Float> {
    /// How many parameters have an entry.
    fn count(&self) -> usize;

    /// The `i`th parameter and its gradient, `i < count()`.
    fn entry(&self, i: usize) -> (ParamId, View<'_, T>);

    /// The `i`th gradient's elements, mutably, for clipping in place. `None` when the
    /// entry has no buffer of its own and reads as zeros (a bound parameter no
    /// gradient reached): every clipping leaves zeros as they are.
    fn entry_mut(&mut self, i: usize) -> Option<&mut [T]>;

    /// The L2 norm of all the gradients together, as the norm of the per-parameter
    /// norms in entry order ([`crate::norm::global_norm`]).
    fn global_norm(&self) -> f64 {
        crate::norm::norm_of_norms(
            (0..self.count()).map(|i| crate::norm::l2_norm(self.entry(i).1.data())),
        )
    }

    /// The position of the first entry holding a NaN or infinite element, and that
    /// element's flat index and value.
    fn first_non_finite(&self) -> Option<(usize, usize, f64)> {
        (0..self.count()).find_map(|i| {
            let (_, g) = self.entry(i);
            non_finite_at(g.data()).map(|(k, v)| (i, k, v))
        })
    }
}

/// The first element of `x` that is NaN or infinite, with its index and value. A pass at the
/// speed of memory: lanes of `x · 0` (zero for a finite element, NaN otherwise) are
/// summed in blocks, and only a block whose sum is not zero is searched.
///
/// ```
/// let x = [1.0f32, 2.0, f32::NAN, f32::INFINITY];
/// assert_eq!(descent_tape::non_finite_at(&x).map(|(i, _)| i), Some(2));
/// assert_eq!(descent_tape::non_finite_at(&[1.0f64, 2.0]), None);
/// ```
pub fn non_finite_at<T: Float>(x: &[T]) -> Option<(usize, f64)> {
    use rayon::prelude::*;
    // A large gradient is read on every thread of the pool: one thread alone does not
    // reach the memory's bandwidth here (measured in `benches/step.rs`). The first
    // non-finite element is found whichever thread reads it.
    const PARALLEL_LEN: usize = 1 << 17;
    const PIECE: usize = 1 << 15;
    if x.len() >= PARALLEL_LEN && rayon::current_num_threads() > 1 {
        return x
            .par_chunks(PIECE)
            .enumerate()
            .find_map_first(|(i, piece)| non_finite_in(piece).map(|(k, v)| (i * PIECE + k, v)));
    }
    non_finite_in(x)
}

/// [`non_finite_at`] on the calling thread.
fn non_finite_in<T: Float>(x: &[T]) -> Option<(usize, f64)> {
    // One dispatch to the vector instructions for the whole slice, and four
    // independent sums of 16 lanes: with one sum a block of 256 at a time, each add
    // waited for the last and each block paid the dispatch, and the scan ran at about
    // 10 GB/s from cache (W3's 535k-parameter check took 0.2 ms, as long as the
    // update after it).
    const BLOCK: usize = 1024;
    let bad = descent_tensor::vectorized(
        #[inline(always)]
        || {
            for (b, block) in x.chunks(BLOCK).enumerate() {
                let mut acc = [[T::zero(); 16]; 4];
                let mut quads = block.chunks_exact(64);
                for c in &mut quads {
                    for (j, sums) in acc.iter_mut().enumerate() {
                        for (k, sum) in sums.iter_mut().enumerate() {
                            *sum += c[16 * j + k] * T::zero();
                        }
                    }
                }
                for (k, &v) in quads.remainder().iter().enumerate() {
                    acc[0][k % 16] += v * T::zero();
                }
                if acc.iter().flatten().any(|a| *a != T::zero()) {
                    return Some(b);
                }
            }
            None
        },
    )?;
    let start = bad * BLOCK;
    let (k, v) = x[start..]
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())?;
    Some((start + k, v.as_f64()))
}

/// A position by [`ParamId`], O(1): a hash map from the whole id (key, version and
/// store), so ids of two stores whose slotmap keys share a slot stay apart (a
/// `SecondaryMap` keyed by the key alone would keep only the newer version). The hash
/// is a multiply-and-rotate over the id's bits, not SipHash: ids are not chosen by an
/// adversary, and SipHash cost W4 more than its per-sample accumulation (callgrind).
///
/// Shared by the gradient stores of this crate and of `descent-backprop`; not an API
/// a user needs.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct ParamIndex {
    by_id: HashMap<ParamId, u32, BuildIdHasher>,
}

impl ParamIndex {
    /// Records that `id` sits at `pos`, unless it was recorded already.
    pub fn insert(&mut self, id: ParamId, pos: usize) {
        self.by_id.entry(id).or_insert(pos as u32);
    }

    /// Forgets every position, keeping the memory.
    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    /// The position of `id`.
    #[inline]
    pub fn find(&self, id: ParamId) -> Option<usize> {
        self.by_id.get(&id).map(|&p| p as usize)
    }
}

/// Builds [`IdHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
struct BuildIdHasher;

impl std::hash::BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// FxHash's mixing step (a rotate, an xor and a multiply per word) over the words of
/// a [`ParamId`].
#[derive(Clone, Copy, Debug)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Owned gradients of parameters, keyed by [`ParamId`], in a fixed order (the order
/// they were inserted). Flat and ordered, never hashed, so norms and sums over them are
/// deterministic bit for bit; lookups by id are O(1).
///
/// Most steps need no copy: an optimiser steps straight from the store a backward walk
/// filled (see [`ParamGradients`]). `ParamGrads` is for gradients a caller combines:
/// accumulated over micro-batches, averaged over samples, built by hand.
///
/// ```
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([3.0, 4.0]));
/// let mut total = ParamGrads::zeros_like(&store);
/// for g in [[1.0, 0.0], [0.5, 2.0]] {
///     let micro: ParamGrads<f64> = [(w, Tensor::from(g))].into_iter().collect();
///     total.add_assign(&micro);
/// }
/// assert_eq!(total.get(w).unwrap().data(), &[1.5, 2.0]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ParamGrads<T: Float> {
    entries: Vec<(ParamId, Tensor<T>)>,
    index: ParamIndex,
}

impl<T: Float> PartialEq for ParamGrads<T> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<T: Float> ParamGrads<T> {
    /// No gradients.
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            index: ParamIndex::default(),
        }
    }

    /// Zero gradients for every parameter of `store`, in its order: a starting point
    /// for accumulating.
    pub fn zeros_like(store: &crate::ParamStore<T>) -> Self {
        store
            .iter()
            .map(|(id, _, v)| (id, Tensor::zeros(v.shape())))
            .collect()
    }

    /// A copy of every entry of `grads`, in its order.
    ///
    /// ```
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([1.0]));
    /// let a: ParamGrads<f64> = [(w, Tensor::from([2.0]))].into_iter().collect();
    /// assert_eq!(ParamGrads::copy_of(&a), a);
    /// ```
    pub fn copy_of(grads: &dyn ParamGradients<T>) -> Self {
        (0..grads.count())
            .map(|i| {
                let (id, g) = grads.entry(i);
                (id, g.to_tensor())
            })
            .collect()
    }

    #[inline]
    fn position(&self, id: ParamId) -> Option<usize> {
        self.index.find(id)
    }

    /// Sets the gradient of `id` (replacing any it had, keeping its position).
    pub fn insert(&mut self, id: ParamId, grad: Tensor<T>) {
        match self.position(id) {
            Some(i) => self.entries[i].1 = grad,
            None => {
                self.index.insert(id, self.entries.len());
                self.entries.push((id, grad));
            }
        }
    }

    /// The gradient of `id`.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<T>> {
        self.position(id).map(|i| &self.entries[i].1)
    }

    /// The gradient of `id`, mutably.
    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut Tensor<T>> {
        self.position(id).map(|i| &mut self.entries[i].1)
    }

    /// `(id, gradient)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Tensor<T>)> + '_ {
        self.entries.iter().map(|(p, g)| (*p, g))
    }

    /// `(id, gradient)` in order, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Tensor<T>)> + '_ {
        self.entries.iter_mut().map(|(p, g)| (*p, g))
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no parameter has a gradient.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The L2 norm over all gradients together ([`ParamGradients::global_norm`]).
    /// NaN if any element is NaN, infinite if any is infinite.
    pub fn global_norm(&self) -> f64 {
        ParamGradients::global_norm(self)
    }

    /// The first parameter holding a NaN or infinite gradient element, if any.
    pub fn first_non_finite(&self) -> Option<ParamId> {
        ParamGradients::first_non_finite(self).map(|(i, _, _)| self.entries[i].0)
    }

    /// Adds `other`'s gradients into these, element by element (parameters missing
    /// here are appended, in `other`'s order).
    ///
    /// # Panics
    /// If a gradient of `other` has another shape than this one's for the same
    /// parameter.
    pub fn add_assign(&mut self, other: &dyn ParamGradients<T>) {
        for k in 0..other.count() {
            let (id, g) = other.entry(k);
            match self.position(id) {
                Some(i) => {
                    let mine = &mut self.entries[i].1;
                    assert_eq!(
                        mine.shape(),
                        g.shape(),
                        "add_assign: the gradients of one parameter have shapes {} and {}",
                        descent_tensor::ShapeDisplay(mine.shape()),
                        descent_tensor::ShapeDisplay(g.shape())
                    );
                    let (mine, g) = (mine.data_mut(), g.data());
                    // In the processor's widest vectors: per-sample gradients add every
                    // chunk's sum into the total through here.
                    descent_tensor::vectorized(
                        #[inline(always)]
                        || {
                            for (a, &b) in mine.iter_mut().zip(g) {
                                *a += b;
                            }
                        },
                    );
                }
                None => self.insert(id, g.to_tensor()),
            }
        }
    }

    /// Multiplies every gradient element by `factor`.
    pub fn scale(&mut self, factor: T) {
        for (_, g) in self.entries.iter_mut() {
            g.data_mut().iter_mut().for_each(|x| *x *= factor);
        }
    }
}

impl<T: Float> ParamGradients<T> for ParamGrads<T> {
    fn count(&self) -> usize {
        self.entries.len()
    }

    fn entry(&self, i: usize) -> (ParamId, View<'_, T>) {
        let (id, g) = &self.entries[i];
        (*id, g.view())
    }

    fn entry_mut(&mut self, i: usize) -> Option<&mut [T]> {
        Some(self.entries[i].1.data_mut())
    }
}

/// A summary: the number of parameters and the global L2 norm.
impl<T: Float> std::fmt::Display for ParamGrads<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let elements: usize = self.entries.iter().map(|(_, g)| g.len()).sum();
        write!(
            f,
            "gradients of {} parameters ({elements} elements), global L2 norm {}",
            self.entries.len(),
            self.global_norm()
        )
    }
}

impl<T: Float> FromIterator<(ParamId, Tensor<T>)> for ParamGrads<T> {
    fn from_iter<I: IntoIterator<Item = (ParamId, Tensor<T>)>>(iter: I) -> Self {
        let mut out = Self::new();
        for (id, g) in iter {
            out.insert(id, g);
        }
        out
    }
}

/// `for (id, grad) in &grads`: the same order as [`ParamGrads::iter`].
///
/// ```
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let grads: ParamGrads<f64> = [(w, Tensor::from([0.5]))].into_iter().collect();
/// for (id, g) in &grads {
///     assert_eq!((id, g.item()), (w, 0.5));
/// }
/// ```
impl<'a, T: Float> IntoIterator for &'a ParamGrads<T> {
    type Item = (ParamId, &'a Tensor<T>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (ParamId, Tensor<T>)>,
        fn(&'a (ParamId, Tensor<T>)) -> (ParamId, &'a Tensor<T>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(p, g)| (*p, g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamStore;

    /// The first non-finite element wherever it falls (first, last, at and around the
    /// scan's blocks of 1024 and its groups of 64, in the tail), with another after it,
    /// in both element types and on the parallel path; none in finite extremes.
    #[test]
    fn non_finite_at_finds_the_first_bad_element() {
        fn check<T: Float>() {
            let finite = [
                T::zero(),
                -T::zero(),
                T::max_value(),
                T::min_positive_value(),
            ];
            for len in [1, 15, 63, 64, 65, 1023, 1024, 1025, 5000, 300_000] {
                let mut x: Vec<T> = (0..len).map(|i| finite[i % finite.len()]).collect();
                assert_eq!(non_finite_at(&x), None, "{} len {len}", T::NAME);
                let spots = [0, len / 2, len.saturating_sub(1), 1024, 1087, 64, 63];
                for (n, &at) in spots.iter().enumerate().filter(|(_, at)| **at < len) {
                    let bad = [T::nan(), T::infinity(), T::neg_infinity()][n % 3];
                    x[at] = bad;
                    if at + 7 < len {
                        x[at + 7] = T::nan();
                    }
                    let (i, v) = non_finite_at(&x).expect("a bad element");
                    assert_eq!(i, at, "{} len {len}", T::NAME);
                    assert!(v.is_nan() == bad.is_nan() && (v.is_nan() || v == bad.as_f64()));
                    x[at] = T::one();
                    if at + 7 < len {
                        x[at + 7] = T::one();
                    }
                }
            }
        }
        check::<f32>();
        check::<f64>();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            check::<f32>();
            check::<f64>();
        });
    }

    #[test]
    fn non_finite_is_found_in_any_block_and_lane() {
        for len in [1usize, 15, 16, 17, 255, 256, 257, 1000] {
            for at in [0, len / 2, len - 1] {
                let mut x = vec![0.5f32; len];
                assert_eq!(non_finite_at(&x), None);
                x[at] = f32::INFINITY;
                assert_eq!(non_finite_at(&x), Some((at, f64::INFINITY)), "len {len}");
                x[at] = f32::NAN;
                assert_eq!(non_finite_at(&x).map(|(k, _)| k), Some(at));
            }
        }
    }

    #[test]
    fn non_finite_in_a_large_gradient_is_the_first_on_any_thread_count() {
        let n = (1 << 17) + 1000;
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for at in [0, 40_000, (1 << 15) - 1, 1 << 15, n - 1] {
                let mut x = vec![0.25f32; n];
                x[at] = f32::NAN;
                x[n - 1 - (n - 1 - at) / 2] = f32::INFINITY; // a later one, not reported
                let got = pool.install(|| non_finite_at(&x));
                assert_eq!(got.map(|(k, _)| k), Some(at), "{threads} threads");
            }
            let clean = vec![1.0f64; n];
            assert_eq!(pool.install(|| non_finite_at(&clean)), None);
        }
    }

    #[test]
    fn lookups_by_id_tell_stores_apart() {
        let mut a = ParamStore::<f64>::new();
        let mut b = ParamStore::<f64>::new();
        let pa = a.insert("w", Tensor::from([1.0]));
        let pb = b.insert("w", Tensor::from([1.0]));
        assert_eq!(pa.key(), pb.key(), "the first keys of two stores collide");
        let grads: ParamGrads<f64> = [(pa, Tensor::from([1.0])), (pb, Tensor::from([2.0]))]
            .into_iter()
            .collect();
        assert_eq!(grads.len(), 2);
        assert_eq!(grads.get(pa).unwrap().item(), 1.0);
        assert_eq!(grads.get(pb).unwrap().item(), 2.0);
        let removed = a.insert("v", Tensor::from([0.0]));
        assert!(grads.get(removed).is_none());

        // The same slot at another version, in another store: both stay found.
        let mut c = ParamStore::<f64>::new();
        let old = c.insert("old", Tensor::from([0.0]));
        c.remove(old);
        let newer = c.insert("new", Tensor::from([0.0]));
        let mut d = ParamStore::<f64>::new();
        let first = d.insert("first", Tensor::from([0.0]));
        let both: ParamGrads<f64> = [(newer, Tensor::from([3.0])), (first, Tensor::from([4.0]))]
            .into_iter()
            .collect();
        assert_eq!(both.get(newer).unwrap().item(), 3.0);
        assert_eq!(both.get(first).unwrap().item(), 4.0);
    }
}
