//! Gradient accumulation: a global batch split into fixed micro-batches whose
//! gradients are summed, in micro-batch order, into one flat buffer, then one step.
//!
//! This is the reference result of data-parallel training (`descent-mpi`): however the
//! micro-batches are spread over processes, the sum is formed in the same order, so
//! the bits are the same.
//!
//! # How the mean over the global batch is formed
//!
//! Each micro-batch gives the gradient of its loss **summed** over its samples (not
//! its mean). The buffer starts at zero and the micro-batch sums are added to it one
//! after the other, in micro-batch order, element by element:
//! `s = ((0 + g₀) + g₁) + … + g_{m−1}`. Then, once, every element is multiplied by
//! `1 / global_batch` (the reciprocal rounded to `T`, as
//! [`ParamGrads::scale`](descent_tape::ParamGrads::scale) and
//! `descent_backprop::PerSample::mean` do).
//!
//! It is the only form whose bits do not depend on how the micro-batches are shared
//! out: a mean per micro-batch, or a mean per process, would weigh an uneven last
//! micro-batch (or an uneven share) by a factor that depends on the split, and
//! pre-summing a process's micro-batches before adding the running sum would
//! re-associate the additions. The last micro-batch may be shorter
//! (`global_batch % micro_batch` samples); its sum simply has fewer terms.

use crate::Error;
use descent_tape::{ParamGradients, ParamGrads, ParamId, ParamStore};
use descent_tensor::{Float, View};
use std::collections::HashMap;
use std::ops::Range;

/// A global batch of `global_batch` samples split into micro-batches of
/// `micro_batch` samples, the last one shorter when they do not divide.
///
/// ```
/// use descent_optim::MicroBatches;
/// let m = MicroBatches::new(10, 4).unwrap();
/// assert_eq!(m.count(), 3);
/// assert_eq!(m.iter().collect::<Vec<_>>(), vec![0..4, 4..8, 8..10]);
/// // Shared over 2 processes, contiguously: micro-batches 0..2 and 2..3.
/// assert_eq!((m.share(0, 2), m.share(1, 2)), (0..2, 2..3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MicroBatches {
    global_batch: usize,
    micro_batch: usize,
}

impl MicroBatches {
    /// Micro-batches of `micro_batch` samples over a global batch of `global_batch`.
    ///
    /// # Errors
    /// [`Error::Config`] when either is 0.
    pub fn new(global_batch: usize, micro_batch: usize) -> Result<Self, Error> {
        if global_batch == 0 || micro_batch == 0 {
            return Err(Error::Config {
                op: "micro_batches",
                reason: format!(
                    "the global batch ({global_batch}) and the micro-batch ({micro_batch}) must both be at least 1"
                ),
            });
        }
        Ok(Self {
            global_batch,
            micro_batch,
        })
    }

    /// Samples in the global batch.
    pub fn global_batch(&self) -> usize {
        self.global_batch
    }

    /// Samples in a full micro-batch.
    pub fn micro_batch(&self) -> usize {
        self.micro_batch
    }

    /// Number of micro-batches (the last may be shorter).
    pub fn count(&self) -> usize {
        self.global_batch.div_ceil(self.micro_batch)
    }

    /// The positions, within the global batch, of micro-batch `i` (`< count()`).
    pub fn range(&self, i: usize) -> Range<usize> {
        let start = (i * self.micro_batch).min(self.global_batch);
        start..(start + self.micro_batch).min(self.global_batch)
    }

    /// Every micro-batch's positions, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.count()).map(|i| self.range(i))
    }

    /// The micro-batches process `rank` of `ranks` takes: a contiguous run, the first
    /// `count() % ranks` processes taking one more than the others. A process may get
    /// none (more processes than micro-batches).
    ///
    /// # Panics
    /// If `ranks == 0` or `rank >= ranks`.
    pub fn share(&self, rank: usize, ranks: usize) -> Range<usize> {
        assert!(
            rank < ranks,
            "MicroBatches::share: rank {rank} of {ranks} processes"
        );
        let (base, extra) = (self.count() / ranks, self.count() % ranks);
        let start = rank * base + rank.min(extra);
        start..start + base + usize::from(rank < extra)
    }
}

