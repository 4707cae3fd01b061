//! The op set. Each family's file holds, for each op, its user-facing methods on
//! [`Var`](crate::Var), its forward computation and its backward rule, side by side.
//! This module holds what a backward rule sees ([`BackwardCtx`], [`GradSink`]) and the
//! dispatch from a node to its rule; the [`Op`] enum itself is plain data in
//! `src/op.rs`, which the arena imports without importing the ops. See `README.md` in
//! this folder for how to add an op.

pub mod activation;
pub mod elementwise;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod reduce;
pub mod shape;

use crate::NodeId;
use crate::error::{Error, Result};
use crate::tape::Inner;
use descent_tensor::{Float, View};

// Re-exported where they were defined before `src/op.rs` took them, so that
// `descent_tape::ops::Op` and friends keep working.
pub use crate::op::{BinaryOp, Op, UnaryOp};

/// Where backward rules add their contributions: the gradient buffer of a node,
/// zeroed the first time it is asked for. Implemented by the reverse walk.
// Hidden from the docs: public only because the reverse walk, in descent-backprop,
// implements or calls it; a user never needs it.
#[doc(hidden)]
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
// Hidden from the docs, as `GradSink`: only backward rules and the walk see it.
#[doc(hidden)]
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
// Hidden from the docs, as `GradSink`: only the reverse walk calls it.
#[doc(hidden)]
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
    // One arm per op, no fallback: a new op does not compile until it names its rule.
    match node.op {
        Op::Var | Op::Constant => {}
        Op::Unary(u) => elementwise::unary_backward(u, &cx, sink),
        Op::Binary(b) => elementwise::binary_backward(b, &cx, sink),
        Op::Sum => reduce::sum_backward(&cx, sink),
        Op::Mean => reduce::mean_backward(&cx, sink),
        Op::SumAxis { axis, .. } => reduce::sum_axis_backward(axis, &cx, sink),
        Op::MeanAxis { axis, .. } => reduce::mean_axis_backward(axis, &cx, sink),
        Op::MaxAxis { axis, .. } => reduce::max_axis_backward(axis, &cx, sink),
        Op::MatMul => matmul::backward(&cx, sink),
        Op::MatMulT => matmul::backward_t(&cx, sink),
        Op::Transpose { a, b } => shape::transpose_backward(a, b, &cx, sink),
        Op::Reshape => shape::reshape_backward(&cx, sink),
        Op::BroadcastTo => shape::broadcast_to_backward(&cx, sink),
        Op::Slice { axis, start, end } => shape::slice_backward(axis, start, end, &cx, sink),
        Op::Concat { axis, .. } => shape::join_backward(axis, false, &cx, sink),
        Op::Stack { axis, .. } => shape::join_backward(axis, true, &cx, sink),
        Op::Gather { axis, indices } => shape::gather_backward(axis, indices, &cx, sink),
        Op::IndexSelect { axis, indices } => index::index_select_backward(axis, indices, &cx, sink),
        Op::Softmax { axis } => activation::softmax_backward(axis, &cx, sink),
        Op::LogSoftmax { axis } => activation::log_softmax_backward(axis, &cx, sink),
        Op::CrossEntropy { labels } => loss::cross_entropy_backward(labels, &cx, sink),
        Op::Mse => loss::mse_backward(&cx, sink),
        Op::BceWithLogits => loss::bce_with_logits_backward(&cx, sink),
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
