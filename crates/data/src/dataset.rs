//! Datasets: what a sample is, the [`Dataset`] trait a loader reads, and
//! [`TensorDataset`], samples held in memory as one tensor of inputs and their targets.

use crate::error::{Error, Result};
use descent_tensor::{Float, Tensor};
use rand::Rng;
use rand::seq::SliceRandom;

/// What a model is trained to produce for each sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets<T: Float> {
    /// A class index per sample, as `cross_entropy` takes them (PyTorch's `LongTensor`
    /// of labels).
    Classes(Vec<usize>),
    /// A tensor whose first axis is the sample (`[n]` or `[n, ...]`): regression
    /// targets, ±1 labels for a margin loss, one-hot rows.
    Values(Tensor<T>),
}

impl<T: Float> Targets<T> {
    /// How many samples the targets describe.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.shape().first().copied().unwrap_or(0),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class indices, if these are classes.
    pub fn classes(&self) -> Option<&[usize]> {
        match self {
            Targets::Classes(c) => Some(c),
            Targets::Values(_) => None,
        }
    }

    /// The target tensor, if these are values.
    pub fn values(&self) -> Option<&Tensor<T>> {
        match self {
            Targets::Classes(_) => None,
            Targets::Values(v) => Some(v),
        }
    }

    /// The targets of samples `indices`, in that order.
    fn select(&self, indices: &[usize]) -> Targets<T> {
        match self {
            Targets::Classes(c) => Targets::Classes(indices.iter().map(|&i| c[i]).collect()),
            Targets::Values(v) => Targets::Values(select_rows(v, indices)),
        }
    }
}

/// One batch: the inputs of its samples stacked along a new first axis, their targets,
/// and which samples of the dataset they are.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<T: Float> {
    /// `[batch, ...sample shape]`.
    pub inputs: Tensor<T>,
    /// The samples' targets, in the same order.
    pub targets: Targets<T>,
    /// The samples' positions in the dataset.
    pub indices: Vec<usize>,
}

impl<T: Float> Batch<T> {
    /// The number of samples in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch holds no samples.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// A collection of samples a [`Loader`](crate::Loader) can batch: PyTorch's map-style
/// `Dataset`. Implement it for data that is not one tensor in memory (files read on
/// demand, samples generated from their index).
///
/// ```
/// use descent_data::{Batch, Dataset, Targets};
/// use descent_tensor::Tensor;
///
/// /// The numbers 0..n with their squares as targets, made on demand.
/// struct Squares(usize);
///
/// impl Dataset<f64> for Squares {
///     fn len(&self) -> usize {
///         self.0
///     }
///     fn batch(&self, indices: &[usize]) -> Batch<f64> {
///         let x: Vec<f64> = indices.iter().map(|&i| i as f64).collect();
///         let y = x.iter().map(|v| v * v).collect();
///         Batch {
///             inputs: Tensor::new(&[x.len(), 1], x).unwrap(),
///             targets: Targets::Values(Tensor::new(&[indices.len()], y).unwrap()),
///             indices: indices.to_vec(),
///         }
///     }
/// }
///
/// let b = Squares(10).batch(&[3, 7]);
/// assert_eq!(b.targets.values().unwrap().data(), [9.0, 49.0]);
/// ```
pub trait Dataset<T: Float> {
    /// The number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples `indices` (each below [`Dataset::len`]) as one batch, in that order.
    fn batch(&self, indices: &[usize]) -> Batch<T>;
}

/// Samples held in memory: an input tensor whose first axis is the sample, and a
/// target per sample. PyTorch's `TensorDataset`.
///
/// ```
/// use descent_data::{Dataset, TensorDataset, Targets};
/// use descent_tensor::Tensor;
///
/// let x = Tensor::new(&[4, 2], vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]).unwrap();
/// let xor = TensorDataset::new(x, Targets::Classes(vec![0, 1, 1, 0])).unwrap();
/// let b = xor.batch(&[2, 0]);
/// assert_eq!(b.inputs.shape(), [2, 2]);
/// assert_eq!(b.inputs.data(), [1.0, 0.0, 0.0, 0.0]);
/// assert_eq!(b.targets.classes(), Some(&[1, 0][..]));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDataset<T: Float> {
    inputs: Tensor<T>,
    targets: Targets<T>,
}

impl<T: Float> TensorDataset<T> {
    /// Samples whose inputs are `inputs`' rows along its first axis.
    ///
    /// # Errors
    /// [`Error::Shape`] when `inputs` is a scalar or the targets describe a different
    /// number of samples.
    pub fn new(inputs: Tensor<T>, targets: Targets<T>) -> Result<Self> {
        let Some(&n) = inputs.shape().first() else {
            return Err(Error::Shape {
                op: "TensorDataset::new",
                reason: "the inputs are a scalar; their first axis must be the sample".into(),
            });
        };
        if let Targets::Values(v) = &targets
            && v.ndim() == 0
        {
            return Err(Error::Shape {
                op: "TensorDataset::new",
                reason: "the targets are a scalar; their first axis must be the sample".into(),
            });
        }
        if targets.len() != n {
            return Err(Error::Shape {
                op: "TensorDataset::new",
                reason: format!(
                    "inputs {:?} hold {n} samples but there are {} targets",
                    inputs.shape(),
                    targets.len()
                ),
            });
        }
        Ok(TensorDataset { inputs, targets })
    }

