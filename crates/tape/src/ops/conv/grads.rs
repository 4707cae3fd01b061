//! The two products of a convolution's backward as ops of their own, so that a
//! recorded gradient through a convolution can be differentiated again:
//! - `conv_input_grad(g, w)`: the input gradient, the transposed convolution of an
//!   output gradient `g` with the weight (PyTorch's `torch.nn.grad.conv2d_input`, or
//!   `conv_transpose2d` with the `output_padding` that gives the input's shape);
//! - `conv_weight_grad(x, g)`: the weight gradient, the correlation of the input with
//!   an output gradient (`torch.nn.grad.conv2d_weight`).
//!
//! A convolution `y = conv(x, w)` is bilinear, and so are these two: each one's
//! adjoints are the other two ops. For `gx = conv_input_grad(g, w)` and a cotangent
//! `u` shaped like `x`: `∂/∂g = conv(u, w)`, `∂/∂w = conv_weight_grad(u, g)`. For
//! `gw = conv_weight_grad(x, g)` and `v` shaped like `w`: `∂/∂x = conv_input_grad(g,
//! v)`, `∂/∂g = conv(x, v)`. Their tangents are the sums of the two bilinear terms.
//!
//! Their tape slot holds the convolution's options, as `conv`'s, followed by the shape
//! the op gives (the input's or the weight's), which the output gradient alone does not
//! fix (a stride drops the last rows and columns). A one-axis convolution's (3-d
//! shapes) runs as a two-axis one of height 1, as `conv1d` does.

use super::{Conv1dOptions, Conv2dOptions, as_2d, conv, describe};
use crate::Var;
use crate::error::{Error, Result};
use crate::ops::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, add_opt};
use crate::tape::{Output, Tape};
use descent_tensor::kernels::{self, ConvGeometry};
use descent_tensor::{Float, ShapeDisplay, Tensor};

