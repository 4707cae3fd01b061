//! The op set. Each family's file holds, for each op, its user-facing methods on
//! [`Var`], its forward computation and its backward rule, side by side.
//! This module holds what a backward rule sees ([`BackwardCtx`], [`GradSink`]) and the
//! dispatch from a node to its rule; the [`Op`] enum itself is plain data in
//! `src/op.rs`, which the arena imports without importing the ops. See `README.md` in
//! this folder for how to add an op.

pub mod activation;
pub mod conv;
pub mod custom;
pub mod elementwise;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod num;
pub mod pad;
pub mod pool;
pub mod recurrent;
pub mod reduce;
pub mod select;
pub mod shape;

use crate::error::{Error, Result};
use crate::tape::Inner;
use crate::{NodeId, Tape, Var};
use descent_tensor::{Float, Shape, Tensor, View};
use smallvec::SmallVec;

// Re-exported where they were defined before `src/op.rs` took them, so that
// `descent_tape::ops::Op` and friends keep working.
pub use crate::op::{BinaryOp, Op, UnaryOp};
pub use num::Number;

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
    #[inline]
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
        Op::ScatterAdd { axis, indices } => shape::scatter_add_backward(axis, indices, &cx, sink),
        Op::Conv1d { options, .. } => conv::conv_backward(options, true, &cx, sink),
        Op::Conv2d { options, .. } => conv::conv_backward(options, false, &cx, sink),
        Op::MaxPool2d { options } => pool::max_pool2d_backward(options, &cx, sink),
        Op::AvgPool2d { options } => pool::avg_pool2d_backward(options, &cx, sink),
        Op::AvgPool2dBackward { options } => pool::avg_pool2d_backward_backward(options, &cx, sink),
        Op::ConvInputGrad { options } => conv::conv_input_grad_backward(options, &cx, sink),
        Op::ConvWeightGrad { options } => conv::conv_weight_grad_backward(options, &cx, sink),
        Op::Pad { widths } => pad::pad_backward(widths, &cx, sink),
        Op::Clamp { bounds } => select::clamp_backward(bounds, &cx, sink),
        Op::Where { mask } => select::where_backward(mask, &cx, sink),
        Op::LstmGates => recurrent::lstm_gates_backward(&cx, sink),
        Op::LstmCell => recurrent::lstm_cell_backward(&cx, sink),
        Op::LstmHidden => recurrent::lstm_hidden_backward(&cx, sink),
        Op::GruGates => recurrent::gru_gates_backward(&cx, sink),
        Op::GruHidden => recurrent::gru_hidden_backward(&cx, sink),
        Op::Custom { rule, .. } => custom::custom_backward(rule, &cx, sink),
    }
}

/// What a differentiable rule (`*_vjp`) or a tangent rule (`*_jvp`) sees of one node:
/// its operands and its value as [`Var`]s on the same tape, so that whatever the rule
/// computes from them is recorded and can be differentiated again.
pub struct DiffCtx<'t, T: Float> {
    tape: &'t Tape<T>,
    id: NodeId,
    parents: SmallVec<[NodeId; 2]>,
    needs: SmallVec<[bool; 2]>,
}

