//! Pooling over the last two axes of `[n, c, h, w]`: `max_pool2d` (backward: the
//! gradient goes to each window's first maximum, kept on the tape when recorded),
//! `avg_pool2d` (backward: spread evenly over the window), and `global_avg_pool2d`, a
//! composite of two means.
//!
//! `avg_pool2d`'s backward is also an op, `avg_pool2d_backward` (linear, with
//! `avg_pool2d` as its adjoint), so that a gradient through an average pooling can be
//! differentiated again.
//!
//! The options live in a tape slot: `[kh, kw, sh, sw, ph, pw, ceil_mode]`, followed for
//! `max_pool2d` by the flat input index of each output's maximum, for
//! `avg_pool2d_backward` by the input's shape.

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op};
use crate::Var;
use crate::error::{Error, Result};
use crate::ops::conv::IntoPair;
use crate::tape::{Output, Tape};
use descent_tensor::kernels::{self, PoolGeometry};
use descent_tensor::{Float, ShapeDisplay, Tensor};

/// The options of [`Var::max_pool2d`] and [`Var::avg_pool2d`], as PyTorch's
/// `max_pool2d` / `avg_pool2d` name them: the stride defaults to the kernel size, the
/// padding to 0, `ceil_mode` to false.
///
/// ```
/// use descent_tape::Pool2dOptions;
/// let o = Pool2dOptions::new(2);
/// assert_eq!((o.kernel, o.stride, o.padding, o.ceil_mode), ([2, 2], [2, 2], [0, 0], false));
/// let o = Pool2dOptions::new([3, 2]).stride(1).padding([1, 0]).ceil_mode(true);
/// assert_eq!((o.kernel, o.stride, o.padding), ([3, 2], [1, 1], [1, 0]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// Window, (height, width).
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding on each side, at most half the kernel.
    pub padding: [usize; 2],
    /// Whether a last, partial window counts (rounding the output size up).
    pub ceil_mode: bool,
}

impl Pool2dOptions {
    /// Windows of `kernel` (one number or `[h, w]`), moved by as much: PyTorch's
    /// default stride.
    pub fn new(kernel: impl IntoPair) -> Self {
        let kernel = kernel.into_pair();
        Pool2dOptions {
            kernel,
            stride: kernel,
            padding: [0, 0],
            ceil_mode: false,
        }
    }
    /// Sets the stride.
    pub fn stride(mut self, stride: impl IntoPair) -> Self {
        self.stride = stride.into_pair();
        self
    }
    /// Sets the padding on each side.
    pub fn padding(mut self, padding: impl IntoPair) -> Self {
        self.padding = padding.into_pair();
        self
    }
    /// Sets `ceil_mode`.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }
    fn slot_data(&self) -> [usize; 7] {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        [
            k[0],
            k[1],
            s[0],
            s[1],
            p[0],
            p[1],
            usize::from(self.ceil_mode),
        ]
    }
}

fn geometry_of(shape: &[usize], o: &[usize]) -> Option<PoolGeometry> {
    let x: [usize; 4] = shape.try_into().ok()?;
    PoolGeometry::new(x, [o[0], o[1]], [o[2], o[3]], [o[4], o[5]], o[6] == 1).ok()
}