impl<'t, T: Float> Var<'t, T> {
    /// The input gradient of [`Var::conv2d`] as an op: the transposed convolution of
    /// `self`, an output gradient `g [n, c_out, oh, ow]`, with `weight [c_out, c_in /
    /// groups, kh, kw]`, giving `input_shape [n, c_in, h, w]`:
    ///
    /// `gx[b, g·c_in/groups + c, y·s₀ + i·d₀ - p₀, x·s₁ + j·d₁ - p₁] +=
    ///     Σ_o weight[o, c, i, j] · g[b, o, y, x]` (over the group's outputs `o`).
    ///
    /// It is linear in each operand: with `u` shaped like the input,
    /// `∂⟨u, gx⟩/∂g = conv2d(u, weight)` and `∂⟨u, gx⟩/∂weight =
    /// conv2d_weight_grad(u, g)`. PyTorch: `torch.nn.grad.conv2d_input(input_shape,
    /// weight, g, stride, padding, dilation, groups)` (which is `conv_transpose2d` with
    /// the `output_padding` that gives `input_shape`).
    ///
    /// ```
    /// use descent_tape::{Conv2dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::from_fn(&[1, 1, 3, 3], |i| i as f64));
    /// let w = tape.var(Tensor::new(&[1, 1, 2, 2], vec![1.0, 0.0, 0.0, -1.0]).unwrap());
    /// let u = tape.constant(Tensor::from_fn(&[1, 1, 2, 2], |i| 1.0 + i as f64));
    /// // The input gradient of Σ u ⊙ conv2d(x, w), as backward computes it: u placed
    /// // at each window's top-left tap (weight 1) minus at its bottom-right (weight -1).
    /// let gx = u.conv2d_input_grad(w, &x.shape(), Conv2dOptions::new());
    /// assert_eq!(gx.value().data(), &[1.0, 2.0, 0.0, 3.0, 3.0, -2.0, 0.0, -3.0, -4.0]);
    /// ```
    pub fn conv2d_input_grad(
        self,
        weight: Var<'t, T>,
        input_shape: &[usize],
        options: Conv2dOptions,
    ) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_conv2d_input_grad(weight, input_shape, options))
    }

    /// The fallible form of [`Var::conv2d_input_grad`]: an error naming the op, the
    /// shapes and the nodes when a shape is not 4-d, the sizes do not make a
    /// convolution (as [`Var::try_conv2d`]'s errors), or `self` is not the shape that
    /// convolution gives.
    pub fn try_conv2d_input_grad(
        self,
        weight: Var<'t, T>,
        input_shape: &[usize],
        options: Conv2dOptions,
    ) -> Result<Var<'t, T>> {
        input_grad(self, weight, input_shape, options, false)
    }

    /// [`Var::conv2d_input_grad`] for [`Var::conv1d`]: `self [n, c_out, ol]` and
    /// `weight [c_out, c_in / groups, k]` give `input_shape [n, c_in, l]`. PyTorch:
    /// `torch.nn.grad.conv1d_input`.
    ///
    /// ```
    /// use descent_tape::{Conv1dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(Tensor::from([[[1.0, -1.0]]])); // [1, 1, 2]
    /// let g = tape.constant(Tensor::from([[[1.0, 2.0]]]));
    /// let gx = g.conv1d_input_grad(w, &[1, 1, 4], Conv1dOptions::new().stride(2));
    /// assert_eq!(gx.value().data(), &[1.0, -1.0, 2.0, -2.0]);
    /// ```
    pub fn conv1d_input_grad(
        self,
        weight: Var<'t, T>,
        input_shape: &[usize],
        options: Conv1dOptions,
    ) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_conv1d_input_grad(weight, input_shape, options))
    }

    /// The fallible form of [`Var::conv1d_input_grad`], with
    /// [`Var::try_conv2d_input_grad`]'s errors (for 3-d shapes).
    pub fn try_conv1d_input_grad(
        self,
        weight: Var<'t, T>,
        input_shape: &[usize],
        options: Conv1dOptions,
    ) -> Result<Var<'t, T>> {
        input_grad(self, weight, input_shape, options.into(), true)
    }

    /// The weight gradient of [`Var::conv2d`] as an op: the correlation of `self`, the
    /// input `x [n, c_in, h, w]`, with an output gradient `g [n, c_out, oh, ow]`,
    /// giving `weight_shape [c_out, c_in / groups, kh, kw]`:
    ///
    /// `gw[o, c, i, j] = Σ_{b, y, x} g[b, o, y, x] ·
    ///     xpad[b, g·c_in/groups + c, y·s₀ + i·d₀, x·s₁ + j·d₁]`.
    ///
    /// It is linear in each operand: with `v` shaped like the weight,
    /// `∂⟨v, gw⟩/∂x = conv2d_input_grad(g, v)` and `∂⟨v, gw⟩/∂g = conv2d(x, v)`.
    /// PyTorch: `torch.nn.grad.conv2d_weight(x, weight_shape, g, stride, padding,
    /// dilation, groups)`.
    ///
    /// ```
    /// use descent_tape::{Conv2dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::from_fn(&[1, 1, 3, 3], |i| i as f64));
    /// let w = tape.var(Tensor::new(&[1, 1, 2, 2], vec![1.0, 0.0, 0.0, -1.0]).unwrap());
    /// let u = tape.constant(Tensor::from_fn(&[1, 1, 2, 2], |i| 1.0 + i as f64));
    /// // The weight gradient of Σ u ⊙ conv2d(x, w): tap (i, j) sees Σ u[y, x] x[y + i, x + j].
    /// let gw = x.conv2d_weight_grad(u, &w.shape(), Conv2dOptions::new());
    /// assert_eq!(gw.value().data(), &[27.0, 37.0, 57.0, 67.0]);
    /// ```
    pub fn conv2d_weight_grad(
        self,
        g: Var<'t, T>,
        weight_shape: &[usize],
        options: Conv2dOptions,
    ) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_conv2d_weight_grad(g, weight_shape, options))
    }

    /// The fallible form of [`Var::conv2d_weight_grad`]: an error naming the op, the
    /// shapes and the nodes when a shape is not 4-d, the sizes do not make a
    /// convolution, or `g` is not the shape that convolution gives.
    pub fn try_conv2d_weight_grad(
        self,
        g: Var<'t, T>,
        weight_shape: &[usize],
        options: Conv2dOptions,
    ) -> Result<Var<'t, T>> {
        weight_grad(self, g, weight_shape, options, false)
    }

    /// [`Var::conv2d_weight_grad`] for [`Var::conv1d`]: `self [n, c_in, l]` and
    /// `g [n, c_out, ol]` give `weight_shape [c_out, c_in / groups, k]`. PyTorch:
    /// `torch.nn.grad.conv1d_weight`.
    ///
    /// ```
    /// use descent_tape::{Conv1dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[[1.0, 2.0, 3.0, 4.0]]]));
    /// let g = tape.constant(Tensor::from([[[1.0, -1.0]]]));
    /// let gw = x.conv1d_weight_grad(g, &[1, 1, 2], Conv1dOptions::new().stride(2));
    /// assert_eq!(gw.value().data(), &[-2.0, -2.0]); // 1·1 - 1·3, 1·2 - 1·4
    /// ```
    pub fn conv1d_weight_grad(
        self,
        g: Var<'t, T>,
        weight_shape: &[usize],
        options: Conv1dOptions,
    ) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_conv1d_weight_grad(g, weight_shape, options))
    }

    /// The fallible form of [`Var::conv1d_weight_grad`], with
    /// [`Var::try_conv2d_weight_grad`]'s errors (for 3-d shapes).
    pub fn try_conv1d_weight_grad(
        self,
        g: Var<'t, T>,
        weight_shape: &[usize],
        options: Conv1dOptions,
    ) -> Result<Var<'t, T>> {
        weight_grad(self, g, weight_shape, options.into(), true)
    }
}