impl<'t, T: Float> DiffCtx<'t, T> {
    fn new(tape: &'t Tape<T>, id: NodeId, needs: impl Fn(NodeId) -> bool) -> Self {
        let parents: SmallVec<[NodeId; 2]> = tape.inner.borrow().parents(id).into();
        let needs = parents.iter().map(|&p| needs(p)).collect();
        DiffCtx {
            tape,
            id,
            parents,
            needs,
        }
    }
    /// Operand `i` as a handle.
    pub fn input(&self, i: usize) -> Var<'t, T> {
        self.tape.handle(self.parents[i])
    }
    /// The node itself as a handle.
    pub fn out(&self) -> Var<'t, T> {
        self.tape.handle(self.id)
    }
    /// Number of operands.
    pub fn arity(&self) -> usize {
        self.parents.len()
    }
    /// Whether operand `i` wants a contribution.
    pub fn needs(&self, i: usize) -> bool {
        self.needs[i]
    }
    /// The shape of operand `i`.
    pub fn shape(&self, i: usize) -> Shape {
        self.tape.inner.borrow().shape(self.parents[i]).into()
    }
    /// The node's own shape.
    pub fn out_shape(&self) -> Shape {
        self.tape.inner.borrow().shape(self.id).into()
    }
    /// Integer data the op keeps on the tape (shape, data), copied out: a rule records
    /// ops while it holds them.
    pub(crate) fn indices(&self, slot: u32) -> (Vec<usize>, Vec<usize>) {
        let inner = self.tape.inner.borrow();
        let ix = &inner.indices[slot as usize];
        (ix.shape.to_vec(), ix.data.clone())
    }
    /// The error for a point where the op has no derivative.
    pub(crate) fn not_differentiable(&self, reason: String) -> Error {
        let inner = self.tape.inner.borrow();
        Error::NotDifferentiable {
            op: inner.nodes[self.id.index()].op.name(),
            reason,
            node: inner.node_ref(self.id),
        }
    }
    /// The error for an op whose backward is not yet recorded as ops.
    pub(crate) fn higher_order_unsupported(&self, reason: &'static str) -> Error {
        let inner = self.tape.inner.borrow();
        Error::HigherOrderUnsupported {
            op: inner.nodes[self.id.index()].op.name(),
            reason,
            node: inner.node_ref(self.id),
        }
    }
    /// A constant of zeros.
    pub(crate) fn zeros(&self, shape: &[usize]) -> Var<'t, T> {
        self.tape.constant(Tensor::zeros(shape))
    }
}

/// Contributions of a differentiable rule: one per operand (shaped like it), `None`
/// where the operand wants none.
pub type Contributions<'t, T> = SmallVec<[Option<Var<'t, T>>; 2]>;

