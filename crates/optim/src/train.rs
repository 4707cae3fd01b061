//! Training loops: which samples each step sees ([`DataLoader`], [`Batches`]).

use crate::Error;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::iter::FusedIterator;

/// Batches of sample indices over a dataset of `N` samples, epoch after epoch: the
/// program gathers the samples of each batch and takes one optimiser step
/// per batch. The three classic regimes are batch sizes:
///
/// | regime | batch size | steps per epoch |
/// |---|---|---|
/// | batch gradient descent ([`DataLoader::full_batch`]) | `N` | 1 |
/// | stochastic gradient descent ([`DataLoader::stochastic`]) | 1 | `N` |
/// | mini-batch gradient descent ([`DataLoader::new`]) | `k` | `⌈N/k⌉` (or `⌊N/k⌋` with [`DataLoader::drop_last`]) |
///
/// Without [`DataLoader::shuffle`] every epoch visits `0, 1, …, N-1` in order. With it,
/// epoch `e` visits a permutation that is a pure function of `(seed, e)`: ChaCha8
/// seeded from `seed`, on stream `e`, driving a Fisher–Yates shuffle with unbiased
/// bounded draws written here. ChaCha is specified bit for bit and nothing else enters,
/// so the order is the same on every machine and does not depend on which epochs were
/// visited before (resuming at epoch 7 gives epoch 7's order).
///
/// ```
/// use descent_optim::DataLoader;
/// // 10 samples in mini-batches of 4, reshuffled every epoch.
/// let loader = DataLoader::new(10, 4).unwrap().shuffle(42);
/// assert_eq!(loader.batches_per_epoch(), 3);
/// let epoch0: Vec<Vec<usize>> = loader.epoch(0).collect();
/// assert_eq!(epoch0.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
/// let mut seen: Vec<usize> = epoch0.concat();
/// seen.sort();
/// assert_eq!(seen, (0..10).collect::<Vec<_>>()); // every sample exactly once
/// // The same seed and epoch give the same order; another epoch another order.
/// assert_eq!(loader.epoch(0).collect::<Vec<_>>(), epoch0);
/// assert_ne!(loader.epoch(1).collect::<Vec<_>>(), epoch0);
///
/// // Dropping the last partial batch:
/// let loader = DataLoader::new(10, 4).unwrap().drop_last(true);
/// assert_eq!(loader.epoch(0).collect::<Vec<_>>(), [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
/// ```
///
/// A training loop over inputs and labels:
///
/// ```
/// use descent_backprop::{Backward, ParamGrads};
/// use descent_optim::{DataLoader, Optimizer, Sgd};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// // Fit y = 2x on 8 points with mini-batches of 3.
/// let xs: Vec<f64> = (0..8).map(|i| i as f64 / 8.0).collect();
/// let ys: Vec<f64> = xs.iter().map(|x| 2.0 * x).collect();
/// let loader = DataLoader::paired(xs.len(), ys.len(), 3).unwrap().shuffle(7);
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([0.0]));
/// let mut sgd = Sgd::new(0.5);
/// let tape = Tape::new();
/// for epoch in 0..100 {
///     for batch in loader.epoch(epoch) {
///         tape.reset();
///         let x = tape.constant(Tensor::new(&[batch.len()], batch.iter().map(|&i| xs[i]).collect()).unwrap());
///         let y = tape.constant(Tensor::new(&[batch.len()], batch.iter().map(|&i| ys[i]).collect()).unwrap());
///         let loss = (tape.param(&store, w) * x).mse(y);
///         sgd.step(&mut store, &ParamGrads::from(&loss.backward())).unwrap();
///     }
/// }
/// assert!((store.get(w).unwrap().item() - 2.0).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLoader {
    len: usize,
    batch_size: usize,
    seed: Option<u64>,
    drop_last: bool,
}

impl DataLoader {
    /// Mini-batches of `batch_size` samples over a dataset of `len` samples, in order,
    /// keeping the last partial batch. A `batch_size` of `len` or more gives one batch
    /// of everything per epoch.
    ///
    /// # Errors
    /// [`Error::EmptyDataset`] for `len == 0`, [`Error::ZeroBatchSize`] for
    /// `batch_size == 0`.
    pub fn new(len: usize, batch_size: usize) -> Result<Self, Error> {
        Self::checked("DataLoader::new", len, batch_size)
    }

