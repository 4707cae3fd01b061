//! [`Loader`]: a dataset's samples as batches of tensors, in the order a
//! [`DataLoader`] gives (in order or seeded shuffle, with or without the last partial
//! batch). PyTorch's `DataLoader` with a map-style dataset.

use crate::dataset::{Batch, Dataset};
use crate::error::Result;
use descent_optim::DataLoader;
use descent_tensor::Float;
use std::marker::PhantomData;

/// Batches of a [`Dataset`]: the indices come from a [`DataLoader`] (the batch,
/// stochastic and mini-batch regimes, seeded shuffles, drop-last), the tensors from the
/// dataset.
///
/// ```
/// use descent_data::{Loader, TensorDataset, Targets};
/// use descent_tensor::Tensor;
///
/// let data = TensorDataset::new(
///     Tensor::from_fn(&[10, 3], |i| i as f32),
///     Targets::Classes((0..10).map(|i| i % 2).collect()),
/// ).unwrap();
/// let loader = Loader::new(&data, 4).unwrap().shuffle(7).drop_last(true);
/// assert_eq!(loader.batches_per_epoch(), 2);
/// for epoch in 0..3 {
///     for batch in loader.epoch(epoch) {
///         assert_eq!(batch.inputs.shape(), [4, 3]);
///         assert_eq!(batch.targets.classes().unwrap().len(), 4);
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Loader<'d, T: Float, D: Dataset<T> + ?Sized> {
    dataset: &'d D,
    order: DataLoader,
    element: PhantomData<T>,
}

impl<'d, T: Float, D: Dataset<T> + ?Sized> Loader<'d, T, D> {
    /// Mini-batches of `batch_size` samples, in order, keeping the last partial batch.
    ///
    /// # Errors
    /// [`Error::Loader`](crate::Error::Loader) for an empty dataset or a zero batch size.
    pub fn new(dataset: &'d D, batch_size: usize) -> Result<Self> {
        Self::with_order(dataset, DataLoader::new(dataset.len(), batch_size)?)
    }

    /// Batches in the order `order` gives: [`DataLoader::full_batch`] for batch gradient
    /// descent, [`DataLoader::stochastic`] for one sample at a time, and so on.
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) when `order` is for a dataset of a
    /// different length.
    pub fn with_order(dataset: &'d D, order: DataLoader) -> Result<Self> {
        if order.num_samples() != dataset.len() {
            return Err(crate::Error::Shape {
                op: "Loader::with_order",
                reason: format!(
                    "the order is for {} samples but the dataset has {}",
                    order.num_samples(),
                    dataset.len()
                ),
            });
        }
        Ok(Loader {
            dataset,
            order,
            element: PhantomData,
        })
    }

    /// Shuffles the samples each epoch, from `seed` and the epoch number.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.order = self.order.shuffle(seed);
        self
    }

    /// Whether to leave out the last batch when it is smaller than the others.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.order = self.order.drop_last(drop);
        self
    }

    /// The batches of one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.order.batches_per_epoch()
    }

    /// The index order behind the batches.
    pub fn order(&self) -> &DataLoader {
        &self.order
    }

    /// The batches of epoch `epoch`, each gathered from the dataset when the iterator
    /// reaches it. The same epoch gives the same batches every time.
    pub fn epoch(&self, epoch: u64) -> impl ExactSizeIterator<Item = Batch<T>> + '_ {
        let dataset = self.dataset;
        let indices: Vec<Vec<usize>> = self.order.epoch(epoch).collect();
        indices.into_iter().map(move |idx| dataset.batch(&idx))
    }
}