/// Runs the differentiable backward rule of node `id` with gradient `g`: returns each
/// operand's contribution recorded as ops on the tape (so gradients are nodes that can
/// be differentiated again), `None` for operands `needs` rejects. The values equal the
/// fast rule's ([`backward_node`]); `tests/higher_order.rs` holds each op to that.
///
/// # Errors
/// [`Error::NotDifferentiable`] where the op has no derivative (ties in `maximum`,
/// `minimum`, `max_axis`), and the errors of the ops the rule records.
// Hidden from the docs: the differentiable walk (descent-backprop's `higher`) calls it.
#[doc(hidden)]
pub fn vjp_node<'t, T: Float>(
    tape: &'t Tape<T>,
    id: NodeId,
    g: Var<'t, T>,
    needs: impl Fn(NodeId) -> bool,
) -> Result<Contributions<'t, T>> {
    let cx = DiffCtx::new(tape, id, needs);
    let op = tape.inner.borrow().nodes[id.index()].op;
    // One arm per op, no fallback: a new op does not compile until it names its rule.
    match op {
        Op::Var | Op::Constant => Ok(SmallVec::new()),
        Op::Unary(u) => elementwise::unary_vjp(u, &cx, g),
        Op::Binary(b) => elementwise::binary_vjp(b, &cx, g),
        Op::Sum => reduce::sum_vjp(&cx, g),
        Op::Mean => reduce::mean_vjp(&cx, g),
        Op::SumAxis { axis, .. } => reduce::sum_axis_vjp(axis, &cx, g),
        Op::MeanAxis { axis, .. } => reduce::mean_axis_vjp(axis, &cx, g),
        Op::MaxAxis { axis, .. } => reduce::max_axis_vjp(axis, &cx, g),
        Op::MatMul => matmul::matmul_vjp(&cx, g),
        Op::MatMulT => matmul::matmul_t_vjp(&cx, g),
        Op::Transpose { a, b } => shape::transpose_vjp(a, b, &cx, g),
        Op::Reshape => shape::reshape_vjp(&cx, g),
        Op::BroadcastTo => shape::broadcast_to_vjp(&cx, g),
        Op::Slice { axis, start, end } => shape::slice_vjp(axis, start, end, &cx, g),
        Op::Concat { axis, .. } => shape::join_vjp(axis, false, &cx, g),
        Op::Stack { axis, .. } => shape::join_vjp(axis, true, &cx, g),
        Op::Gather { axis, indices } => shape::gather_vjp(axis, indices, &cx, g),
        Op::ScatterAdd { axis, indices } => shape::scatter_add_vjp(axis, indices, &cx, g),
        Op::IndexSelect { axis, indices } => index::index_select_vjp(axis, indices, &cx, g),
        Op::Softmax { axis } => activation::softmax_vjp(axis, &cx, g),
        Op::LogSoftmax { axis } => activation::log_softmax_vjp(axis, &cx, g),
        Op::CrossEntropy { labels } => loss::cross_entropy_vjp(labels, &cx, g),
        Op::Mse => loss::mse_vjp(&cx, g),
        Op::BceWithLogits => loss::bce_with_logits_vjp(&cx, g),
        Op::Conv1d { options, .. } => conv::conv_vjp(options, true, &cx, g),
        Op::Conv2d { options, .. } => conv::conv_vjp(options, false, &cx, g),
        Op::ConvInputGrad { options } => conv::conv_input_grad_vjp(options, &cx, g),
        Op::ConvWeightGrad { options } => conv::conv_weight_grad_vjp(options, &cx, g),
        Op::MaxPool2d { options } => pool::max_pool2d_vjp(options, &cx, g),
        Op::AvgPool2d { options } => pool::avg_pool2d_vjp(options, &cx, g),
        Op::AvgPool2dBackward { options } => pool::avg_pool2d_backward_vjp(options, &cx, g),
        Op::Pad { widths } => pad::pad_vjp(widths, &cx, g),
        Op::Clamp { bounds } => select::clamp_vjp(bounds, &cx, g),
        Op::Where { mask } => select::where_vjp(mask, &cx, g),
        Op::LstmGates => recurrent::lstm_gates_vjp(&cx, g),
        Op::LstmCell => recurrent::lstm_cell_vjp(&cx, g),
        Op::LstmHidden => recurrent::lstm_hidden_vjp(&cx, g),
        Op::GruGates => recurrent::gru_gates_vjp(&cx, g),
        Op::GruHidden => recurrent::gru_hidden_vjp(&cx, g),
        Op::Custom { rule, .. } => custom::custom_vjp(rule, &cx, g),
    }
}

