//! The op set. Each family's file holds, for each op, its user-facing methods on
//! [`Var`](crate::Var), its forward computation and its backward rule, side by side.
//! This module holds the [`Op`] enum the tape records and the dispatch from a node
//! to its family's backward rule. See `README.md` in this folder for how to add an op.

pub mod activation;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod reduce;
pub mod shape;

use crate::NodeId;
use crate::error::{Error, Result};
use crate::tape::Inner;
use descent_tensor::{Float, View};
use std::fmt;

pub use elementwise::{BinaryOp, UnaryOp};

/// A recorded operation: plain data, so a tape can be printed, compared and checked.
/// Operands are the node's parents; small attributes live in the variant. Integer data
/// (gather indices, labels) lives on the tape, named by a slot.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// A leaf that gradients flow to.
    Var,
    /// A leaf no gradient flows to.
    Constant,
    /// An element-wise function of one operand.
    Unary(UnaryOp),
    /// An element-wise function of two broadcast operands.
    Binary(BinaryOp),
    /// Sum of all elements (a scalar).
    Sum,
    /// Mean of all elements (a scalar).
    Mean,
    /// Sum over one axis.
    SumAxis {
        /// The axis reduced.
        axis: u32,
        /// Whether the reduced axis stays as extent 1.
        keepdim: bool,
    },
    /// Mean over one axis.
    MeanAxis {
        /// The axis reduced.
        axis: u32,
        /// Whether the reduced axis stays as extent 1.
        keepdim: bool,
    },
    /// Maximum over one axis.
    MaxAxis {
        /// The axis reduced.
        axis: u32,
        /// Whether the reduced axis stays as extent 1.
        keepdim: bool,
    },
    /// Matrix product, 2-d or batched.
    MatMul,
    /// Matrix product with the transpose of a 2-d right operand, `a @ bᵀ`.
    MatMulT,
    /// Two axes exchanged.
    Transpose {
        /// One axis.
        a: u32,
        /// The other axis.
        b: u32,
    },
    /// The same elements under another shape.
    Reshape,
    /// Stretched to a larger shape by broadcasting.
    BroadcastTo,
    /// A range along one axis.
    Slice {
        /// The axis sliced.
        axis: u32,
        /// First index kept.
        start: u32,
        /// One past the last index kept.
        end: u32,
    },
    /// Operands joined along an existing axis.
    Concat {
        /// The axis joined along.
        axis: u32,
        /// Where the operand list starts in the tape's operand lists.
        first: u32,
        /// How many operands.
        count: u32,
    },
    /// Operands joined along a new axis.
    Stack {
        /// Where the new axis goes.
        axis: u32,
        /// Where the operand list starts in the tape's operand lists.
        first: u32,
        /// How many operands.
        count: u32,
    },
    /// Elements picked by index along an axis (PyTorch's `gather`).
    Gather {
        /// The axis indexed.
        axis: u32,
        /// The tape slot holding the indices.
        indices: u32,
    },
    /// Softmax along an axis.
    Softmax {
        /// The axis normalised.
        axis: u32,
    },
    /// Log-softmax along an axis.
    LogSoftmax {
        /// The axis normalised.
        axis: u32,
    },
    /// Mean cross-entropy of logits `[N, C]` against integer labels.
    CrossEntropy {
        /// The tape slot holding the labels.
        labels: u32,
    },
    /// Mean squared error of two same-shape operands.
    Mse,
    /// Mean binary cross-entropy of logits against targets in `[0, 1]`.
    BceWithLogits,
}

impl Op {
    /// The op's name as the API spells it (`"tanh"`, `"matmul"`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Var => "var",
            Op::Constant => "constant",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Sum => "sum",
            Op::Mean => "mean",
            Op::SumAxis { .. } => "sum_axis",
            Op::MeanAxis { .. } => "mean_axis",
            Op::MaxAxis { .. } => "max_axis",
            Op::MatMul => "matmul",
            Op::MatMulT => "matmul_t",
            Op::Transpose { .. } => "transpose",
            Op::Reshape => "reshape",
            Op::BroadcastTo => "broadcast_to",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Stack { .. } => "stack",
            Op::Gather { .. } => "gather",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::Mse => "mse",
            Op::BceWithLogits => "bce_with_logits",
        }
    }

    /// Where the node's operands are: inline in the node (this many), or in a list on
    /// the tape.
    #[inline]
    pub(crate) fn operands(&self) -> Operands {
        match *self {
            Op::Var | Op::Constant => Operands::Inline(0),
            Op::Binary(_) | Op::MatMul | Op::MatMulT | Op::Mse | Op::BceWithLogits => {
                Operands::Inline(2)
            }
            Op::Concat { first, count, .. } | Op::Stack { first, count, .. } => Operands::List {
                first: first as usize,
                count: count as usize,
            },
            _ => Operands::Inline(1),
        }
    }

    /// True for leaves (variables and constants).
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Var | Op::Constant)
    }
}

