//! The scalar path of the reverse walk: one element-wise rule on numbers, for scalar
//! nodes, which both loops of the walk (`crates/backprop/src/walk.rs`) call.

use crate::op::Op;
use crate::tape::Node;
use descent_tensor::Float;

/// The backward rule of scalar node `node` (an entry of `nodes`) with gradient `g`,
/// on numbers: for each operand that requires a gradient, `add(operand index,
/// contribution)`. Returns `false`, having done nothing, when the node's rule is not
/// element-wise (a reduction, a loss, ...): the caller then runs the general rule,
/// [`backward_node`](crate::ops::backward_node). A leaf has no rule and returns `true`.
///
/// The one place the scalar dispatch (`Op::Unary` to [`UnaryOp::derivative`](crate::op::UnaryOp::derivative),
/// `Op::Binary` to [`BinaryOp::partials`](crate::op::BinaryOp::partials)) is written: both loops of the reverse walk
/// call it. Always inlined, so that each loop keeps its own way of adding (a bare
/// slice in the walk's tight loop) and pays no call.
// Hidden from the docs: only the reverse walk (another crate) calls it.
#[doc(hidden)]
#[inline(always)]
pub fn scalar_backward<T: Float>(
    nodes: &[Node<T>],
    node: &Node<T>,
    g: T,
    mut add: impl FnMut(usize, T),
) -> bool {
    // Operands of element-wise scalar nodes are scalar nodes recorded before them.
    match node.op {
        Op::Unary(u) => {
            let p = node.args[0].index();
            let parent = &nodes[p];
            if parent.meta.requires_grad() {
                add(p, g * u.derivative(parent.scalar, node.scalar));
            }
            true
        }
        Op::Binary(b) => {
            let [pa, pb] = node.args;
            let (pa, pb) = (pa.index(), pb.index());
            let (na, nb) = (&nodes[pa], &nodes[pb]);
            let (da, db) = b.partials(na.scalar, nb.scalar, node.scalar);
            if na.meta.requires_grad() {
                add(pa, g * da);
            }
            if nb.meta.requires_grad() {
                add(pb, g * db);
            }
            true
        }
        Op::Var | Op::Constant => true,
        // Every other op listed, so that a new one is a decision here, not a default.
        Op::Sum
        | Op::Mean
        | Op::SumAxis { .. }
        | Op::MeanAxis { .. }
        | Op::MaxAxis { .. }
        | Op::MatMul
        | Op::MatMulT
        | Op::Transpose { .. }
        | Op::Reshape
        | Op::BroadcastTo
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Stack { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::IndexSelect { .. }
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::CrossEntropy { .. }
        | Op::Mse
        | Op::BceWithLogits
        | Op::Conv1d { .. }
        | Op::Conv2d { .. }
        | Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AvgPool2dBackward { .. }
        | Op::ConvInputGrad { .. }
        | Op::ConvWeightGrad { .. }
        | Op::Pad { .. }
        | Op::Clamp { .. }
        | Op::Where { .. }
        | Op::LstmGates
        | Op::LstmCell
        | Op::LstmHidden
        | Op::GruGates
        | Op::GruHidden
        | Op::Custom { .. } => false,
    }
}