/// Gradients of a store's trainable parameters in one flat buffer, in the store's
/// order (insertion order; frozen parameters left out), each parameter's elements
/// row-major: what accumulation adds into and what processes send each other.
///
/// It is a [`ParamGradients`], so an optimiser steps from it directly.
///
/// ```
/// use descent_optim::{FlatGrads, Optimizer, Sgd};
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0, 2.0]));
/// let b = store.insert("b", Tensor::from([0.0]));
/// let mut flat = FlatGrads::zeros_like(&store);
/// let g: ParamGrads<f64> = [(b, Tensor::from([3.0])), (w, Tensor::from([1.0, -1.0]))]
///     .into_iter()
///     .collect();
/// flat.add(&g).unwrap();
/// assert_eq!(flat.as_slice(), &[1.0, -1.0, 3.0]); // the store's order, not g's
/// Sgd::new(0.5).step(&mut store, &flat).unwrap();
/// assert_eq!(store.get(w).unwrap().data(), &[0.5, 2.5]);
/// ```
#[derive(Clone, Debug)]
pub struct FlatGrads<T: Float> {
    /// `(id, name, shape, offset)` per parameter, in the store's order.
    layout: Vec<(ParamId, String, Vec<usize>, usize)>,
    position: HashMap<ParamId, usize>,
    data: Vec<T>,
}

impl<T: Float> FlatGrads<T> {
    /// Zeros for every trainable parameter of `store`, in its order.
    pub fn zeros_like(store: &ParamStore<T>) -> Self {
        let mut layout = Vec::new();
        let mut position = HashMap::new();
        let mut offset = 0;
        for (id, name, value) in store.iter() {
            if !store.requires_grad(id) {
                continue;
            }
            position.insert(id, layout.len());
            layout.push((id, name.to_string(), value.shape().to_vec(), offset));
            offset += value.len();
        }
        Self {
            layout,
            position,
            data: vec![T::zero(); offset],
        }
    }

    /// Adds `grads` in, element by element; a trainable parameter without an entry
    /// counts as zeros (and its elements get `+ 0`, as a zero entry would give).
    ///
    /// # Errors
    /// [`Error::Config`] naming a parameter that is not a trainable parameter of the
    /// store this buffer was made for, [`Error::Shape`] for a gradient of another
    /// shape; nothing is added then.
    pub fn add(&mut self, grads: &dyn ParamGradients<T>) -> Result<(), Error> {
        self.check(grads)?;
        let mut seen = vec![false; self.layout.len()];
        for i in 0..grads.count() {
            let (id, g) = grads.entry(i);
            let p = self.position[&id];
            seen[p] = true;
            let offset = self.layout[p].3;
            for (a, &b) in self.data[offset..offset + g.len()].iter_mut().zip(g.data()) {
                *a += b;
            }
        }
        // `x + 0` is `x` but for `x = -0`, which becomes `+0`: done here too, so that
        // adding a missing entry is adding zeros, bit for bit.
        for (p, (_, _, shape, offset)) in self.layout.iter().enumerate() {
            if !seen[p] {
                let n: usize = shape.iter().product();
                self.data[*offset..*offset + n]
                    .iter_mut()
                    .for_each(|a| *a += T::zero());
            }
        }
        Ok(())
    }

    /// Whether this buffer has the layout [`FlatGrads::zeros_like`] gives `store`
    /// now (the same trainable parameters, in order, of the same shapes): a buffer
    /// kept from an earlier step can be reused.
    ///
    /// ```
    /// use descent_optim::FlatGrads;
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f32>::new();
    /// let w = store.insert("w", Tensor::from([1.0, 2.0]));
    /// let flat = FlatGrads::zeros_like(&store);
    /// assert!(flat.fits(&store));
    /// store.set_requires_grad(w, false);
    /// assert!(!flat.fits(&store));
    /// ```
    pub fn fits(&self, store: &ParamStore<T>) -> bool {
        let mut mine = self.layout.iter();
        store
            .iter()
            .filter(|(id, _, _)| store.requires_grad(*id))
            .all(|(id, _, v)| {
                mine.next()
                    .is_some_and(|(i, _, shape, _)| *i == id && shape.as_slice() == v.shape())
            })
            && mine.next().is_none()
    }

