//! What can go wrong saving or loading a checkpoint.

use descent_tensor::ShapeDisplay;
use std::io;
use std::path::PathBuf;

/// What can go wrong saving or loading a checkpoint. Every variant names the file;
/// those about one tensor name it and give what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed, with its context.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid safetensors file: empty, truncated, or corrupted.
    #[error("checkpoint {}: not a valid safetensors file: {reason}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where one is at fault.
        reason: String,
    },
    /// The tensor table or data does not match the checksum recorded when the file was
    /// saved.
    #[error(
        "checkpoint {}: the file is corrupted: the CRC-32 of its tensors (names, shapes and data) is {found:08x}, but {expected:08x} was recorded when it was saved",
        .path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The CRC-32 recorded in the header.
        expected: u32,
        /// The CRC-32 of the data as read.
        found: u32,
    },
    /// The file's tensor names and the store's parameter names differ.
    #[error("checkpoint {}: {}", .path.display(), names_message(.missing, .unexpected))]
    Names {
        /// The file.
        path: PathBuf,
        /// Names the store has and the file lacks.
        missing: Vec<String>,
        /// Names the file has and the store lacks.
        unexpected: Vec<String>,
    },
    /// A tensor's shape differs from its parameter's.
    #[error(
        "checkpoint {}: tensor '{tensor}' has shape {} in the file, but the store's is {}",
        .path.display(), ShapeDisplay(.found), ShapeDisplay(.expected)
    )]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the store (or optimiser) needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor's dtype is not the one needed (no conversion is made).
    #[error(
        "checkpoint {}: tensor '{tensor}' is {found} in the file, but {expected} is needed; dtypes are not converted (load it into a store of the file's type and cast)",
        .path.display()
    )]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The dtype needed (`"F32"`, `"F64"`).
        expected: String,
        /// The dtype in the file.
        found: String,
    },
    /// The file holds something else than asked for: optimiser state where parameters
    /// were expected, another optimiser's state, or a store that cannot be saved.
    #[error("checkpoint {}: {reason}", .path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// The optimiser refused the state.
    #[error("checkpoint {}: {source}", .path.display())]
    Optimizer {
        /// The file.
        path: PathBuf,
        /// The optimiser's error.
        #[source]
        source: Box<descent_optim::Error>,
    },
}

fn names_message(missing: &[String], unexpected: &[String]) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "missing {} (in the store, not in the file)",
            list(missing)
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "unexpected {} (in the file, not in the store)",
            list(unexpected)
        ));
    }
    format!("the names do not match: {}", parts.join("; "))
}

/// What a checkpoint error about bytes in memory names as its file.
pub(super) fn memory() -> PathBuf {
    PathBuf::from("<in memory>")
}
