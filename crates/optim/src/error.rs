//! The optimisers' error type.

use descent_tensor::{Shape, ShapeDisplay};

/// What can stop an optimiser step or a clipping call. A step that fails changes no
/// parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A gradient names a parameter the store does not hold (removed, or of another
    /// store).
    #[error("{op}: the gradients name a parameter this store does not hold: {source}")]
    UnknownParam {
        /// The operation.
        op: &'static str,
        /// Why the store does not hold it: removed, or of another store.
        #[source]
        source: Box<descent_tape::Error>,
    },
    /// A gradient's shape differs from its parameter's.
    #[error("{op}: the gradient of '{name}' has shape {}, the parameter {}", ShapeDisplay(.found), ShapeDisplay(.expected))]
    Shape {
        /// The operation.
        op: &'static str,
        /// The parameter's name.
        name: String,
        /// The parameter's shape.
        expected: Shape,
        /// The gradient's shape.
        found: Shape,
    },
    /// A gradient holds NaN or an infinity: nothing was changed (a step was skipped,
    /// with the parameters as they were; a clipping left every gradient as it was).
    #[error(
        "{op}: the gradient of '{name}' is not finite (element {index} is {value}); {}", nothing_changed(.op)
    )]
    NonFinite {
        /// The operation.
        op: &'static str,
        /// The parameter's name.
        name: String,
        /// Flat index of the first bad element.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A hyper-parameter is out of range.
    #[error("{op}: {reason}")]
    Config {
        /// The optimiser or function.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Optimiser state given to `load_state` does not fit the optimiser or the store:
    /// nothing was changed.
    #[error("{op}: cannot load the optimiser state: {reason}")]
    State {
        /// The optimiser.
        op: &'static str,
        /// What does not fit, naming the parameter and slot.
        reason: String,
    },
    /// A data loader was given a dataset of no samples.
    #[error("{op}: the dataset is empty (0 samples): there is nothing to batch")]
    EmptyDataset {
        /// The constructor.
        op: &'static str,
    },
    /// A data loader was given a batch size of 0.
    #[error("{op}: the batch size must be at least 1, got 0 (for {len} samples)")]
    ZeroBatchSize {
        /// The constructor.
        op: &'static str,
        /// The number of samples.
        len: usize,
    },
    /// A data loader was given different numbers of inputs and labels.
    #[error("{op}: {inputs} inputs but {labels} labels; every input needs exactly one label")]
    LengthMismatch {
        /// The constructor.
        op: &'static str,
        /// The number of inputs.
        inputs: usize,
        /// The number of labels.
        labels: usize,
    },
}

/// What a refused call left as it was: a clipping changes gradients, a step parameters.
fn nothing_changed(op: &str) -> &'static str {
    if op.starts_with("clip") {
        "nothing was clipped and no gradient changed"
    } else {
        "the step was skipped and no parameter changed"
    }
}