    /// Every entry names a trainable parameter of the store and has its shape.
    fn check(&self, grads: &dyn ParamGradients<T>) -> Result<(), Error> {
        for i in 0..grads.count() {
            let (id, g) = grads.entry(i);
            let p = self.position.get(&id).ok_or_else(|| Error::Config {
                op: "accumulate",
                reason: format!(
                    "gradient entry {i} names a parameter that is not a trainable parameter of the store"
                ),
            })?;
            let (_, name, shape, _) = &self.layout[*p];
            if g.shape() != shape.as_slice() {
                return Err(Error::Shape {
                    op: "accumulate",
                    name: name.clone(),
                    expected: shape.as_slice().into(),
                    found: g.shape().into(),
                });
            }
        }
        Ok(())
    }

    /// Sets the buffer to `grads` (copied, bit for bit), zeros for a trainable
    /// parameter without an entry: a micro-batch's gradients, kept to be added later.
    ///
    /// # Errors
    /// As [`FlatGrads::add`]; nothing is changed then.
    ///
    /// ```
    /// use descent_optim::FlatGrads;
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f32>::new();
    /// let w = store.insert("w", Tensor::from([1.0, 2.0]));
    /// let b = store.insert("b", Tensor::from([0.0]));
    /// let mut flat = FlatGrads::zeros_like(&store);
    /// flat.set(&ParamGrads::from_iter([(w, Tensor::from([-0.0, 4.0]))])).unwrap();
    /// assert_eq!(flat.as_slice()[0].to_bits(), (-0.0f32).to_bits());
    /// assert_eq!(flat.as_slice(), &[0.0, 4.0, 0.0]);
    /// // What the next micro-batch leaves out is zero, not the last one's values.
    /// flat.set(&ParamGrads::from_iter([(b, Tensor::from([5.0]))])).unwrap();
    /// assert_eq!(flat.as_slice(), &[0.0, 0.0, 5.0]);
    /// ```
    pub fn set(&mut self, grads: &dyn ParamGradients<T>) -> Result<(), Error> {
        self.check(grads)?;
        // Zeroing only what `grads` leaves out: zeroing the whole buffer first was a
        // second pass over it, a tenth of a millisecond a micro-batch for W3's 2 MB.
        let mut written = vec![false; self.layout.len()];
        for i in 0..grads.count() {
            let (id, g) = grads.entry(i);
            let k = self.position[&id];
            let offset = self.layout[k].3;
            self.data[offset..offset + g.len()].copy_from_slice(g.data());
            written[k] = true;
        }
        for ((_, _, shape, offset), _) in self.layout.iter().zip(&written).filter(|(_, w)| !**w) {
            let n: usize = shape.iter().product();
            self.data[*offset..offset + n]
                .iter_mut()
                .for_each(|x| *x = T::zero());
        }
        Ok(())
    }

    /// Adds another buffer of the same layout, element by element.
    ///
    /// # Panics
    /// If `other` has another length.
    pub fn add_slice(&mut self, other: &[T]) {
        assert_eq!(
            self.data.len(),
            other.len(),
            "FlatGrads::add_slice: lengths differ"
        );
        for (a, &b) in self.data.iter_mut().zip(other) {
            *a += b;
        }
    }

    /// Multiplies every element by `factor`.
    pub fn scale(&mut self, factor: T) {
        self.data.iter_mut().for_each(|x| *x *= factor);
    }

    /// Sets every element to zero.
    pub fn zero(&mut self) {
        self.data.iter_mut().for_each(|x| *x = T::zero());
    }

    /// The elements, in the store's order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The elements, mutably (for a message to land in).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the store has no trainable element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The parameters, in order: `(id, name, shape)`.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &str, &[usize])> + '_ {
        self.layout
            .iter()
            .map(|(id, name, shape, _)| (*id, name.as_str(), shape.as_slice()))
    }

    /// An owned copy as [`ParamGrads`].
    pub fn to_param_grads(&self) -> ParamGrads<T> {
        (0..self.layout.len())
            .map(|i| {
                let (id, v) = ParamGradients::entry(self, i);
                (id, v.to_tensor())
            })
            .collect()
    }
}

