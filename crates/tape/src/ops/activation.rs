//! Activation functions: sigmoid, relu, leaky_relu, gelu, softplus (element-wise, their
//! numbers here and their recording in [`elementwise`](super::elementwise)), and
//! softmax / log_softmax along an axis.

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Number, Op, UnaryOp, resolve_axis};
use crate::Var;
use crate::error::Result;
use crate::tape::Output;
use descent_tensor::{Float, Tensor, kernels, vectorized};
use smallvec::smallvec;

/// `1 / (1 + e^-x)`, computed without overflow for large `|x|`: with `e = e^-|x|`,
/// `1/(1 + e)` for `x ≥ 0` and `e/(1 + e)` below. Both sides share `e` and are
/// selected, not branched to, so a loop over a slice vectorises.
#[inline(always)]
pub fn sigmoid<T: Float>(x: T) -> T {
    let e = (-x.abs()).kernel_exp();
    let numerator = if x >= T::zero() { T::one() } else { e };
    numerator / (T::one() + e)
}

/// `max(x, 0)`; NaN stays NaN.
#[inline]
pub fn relu<T: Float>(x: T) -> T {
    if x > T::zero() || x.is_nan() {
        x
    } else {
        T::zero()
    }
}

/// 1 for `x > 0`, else 0 (PyTorch's choice at the kink).
#[inline]
pub fn relu_derivative<T: Float>(x: T) -> T {
    if x > T::zero() { T::one() } else { T::zero() }
}

/// `x` for `x > 0`, else `αx`.
#[inline]
pub fn leaky_relu<T: Float>(x: T, alpha: T) -> T {
    if x > T::zero() { x } else { alpha * x }
}

/// 1 for `x > 0`, else `α`.
#[inline]
pub fn leaky_relu_derivative<T: Float>(x: T, alpha: T) -> T {
    if x > T::zero() { T::one() } else { alpha }
}

const GELU_C: f64 = 0.044_715;

/// GELU, tanh form: `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
#[inline(always)]
pub fn gelu<T: Float>(x: T) -> T {
    let k = T::from_f64((2.0 / std::f64::consts::PI).sqrt());
    let inner = k * (x + T::from_f64(GELU_C) * x * x * x);
    T::from_f64(0.5) * x * (T::one() + inner.kernel_tanh())
}

/// d/dx of [`gelu`]: `(1 + t)/2 + x/2 · (1 - t²) · √(2/π) (1 + 3·0.044715 x²)`, where
/// `t` is the tanh term. [`gelu_derivative_of`] on numbers.
#[inline(always)]
pub fn gelu_derivative<T: Float>(x: T) -> T {
    gelu_derivative_of(x)
}

/// [`gelu_derivative`] written once over any [`Number`]: computed on numbers, recorded
/// on `Var`s (GELU's differentiable and tangent rules).
#[inline(always)]
pub fn gelu_derivative_of<N: Number>(x: N) -> N {
    let k = x.lit((2.0 / std::f64::consts::PI).sqrt());
    let c = x.lit(GELU_C);
    let t = (k * (x + c * x * x * x)).tanh();
    let half = x.lit(0.5);
    half * (x.lit(1.0) + t)
        + half * x * (x.lit(1.0) - t * t) * k * (x.lit(1.0) + x.lit(3.0) * c * x * x)
}

/// `ln(1 + eˣ)` as `max(x, 0) + ln(1 + e^-|x|)`, which neither overflows nor loses
/// precision for large `|x|`.
#[inline]
pub fn softplus<T: Float>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).kernel_exp().ln_1p()
}