impl<'t, T: Float> Var<'t, T> {
    /// The maximum of each window of the last two axes of `x [n, c, h, w]`:
    /// `out[b, c, y, x] = max_{i < kh, j < kw} xpad[b, c, y·s₀ + i, x·s₁ + j]`, where
    /// padding is `-∞` (never chosen). Backward: each output's gradient goes to the
    /// input element that was its maximum, the first in row-major order on a tie (as
    /// PyTorch). PyTorch: `torch.nn.functional.max_pool2d(x, kernel, stride, padding,
    /// ceil_mode=...)`.
    ///
    /// ```
    /// use descent_tape::{Pool2dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::new(&[1, 1, 2, 2], vec![1.0, 5.0, 3.0, 2.0]).unwrap());
    /// let y = x.max_pool2d(Pool2dOptions::new(2));
    /// assert_eq!(y.value().data(), &[5.0]);
    /// ```
    pub fn max_pool2d(self, options: Pool2dOptions) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_max_pool2d(options))
    }

    /// The fallible form of [`Var::max_pool2d`]: an error naming the op, the shape and
    /// the node for an input that is not 4-d, a zero kernel or stride, padding over half
    /// the kernel, or a window larger than the padded input.
    pub fn try_max_pool2d(self, options: Pool2dOptions) -> Result<Var<'t, T>> {
        pool(self, options, true)
    }

    /// The mean of each window of the last two axes of `x [n, c, h, w]`, padding
    /// counted as zeros in the divisor (PyTorch's default `count_include_pad=True`; a
    /// `ceil_mode` window is cut at the padded input's end):
    /// `out[b, c, y, x] = Σ_window xpad / |window|`. Backward: each output's gradient
    /// divided by its window's size, added to every input element of the window (an op
    /// too, [`Var::avg_pool2d_backward`], so it can be differentiated again).
    /// PyTorch: `torch.nn.functional.avg_pool2d(x, kernel, stride, padding,
    /// ceil_mode=...)`.
    ///
    /// ```
    /// use descent_tape::{Pool2dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::new(&[1, 1, 2, 2], vec![1.0, 5.0, 3.0, 2.0]).unwrap());
    /// assert_eq!(x.avg_pool2d(Pool2dOptions::new(2)).value().data(), &[2.75]);
    /// ```
    pub fn avg_pool2d(self, options: Pool2dOptions) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_avg_pool2d(options))
    }

    /// The fallible form of [`Var::avg_pool2d`], with [`Var::try_max_pool2d`]'s errors.
    pub fn try_avg_pool2d(self, options: Pool2dOptions) -> Result<Var<'t, T>> {
        pool(self, options, false)
    }

    /// The input gradient of [`Var::avg_pool2d`] as an op: `self`, an output gradient
    /// `g [n, c, oh, ow]`, each element divided by its window's size and added to every
    /// input position of its window, giving `input_shape [n, c, h, w]`:
    ///
    /// `gx[b, c, i, j] = Σ_{windows (y, x) ∋ (i, j)} g[b, c, y, x] / |window(y, x)|`.
    ///
    /// It is linear, and `avg_pool2d` is its adjoint: with `u` shaped like the input,
    /// `∂⟨u, gx⟩/∂g = avg_pool2d(u)`. Recorded as an op so that a gradient through an
    /// average pooling can be differentiated again. PyTorch:
    /// `torch.ops.aten.avg_pool2d_backward(g, x, kernel, stride, padding, ceil_mode,
    /// count_include_pad=True, None)`.
    ///
    /// ```
    /// use descent_tape::{Pool2dOptions, Tape};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let g = tape.var(Tensor::new(&[1, 1, 1, 2], vec![4.0, 8.0]).unwrap());
    /// let gx = g.avg_pool2d_backward(&[1, 1, 2, 4], Pool2dOptions::new(2));
    /// assert_eq!(gx.value().data(), &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
    /// ```
    pub fn avg_pool2d_backward(self, input_shape: &[usize], options: Pool2dOptions) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_avg_pool2d_backward(input_shape, options))
    }

    /// The fallible form of [`Var::avg_pool2d_backward`]: an error naming the op, the
    /// shapes and the node when `input_shape` would not be pooled (as
    /// [`Var::try_avg_pool2d`]'s errors) or `self` is not the shape its pooling gives.
    pub fn try_avg_pool2d_backward(
        self,
        input_shape: &[usize],
        options: Pool2dOptions,
    ) -> Result<Var<'t, T>> {
        pool_backward(self, input_shape, options)
    }

    /// The mean over the last two axes of `x [n, c, h, w]`, giving `[n, c]`: the mean
    /// of the width axis, then of the height axis (a composite of two `mean_axis`, with
    /// no rule of its own). PyTorch: `x.mean(dim=(2, 3))`, or
    /// `adaptive_avg_pool2d(x, 1).flatten(1)`.
    ///
    /// ```
    /// use descent_tape::Tape;
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(Tensor::new(&[1, 1, 2, 2], vec![1.0, 5.0, 3.0, 2.0]).unwrap());
    /// let y = x.global_avg_pool2d();
    /// assert_eq!((y.shape().as_slice(), y.value().data()), (&[1, 1][..], &[2.75][..]));
    /// ```
    pub fn global_avg_pool2d(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_global_avg_pool2d())
    }

    /// The fallible form of [`Var::global_avg_pool2d`]: an error for an input that is
    /// not 4-d or has no elements to average.
    pub fn try_global_avg_pool2d(self) -> Result<Var<'t, T>> {
        self.tape.check("global_avg_pool2d", &self)?;
        {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            if shape.len() != 4 {
                return Err(Error::Shape {
                    op: "global_avg_pool2d",
                    reason: format!("the input {} must be [n, c, h, w]", ShapeDisplay(shape)),
                    node: inner.node_ref(self.id),
                });
            }
        }
        self.try_mean_axis(3, false)?.try_mean_axis(2, false)
    }
}

