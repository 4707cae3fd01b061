//! The op set as data: [`Op`], the node kinds the tape records, with the element-wise
//! functions [`UnaryOp`] and [`BinaryOp`] it names. The arena (`tape/`) stores these and
//! nothing else of the ops; what each op computes forward and backward lives in `ops/`,
//! one file per family. This module imports neither, so the two never import each other.

use std::fmt;

/// Element-wise functions of one operand. `derivative(x, y)` is `dy/dx` at input `x`
/// with output `y`; each rule reads whichever of the two is cheaper.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `x^p` for a constant real `p`.
    PowF(f64),
    /// `x^n` for a constant integer `n`.
    PowI(i32),
    /// `e^x`
    Exp,
    /// `ln x`
    Ln,
    /// `√x`
    Sqrt,
    /// `|x|`
    Abs,
    /// `sin x`
    Sin,
    /// `cos x`
    Cos,
    /// `tanh x`
    Tanh,
    /// `sinh x`
    Sinh,
    /// `cosh x`
    Cosh,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `max(x, 0)`
    Relu,
    /// `x` for `x > 0`, else `αx`.
    LeakyRelu(f64),
    /// GELU, tanh approximation.
    Gelu,
    /// `ln(1 + e^x)`
    Softplus,
    // Operations with a plain number: the number is held in the node, exactly (an
    // `f32` widens to `f64` without rounding), instead of as a constant node.
    // `ops/elementwise/number.rs` records them.
    /// `x + c`
    AddScalar(f64),
    /// `x - c`
    SubScalar(f64),
    /// `c - x`
    RSubScalar(f64),
    /// `x · c`
    MulScalar(f64),
    /// `x / c`
    DivScalar(f64),
    /// `c / x`
    RDivScalar(f64),
}

impl UnaryOp {
    /// The op's name as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::PowF(_) => "powf",
            UnaryOp::PowI(_) => "powi",
            UnaryOp::Exp => "exp",
            UnaryOp::Ln => "ln",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sinh => "sinh",
            UnaryOp::Cosh => "cosh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu(_) => "leaky_relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Softplus => "softplus",
            UnaryOp::AddScalar(_) => "add_scalar",
            UnaryOp::SubScalar(_) => "sub_scalar",
            UnaryOp::RSubScalar(_) => "rsub_scalar",
            UnaryOp::MulScalar(_) => "mul_scalar",
            UnaryOp::DivScalar(_) => "div_scalar",
            UnaryOp::RDivScalar(_) => "rdiv_scalar",
        }
    }
}

/// Element-wise functions of two operands, broadcast NumPy-style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)`
    Maximum,
    /// `min(a, b)`
    Minimum,
}

