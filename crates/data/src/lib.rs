//! Datasets and batch loaders for descent: samples in memory ([`TensorDataset`]), read
//! from CSV ([`read_csv`]) or NumPy's `.npy` files ([`read_npy`]), and a [`Loader`]
//! that yields them as batches of tensors with their targets, in the batch, stochastic
//! or mini-batch regime, shuffled from a seed, with or without the last partial batch.
//!
//! | PyTorch | descent |
//! |---|---|
//! | `torch.utils.data.Dataset` (map-style) | [`Dataset`] |
//! | `TensorDataset(x, y)` | [`TensorDataset::new`] |
//! | `DataLoader(ds, batch_size, shuffle=True, drop_last=True, generator=g)` | [`Loader::new`]`(&ds, batch).shuffle(seed).drop_last(true)` |
//! | `random_split(ds, [0.8, 0.2], generator=g)` | [`TensorDataset::split`] |
//! | `numpy.load` / `numpy.save` | [`read_npy`] / [`write_npy`] |
//!
//! ```
//! use descent_data::{CsvOptions, Loader, read_csv};
//! use rand::SeedableRng;
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits.csv");
//! let digits = read_csv::<f32>(path, &CsvOptions::classes(10).scale(1.0 / 16.0)).unwrap();
//! let (train, test) = digits.split(0.8, &mut rand_chacha::ChaCha8Rng::seed_from_u64(7)).unwrap();
//! let loader = Loader::new(&train, 32).unwrap().shuffle(7);
//! let batch = loader.epoch(0).next().unwrap();
//! assert_eq!(batch.inputs.shape(), [32, 64]);
//! assert_eq!(test.inputs().shape(), [360, 64]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod csv;
mod dataset;
mod error;
mod loader;
mod npy;

pub use crate::csv::{CsvOptions, TargetColumn, TargetKind, read_csv};
pub use dataset::{Batch, Dataset, Targets, TensorDataset};
pub use error::{Error, Result};
pub use loader::Loader;
pub use npy::{encode as encode_npy, read_npy, write_npy};