/// Which of the two products an op is: the input gradient (operands `g`, `w`, the
/// slot's shape the input's) or the weight gradient (operands `x`, `g`, the slot's
/// shape the weight's).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Product {
    Input,
    Weight,
}

impl Product {
    fn name(self) -> &'static str {
        match self {
            Product::Input => "conv_input_grad",
            Product::Weight => "conv_weight_grad",
        }
    }
}

/// Records `conv_input_grad(g, w)`, giving `x_shape`.
pub(crate) fn input_grad<'t, T: Float>(
    g: Var<'t, T>,
    w: Var<'t, T>,
    x_shape: &[usize],
    o: Conv2dOptions,
    one_axis: bool,
) -> Result<Var<'t, T>> {
    record(Product::Input, [g, w], x_shape, o, one_axis)
}

/// Records `conv_weight_grad(x, g)`, giving `w_shape`.
pub(crate) fn weight_grad<'t, T: Float>(
    x: Var<'t, T>,
    g: Var<'t, T>,
    w_shape: &[usize],
    o: Conv2dOptions,
    one_axis: bool,
) -> Result<Var<'t, T>> {
    record(Product::Weight, [x, g], w_shape, o, one_axis)
}

fn record<'t, T: Float>(
    product: Product,
    operands: [Var<'t, T>; 2],
    shape: &[usize],
    o: Conv2dOptions,
    one_axis: bool,
) -> Result<Var<'t, T>> {
    let name = product.name();
    let tape = operands[0].tape;
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
        let (a, b) = (inner.shape(operands[0].id), inner.shape(operands[1].id));
        // The input's, the weight's and the output gradient's shapes.
        let (xs, ws, gs) = match product {
            Product::Input => (shape, b, a),
            Product::Weight => (a, shape, b),
        };
        let what = match product {
            Product::Input => format!(
                "output gradient {}, weight {}, input shape {}",
                ShapeDisplay(gs),
                ShapeDisplay(ws),
                ShapeDisplay(xs)
            ),
            Product::Weight => format!(
                "input {}, output gradient {}, weight shape {}",
                ShapeDisplay(xs),
                ShapeDisplay(gs),
                ShapeDisplay(ws)
            ),
        };
        if xs.len() != rank || ws.len() != rank || gs.len() != rank {
            return Err(fail(format!("{what}: all must have {rank} axes")));
        }
        let geom = ConvGeometry::new(
            as_2d(xs, one_axis),
            as_2d(ws, one_axis),
            o.stride,
            o.padding,
            o.dilation,
            o.groups,
        )
        .map_err(|e| fail(format!("{what}, {}: {e}", describe(&o, one_axis))))?;
        let [n, c, oh, ow] = geom.out_shape();
        let want: &[usize] = if one_axis {
            &[n, c, ow]
        } else {
            &[n, c, oh, ow]
        };
        if gs != want {
            return Err(fail(format!(
                "{what}, {}: the output gradient must be {}, the convolution's output",
                describe(&o, one_axis),
                ShapeDisplay(want)
            )));
        }
        geom
    };
    let slot = {
        let mut inner = tape.inner.borrow_mut();
        let [sh, sw] = o.stride;
        let [ph, pw] = o.padding;
        let [dh, dw] = o.dilation;
        let mut data = vec![sh, sw, ph, pw, dh, dw, o.groups];
        data.extend_from_slice(shape);
        Tape::push_indices(&mut inner, &[data.len()], &data)
    };
    let op = match product {
        Product::Input => Op::ConvInputGrad { options: slot },
        Product::Weight => Op::ConvWeightGrad { options: slot },
    };
    let shape: descent_tensor::Shape = shape.into();
    tape.record(op, &operands, |inner, pool| {
        let mut buf = pool.take(descent_tensor::numel(&shape))?;
        buf.fill(T::zero());
        let (a, b) = (inner.view(operands[0].id), inner.view(operands[1].id));
        match product {
            Product::Input => kernels::conv2d_backward_acc(
                &geom,
                a.data(),
                Some((b.data(), &mut buf)),
                None,
                None,
            ),
            Product::Weight => kernels::conv2d_backward_acc(
                &geom,
                b.data(),
                None,
                Some((a.data(), &mut buf)),
                None,
            ),
        }
        Ok(Output::Tensor(Tensor::new(&shape, buf)?))
    })
}