impl BinaryOp {
    /// The op's name as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
}

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
    /// A base with elements scatter-added into it by index along an axis (PyTorch's
    /// `scatter_add`); operands: the base and the source. The adjoint of `Gather`.
    ScatterAdd {
        /// The axis indexed.
        axis: u32,
        /// The tape slot holding the indices.
        indices: u32,
    },
    /// Whole slices picked by index along an axis (PyTorch's `index_select`; an
    /// embedding lookup along axis 0).
    IndexSelect {
        /// The axis indexed.
        axis: u32,
        /// The tape slot holding the indices (and their shape).
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
    /// Convolution over one spatial axis: input, weight and an optional bias.
    Conv1d {
        /// The tape slot holding stride, padding, dilation and groups.
        options: u32,
        /// Where the operand list starts in the tape's operand lists.
        first: u32,
        /// How many operands (2, or 3 with a bias).
        count: u32,
    },
    /// Convolution over two spatial axes: input, weight and an optional bias.
    Conv2d {
        /// The tape slot holding stride, padding, dilation and groups.
        options: u32,
        /// Where the operand list starts in the tape's operand lists.
        first: u32,
        /// How many operands (2, or 3 with a bias).
        count: u32,
    },
    /// The input gradient of a convolution (the transposed convolution of an output
    /// gradient with the weight), as an op so that it can be differentiated again;
    /// operands: the output gradient and the weight.
    ConvInputGrad {
        /// The tape slot holding stride, padding, dilation, groups and the input's shape.
        options: u32,
    },
    /// The weight gradient of a convolution (the correlation of the input with an
    /// output gradient), as an op; operands: the input and the output gradient.
    ConvWeightGrad {
        /// The tape slot holding stride, padding, dilation, groups and the weight's shape.
        options: u32,
    },
    /// Maximum over windows of the last two axes.
    MaxPool2d {
        /// The tape slot holding kernel, stride, padding, ceil mode and the position of
        /// each maximum.
        options: u32,
    },
    /// Mean over windows of the last two axes.
    AvgPool2d {
        /// The tape slot holding kernel, stride, padding and ceil mode.
        options: u32,
    },
    /// The input gradient of an average pooling (each output's gradient spread over
    /// its window), as an op; the operand is the output gradient.
    AvgPool2dBackward {
        /// The tape slot holding kernel, stride, padding, ceil mode and the input's shape.
        options: u32,
    },
    /// Zeros added before and after trailing axes.
    Pad {
        /// The tape slot holding the widths, last axis first (as `F.pad`).
        widths: u32,
    },
    /// Each element limited to an interval.
    Clamp {
        /// The tape slot holding the bounds (the bits of two `f64`s).
        bounds: u32,
    },
    /// Elements chosen from two broadcast operands by a 0/1 mask (`torch.where`).
    Where {
        /// The tape slot holding the mask and its shape.
        mask: u32,
    },
    /// LSTM gate activations: sigmoid, sigmoid, tanh, sigmoid on the four `H`-wide
    /// blocks of the last axis (PyTorch's order `i, f, g, o`).
    LstmGates,
    /// An LSTM cell state `f ⊙ c_prev + i ⊙ g`; operands: the gate activations and
    /// the previous cell state.
    LstmCell,
    /// An LSTM hidden state `o ⊙ tanh(c)`; operands: the gate activations and the cell
    /// state.
    LstmHidden,
    /// GRU gates `[σ(p_r + q_r) | σ(p_z + q_z) | tanh(p_n + r ⊙ q_n)]`; operands: the
    /// input's projection `p` and the hidden state's `q`.
    GruGates,
    /// A GRU hidden state `n + z ⊙ (h - n)`; operands: the gates and the previous hidden
    /// state.
    GruHidden,
    /// An op whose backward rule is given by a [`CustomOp`](crate::ops::custom::CustomOp)
    /// kept on the tape (activation checkpointing records its segments so).
    Custom {
        /// The tape slot holding the rule.
        rule: u32,
        /// Where the operand list starts in the tape's operand lists.
        first: u32,
        /// How many operands.
        count: u32,
    },
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
            Op::ScatterAdd { .. } => "scatter_add",
            Op::IndexSelect { .. } => "index_select",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::Mse => "mse",
            Op::BceWithLogits => "bce_with_logits",
            Op::Conv1d { .. } => "conv1d",
            Op::Conv2d { .. } => "conv2d",
            Op::ConvInputGrad { .. } => "conv_input_grad",
            Op::ConvWeightGrad { .. } => "conv_weight_grad",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::AvgPool2dBackward { .. } => "avg_pool2d_backward",
            Op::Pad { .. } => "pad",
            Op::Clamp { .. } => "clamp",
            Op::Where { .. } => "where_cond",
            Op::LstmGates => "lstm_gates",
            Op::LstmCell => "lstm_cell",
            Op::LstmHidden => "lstm_hidden",
            Op::GruGates => "gru_gates",
            Op::GruHidden => "gru_hidden",
            Op::Custom { .. } => "custom",
        }
    }

    /// Where the node's operands are: inline in the node (this many), or in a list on
    /// the tape. Every variant is listed, with no fallback arm: a new op does not
    /// compile until it says how many parents it has.
    #[inline]
    pub(crate) fn operands(&self) -> Operands {
        match *self {
            Op::Var | Op::Constant => Operands::Inline(0),
            Op::Unary(_)
            | Op::Sum
            | Op::Mean
            | Op::SumAxis { .. }
            | Op::MeanAxis { .. }
            | Op::MaxAxis { .. }
            | Op::Transpose { .. }
            | Op::Reshape
            | Op::BroadcastTo
            | Op::Slice { .. }
            | Op::Gather { .. }
            | Op::IndexSelect { .. }
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::CrossEntropy { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AvgPool2dBackward { .. }
            | Op::Pad { .. }
            | Op::Clamp { .. }
            | Op::LstmGates => Operands::Inline(1),
            Op::Binary(_)
            | Op::MatMul
            | Op::MatMulT
            | Op::Mse
            | Op::BceWithLogits
            | Op::ScatterAdd { .. }
            | Op::ConvInputGrad { .. }
            | Op::ConvWeightGrad { .. }
            | Op::Where { .. }
            | Op::LstmCell
            | Op::LstmHidden
            | Op::GruGates
            | Op::GruHidden => Operands::Inline(2),
            Op::Concat { first, count, .. }
            | Op::Stack { first, count, .. }
            | Op::Conv1d { first, count, .. }
            | Op::Conv2d { first, count, .. }
            | Op::Custom { first, count, .. } => Operands::List {
                first: first as usize,
                count: count as usize,
            },
        }
    }

    /// True for leaves (variables and constants).
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Var | Op::Constant)
    }
}