impl<T: Float> ParamGradients<T> for FlatGrads<T> {
    fn count(&self) -> usize {
        self.layout.len()
    }

    fn entry(&self, i: usize) -> (ParamId, View<'_, T>) {
        let (id, _, shape, offset) = &self.layout[i];
        let n: usize = shape.iter().product();
        (*id, View::new(shape, &self.data[*offset..*offset + n]))
    }

    fn entry_mut(&mut self, i: usize) -> Option<&mut [T]> {
        let (_, _, shape, offset) = &self.layout[i];
        let n: usize = shape.iter().product();
        Some(&mut self.data[*offset..*offset + n])
    }
}

/// The summed gradient of one global batch by gradient accumulation: for each
/// micro-batch in order, `micro_grad(positions)` returns the gradients of the loss
/// **summed** over those samples and that loss sum; they are added in order into a
/// [`FlatGrads`] (and the losses into an `f64`, in the same order). Returns
/// `(sum of gradients, sum of losses)`; divide by the global batch for the mean (see
/// [`accumulate_mean`] and the module's notes).
///
/// # Errors
/// The closure's error, or [`FlatGrads::add`]'s, converted.
///
/// ```
/// use descent_optim::{MicroBatches, accumulate};
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([0.0]));
/// // d/dw of Σ (w - x)² over x = 1..=5, at w = 0: Σ -2x = -30.
/// let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
/// let (sum, loss) = accumulate(&store, MicroBatches::new(5, 2).unwrap(), |r| {
///     let g: f64 = xs[r.clone()].iter().map(|x| -2.0 * x).sum();
///     let l: f64 = xs[r].iter().map(|x| x * x).sum();
///     Ok::<_, descent_optim::Error>((ParamGrads::from_iter([(w, Tensor::from([g]))]), l))
/// })
/// .unwrap();
/// assert_eq!(sum.as_slice(), &[-30.0]);
/// assert_eq!(loss, 55.0);
/// ```
pub fn accumulate<T, G, E, F>(
    store: &ParamStore<T>,
    batches: MicroBatches,
    mut micro_grad: F,
) -> Result<(FlatGrads<T>, f64), E>
where
    T: Float,
    G: ParamGradients<T>,
    E: From<Error>,
    F: FnMut(Range<usize>) -> Result<(G, f64), E>,
{
    let mut sum = FlatGrads::zeros_like(store);
    let mut loss = 0.0;
    for r in batches.iter() {
        let (g, l) = micro_grad(r)?;
        sum.add(&g)?;
        loss += l;
    }
    Ok((sum, loss))
}

/// [`accumulate`], then the sum multiplied by `1 / global_batch`: the mean gradient
/// and the mean loss of the global batch, ready for one optimiser step.
///
/// # Errors
/// As [`accumulate`].
///
/// ```
/// use descent_optim::{MicroBatches, Optimizer, Sgd, accumulate_mean};
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([0.0]));
/// let xs = [1.0, 2.0, 3.0, 4.0];
/// let (mean, loss) = accumulate_mean(&store, MicroBatches::new(4, 3).unwrap(), |r| {
///     let g: f64 = xs[r.clone()].iter().map(|x| -2.0 * x).sum();
///     let l: f64 = xs[r].iter().map(|x| x * x).sum();
///     Ok::<_, descent_optim::Error>((ParamGrads::from_iter([(w, Tensor::from([g]))]), l))
/// })
/// .unwrap();
/// assert_eq!((mean.as_slice(), loss), (&[-5.0][..], 7.5));
/// Sgd::new(0.1).step(&mut store, &mean).unwrap();
/// assert_eq!(store.get(w).unwrap().data(), &[0.5]);
/// ```
pub fn accumulate_mean<T, G, E, F>(
    store: &ParamStore<T>,
    batches: MicroBatches,
    micro_grad: F,
) -> Result<(FlatGrads<T>, f64), E>
where
    T: Float,
    G: ParamGradients<T>,
    E: From<Error>,
    F: FnMut(Range<usize>) -> Result<(G, f64), E>,
{
    let (mut sum, loss) = accumulate(store, batches, micro_grad)?;
    let n = batches.global_batch() as f64;
    sum.scale(T::from_f64(1.0 / n));
    Ok((sum, loss / n))
}