/// The op with its attributes: `powf(2.5)`, `sum_axis(1, keepdim)`, `slice(0, 2..5)`.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keep = |k: bool| if k { ", keepdim" } else { "" };
        match *self {
            Op::Unary(UnaryOp::PowF(p)) => write!(f, "powf({p})"),
            Op::Unary(UnaryOp::PowI(n)) => write!(f, "powi({n})"),
            Op::Unary(UnaryOp::LeakyRelu(a)) => write!(f, "leaky_relu({a})"),
            Op::SumAxis { axis, keepdim }
            | Op::MeanAxis { axis, keepdim }
            | Op::MaxAxis { axis, keepdim } => {
                write!(f, "{}({axis}{})", self.name(), keep(keepdim))
            }
            Op::Transpose { a, b } => write!(f, "transpose({a}, {b})"),
            Op::Slice { axis, start, end } => write!(f, "slice({axis}, {start}..{end})"),
            Op::Concat { axis, .. }
            | Op::Stack { axis, .. }
            | Op::Softmax { axis }
            | Op::LogSoftmax { axis }
            | Op::Gather { axis, .. } => write!(f, "{}({axis})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// Where a node's operands are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operands {
    /// In the node, this many (0, 1 or 2).
    Inline(usize),
    /// In the tape's operand lists.
    List { first: usize, count: usize },
}

/// Where backward rules add their contributions: the gradient buffer of a node,
/// zeroed the first time it is asked for. Implemented by the reverse walk.
pub trait GradSink<T: Float> {
    /// The gradient buffer of `node` (one element for a scalar node), for adding into.
    fn grad_mut(&mut self, node: NodeId) -> &mut [T];

    /// The gradient buffer of `node` for a rule that can either overwrite it or add
    /// into it, and which: `true` means nothing has reached the node yet, the contents
    /// are unspecified, and the rule must write every element (saving the pass that
    /// zeroes it); `false` means add, as into [`GradSink::grad_mut`]. By default a
    /// sink always says add.
    fn grad_for_write(&mut self, node: NodeId) -> (&mut [T], bool) {
        (self.grad_mut(node), false)
    }

    /// The buffers of two tensor nodes at once, each as [`GradSink::grad_for_write`]
    /// gives it, so that a rule can fill both at the same time. `None` when the sink
    /// cannot (the default), when `a == b`, or when either is a scalar node: the rule
    /// then fills them one after the other.
    fn grads_for_write_pair(&mut self, a: NodeId, b: NodeId) -> Option<[(&mut [T], bool); 2]> {
        let _ = (a, b);
        None
    }
}

/// What a backward rule sees of one node: its operands' values, its own value, and the
/// gradient of the output with respect to it.
pub struct BackwardCtx<'a, T: Float> {
    pub(crate) inner: &'a Inner<T>,
    pub(crate) parents: &'a [NodeId],
    /// The node's value.
    pub out: View<'a, T>,
    /// The gradient flowing into the node (its δ), shaped like its value.
    pub g: View<'a, T>,
}

impl<'a, T: Float> BackwardCtx<'a, T> {
    /// The value of operand `i`.
    pub fn input(&self, i: usize) -> View<'a, T> {
        self.inner.view(self.parents[i])
    }
    /// The node id of operand `i`.
    pub fn parent(&self, i: usize) -> NodeId {
        self.parents[i]
    }
    /// Number of operands.
    pub fn arity(&self) -> usize {
        self.parents.len()
    }
    /// Whether operand `i` wants a gradient (so its rule may be skipped).
    pub fn needs(&self, i: usize) -> bool {
        self.inner.requires_grad(self.parents[i])
    }
    /// Integer data the op keeps on the tape.
    pub(crate) fn indices(&self, slot: u32) -> (&'a [usize], &'a [usize]) {
        let ix = &self.inner.indices[slot as usize];
        (&ix.shape, &ix.data)
    }
}

/// Runs the backward rule of node `id`: adds its contribution to every operand that
/// needs a gradient. `g` is the node's gradient.
pub fn backward_node<T: Float, S: GradSink<T>>(
    tape: &crate::TapeRead<'_, T>,
    id: NodeId,
    g: View<'_, T>,
    sink: &mut S,
) {
    let inner = tape.inner_ref();
    let node = &inner.nodes[id.index()];
    let cx = BackwardCtx {
        inner,
        parents: inner.parents(id),
        out: inner.view(id),
        g,
    };
    match node.op {
        Op::Var | Op::Constant => {}
        Op::Unary(u) => elementwise::unary_backward(u, &cx, sink),
        Op::Binary(b) => elementwise::binary_backward(b, &cx, sink),
        Op::Sum | Op::Mean | Op::SumAxis { .. } | Op::MeanAxis { .. } | Op::MaxAxis { .. } => {
            reduce::backward(node.op, &cx, sink)
        }
        Op::MatMul => matmul::backward(&cx, sink),
        Op::MatMulT => matmul::backward_t(&cx, sink),
        Op::Transpose { .. }
        | Op::Reshape
        | Op::BroadcastTo
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Stack { .. }
        | Op::Gather { .. } => shape::backward(node.op, &cx, sink),
        Op::Softmax { .. } | Op::LogSoftmax { .. } => activation::backward(node.op, &cx, sink),
        Op::CrossEntropy { .. } | Op::Mse | Op::BceWithLogits => loss::backward(node.op, &cx, sink),
    }
}

/// Resolves a possibly negative axis against `ndim` axes.
pub(crate) fn resolve_axis(
    inner: &Inner<impl Float>,
    op: &'static str,
    axis: isize,
    ndim: usize,
    node: NodeId,
) -> Result<usize> {
    let resolved = if axis < 0 { axis + ndim as isize } else { axis };
    if resolved < 0 || resolved as usize >= ndim {
        return Err(Error::Axis {
            op,
            axis,
            ndim,
            node: inner.node_ref(node),
        });
    }
    Ok(resolved as usize)
}