impl<'t, T: Float> Var<'t, T> {
    /// Logistic sigmoid `σ(x) = 1/(1 + e⁻ˣ)`. d/dx = σ(x)(1 - σ(x)), from the output.
    /// PyTorch: `torch.sigmoid`.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).sigmoid().item(), 0.5);
    /// ```
    pub fn sigmoid(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_sigmoid())
    }
    /// The fallible form of [`Var::sigmoid`].
    pub fn try_sigmoid(self) -> Result<Var<'t, T>> {
        self.unary(UnaryOp::Sigmoid)
    }

    /// `max(x, 0)`. d/dx = 1 for x > 0, else 0 (0 at the kink, as PyTorch).
    /// PyTorch: `torch.relu`.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(-1.0).relu().item(), 0.0);
    /// ```
    pub fn relu(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_relu())
    }
    /// The fallible form of [`Var::relu`].
    pub fn try_relu(self) -> Result<Var<'t, T>> {
        self.unary(UnaryOp::Relu)
    }

    /// `x` for x > 0, else `αx`. d/dx = 1 or α. PyTorch:
    /// `torch.nn.functional.leaky_relu(x, alpha)`.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(-2.0).leaky_relu(0.1).item(), -0.2);
    /// ```
    pub fn leaky_relu(self, alpha: f64) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_leaky_relu(alpha))
    }
    /// The fallible form of [`Var::leaky_relu`].
    pub fn try_leaky_relu(self, alpha: f64) -> Result<Var<'t, T>> {
        self.unary(UnaryOp::LeakyRelu(alpha))
    }

    /// GELU in its tanh form, `x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))`; the derivative
    /// is [`gelu_derivative`]. PyTorch: `torch.nn.functional.gelu(x, approximate="tanh")`.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).gelu().item(), 0.0);
    /// ```
    pub fn gelu(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_gelu())
    }
    /// The fallible form of [`Var::gelu`].
    pub fn try_gelu(self) -> Result<Var<'t, T>> {
        self.unary(UnaryOp::Gelu)
    }

    /// `ln(1 + eˣ)`, computed stably. d/dx = σ(x). PyTorch: `torch.nn.functional.softplus`.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert!((tape.var(0.0).softplus().item() - 2f64.ln()).abs() < 1e-15);
    /// ```
    pub fn softplus(self) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_softplus())
    }
    /// The fallible form of [`Var::softplus`].
    pub fn try_softplus(self) -> Result<Var<'t, T>> {
        self.unary(UnaryOp::Softplus)
    }

    /// Softmax along `axis` (negative counts from the end): `yᵢ = e^xᵢ / Σⱼ e^xⱼ`,
    /// computed with the maximum subtracted. Backward: `gx = y ⊙ (g - Σ g⊙y)`.
    /// PyTorch: `torch.softmax(x, dim)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let p = tape.var(Tensor::from([[0.0, 0.0], [1000.0, 1000.0]])).softmax(-1);
    /// assert_eq!(p.value().data(), &[0.5, 0.5, 0.5, 0.5]);
    /// ```
    pub fn softmax(self, axis: isize) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_softmax(axis))
    }
    /// The fallible form of [`Var::softmax`]: an error for an axis out of range.
    pub fn try_softmax(self, axis: isize) -> Result<Var<'t, T>> {
        self.axis_normalise(axis, false)
    }

    /// Log-softmax along `axis`: `yᵢ = xᵢ - ln Σⱼ e^xⱼ`, computed stably. Backward:
    /// `gx = g - softmax(x) · Σ g`. PyTorch: `torch.log_softmax(x, dim)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let lp = tape.var(Tensor::from([0.0, 0.0])).log_softmax(0);
    /// assert_eq!(lp.value().data(), &[-(2f64.ln()), -(2f64.ln())]);
    /// ```
    pub fn log_softmax(self, axis: isize) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_log_softmax(axis))
    }
    /// The fallible form of [`Var::log_softmax`].
    pub fn try_log_softmax(self, axis: isize) -> Result<Var<'t, T>> {
        self.axis_normalise(axis, true)
    }

    fn axis_normalise(self, axis: isize, log: bool) -> Result<Var<'t, T>> {
        let name = if log { "log_softmax" } else { "softmax" };
        self.tape.check(name, &self)?;
        let ax = {
            let inner = self.tape.inner.borrow();
            resolve_axis(&inner, name, axis, inner.shape(self.id).len(), self.id)?
        };
        let op = if log {
            Op::LogSoftmax { axis: ax as u32 }
        } else {
            Op::Softmax { axis: ax as u32 }
        };
        self.tape.record(op, &[self], |inner, pool| {
            let x = inner.view(self.id);
            let mut buf = pool.take(x.len())?;
            if log {
                kernels::log_softmax_axis(x, ax, &mut buf);
            } else {
                kernels::softmax_axis(x, ax, &mut buf);
            }
            Ok(Output::Tensor(Tensor::new(x.shape(), buf)?))
        })
    }
}

