//! Convolution: `conv1d` and `conv2d`, with stride, padding, dilation, groups and an
//! optional bias, and their backward rule (the input gradient is the transposed
//! convolution, the weight gradient a correlation of the input with the output
//! gradient). The kernels are `descent_tensor::kernels::conv2d` and
//! `conv2d_backward_acc` (im2col and GEMM); a one-axis convolution runs as a
//! two-axis one of height 1.
//!
//! The recorded backward (for gradients of gradients) is written with two ops of its
//! own, `conv_input_grad` and `conv_weight_grad` (`conv/grads.rs`), which run the same
//! kernels; the three ops' rules close over each other, to any order.
//!
//! The options (stride, padding, dilation, groups) do not fit in the 16-byte `Op`:
//! they are kept on the tape in an integer slot, `[stride_h, stride_w, pad_h, pad_w,
//! dilation_h, dilation_w, groups]`, which the op names.

mod grads;

pub(crate) use grads::{
    conv_input_grad_backward, conv_input_grad_jvp, conv_input_grad_vjp, conv_weight_grad_backward,
    conv_weight_grad_jvp, conv_weight_grad_vjp,
};

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::kernels::{self, ConvGeometry};
use descent_tensor::{Float, ShapeDisplay, Tensor};

/// A spatial size given once for both axes (`3`) or per axis (`[3, 1]`, height first).
pub trait IntoPair {
    /// The size per axis, height first.
    fn into_pair(self) -> [usize; 2];
}

impl IntoPair for usize {
    fn into_pair(self) -> [usize; 2] {
        [self, self]
    }
}

impl IntoPair for [usize; 2] {
    fn into_pair(self) -> [usize; 2] {
        self
    }
}

/// The options of [`Var::conv2d`], as `torch.nn.functional.conv2d` names them; the
/// defaults are PyTorch's (stride 1, no padding, dilation 1, one group).
///
/// ```
/// use descent_tape::Conv2dOptions;
/// let o = Conv2dOptions::new().stride(2).padding([1, 0]).groups(2);
/// assert_eq!((o.stride, o.padding, o.dilation, o.groups), ([2, 2], [1, 0], [1, 1], 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows, (height, width).
    pub stride: [usize; 2],
    /// Zeros added on both sides, (height, width).
    pub padding: [usize; 2],
    /// Step between kernel taps, (height, width).
    pub dilation: [usize; 2],
    /// Channel groups: `groups` must divide both channel counts.
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// PyTorch's defaults: stride 1, no padding, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the stride (one number for both axes, or `[h, w]`).
    pub fn stride(mut self, stride: impl IntoPair) -> Self {
        self.stride = stride.into_pair();
        self
    }
    /// Sets the zero padding on each side (one number for both axes, or `[h, w]`).
    pub fn padding(mut self, padding: impl IntoPair) -> Self {
        self.padding = padding.into_pair();
        self
    }
    /// Sets the dilation (one number for both axes, or `[h, w]`).
    pub fn dilation(mut self, dilation: impl IntoPair) -> Self {
        self.dilation = dilation.into_pair();
        self
    }
    /// Sets the number of channel groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// The options of [`Var::conv1d`], as `torch.nn.functional.conv1d` names them; the