fn pool<'t, T: Float>(x: Var<'t, T>, o: Pool2dOptions, max: bool) -> Result<Var<'t, T>> {
    let name = if max { "max_pool2d" } else { "avg_pool2d" };
    let tape = x.tape;
    tape.check(name, &x)?;
    let geom = {
        let inner = tape.inner.borrow();
        let shape = inner.shape(x.id);
        let fail = |reason: String| Error::Shape {
            op: name,
            reason,
            node: inner.node_ref(x.id),
        };
        let dims: [usize; 4] = shape.try_into().map_err(|_| {
            fail(format!(
                "the input {} must be [n, c, h, w]",
                ShapeDisplay(shape)
            ))
        })?;
        PoolGeometry::new(dims, o.kernel, o.stride, o.padding, o.ceil_mode).map_err(|e| {
            fail(format!(
                "input {}, kernel {:?}, stride {:?}, padding {:?}: {e}",
                ShapeDisplay(shape),
                o.kernel,
                o.stride,
                o.padding
            ))
        })?
    };
    let n_out = geom.planes * geom.oh * geom.ow;
    let slot = {
        let mut inner = tape.inner.borrow_mut();
        Tape::push_indices(&mut inner, &[7], &o.slot_data())
    };
    let op = if max {
        Op::MaxPool2d { options: slot }
    } else {
        Op::AvgPool2d { options: slot }
    };
    let mut argmax = Vec::new();
    // Whether a gradient can flow through the result (as `record` decides): if not, the
    // positions of the maxima, which only the rules read, are neither found nor kept.
    let (shape, keep) = {
        let inner = tape.inner.borrow();
        let s = inner.shape(x.id);
        let keep = !tape.grad_off() && inner.requires_grad(x.id);
        ([s[0], s[1], geom.oh, geom.ow], keep)
    };
    let y = tape.record(op, &[x], |inner, pool| {
        let mut buf = pool.take(n_out)?;
        let xv = inner.view(x.id);
        if max && keep {
            argmax.resize(n_out, 0);
            kernels::max_pool2d(&geom, xv.data(), &mut buf, &mut argmax);
        } else if max {
            kernels::max_pool2d_values(&geom, xv.data(), &mut buf);
        } else {
            kernels::avg_pool2d(&geom, xv.data(), &mut buf);
        }
        Ok(Output::Tensor(Tensor::new(&shape, buf)?))
    })?;
    if max && keep {
        // The positions of the maxima follow the options in the same slot.
        let mut inner = tape.inner.borrow_mut();
        let ix = &mut inner.indices[slot as usize];
        ix.data.extend_from_slice(&argmax);
        ix.shape = std::iter::once(7 + n_out).collect();
    }
    Ok(y)
}