    /// Batch gradient descent: one batch of all `len` samples per epoch.
    ///
    /// ```
    /// let loader = descent_optim::DataLoader::full_batch(5).unwrap();
    /// assert_eq!(loader.epoch(0).collect::<Vec<_>>(), [vec![0, 1, 2, 3, 4]]);
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyDataset`] for `len == 0`.
    pub fn full_batch(len: usize) -> Result<Self, Error> {
        Self::checked("DataLoader::full_batch", len, len.max(1))
    }

    /// Stochastic gradient descent: `len` batches of one sample per epoch (shuffle them
    /// with [`DataLoader::shuffle`], as SGD proper does).
    ///
    /// ```
    /// let loader = descent_optim::DataLoader::stochastic(3).unwrap();
    /// assert_eq!(loader.epoch(0).collect::<Vec<_>>(), [vec![0], vec![1], vec![2]]);
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyDataset`] for `len == 0`.
    pub fn stochastic(len: usize) -> Result<Self, Error> {
        Self::checked("DataLoader::stochastic", len, 1)
    }

    /// Mini-batches over a dataset given as `inputs` inputs and `labels` labels, which
    /// must be as many.
    ///
    /// ```
    /// let err = descent_optim::DataLoader::paired(100, 99, 10).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "DataLoader::paired: 100 inputs but 99 labels; every input needs exactly one label"
    /// );
    /// ```
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when the counts differ, then as [`DataLoader::new`].
    pub fn paired(inputs: usize, labels: usize, batch_size: usize) -> Result<Self, Error> {
        let op = "DataLoader::paired";
        if inputs != labels {
            return Err(Error::LengthMismatch { op, inputs, labels });
        }
        Self::checked(op, inputs, batch_size)
    }

    fn checked(op: &'static str, len: usize, batch_size: usize) -> Result<Self, Error> {
        if len == 0 {
            return Err(Error::EmptyDataset { op });
        }
        if batch_size == 0 {
            return Err(Error::ZeroBatchSize { op, len });
        }
        Ok(Self {
            len,
            batch_size,
            seed: None,
            drop_last: false,
        })
    }

    /// Reshuffles the samples every epoch: epoch `e`'s order is a function of `seed`
    /// and `e` only (see [`DataLoader`]).
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Whether to drop the last batch of an epoch when it has fewer than
    /// `batch_size` samples (so every step sees the same number of samples). With a
    /// `batch_size` larger than the dataset, that leaves no batch at all:
    /// [`DataLoader::batches_per_epoch`] is then 0, as in PyTorch.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// Number of samples in the dataset.
    pub fn num_samples(&self) -> usize {
        self.len
    }

    /// Samples per batch (the last batch of an epoch may hold fewer unless
    /// [`DataLoader::drop_last`] is set).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The shuffling seed, if the loader shuffles.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Whether the last partial batch is dropped.
    pub fn drops_last(&self) -> bool {
        self.drop_last
    }