/// defaults are PyTorch's.
///
/// ```
/// use descent_tape::Conv1dOptions;
/// let o = Conv1dOptions::new().stride(2).padding(1);
/// assert_eq!((o.stride, o.padding, o.dilation, o.groups), (2, 1, 1, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on both sides.
    pub padding: usize,
    /// Step between kernel taps.
    pub dilation: usize,
    /// Channel groups: `groups` must divide both channel counts.
    pub groups: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl Conv1dOptions {
    /// PyTorch's defaults: stride 1, no padding, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
    /// Sets the zero padding on each side.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }
    /// Sets the number of channel groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

impl From<Conv1dOptions> for Conv2dOptions {
    /// A one-axis convolution as a two-axis one over height 1.
    fn from(o: Conv1dOptions) -> Self {
        Conv2dOptions {
            stride: [1, o.stride],
            padding: [0, o.padding],
            dilation: [1, o.dilation],
            groups: o.groups,
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Two-axis convolution (cross-correlation, as in every deep-learning library) of
    /// `x [n, c_in, h, w]` with `weight [c_out, c_in / groups, kh, kw]`, plus `bias
    /// [c_out]` when given:
    ///
    /// `out[b, o, y, x] = bias[o] + Σ_{c, i, j} weight[o, c, i, j] ·
    ///     xpad[b, g·c_in/groups + c, y·s₀ + i·d₀, x·s₁ + j·d₁]`
    ///
    /// where `g = o / (c_out / groups)` is the output channel's group and `xpad` is `x`
    /// with `padding` zeros on each side. The output is `[n, c_out, oh, ow]` with
    /// `oh = (h + 2p₀ - d₀(kh - 1) - 1) / s₀ + 1`.
    ///
    /// Backward: `∂L/∂x` is the transposed convolution of the output gradient with the
    /// weight (`W[g]ᵀ @ gout`, scattered back to the input positions each patch read),
    /// `∂L/∂weight[g] = Σ_b gout[b, g] @ patches(x[b, g])ᵀ`, and `∂L/∂bias[o]` the sum
    /// of `gout[:, o]`. The first two are ops too ([`Var::conv2d_input_grad`],
    /// [`Var::conv2d_weight_grad`]), so the gradient can be differentiated again.
    /// PyTorch: `torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation,
    /// groups)`.
    ///
    /// ```
    /// use descent_tape::{Conv2dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::from_fn(&[1, 1, 3, 3], |i| i as f64)); // 0..9
    /// let w = tape.var(Tensor::new(&[1, 1, 2, 2], vec![1.0, 0.0, 0.0, -1.0]).unwrap());
    /// let b = tape.var(Tensor::from([0.5]));
    /// let y = x.conv2d(w, Some(b), Conv2dOptions::new());
    /// assert_eq!(y.shape().as_slice(), &[1, 1, 2, 2]);
    /// assert_eq!(y.value().data(), &[-3.5, -3.5, -3.5, -3.5]); // x[i,j] - x[i+1,j+1] + 0.5
    /// let y = x.conv2d(w, None, Conv2dOptions::new().padding(1).stride(2));
    /// assert_eq!(y.shape().as_slice(), &[1, 1, 2, 2]);
    /// ```
    pub fn conv2d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        options: Conv2dOptions,
    ) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_conv2d(weight, bias, options))
    }

    /// The fallible form of [`Var::conv2d`]: an error naming the op, the shapes and the
    /// nodes when `x` is not 4-d, the weight's channels do not match the input's,
    /// `groups` does not divide the channels, the bias is not `[c_out]`, a stride,
    /// dilation or `groups` is zero, or the dilated kernel is larger than the padded
    /// input.
    pub fn try_conv2d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        options: Conv2dOptions,
    ) -> Result<Var<'t, T>> {
        conv(self, weight, bias, options, false)
    }

    /// One-axis convolution of `x [n, c_in, l]` with `weight [c_out, c_in / groups, k]`,
    /// plus `bias [c_out]` when given:
    ///
    /// `out[b, o, t] = bias[o] + Σ_{c, j} weight[o, c, j] · xpad[b, g·c_in/groups + c,
    ///     t·stride + j·dilation]`,
    ///
    /// giving `[n, c_out, (l + 2·padding - dilation·(k - 1) - 1) / stride + 1]`.
    /// Backward as [`Var::conv2d`]'s (it runs as one, over height 1). PyTorch:
    /// `torch.nn.functional.conv1d(x, weight, bias, stride, padding, dilation, groups)`.
    ///
    /// ```
    /// use descent_tape::{Conv1dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[[1.0, 2.0, 3.0, 4.0]]])); // [1, 1, 4]
    /// let w = tape.var(Tensor::from([[[1.0, -1.0]]]));          // [1, 1, 2]
    /// let y = x.conv1d(w, None, Conv1dOptions::new().padding(1));
    /// assert_eq!(y.value().data(), &[-1.0, -1.0, -1.0, -1.0, 4.0]);
    /// ```
    pub fn conv1d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        options: Conv1dOptions,
    ) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_conv1d(weight, bias, options))
    }

    /// The fallible form of [`Var::conv1d`], with [`Var::try_conv2d`]'s errors (for a
    /// 3-d input and weight).
    pub fn try_conv1d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        options: Conv1dOptions,
    ) -> Result<Var<'t, T>> {
        conv(self, weight, bias, options.into(), true)
    }
}