/// Backward of `softmax`, lane by lane along `axis`: `gx += y ⊙ (g − Σ y·g)`.
pub(crate) fn softmax_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if !cx.needs(0) {
        return;
    }
    let shape = cx.out.shape();
    let gx = sink.grad_mut(cx.parent(0));
    let (y, g) = (cx.out.data(), cx.g.data());
    vectorized(
        #[inline(always)]
        || {
            kernels::axis_lanes2_acc(
                shape,
                y,
                g,
                axis as usize,
                gx,
                #[inline(always)]
                |y, g, out| {
                    let dot = kernels::dot_lanes(y, g);
                    for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
                        *o += y * (g - dot);
                    }
                },
            )
        },
    )
}

/// Backward of `log_softmax`, lane by lane along `axis`: `gx += g − e^y · Σ g` (`y`
/// is the log-softmax).
pub(crate) fn log_softmax_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if !cx.needs(0) {
        return;
    }
    let shape = cx.out.shape();
    let gx = sink.grad_mut(cx.parent(0));
    let (y, g) = (cx.out.data(), cx.g.data());
    vectorized(
        #[inline(always)]
        || {
            kernels::axis_lanes2_acc(
                shape,
                y,
                g,
                axis as usize,
                gx,
                #[inline(always)]
                |y, g, out| {
                    let total = kernels::sum_lanes(
                        g,
                        #[inline(always)]
                        |g| g,
                    );
                    for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
                        *o += g - y.kernel_exp() * total;
                    }
                },
            )
        },
    )
}

/// Differentiable backward of `softmax`: `y ⊙ (g − Σ_axis y ⊙ g)`.
pub(crate) fn softmax_vjp<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(softmax_linear(axis, cx.out(), g)?)])
}

/// `y ⊙ (v − Σ_axis y ⊙ v)`: the softmax's Jacobian (symmetric) applied to `v`.
fn softmax_linear<'t, T: Float>(axis: u32, y: Var<'t, T>, v: Var<'t, T>) -> Result<Var<'t, T>> {
    let dot = y.try_mul(v)?.try_sum_axis(axis as isize, true)?;
    y.try_mul(v.try_sub(dot)?)
}

/// Tangent of `softmax`: `y ⊙ (ẋ − Σ_axis y ⊙ ẋ)`.
pub(crate) fn softmax_jvp<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| softmax_linear(axis, cx.out(), t)).transpose()
}

/// Differentiable backward of `log_softmax`: `g − e^y ⊙ Σ_axis g`.
pub(crate) fn log_softmax_vjp<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let total = g.try_sum_axis(axis as isize, true)?;
    Ok(smallvec![Some(
        g.try_sub(cx.out().try_exp()?.try_mul(total)?)?
    )])
}

/// Tangent of `log_softmax`: `ẋ − Σ_axis e^y ⊙ ẋ`.
pub(crate) fn log_softmax_jvp<'t, T: Float>(
    axis: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(t) = t[0] else { return Ok(None) };
    let dot = cx
        .out()
        .try_exp()?
        .try_mul(t)?
        .try_sum_axis(axis as isize, true)?;
    Ok(Some(t.try_sub(dot)?))
}