    /// All inputs, `[n, ...sample shape]`.
    pub fn inputs(&self) -> &Tensor<T> {
        &self.inputs
    }

    /// All targets.
    pub fn targets(&self) -> &Targets<T> {
        &self.targets
    }

    /// The shape of one sample's input.
    pub fn sample_shape(&self) -> &[usize] {
        &self.inputs.shape()[1..]
    }

    /// Everything, as one batch in order.
    pub fn all(&self) -> Batch<T> {
        self.batch(&(0..self.len()).collect::<Vec<_>>())
    }

    /// The same samples with each input reshaped to `shape` (the 64 pixels of a digit
    /// as `[1, 8, 8]` for a convolution, say).
    ///
    /// ```
    /// # use descent_data::{TensorDataset, Targets};
    /// # use descent_tensor::Tensor;
    /// let d = TensorDataset::new(Tensor::<f32>::zeros(&[5, 64]), Targets::Classes(vec![0; 5])).unwrap();
    /// assert!(d.clone().reshape_samples(&[9, 9]).is_err());
    /// assert_eq!(d.reshape_samples(&[1, 8, 8]).unwrap().inputs().shape(), [5, 1, 8, 8]);
    /// ```
    ///
    /// # Errors
    /// [`Error::Shape`] when `shape` holds a different number of elements.
    pub fn reshape_samples(self, shape: &[usize]) -> Result<Self> {
        let per_sample: usize = self.sample_shape().iter().product();
        if shape.iter().product::<usize>() != per_sample {
            return Err(Error::Shape {
                op: "TensorDataset::reshape_samples",
                reason: format!(
                    "samples of shape {:?} ({per_sample} elements) cannot be {shape:?}",
                    self.sample_shape()
                ),
            });
        }
        let n = self.len();
        let full: Vec<usize> = std::iter::once(n).chain(shape.iter().copied()).collect();
        let inputs = self
            .inputs
            .reshape(&full)
            .expect("same element count, checked above");
        Ok(TensorDataset {
            inputs,
            targets: self.targets,
        })
    }

    /// The samples `indices`, in that order, as a dataset of their own.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for an index past the end.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        if let Some(&index) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::OutOfRange {
                op: "TensorDataset::subset",
                index,
                len: self.len(),
            });
        }
        let Batch {
            inputs, targets, ..
        } = self.batch(indices);
        Ok(TensorDataset { inputs, targets })
    }

    /// Shuffles the samples with `rng` and splits them in two: the first
    /// `⌊len × fraction⌋` and the rest (a training and a test set, say). The same `rng`
    /// state gives the same split.
    ///
    /// ```
    /// # use descent_data::{Dataset, TensorDataset, Targets};
    /// # use descent_tensor::Tensor;
    /// use rand::SeedableRng;
    /// let d = TensorDataset::new(Tensor::from_fn(&[10, 1], |i| i as f64), Targets::Classes((0..10).collect())).unwrap();
    /// let (train, test) = d.split(0.8, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1)).unwrap();
    /// assert_eq!((train.len(), test.len()), (8, 2));
    /// let mut seen: Vec<usize> = train.targets().classes().unwrap().to_vec();
    /// seen.extend(test.targets().classes().unwrap());
    /// seen.sort();
    /// assert_eq!(seen, (0..10).collect::<Vec<_>>());
    /// ```
    ///
    /// # Errors
    /// [`Error::Shape`] when `fraction` is not in `[0, 1]`.
    pub fn split<R: Rng + ?Sized>(&self, fraction: f64, rng: &mut R) -> Result<(Self, Self)> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::Shape {
                op: "TensorDataset::split",
                reason: format!("the fraction {fraction} is not in [0, 1]"),
            });
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        let first = (self.len() as f64 * fraction).floor() as usize;
        let (a, b) = order.split_at(first);
        Ok((self.subset(a)?, self.subset(b)?))
    }

    /// Applies `f` to every input element (scaling pixels to `[0, 1]`, say).
    pub fn map_inputs(mut self, f: impl Fn(T) -> T) -> Self {
        self.inputs.data_mut().iter_mut().for_each(|x| *x = f(*x));
        self
    }
}

impl<T: Float> Dataset<T> for TensorDataset<T> {
    fn len(&self) -> usize {
        self.targets.len()
    }

    /// # Panics
    /// If an index is past the end (a [`Loader`](crate::Loader) never asks for one).
    fn batch(&self, indices: &[usize]) -> Batch<T> {
        Batch {
            inputs: select_rows(&self.inputs, indices),
            targets: self.targets.select(indices),
            indices: indices.to_vec(),
        }
    }
}

/// The rows `indices` of `t` along its first axis, stacked in that order.
fn select_rows<T: Float>(t: &Tensor<T>, indices: &[usize]) -> Tensor<T> {
    let row: usize = t.shape()[1..].iter().product();
    let mut data = Vec::with_capacity(indices.len() * row);
    for &i in indices {
        data.extend_from_slice(&t.data()[i * row..(i + 1) * row]);
    }
    let mut shape = t.shape().to_vec();
    shape[0] = indices.len();
    Tensor::new(&shape, data).expect("rows × row length elements")
}