/// The shapes as `[n, c, h, w]` and `[c_out, c_g, kh, kw]`: a one-axis convolution's
/// `[n, c, l]` gets height 1.
fn as_2d(shape: &[usize], one_axis: bool) -> [usize; 4] {
    if one_axis {
        [shape[0], shape[1], 1, shape[2]]
    } else {
        [shape[0], shape[1], shape[2], shape[3]]
    }
}

fn conv<'t, T: Float>(
    x: Var<'t, T>,
    weight: Var<'t, T>,
    bias: Option<Var<'t, T>>,
    o: Conv2dOptions,
    one_axis: bool,
) -> Result<Var<'t, T>> {
    let name = if one_axis { "conv1d" } else { "conv2d" };
    let tape = x.tape;
    let mut operands = vec![x, weight];
    operands.extend(bias);
    for v in &operands {
        tape.check(name, v)?;
    }
    let rank = if one_axis { 3 } else { 4 };
    let geom = {
        let inner = tape.inner.borrow();
        let fail = |reason: String| Error::Shapes {
            op: name,
            reason,
            nodes: operands.iter().map(|v| inner.node_ref(v.id)).collect(),
        };
        let (xs, ws) = (inner.shape(x.id), inner.shape(weight.id));
        let spatial = if one_axis {
            "[n, c_in, l]"
        } else {
            "[n, c_in, h, w]"
        };
        if xs.len() != rank || ws.len() != rank {
            return Err(fail(format!(
                "input {} and weight {} must both have {rank} axes (input {spatial}, weight [c_out, c_in / groups, {}])",
                ShapeDisplay(xs),
                ShapeDisplay(ws),
                if one_axis { "k" } else { "kh, kw" }
            )));
        }
        let geom = ConvGeometry::new(
            as_2d(xs, one_axis),
            as_2d(ws, one_axis),
            o.stride,
            o.padding,
            o.dilation,
            o.groups,
        )
        .map_err(|e| {
            fail(format!(
                "input {}, weight {}, {}: {e}",
                ShapeDisplay(xs),
                ShapeDisplay(ws),
                describe(&o, one_axis)
            ))
        })?;
        if let Some(b) = bias {
            let bs = inner.shape(b.id);
            if bs != [geom.c_out] {
                return Err(fail(format!(
                    "the bias {} must be [{}], one per output channel of the weight {}",
                    ShapeDisplay(bs),
                    geom.c_out,
                    ShapeDisplay(ws)
                )));
            }
        }
        geom
    };
    let (slot, first) = {
        let mut inner = tape.inner.borrow_mut();
        let [sh, sw] = o.stride;
        let [ph, pw] = o.padding;
        let [dh, dw] = o.dilation;
        let slot = Tape::push_indices(&mut inner, &[7], &[sh, sw, ph, pw, dh, dw, o.groups]);
        let first = inner.operand_lists.len() as u32;
        inner.operand_lists.extend(operands.iter().map(|v| v.id));
        (slot, first)
    };
    let count = operands.len() as u32;
    let op = if one_axis {
        Op::Conv1d {
            options: slot,
            first,
            count,
        }
    } else {
        Op::Conv2d {
            options: slot,
            first,
            count,
        }
    };
    tape.record(op, &operands, |inner, pool| {
        let [n, c, oh, ow] = geom.out_shape();
        let mut buf = pool.take(n * c * oh * ow)?;
        let b = bias.map(|b| inner.view(b.id));
        kernels::conv2d(
            &geom,
            inner.view(x.id).data(),
            inner.view(weight.id).data(),
            b.as_ref().map(|b| b.data()),
            &mut buf,
        );
        let shape: &[usize] = if one_axis {
            &[n, c, ow]
        } else {
            &[n, c, oh, ow]
        };
        Ok(Output::Tensor(Tensor::new(shape, buf)?))
    })
}

/// The options as an error message gives them.
fn describe(o: &Conv2dOptions, one_axis: bool) -> String {
    if one_axis {
        format!(
            "stride {}, padding {}, dilation {}, groups {}",
            o.stride[1], o.padding[1], o.dilation[1], o.groups
        )
    } else {
        format!(
            "stride {:?}, padding {:?}, dilation {:?}, groups {}",
            o.stride, o.padding, o.dilation, o.groups
        )
    }
}