/// The op with its attributes: `powf(2.5)`, `sum_axis(1, keepdim)`, `slice(0, 2..5)`.
/// Every variant is listed, so a new op's attributes cannot be left out by accident.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keep = |k: bool| if k { ", keepdim" } else { "" };
        match *self {
            Op::Unary(UnaryOp::PowF(p)) => write!(f, "powf({p})"),
            Op::Unary(UnaryOp::PowI(n)) => write!(f, "powi({n})"),
            Op::Unary(UnaryOp::LeakyRelu(a)) => write!(f, "leaky_relu({a})"),
            Op::Unary(
                u @ (UnaryOp::AddScalar(c)
                | UnaryOp::SubScalar(c)
                | UnaryOp::RSubScalar(c)
                | UnaryOp::MulScalar(c)
                | UnaryOp::DivScalar(c)
                | UnaryOp::RDivScalar(c)),
            ) => write!(f, "{}({c})", u.name()),
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
            | Op::Gather { axis, .. }
            | Op::ScatterAdd { axis, .. }
            | Op::IndexSelect { axis, .. } => write!(f, "{}({axis})", self.name()),
            // Ops without attributes (or, for cross_entropy, with only a slot number
            // that says nothing to a reader) print their name.
            Op::Var
            | Op::Constant
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Sum
            | Op::Mean
            | Op::MatMul
            | Op::MatMulT
            | Op::Reshape
            | Op::BroadcastTo
            | Op::CrossEntropy { .. }
            | Op::Mse
            | Op::BceWithLogits
            | Op::Where { .. }
            | Op::LstmGates
            | Op::LstmCell
            | Op::LstmHidden
            | Op::GruGates
            | Op::GruHidden => f.write_str(self.name()),
            // Their attributes live in a tape slot: `TapeRead::write_node_head` prints
            // them after the name (`Op::write_options`).
            Op::Conv1d { .. }
            | Op::Conv2d { .. }
            | Op::ConvInputGrad { .. }
            | Op::ConvWeightGrad { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AvgPool2dBackward { .. }
            | Op::Pad { .. }
            | Op::Clamp { .. } => f.write_str(self.name()),
            // The rule's own name follows in `TapeRead::write_node_head`.
            Op::Custom { .. } => f.write_str(self.name()),
        }
    }
}

impl Op {
    /// The tape slot holding the op's attributes, for ops whose attributes do not fit
    /// in the variant (convolution, pooling, padding).
    pub fn options_slot(&self) -> Option<u32> {
        match *self {
            Op::Conv1d { options, .. }
            | Op::Conv2d { options, .. }
            | Op::ConvInputGrad { options }
            | Op::ConvWeightGrad { options }
            | Op::MaxPool2d { options }
            | Op::AvgPool2d { options }
            | Op::AvgPool2dBackward { options } => Some(options),
            Op::Pad { widths } => Some(widths),
            Op::Clamp { bounds } => Some(bounds),
            Op::Var
            | Op::Constant
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Sum
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
            | Op::Where { .. }
            | Op::LstmGates
            | Op::LstmCell
            | Op::LstmHidden
            | Op::GruGates
            | Op::GruHidden
            | Op::Custom { .. } => None,
        }
    }

    /// Writes the attributes kept in the op's tape slot (`data`), in parentheses:
    /// `(stride [2, 2], padding [1, 1], dilation [1, 1], groups 1)`. Nothing for
    /// other ops.
    pub fn write_options(&self, data: &[usize], f: &mut impl fmt::Write) -> fmt::Result {
        let pair = |i: usize| [data[i], data[i + 1]];
        match *self {
            Op::Conv1d { .. } => write!(
                f,
                "(stride {}, padding {}, dilation {}, groups {})",
                data[1], data[3], data[5], data[6]
            ),
            Op::Conv2d { .. } => write!(
                f,
                "(stride {:?}, padding {:?}, dilation {:?}, groups {})",
                pair(0),
                pair(2),
                pair(4),
                data[6]
            ),
            // A one-axis convolution's gradient keeps a 3-d shape after the options.
            Op::ConvInputGrad { .. } | Op::ConvWeightGrad { .. } if data.len() == 10 => write!(
                f,
                "(stride {}, padding {}, dilation {}, groups {}, {} {:?})",
                data[1],
                data[3],
                data[5],
                data[6],
                if matches!(self, Op::ConvInputGrad { .. }) {
                    "input"
                } else {
                    "weight"
                },
                &data[7..]
            ),
            Op::ConvInputGrad { .. } | Op::ConvWeightGrad { .. } => write!(
                f,
                "(stride {:?}, padding {:?}, dilation {:?}, groups {}, {} {:?})",
                pair(0),
                pair(2),
                pair(4),
                data[6],
                if matches!(self, Op::ConvInputGrad { .. }) {
                    "input"
                } else {
                    "weight"
                },
                &data[7..]
            ),
            Op::MaxPool2d { .. } | Op::AvgPool2d { .. } => write!(
                f,
                "(kernel {:?}, stride {:?}, padding {:?}{})",
                pair(0),
                pair(2),
                pair(4),
                if data[6] == 1 { ", ceil_mode" } else { "" }
            ),
            Op::AvgPool2dBackward { .. } => write!(
                f,
                "(kernel {:?}, stride {:?}, padding {:?}{}, input {:?})",
                pair(0),
                pair(2),
                pair(4),
                if data[6] == 1 { ", ceil_mode" } else { "" },
                &data[7..]
            ),
            Op::Pad { .. } => write!(f, "({data:?})"),
            Op::Clamp { .. } => {
                let (min, max) = crate::ops::select::decode_bounds(data);
                write!(f, "({min}, {max})")
            }
            Op::Var
            | Op::Constant
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Sum
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
            | Op::Where { .. }
            | Op::LstmGates
            | Op::LstmCell
            | Op::LstmHidden
            | Op::GruGates
            | Op::GruHidden
            | Op::Custom { .. } => Ok(()),
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
