//! The tape's error type.

use crate::NodeId;
use descent_tensor::{Shape, ShapeDisplay};
use std::fmt;

/// A node as errors name it: its id, its op, its name and scope when it has them, and
/// its shape.
///
/// Displays as `node 2 (tanh in layer1/act, shape [2, 3])` or `node 0 'x' (var, shape [])`:
///
/// ```
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(0.5).named("x");
/// let h = {
///     let _layer = tape.scope("layer1");
///     let _act = tape.scope("act");
///     tape.constant(Tensor::<f64>::zeros(&[2, 3])).tanh()
/// };
/// let read = tape.read();
/// assert_eq!(read.node_ref(h.id()).to_string(), "node 2 (tanh in layer1/act, shape [2, 3])");
/// assert_eq!(read.node_ref(x.id()).to_string(), "node 0 'x' (var, shape [])");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// The node's id on its tape.
    pub id: NodeId,
    /// The op that made the node.
    pub op: &'static str,
    /// The node's name, if it was given one.
    pub name: Option<String>,
    /// The scope path it was recorded in (empty at the top level).
    pub scope: String,
    /// The node's shape.
    pub shape: Shape,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.id.index())?;
        if let Some(name) = &self.name {
            write!(f, " '{name}'")?;
        }
        write!(f, " ({}", self.op)?;
        if !self.scope.is_empty() {
            write!(f, " in {}", self.scope)?;
        }
        write!(f, ", shape {})", ShapeDisplay(&self.shape))
    }
}