/// Backward of `conv1d` and `conv2d`: the bias, input and weight gradients, each only
/// when its operand needs one.
pub(crate) fn conv_backward<T: Float, S: GradSink<T>>(
    options: u32,
    one_axis: bool,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let (_, o) = cx.indices(options);
    let (x, w) = (cx.input(0), cx.input(1));
    let geom = ConvGeometry::new(
        as_2d(x.shape(), one_axis),
        as_2d(w.shape(), one_axis),
        [o[0], o[1]],
        [o[2], o[3]],
        [o[4], o[5]],
        o[6],
    )
    .expect("checked when recorded");
    let g = cx.g.data();
    if cx.arity() == 3 && cx.needs(2) {
        let gb = sink.grad_mut(cx.parent(2));
        kernels::conv2d_backward_acc(&geom, g, None, None, Some(gb));
    }
    if cx.needs(0) {
        let gx = sink.grad_mut(cx.parent(0));
        kernels::conv2d_backward_acc(&geom, g, Some((w.data(), gx)), None, None);
    }
    if cx.needs(1) {
        let gw = sink.grad_mut(cx.parent(1));
        kernels::conv2d_backward_acc(&geom, g, None, Some((x.data(), gw)), None);
    }
}

/// Tangent of a convolution (bilinear in input and weight, affine in the bias):
/// `ẏ = conv(ẋ, w) + conv(x, ẇ) + ḃ`, each recorded as a convolution with the node's
/// options.
pub(crate) fn conv_jvp<'t, T: Float>(
    options: u32,
    one_axis: bool,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (_, d) = cx.indices(options);
    let o = Conv2dOptions {
        stride: [d[0], d[1]],
        padding: [d[2], d[3]],
        dilation: [d[4], d[5]],
        groups: d[6],
    };
    let (x, w) = (cx.input(0), cx.input(1));
    let mut terms = Vec::with_capacity(3);
    if let Some(tx) = t[0] {
        terms.push(conv(tx, w, None, o, one_axis)?);
    }
    if let Some(tw) = t[1] {
        terms.push(conv(x, tw, None, o, one_axis)?);
    }
    if let Some(tb) = t.get(2).copied().flatten() {
        // [c_out] against [n, c_out, (h,) w]: as a column per channel.
        let out_shape = cx.out_shape();
        let column: &[usize] = if one_axis {
            &[out_shape[1], 1]
        } else {
            &[out_shape[1], 1, 1]
        };
        terms.push(tb.try_reshape(column)?.try_broadcast_to(&out_shape)?);
    }
    let mut out: Option<Var<'t, T>> = None;
    for v in terms {
        out = Some(match out {
            Some(o) => o.try_add(v)?,
            None => v,
        });
    }
    Ok(out)
}

/// Differentiable backward of `conv1d` and `conv2d`, recorded: the input gradient
/// `conv_input_grad(g, w)` (the transposed convolution), the weight gradient
/// `conv_weight_grad(x, g)` (the correlation of the input with `g`), and the bias
/// gradient `g` summed over samples and positions (`sum_axis`, positions first, as the
/// fast rule adds them). Each is the fast rule's kernel run as an op, so the values are
/// the fast rule's, bit for bit.
pub(crate) fn conv_vjp<'t, T: Float>(
    options: u32,
    one_axis: bool,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (_, d) = cx.indices(options);
    let o = Conv2dOptions {
        stride: [d[0], d[1]],
        padding: [d[2], d[3]],
        dilation: [d[4], d[5]],
        groups: d[6],
    };
    let (x, w) = (cx.input(0), cx.input(1));
    let mut out: Contributions<'t, T> = smallvec::smallvec![None, None];
    if cx.needs(0) {
        out[0] = Some(grads::input_grad(g, w, &cx.shape(0), o, one_axis)?);
    }
    if cx.needs(1) {
        out[1] = Some(grads::weight_grad(x, g, &cx.shape(1), o, one_axis)?);
    }
    if cx.arity() == 3 {
        out.push(if cx.needs(2) {
            // [n, c_out, positions]: each sample's row summed, then the samples in order.
            let gs = g.shape();
            let positions: usize = gs[2..].iter().product();
            let rows = g.try_reshape(&[gs[0], gs[1], positions])?;
            Some(rows.try_sum_axis(2, false)?.try_sum_axis(0, false)?)
        } else {
            None
        });
    }
    Ok(out)
}