/// The options and the shape an op's slot holds, and whether it is one-axis.
fn slot_of(data: &[usize]) -> (Conv2dOptions, &[usize], bool) {
    let o = Conv2dOptions {
        stride: [data[0], data[1]],
        padding: [data[2], data[3]],
        dilation: [data[4], data[5]],
        groups: data[6],
    };
    (o, &data[7..], data.len() == 10)
}

fn geometry(x: &[usize], w: &[usize], o: &Conv2dOptions, one_axis: bool) -> ConvGeometry {
    ConvGeometry::new(
        as_2d(x, one_axis),
        as_2d(w, one_axis),
        o.stride,
        o.padding,
        o.dilation,
        o.groups,
    )
    .expect("checked when recorded")
}

/// Adds `conv(x, w)` (no bias) into the gradient of `node`: written in place when
/// nothing has reached it yet, else through a scratch buffer.
fn add_conv<T: Float, S: GradSink<T>>(
    geom: &ConvGeometry,
    x: &[T],
    w: &[T],
    node: crate::NodeId,
    sink: &mut S,
) {
    let (dst, fresh) = sink.grad_for_write(node);
    if fresh {
        kernels::conv2d(geom, x, w, None, dst);
    } else {
        let mut tmp = vec![T::zero(); dst.len()];
        kernels::conv2d(geom, x, w, None, &mut tmp);
        for (d, t) in dst.iter_mut().zip(tmp) {
            *d += t;
        }
    }
}