/// Records `avg_pool2d_backward(g)`, giving `input_shape`.
fn pool_backward<'t, T: Float>(
    g: Var<'t, T>,
    input_shape: &[usize],
    o: Pool2dOptions,
) -> Result<Var<'t, T>> {
    let name = "avg_pool2d_backward";
    let tape = g.tape;
    tape.check(name, &g)?;
    let geom = {
        let inner = tape.inner.borrow();
        let gs = inner.shape(g.id);
        let fail = |reason: String| Error::Shape {
            op: name,
            reason,
            node: inner.node_ref(g.id),
        };
        let dims: [usize; 4] = input_shape.try_into().map_err(|_| {
            fail(format!(
                "the input shape {} must be [n, c, h, w]",
                ShapeDisplay(input_shape)
            ))
        })?;
        let geom =
            PoolGeometry::new(dims, o.kernel, o.stride, o.padding, o.ceil_mode).map_err(|e| {
                fail(format!(
                    "input shape {}, kernel {:?}, stride {:?}, padding {:?}: {e}",
                    ShapeDisplay(input_shape),
                    o.kernel,
                    o.stride,
                    o.padding
                ))
            })?;
        let want = [dims[0], dims[1], geom.oh, geom.ow];
        if gs != want {
            return Err(fail(format!(
                "the output gradient {} must be {}, the pooling of the input shape {}",
                ShapeDisplay(gs),
                ShapeDisplay(&want),
                ShapeDisplay(input_shape)
            )));
        }
        geom
    };
    let slot = {
        let mut inner = tape.inner.borrow_mut();
        let mut data = o.slot_data().to_vec();
        data.extend_from_slice(input_shape);
        Tape::push_indices(&mut inner, &[11], &data)
    };
    let shape: descent_tensor::Shape = input_shape.into();
    tape.record(
        Op::AvgPool2dBackward { options: slot },
        &[g],
        |inner, pool| {
            let mut buf = pool.take(descent_tensor::numel(&shape))?;
            buf.fill(T::zero());
            kernels::avg_pool2d_backward_acc(&geom, inner.view(g.id).data(), &mut buf);
            Ok(Output::Tensor(Tensor::new(&shape, buf)?))
        },
    )
}

/// The options in a slot's first seven numbers.
fn options_of(d: &[usize]) -> Pool2dOptions {
    Pool2dOptions {
        kernel: [d[0], d[1]],
        stride: [d[2], d[3]],
        padding: [d[4], d[5]],
        ceil_mode: d[6] == 1,
    }
}

/// Backward of `max_pool2d`: each output's gradient to its window's maximum.
pub(crate) fn max_pool2d_backward<T: Float, S: GradSink<T>>(
    options: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let (_, data) = cx.indices(options);
        kernels::max_pool2d_backward_acc(cx.g.data(), &data[7..], sink.grad_mut(cx.parent(0)));
    }
}

/// Backward of `avg_pool2d`: each output's gradient spread evenly over its window.
pub(crate) fn avg_pool2d_backward<T: Float, S: GradSink<T>>(
    options: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let (_, data) = cx.indices(options);
        let geom = geometry_of(cx.input(0).shape(), data).expect("checked when recorded");
        kernels::avg_pool2d_backward_acc(&geom, cx.g.data(), sink.grad_mut(cx.parent(0)));
    }
}

/// Differentiable backward of `max_pool2d`: the gradient scatter-added to each window's
/// maximum (the positions the forward pass kept, the first on a tie, as the fast rule),
/// recorded with `scatter_add`, so it can be differentiated again.
pub(crate) fn max_pool2d_vjp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec::smallvec![None]);
    }
    let (_, data) = cx.indices(options);
    refuse_ties(&data, cx)?;
    let argmax = &data[7..];
    let shape = cx.shape(0);
    let flat = cx.zeros(&[descent_tensor::numel(&shape)]);
    let gx = flat.try_scatter_add(0, &[argmax.len()], argmax, g.try_reshape(&[argmax.len()])?)?;
    Ok(smallvec::smallvec![Some(gx.try_reshape(&shape)?)])
}