/// What can go wrong when recording an op or reading the tape.
///
/// Every variant names the op it came from; shape errors name the shapes and the nodes
/// involved, so a message can be acted on without a debugger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operands of an element-wise op do not broadcast to a common shape.
    #[error("{op}: shapes {} and {} cannot be broadcast together (lhs: {lhs}; rhs: {rhs})", ShapeDisplay(&.lhs.shape), ShapeDisplay(&.rhs.shape))]
    Broadcast {
        /// The op.
        op: &'static str,
        /// The left operand.
        lhs: Box<NodeRef>,
        /// The right operand.
        rhs: Box<NodeRef>,
    },
    /// The operands of a matrix multiply do not multiply.
    #[error("{op}: cannot multiply {} by {}: {reason} (lhs: {lhs}; rhs: {rhs})", ShapeDisplay(&.lhs.shape), ShapeDisplay(&.rhs.shape))]
    MatMul {
        /// The op.
        op: &'static str,
        /// Why the shapes do not multiply.
        reason: String,
        /// The left operand.
        lhs: Box<NodeRef>,
        /// The right operand.
        rhs: Box<NodeRef>,
    },
    /// An operand has a shape the op cannot take.
    #[error("{op}: {reason} (operand: {node})")]
    Shape {
        /// The op.
        op: &'static str,
        /// What is wrong with the shape.
        reason: String,
        /// The operand at fault.
        node: Box<NodeRef>,
    },
    /// Two or more operands that must agree in shape do not.
    #[error("{op}: {reason} (operands: {})", .nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("; "))]
    Shapes {
        /// The op.
        op: &'static str,
        /// What disagrees.
        reason: String,
        /// The operands involved.
        nodes: Vec<Box<NodeRef>>,
    },
    /// An axis is out of range for the operand's number of axes.
    #[error("{op}: axis {axis} is out of range for a tensor with {ndim} {} (operand: {node})", if *.ndim == 1 { "axis" } else { "axes" })]
    Axis {
        /// The op.
        op: &'static str,
        /// The axis asked for (negative counts from the end).
        axis: isize,
        /// The operand's number of axes.
        ndim: usize,
        /// The operand.
        node: Box<NodeRef>,
    },
    /// An index (gather index, class label) is out of range.
    #[error(
        "{op}: index {index} at position {position} is out of range for an axis of extent {extent} (operand: {node})"
    )]
    Index {
        /// The op.
        op: &'static str,
        /// The offending index.
        index: usize,
        /// Where it sits in the index list (flat).
        position: usize,
        /// The extent it must be below.
        extent: usize,
        /// The operand indexed.
        node: Box<NodeRef>,
    },
    /// A handle from a different tape was given to this tape.
    #[error("{op}: node {} belongs to another tape (tape #{handle_tape}, not tape #{tape}); handles cannot move between tapes", .id.index())]
    ForeignHandle {
        /// The op.
        op: &'static str,
        /// The handle's node id.
        id: NodeId,
        /// The tape the handle came from.
        handle_tape: u64,
        /// The tape it was used on.
        tape: u64,
    },
    /// A handle made before the tape's last `reset()` or `rewind()` was used after it.
    #[error("{op}: node {} was recorded before the tape was reset or rewound (handle generation {handle_generation}, tape generation {tape_generation}); record it again (a kept parameter: take a new handle with param())", .id.index())]
    StaleHandle {
        /// The op.
        op: &'static str,
        /// The handle's node id.
        id: NodeId,
        /// The generation the handle was made in.
        handle_generation: u64,
        /// The tape's current generation.
        tape_generation: u64,
    },
    /// `rewind` was given a checkpoint from another tape, or one the tape has since
    /// been reset or rewound past.
    #[error(
        "rewind: the checkpoint is stale (taken on tape #{checkpoint_tape} at generation {checkpoint_generation}; this is tape #{tape} at generation {tape_generation}): take a new one"
    )]
    StaleCheckpoint {
        /// The tape the checkpoint was taken on.
        checkpoint_tape: u64,
        /// The generation it was taken (or last rewound to) in.
        checkpoint_generation: u64,
        /// The tape it was given to.
        tape: u64,
        /// That tape's generation.
        tape_generation: u64,
    },
    /// An argument other than an operand is invalid (an empty list, a zero extent).
    #[error("{op}: {reason}")]
    Argument {
        /// The op.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A `ParamId` from another `ParamStore` was used.
    #[error(
        "{op}: the parameter id belongs to another store (store #{param_store}, not store #{store})"
    )]
    ForeignParam {
        /// The op.
        op: &'static str,
        /// The store the id came from.
        param_store: u32,
        /// The store it was used with.
        store: u32,
    },
    /// A `ParamId` whose parameter was removed from its store was used.
    #[error("{op}: the parameter was removed from its store")]
    RemovedParam {
        /// The op.
        op: &'static str,
    },
    /// A parameter was inserted under a name the store already holds: names are how
    /// checkpoints, reports and `state_dict`s tell parameters apart.
    #[error(
        "{op}: the store already holds a parameter named '{name}'; parameter names must be unique"
    )]
    DuplicateParam {
        /// The op.
        op: &'static str,
        /// The name given twice.
        name: String,
    },
    /// Anomaly detection found a NaN or infinity in an op's result; the op was not
    /// recorded.
    #[error("{op}: produced {value} at node {} ({}shape {}); operands: {}", .node.index(), if .scope.is_empty() { String::new() } else { format!("in {}, ", .scope) }, ShapeDisplay(.shape), .operands.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("; "))]
    NonFinite {
        /// The op.
        op: &'static str,
        /// The first non-finite value in the result.
        value: f64,
        /// The id the node would have had.
        node: NodeId,
        /// The scope it was being recorded in.
        scope: String,
        /// The result's shape.
        shape: Shape,
        /// The operands, with their values summarised.
        operands: Vec<Operand>,
    },
    /// The op's result needs more memory than could be allocated.
    #[error("{op}: its result of {elements} elements does not fit in memory")]
    Allocation {
        /// The op.
        op: &'static str,
        /// Elements the result needs.
        elements: usize,
    },
    /// An op's differentiable rule (`*_vjp`) or tangent rule (`*_jvp`) was asked for
    /// at a point where the op has no derivative (a tie in `maximum`, `minimum` or
    /// `max_axis`), so a gradient that could be differentiated again, or a tangent,
    /// would be silently wrong. The fast first-order walk still gives PyTorch's
    /// subgradient there.
    #[error("{op}: not differentiable here: {reason} (node: {node})")]
    NotDifferentiable {
        /// The op.
        op: &'static str,
        /// Why the derivative does not exist.
        reason: String,
        /// The node whose rule was asked for.
        node: Box<NodeRef>,
    },
    /// The op's backward rule cannot be recorded as ops yet, so its gradient cannot be
    /// differentiated again (its first derivative, and its tangent in forward mode,
    /// are available).
    #[error(
        "{op}: its backward cannot be differentiated yet: {reason}; first-order gradients and forward-mode tangents through it work (node: {node})"
    )]
    HigherOrderUnsupported {
        /// The op.
        op: &'static str,
        /// What is missing.
        reason: &'static str,
        /// The node whose rule was asked for.
        node: Box<NodeRef>,
    },
    /// A value given to the tape does not fit its shape.
    #[error(transparent)]
    Tensor(#[from] descent_tensor::TensorError),
}

/// An operand of an op that produced a non-finite value, with its values summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct Operand {
    /// The operand node.
    pub node: Box<NodeRef>,
    /// Its values: all of them when few, else count, range and non-finite count.
    pub values: String,
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.node, self.values)
    }
}

/// Summarises values for a report: `[1, -2, 3]` when there are at most 6, else
/// `1000 values in [-2.5, 3.1], mean 0.12, 2 NaN, 0 inf`.
///
/// ```
/// use descent_tape::summarize;
/// assert_eq!(summarize([1.0, -2.0]), "[1, -2]");
/// assert_eq!(summarize((0..10).map(f64::from)), "10 values in [0, 9], mean 4.5");
/// ```
pub fn summarize(values: impl IntoIterator<Item = f64>) -> String {
    let v: Vec<f64> = values.into_iter().collect();
    if v.len() <= 6 {
        let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
        return format!("[{}]", parts.join(", "));
    }
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let nan = v.iter().filter(|x| x.is_nan()).count();
    let inf = v.iter().filter(|x| x.is_infinite()).count();
    let mut s = format!("{} values", v.len());
    if !finite.is_empty() {
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        s.push_str(&format!(" in [{lo}, {hi}], mean {mean}"));
    }
    if nan + inf > 0 {
        s.push_str(&format!(", {nan} NaN, {inf} inf"));
    }
    s
}

/// The result type of the tape's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