/// Backward of `conv_input_grad(g, w)` with a cotangent `u` shaped like the input:
/// `conv(u, w)` to `g`, `conv_weight_grad(u, g)` to `w`.
pub(crate) fn conv_input_grad_backward<T: Float, S: GradSink<T>>(
    options: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let (_, data) = cx.indices(options);
    let (o, xs, one_axis) = slot_of(data);
    let (g, w) = (cx.input(0), cx.input(1));
    let geom = geometry(xs, w.shape(), &o, one_axis);
    let u = cx.g.data();
    if cx.needs(0) {
        add_conv(&geom, u, w.data(), cx.parent(0), sink);
    }
    if cx.needs(1) {
        let gw = sink.grad_mut(cx.parent(1));
        kernels::conv2d_backward_acc(&geom, g.data(), None, Some((u, gw)), None);
    }
}

/// Backward of `conv_weight_grad(x, g)` with a cotangent `v` shaped like the weight:
/// `conv_input_grad(g, v)` to `x`, `conv(x, v)` to `g`.
pub(crate) fn conv_weight_grad_backward<T: Float, S: GradSink<T>>(
    options: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let (_, data) = cx.indices(options);
    let (o, ws, one_axis) = slot_of(data);
    let (x, g) = (cx.input(0), cx.input(1));
    let geom = geometry(x.shape(), ws, &o, one_axis);
    let v = cx.g.data();
    if cx.needs(0) {
        let gx = sink.grad_mut(cx.parent(0));
        kernels::conv2d_backward_acc(&geom, g.data(), Some((v, gx)), None, None);
    }
    if cx.needs(1) {
        add_conv(&geom, x.data(), v, cx.parent(1), sink);
    }
}

/// Differentiable backward of `conv_input_grad(g, w)`: `conv(u, w)` to `g`,
/// `conv_weight_grad(u, g)` to `w`, recorded.
pub(crate) fn conv_input_grad_vjp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    u: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (_, data) = cx.indices(options);
    let (o, _, one_axis) = slot_of(&data);
    let (g, w) = (cx.input(0), cx.input(1));
    let dg = if cx.needs(0) {
        Some(conv(u, w, None, o, one_axis)?)
    } else {
        None
    };
    let dw = if cx.needs(1) {
        Some(weight_grad(u, g, &cx.shape(1), o, one_axis)?)
    } else {
        None
    };
    Ok(smallvec::smallvec![dg, dw])
}

/// Differentiable backward of `conv_weight_grad(x, g)`: `conv_input_grad(g, v)` to
/// `x`, `conv(x, v)` to `g`, recorded.
pub(crate) fn conv_weight_grad_vjp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    v: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let (_, data) = cx.indices(options);
    let (o, _, one_axis) = slot_of(&data);
    let (x, g) = (cx.input(0), cx.input(1));
    let dx = if cx.needs(0) {
        Some(input_grad(g, v, &cx.shape(0), o, one_axis)?)
    } else {
        None
    };
    let dg = if cx.needs(1) {
        Some(conv(x, v, None, o, one_axis)?)
    } else {
        None
    };
    Ok(smallvec::smallvec![dx, dg])
}

/// Tangent of `conv_input_grad(g, w)` (bilinear):
/// `conv_input_grad(ġ, w) + conv_input_grad(g, ẇ)`.
pub(crate) fn conv_input_grad_jvp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (_, data) = cx.indices(options);
    let (o, xs, one_axis) = slot_of(&data);
    let (g, w) = (cx.input(0), cx.input(1));
    let a = t[0]
        .map(|tg| input_grad(tg, w, xs, o, one_axis))
        .transpose()?;
    let b = t[1]
        .map(|tw| input_grad(g, tw, xs, o, one_axis))
        .transpose()?;
    add_opt(a, b)
}

/// Tangent of `conv_weight_grad(x, g)` (bilinear):
/// `conv_weight_grad(ẋ, g) + conv_weight_grad(x, ġ)`.
pub(crate) fn conv_weight_grad_jvp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let (_, data) = cx.indices(options);
    let (o, ws, one_axis) = slot_of(&data);
    let (x, g) = (cx.input(0), cx.input(1));
    let a = t[0]
        .map(|tx| weight_grad(tx, g, ws, o, one_axis))
        .transpose()?;
    let b = t[1]
        .map(|tg| weight_grad(x, tg, ws, o, one_axis))
        .transpose()?;
    add_opt(a, b)
}