/// Tangent of `max_pool2d`: the input's tangent at each window's maximum (a `gather`).
pub(crate) fn max_pool2d_jvp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(tx) = t[0] else { return Ok(None) };
    let (_, data) = cx.indices(options);
    refuse_ties(&data, cx)?;
    let argmax = &data[7..];
    let flat = tx.try_reshape(&[descent_tensor::numel(&cx.shape(0))])?;
    Ok(Some(
        flat.try_gather(0, &[argmax.len()], argmax)?
            .try_reshape(&cx.out_shape())?,
    ))
}

/// Tangent of `avg_pool2d` (linear): the average pooling of the input's tangent.
pub(crate) fn avg_pool2d_jvp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(tx) = t[0] else { return Ok(None) };
    let (_, d) = cx.indices(options);
    Ok(Some(pool(tx, options_of(&d), false)?))
}

/// Differentiable backward of `avg_pool2d`: `avg_pool2d_backward(g)`, recorded (the
/// fast rule's kernel as an op, so the same values, bit for bit).
pub(crate) fn avg_pool2d_vjp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec::smallvec![None]);
    }
    let (_, d) = cx.indices(options);
    let gx = pool_backward(g, &cx.shape(0), options_of(&d))?;
    Ok(smallvec::smallvec![Some(gx)])
}

/// Backward of `avg_pool2d_backward` (linear, its adjoint is `avg_pool2d`): the
/// average pooling of the cotangent, added to the output gradient's gradient.
pub(crate) fn avg_pool2d_backward_backward<T: Float, S: GradSink<T>>(
    options: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let (_, data) = cx.indices(options);
        let geom = geometry_of(&data[7..], data).expect("checked when recorded");
        let (dst, fresh) = sink.grad_for_write(cx.parent(0));
        if fresh {
            kernels::avg_pool2d(&geom, cx.g.data(), dst);
        } else {
            let mut tmp = vec![T::zero(); dst.len()];
            kernels::avg_pool2d(&geom, cx.g.data(), &mut tmp);
            for (d, t) in dst.iter_mut().zip(tmp) {
                *d += t;
            }
        }
    }
}

/// Differentiable backward of `avg_pool2d_backward`: `avg_pool2d` of the cotangent.
pub(crate) fn avg_pool2d_backward_vjp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    u: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec::smallvec![None]);
    }
    let (_, d) = cx.indices(options);
    Ok(smallvec::smallvec![Some(pool(u, options_of(&d), false)?)])
}

/// Tangent of `avg_pool2d_backward` (linear): itself applied to the tangent.
pub(crate) fn avg_pool2d_backward_jvp<'t, T: Float>(
    options: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(tg) = t[0] else { return Ok(None) };
    let (_, d) = cx.indices(options);
    Ok(Some(pool_backward(tg, &d[7..], options_of(&d))?))
}

/// A window whose maximum is reached twice has no derivative there (the fast rule's
/// choice of the first is a subgradient, PyTorch's): the differentiable and tangent
/// rules refuse it, as `max_axis`'s do, naming the window and the two positions.
fn refuse_ties<T: Float>(data: &[usize], cx: &DiffCtx<'_, T>) -> Result<()> {
    let (x, y) = (cx.input(0).value(), cx.out().value());
    let geom = geometry_of(x.shape(), data).expect("checked when recorded");
    let (x, y) = (x.data(), y.data());
    let plane = geom.h * geom.w;
    for p in 0..geom.planes {
        for oy in 0..geom.oh {
            for ox in 0..geom.ow {
                let o = (p * geom.oh + oy) * geom.ow + ox;
                let ([y0, y1], [x0, x1]) = geom.window(oy, ox);
                let rows = y0.max(0) as usize..y1.min(geom.h as isize) as usize;
                let cols = x0.max(0) as usize..x1.min(geom.w as isize) as usize;
                let mut at = rows
                    .flat_map(|r| cols.clone().map(move |c| p * plane + r * geom.w + c))
                    .filter(|&i| x[i] == y[o]);
                if let (Some(a), Some(b)) = (at.next(), at.next()) {
                    return Err(cx.not_differentiable(format!(
                        "window {o} has its maximum {} at input positions {a} and {b}",
                        y[o]
                    )));
                }
            }
        }
    }
    Ok(())
}
