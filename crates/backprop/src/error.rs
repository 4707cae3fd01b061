//! The reverse walk's error type.

use descent_tape::NodeId;
use descent_tensor::{Shape, ShapeDisplay};

/// What can go wrong when running backward or looking gradients up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `backward` was asked for a non-scalar output without a cotangent.
    #[error("backward: the output (node {}) has shape {}, not a scalar; use backward_with and a cotangent of that shape", .id.index(), ShapeDisplay(.shape))]
    NotScalar {
        /// The output node.
        id: NodeId,
        /// Its shape.
        shape: Shape,
    },
    /// The cotangent given to `backward_with` does not match the output's shape.
    #[error("backward_with: the cotangent has shape {}, but the output (node {}) has shape {}", ShapeDisplay(.cotangent), .id.index(), ShapeDisplay(.output))]
    CotangentShape {
        /// The output node.
        id: NodeId,
        /// The output's shape.
        output: Shape,
        /// The cotangent's shape.
        cotangent: Shape,
    },
    /// A handle from another tape was used to look up gradients.
    #[error("gradient lookup: node {} belongs to tape #{handle_tape}, but these gradients are of tape #{gradients_tape}", .id.index())]
    ForeignHandle {
        /// The handle's node id.
        id: NodeId,
        /// The handle's tape.
        handle_tape: u64,
        /// The tape the gradients were computed on.
        gradients_tape: u64,
    },
    /// A handle from another generation of the tape (across a `reset`) was used to look
    /// up gradients.
    #[error("gradient lookup: node {} is from tape generation {handle_generation}, but these gradients are of generation {gradients_generation} (the tape was reset in between)", .id.index())]
    StaleHandle {
        /// The handle's node id.
        id: NodeId,
        /// The handle's generation.
        handle_generation: u64,
        /// The generation the gradients were computed on.
        gradients_generation: u64,
    },
    /// A handle to a node recorded after the gradients were computed was used to look
    /// one up: they know nothing of it, not even its shape.
    #[error("gradient lookup: node {} was recorded after these gradients were computed (the tape had {known} nodes then); run backward again to include it", .id.index())]
    RecordedAfter {
        /// The handle's node id.
        id: NodeId,
        /// Nodes on the tape when the gradients were computed.
        known: usize,
    },
    /// A lookup asked for an intermediate node's gradient in a store that keeps only the
    /// leaves' ([`crate::Keep::Leaves`]): the walk gave its buffer back as it passed.
    #[error("gradient lookup: node {} is not a leaf, and these gradients keep only the leaves' (Keep::Leaves); walk into a store made with Keep::All to look up intermediate nodes", .id.index())]
    NotKept {
        /// The node looked up.
        id: NodeId,
    },
    /// With anomaly detection on, a gradient came out NaN or infinite. `by` names the
    /// node whose backward rule produced it (absent when it came from the seed or a
    /// hook).
    #[error("{}", non_finite_gradient_message(.node, *.value, .by.as_deref(), .incoming, .operands))]
    NonFiniteGradient {
        /// The node whose gradient is not finite.
        node: Box<descent_tape::NodeRef>,
        /// The first non-finite element.
        value: f64,
        /// The node whose rule produced it.
        by: Option<Box<descent_tape::NodeRef>>,
        /// A summary of the gradient that flowed into that rule.
        incoming: String,
        /// The rule's operands, summarised.
        operands: Vec<descent_tape::Operand>,
    },
    /// A per-sample pass was given no samples.
    #[error("per_sample_grads: the batch is empty")]
    EmptyBatch,
    /// A per-sample loss closure returned a non-scalar.
    #[error("per_sample_grads: the loss of sample {sample} has shape {}, not a scalar", ShapeDisplay(.shape))]
    SampleNotScalar {
        /// The sample's index in the batch.
        sample: usize,
        /// The loss's shape.
        shape: Shape,
    },
    /// A sample's loss or gradient is NaN or infinite.
    #[error("per_sample_grads: sample {sample} has a non-finite loss or gradient (loss {loss})")]
    NonFiniteSample {
        /// The sample's index in the batch.
        sample: usize,
        /// Its loss.
        loss: f64,
    },
    /// An argument is out of range.
    #[error("{op}: {reason}")]
    Argument {
        /// The function.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A gradient was looked up by a name no node on the tape has.
    #[error("gradient lookup: no node on the tape is named '{name}'")]
    UnknownName {
        /// The name looked up.
        name: String,
    },
    /// The output handle itself is invalid (stale or foreign).
    #[error(transparent)]
    Tape(#[from] descent_tape::Error),
}

fn non_finite_gradient_message(
    node: &descent_tape::NodeRef,
    value: f64,
    by: Option<&descent_tape::NodeRef>,
    incoming: &str,
    operands: &[descent_tape::Operand],
) -> String {
    let operands: Vec<String> = operands.iter().map(|o| o.to_string()).collect();
    match by {
        Some(by) => format!(
            "backward: the rule of {by} gave {node} a non-finite gradient ({value}) from \
             incoming gradient {incoming}; operands of the rule: {}",
            operands.join("; ")
        ),
        None => format!(
            "backward: the gradient of {node} is not finite ({value}) before its rule ran \
             (it came from the seed or a hook); operands: {}",
            operands.join("; ")
        ),
    }
}
