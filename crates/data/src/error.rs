//! What can go wrong reading or combining datasets. Every message names the file (and
//! the line and column where there is one) or the shapes that disagree.

use std::path::PathBuf;

/// An error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The CSV reader rejected the file (bad quoting, invalid UTF-8, ...).
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The parser's error, with its position.
        source: csv::Error,
    },
    /// A field is not what its column needs.
    #[error("{path}:{line}: column {column:?}: {text:?} is not {expected}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: u64,
        /// The column's header name, or its 0-based index when the file has no header.
        column: String,
        /// The field as written.
        text: String,
        /// What the column needs ("a number", "a class index below 10").
        expected: String,
    },
    /// A row has a different number of fields from the first.
    #[error("{path}:{line}: {found} fields, but the first row has {expected}")]
    Ragged {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: u64,
        /// The first row's field count.
        expected: usize,
        /// This row's field count.
        found: usize,
    },
    /// The options name a target column the file does not have.
    #[error("{path}: no column {column} (the file has {columns:?})")]
    NoSuchColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The file's columns.
        columns: Vec<String>,
    },
    /// The file has no data rows, or no input columns beside the target.
    #[error("{path}: {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// A `.npy` file is malformed or holds a type this crate does not read.
    #[error("{path}: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Inputs and targets do not describe the same samples, or a shape asked for does
    /// not fit.
    #[error("{op}: {reason}")]
    Shape {
        /// The function that was called.
        op: &'static str,
        /// The shapes and why they do not fit.
        reason: String,
    },
    /// An index past the end of the dataset.
    #[error("{op}: index {index} out of range for a dataset of {len} samples")]
    OutOfRange {
        /// The function that was called.
        op: &'static str,
        /// The index.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// The batching rules rejected the loader's settings (zero batch size, empty data).
    #[error(transparent)]
    Loader(#[from] descent_optim::Error),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