/// Runs the tangent rule (forward mode) of node `id`: from the tangents of its
/// operands (`None` for an operand whose tangent is zero), the tangent of its value,
/// recorded as ops on the tape; `None` when every operand's tangent is zero.
///
/// # Errors
/// As [`vjp_node`].
// Hidden from the docs: the forward-mode walk (descent-backprop's `higher`) calls it.
#[doc(hidden)]
pub fn jvp_node<'t, T: Float>(
    tape: &'t Tape<T>,
    id: NodeId,
    tangents: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let cx = DiffCtx::new(tape, id, |_| true);
    if tangents.iter().all(Option::is_none) {
        return Ok(None);
    }
    let op = tape.inner.borrow().nodes[id.index()].op;
    let t = tangents;
    // One arm per op, no fallback, as in `vjp_node`.
    match op {
        Op::Var | Op::Constant => Ok(None),
        Op::Unary(u) => elementwise::unary_jvp(u, &cx, t),
        Op::Binary(b) => elementwise::binary_jvp(b, &cx, t),
        Op::Sum => reduce::sum_jvp(&cx, t),
        Op::Mean => reduce::mean_jvp(&cx, t),
        Op::SumAxis { axis, keepdim } => reduce::sum_axis_jvp(axis, keepdim, &cx, t),
        Op::MeanAxis { axis, keepdim } => reduce::mean_axis_jvp(axis, keepdim, &cx, t),
        Op::MaxAxis { axis, keepdim } => reduce::max_axis_jvp(axis, keepdim, &cx, t),
        Op::MatMul => matmul::matmul_jvp(&cx, t),
        Op::MatMulT => matmul::matmul_t_jvp(&cx, t),
        Op::Transpose { a, b } => shape::transpose_jvp(a, b, &cx, t),
        Op::Reshape => shape::reshape_jvp(&cx, t),
        Op::BroadcastTo => shape::broadcast_to_jvp(&cx, t),
        Op::Slice { axis, start, end } => shape::slice_jvp(axis, start, end, &cx, t),
        Op::Concat { axis, .. } => shape::join_jvp(axis, false, &cx, t),
        Op::Stack { axis, .. } => shape::join_jvp(axis, true, &cx, t),
        Op::Gather { axis, indices } => shape::gather_jvp(axis, indices, &cx, t),
        Op::ScatterAdd { axis, indices } => shape::scatter_add_jvp(axis, indices, &cx, t),
        Op::IndexSelect { axis, indices } => index::index_select_jvp(axis, indices, &cx, t),
        Op::Softmax { axis } => activation::softmax_jvp(axis, &cx, t),
        Op::LogSoftmax { axis } => activation::log_softmax_jvp(axis, &cx, t),
        Op::CrossEntropy { labels } => loss::cross_entropy_jvp(labels, &cx, t),
        Op::Mse => loss::mse_jvp(&cx, t),
        Op::BceWithLogits => loss::bce_with_logits_jvp(&cx, t),
        Op::Conv1d { options, .. } => conv::conv_jvp(options, true, &cx, t),
        Op::Conv2d { options, .. } => conv::conv_jvp(options, false, &cx, t),
        Op::MaxPool2d { options } => pool::max_pool2d_jvp(options, &cx, t),
        Op::AvgPool2d { options } => pool::avg_pool2d_jvp(options, &cx, t),
        Op::AvgPool2dBackward { options } => pool::avg_pool2d_backward_jvp(options, &cx, t),
        Op::ConvInputGrad { options } => conv::conv_input_grad_jvp(options, &cx, t),
        Op::ConvWeightGrad { options } => conv::conv_weight_grad_jvp(options, &cx, t),
        Op::Pad { widths } => pad::pad_jvp(widths, &cx, t),
        Op::Clamp { bounds } => select::clamp_jvp(bounds, &cx, t),
        Op::Where { mask } => select::where_jvp(mask, &cx, t),
        Op::LstmGates => recurrent::lstm_gates_jvp(&cx, t),
        Op::LstmCell => recurrent::lstm_cell_jvp(&cx, t),
        Op::LstmHidden => recurrent::lstm_hidden_jvp(&cx, t),
        Op::GruGates => recurrent::gru_gates_jvp(&cx, t),
        Op::GruHidden => recurrent::gru_hidden_jvp(&cx, t),
        Op::Custom { rule, .. } => custom::custom_jvp(rule, &cx, t),
    }
}

/// `g` summed down to `shape` over the axes broadcasting stretched (the reverse of
/// broadcasting, recorded with `sum_axis` and so differentiable). `g` itself when the
/// shapes already agree.
pub(crate) fn reduce_to<'t, T: Float>(g: Var<'t, T>, shape: &[usize]) -> Result<Var<'t, T>> {
    let gs = g.shape();
    if gs.as_slice() == shape {
        return Ok(g);
    }
    let mut g = g;
    let lead = gs.len() - shape.len();
    for _ in 0..lead {
        g = g.try_sum_axis(0, false)?;
    }
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 && gs[lead + d] != 1 {
            g = g.try_sum_axis(d as isize, true)?;
        }
    }
    Ok(g)
}

/// `a + b` where either may be missing (a zero).
pub(crate) fn add_opt<'t, T: Float>(
    a: Option<Var<'t, T>>,
    b: Option<Var<'t, T>>,
) -> Result<Option<Var<'t, T>>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(a.try_add(b)?),
        (a, None) => a,
        (None, b) => b,
    })
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
