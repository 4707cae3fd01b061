//! The layers' error type.

use crate::init::InitError;
use descent_tensor::ShapeDisplay;

/// What can stop building or applying a layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An initialiser refused its shape or parameters.
    #[error(transparent)]
    Init(#[from] InitError),
    /// An op on the tape failed (a stale or foreign handle, say).
    #[error(transparent)]
    Tape(#[from] descent_tape::Error),
    /// The input's last axis is not the layer's number of input features.
    #[error(
        "{layer}: the input has shape {}, whose last axis should be the layer's {expected} input features",
        ShapeDisplay(.shape)
    )]
    Features {
        /// The layer's name.
        layer: String,
        /// The layer's input features.
        expected: usize,
        /// The input's shape.
        shape: Vec<usize>,
    },
    /// A tensor given for a parameter has the wrong shape.
    #[error(
        "{layer}: {what} should have shape {}, got {}",
        ShapeDisplay(.expected),
        ShapeDisplay(.found)
    )]
    ParamShape {
        /// The layer's name.
        layer: String,
        /// `"the weight"` or `"the bias"`.
        what: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// A layer's configuration is unusable.
    #[error("{layer}: {reason}")]
    Config {
        /// The layer's name.
        layer: String,
        /// What is wrong.
        reason: String,
    },
}