    /// Batches (optimiser steps) per epoch: `⌈N/k⌉`, or `⌊N/k⌋` when dropping the last
    /// partial batch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.len / self.batch_size
        } else {
            self.len.div_ceil(self.batch_size)
        }
    }

    /// The order in which epoch `epoch` visits the samples: `0..N` without shuffling,
    /// else a permutation determined by the seed and `epoch`.
    ///
    /// ```
    /// use descent_optim::DataLoader;
    /// let loader = DataLoader::new(6, 2).unwrap();
    /// assert_eq!(loader.order(3), [0, 1, 2, 3, 4, 5]);
    /// let shuffled = loader.shuffle(1);
    /// assert_eq!(shuffled.order(3), shuffled.order(3));
    /// assert_ne!(shuffled.order(3), shuffled.order(4));
    /// ```
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if let Some(seed) = self.seed {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(epoch);
            // Fisher–Yates: position i takes a uniformly chosen element of 0..=i.
            for i in (1..order.len()).rev() {
                let j = below(&mut rng, i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// The batches of epoch `epoch` (numbered from 0), as vectors of sample indices.
    pub fn epoch(&self, epoch: u64) -> Batches {
        Batches {
            order: self.order(epoch),
            batch_size: self.batch_size,
            next: 0,
            remaining: self.batches_per_epoch(),
        }
    }
}

/// A uniform draw from `0..n` (`n > 0`) without modulo bias: Lemire's multiply-and-
/// reject method on 64-bit draws.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    if (m as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (m >> 64) as u64
}

/// The batches of one epoch: vectors of sample indices, `batch_size` long (the last
/// one possibly shorter unless dropped). Made by [`DataLoader::epoch`].
#[derive(Clone, Debug)]
pub struct Batches {
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    remaining: usize,
}

impl Batches {
    /// The epoch's whole visiting order (including any samples of a dropped last
    /// batch).
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for Batches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let end = (self.next + self.batch_size).min(self.order.len());
        let batch = self.order[self.next..end].to_vec();
        self.next = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batches {}
impl FusedIterator for Batches {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(batches: &[Vec<usize>]) -> Vec<usize> {
        let mut all = batches.concat();
        all.sort_unstable();
        all
    }

    fn sizes(batches: &[Vec<usize>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn full_batch_is_one_batch_of_everything() {
        for shuffle in [None, Some(3)] {
            let mut loader = DataLoader::full_batch(7).unwrap();
            if let Some(s) = shuffle {
                loader = loader.shuffle(s);
            }
            assert_eq!(loader.batch_size(), 7);
            assert_eq!(loader.batches_per_epoch(), 1);
            for e in 0..3 {
                let b: Vec<_> = loader.epoch(e).collect();
                assert_eq!(sizes(&b), [7]);
                assert_eq!(sorted(&b), (0..7).collect::<Vec<_>>());
            }
            // Dropping the last batch drops nothing: the only batch is full.
            assert_eq!(loader.clone().drop_last(true).epoch(0).len(), 1);
        }
    }

    #[test]
    fn stochastic_is_one_sample_per_step() {
        let loader = DataLoader::stochastic(50).unwrap().shuffle(11);
        assert_eq!(loader.batches_per_epoch(), 50);
        for e in 0..4 {
            let b: Vec<_> = loader.epoch(e).collect();
            assert_eq!(sizes(&b), vec![1; 50]);
            assert_eq!(sorted(&b), (0..50).collect::<Vec<_>>());
        }
        let unshuffled: Vec<_> = DataLoader::stochastic(3).unwrap().epoch(9).collect();
        assert_eq!(unshuffled, [vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn mini_batches_keep_or_drop_the_last_partial_batch() {
        for shuffle in [None, Some(5)] {
            for (len, k) in [(10, 3), (12, 4), (1, 1), (5, 8), (100, 7)] {
                let mut loader = DataLoader::new(len, k).unwrap();
                if let Some(s) = shuffle {
                    loader = loader.shuffle(s);
                }
                for e in 0..3 {
                    let keep: Vec<_> = loader.epoch(e).collect();
                    let mut want = vec![k; len / k];
                    if len % k != 0 {
                        want.push(len % k);
                    }
                    assert_eq!(sizes(&keep), want, "{len}/{k}");
                    assert_eq!(sorted(&keep), (0..len).collect::<Vec<_>>());
                    assert_eq!(keep.len(), loader.batches_per_epoch());

                    let dropper = loader.clone().drop_last(true);
                    let dropped: Vec<_> = dropper.epoch(e).collect();
                    assert_eq!(sizes(&dropped), vec![k; len / k], "{len}/{k}");
                    assert_eq!(dropped.len(), dropper.batches_per_epoch());
                    // The same order, cut short: only the partial batch is missing,
                    // and no index appears twice.
                    assert_eq!(dropped.concat(), keep.concat()[..(len / k) * k]);
                    let mut d = dropped.concat();
                    d.sort_unstable();
                    d.dedup();
                    assert_eq!(d.len(), (len / k) * k);
                }
            }
        }
    }

    #[test]
    fn unshuffled_epochs_are_in_order() {
        let loader = DataLoader::new(5, 2).unwrap();
        for e in [0, 1, 1000] {
            let b: Vec<_> = loader.epoch(e).collect();
            assert_eq!(b, [vec![0, 1], vec![2, 3], vec![4]]);
        }
    }

    #[test]
    fn shuffling_is_deterministic_per_seed_and_epoch() {
        let a = DataLoader::new(64, 8).unwrap().shuffle(2024);
        let b = DataLoader::new(64, 8).unwrap().shuffle(2024);
        for e in 0..5 {
            assert_eq!(
                a.epoch(e).collect::<Vec<_>>(),
                b.epoch(e).collect::<Vec<_>>()
            );
        }
        // An epoch's order does not depend on the epochs visited before it.
        let late = a.order(4);
        assert_eq!(DataLoader::new(64, 8).unwrap().shuffle(2024).order(4), late);
        // Epochs differ from each other and from the identity.
        let orders: Vec<_> = (0..5).map(|e| a.order(e)).collect();
        for i in 0..5 {
            assert_ne!(orders[i], (0..64).collect::<Vec<_>>());
            for j in 0..i {
                assert_ne!(orders[i], orders[j], "epochs {i} and {j}");
            }
        }
        // Another seed gives other orders.
        let c = DataLoader::new(64, 8).unwrap().shuffle(2025);
        for e in 0..5 {
            assert_ne!(c.order(e), a.order(e));
        }
        // The batch size cuts the order, never changes it.
        assert_eq!(
            DataLoader::new(64, 5).unwrap().shuffle(2024).order(3),
            a.order(3)
        );
    }

    /// Pins the permutation: a change of generator or shuffling algorithm shows here.
    #[test]
    fn golden_order() {
        let loader = DataLoader::new(10, 3).unwrap().shuffle(42);
        assert_eq!(loader.order(0), GOLDEN_EPOCH0, "{:?}", loader.order(0));
        assert_eq!(loader.order(1), GOLDEN_EPOCH1, "{:?}", loader.order(1));
    }

    const GOLDEN_EPOCH0: [usize; 10] = [9, 7, 2, 5, 0, 1, 4, 3, 8, 6];
    const GOLDEN_EPOCH1: [usize; 10] = [8, 2, 4, 6, 9, 0, 5, 3, 1, 7];

    #[test]
    fn shuffles_are_roughly_uniform() {
        // Where does sample 0 land? Over 4000 epochs each of 8 positions should get
        // about 500 (a binomial with σ ≈ 21; allow 5σ).
        let loader = DataLoader::new(8, 8).unwrap().shuffle(99);
        let mut counts = [0usize; 8];
        for e in 0..4000 {
            let pos = loader.order(e).iter().position(|&i| i == 0).unwrap();
            counts[pos] += 1;
        }
        for c in counts {
            assert!((395..=605).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn below_is_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for n in [1u64, 2, 3, 7, 1 << 40, u64::MAX] {
            for _ in 0..100 {
                assert!(below(&mut rng, n) < n);
            }
        }
    }

    #[test]
    fn batch_larger_than_the_dataset() {
        let keep = DataLoader::new(5, 8).unwrap();
        assert_eq!(keep.epoch(0).collect::<Vec<_>>(), [vec![0, 1, 2, 3, 4]]);
        let drop = keep.drop_last(true);
        assert_eq!(drop.batches_per_epoch(), 0);
        assert_eq!(drop.epoch(0).count(), 0);
    }

    #[test]
    fn batches_is_an_exact_size_fused_iterator() {
        let mut b = DataLoader::new(5, 2).unwrap().epoch(0);
        assert_eq!(b.len(), 3);
        b.next();
        assert_eq!(b.len(), 2);
        assert_eq!(b.order(), [0, 1, 2, 3, 4]);
        b.next();
        b.next();
        assert_eq!(b.next(), None);
        assert_eq!(b.next(), None);
    }

    #[test]
    fn error_messages() {
        let msg = |r: Result<DataLoader, Error>| r.unwrap_err().to_string();
        assert_eq!(
            msg(DataLoader::new(0, 4)),
            "DataLoader::new: the dataset is empty (0 samples): there is nothing to batch"
        );
        assert_eq!(
            msg(DataLoader::full_batch(0)),
            "DataLoader::full_batch: the dataset is empty (0 samples): there is nothing to batch"
        );
        assert_eq!(
            msg(DataLoader::stochastic(0)),
            "DataLoader::stochastic: the dataset is empty (0 samples): there is nothing to batch"
        );
        assert_eq!(
            msg(DataLoader::new(10, 0)),
            "DataLoader::new: the batch size must be at least 1, got 0 (for 10 samples)"
        );
        assert_eq!(
            msg(DataLoader::paired(10, 10, 0)),
            "DataLoader::paired: the batch size must be at least 1, got 0 (for 10 samples)"
        );
        assert_eq!(
            msg(DataLoader::paired(3, 4, 2)),
            "DataLoader::paired: 3 inputs but 4 labels; every input needs exactly one label"
        );
        assert_eq!(
            msg(DataLoader::paired(0, 0, 2)),
            "DataLoader::paired: the dataset is empty (0 samples): there is nothing to batch"
        );
        assert!(matches!(
            DataLoader::paired(3, 4, 0),
            Err(Error::LengthMismatch {
                inputs: 3,
                labels: 4,
                ..
            })
        ));
    }
}
