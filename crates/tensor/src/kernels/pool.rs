//! Pooling over the last two axes of `[n, c, h, w]`: maximum (with the position of
//! each maximum kept for backward) and average, with PyTorch's window rules
//! (`torch.nn.functional.max_pool2d` and `avg_pool2d`, `count_include_pad=True`,
//! optional `ceil_mode`).

use crate::Float;

/// The sizes and options of one pooling: windows of `kernel` elements moved by
/// `stride` over `[h, w]` planes with `padding` on each side, giving `[oh, ow]`.
///
/// ```
/// use descent_tensor::kernels::PoolGeometry;
/// let g = PoolGeometry::new([1, 1, 5, 5], [2, 2], [2, 2], [0, 0], false).unwrap();
/// assert_eq!((g.oh, g.ow), (2, 2));
/// let g = PoolGeometry::new([1, 1, 5, 5], [2, 2], [2, 2], [0, 0], true).unwrap();
/// assert_eq!((g.oh, g.ow), (3, 3)); // ceil_mode keeps the last, partial window
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Planes: samples times channels.
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window, (height, width).
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding on each side.
    pub padding: [usize; 2],
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

/// Why pooling's sizes do not fit together; the message says which rule failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolGeometryError(pub String);

impl std::fmt::Display for PoolGeometryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// PyTorch's `pooling_output_shape`: the number of windows, rounding up under
/// `ceil_mode` but never starting a window in the right padding.
fn pool_out(len: usize, k: usize, stride: usize, pad: usize, ceil: bool) -> Option<usize> {
    let padded = len + 2 * pad;
    if padded < k {
        return None;
    }
    let span = padded - k;
    let mut out = if ceil {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    if ceil && (out - 1) * stride >= len + pad {
        out -= 1;
    }
    Some(out)
}

impl PoolGeometry {
    /// The geometry of pooling `x` (`[n, c, h, w]`), or why it does not fit: a zero
    /// kernel or stride, padding over half the kernel (PyTorch's rule), or a window
    /// larger than the padded input.
    pub fn new(
        x: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        ceil_mode: bool,
    ) -> Result<Self, PoolGeometryError> {
        let [n, c, h, w] = x;
        if kernel.contains(&0) {
            return Err(PoolGeometryError(
                "the kernel size must be at least 1".into(),
            ));
        }
        if stride.contains(&0) {
            return Err(PoolGeometryError("stride must be at least 1".into()));
        }
        let mut out = [0; 2];
        for axis in 0..2 {
            let (len, k, p) = ([h, w][axis], kernel[axis], padding[axis]);
            if p > k / 2 {
                return Err(PoolGeometryError(format!(
                    "padding {p} is more than half the kernel size {k} along spatial axis {axis}"
                )));
            }
            out[axis] = pool_out(len, k, stride[axis], p, ceil_mode).ok_or_else(|| {
                PoolGeometryError(format!(
                    "the kernel ({k}) is larger than the padded input ({}) along spatial axis {axis}",
                    len + 2 * p
                ))
            })?;
        }
        Ok(PoolGeometry {
            planes: n * c,
            h,
            w,
            kernel,
            stride,
            padding,
            oh: out[0],
            ow: out[1],
        })
    }

    /// The window of output `(oy, ox)` in padded coordinates clipped to the padded
    /// input's end (PyTorch's `hend = min(hstart + k, h + pad)`), as signed ranges.
    pub fn window(&self, oy: usize, ox: usize) -> ([isize; 2], [isize; 2]) {
        let start = |o: usize, a: usize| (o * self.stride[a]) as isize - self.padding[a] as isize;
        let (y0, x0) = (start(oy, 0), start(ox, 1));
        let y1 = (y0 + self.kernel[0] as isize).min((self.h + self.padding[0]) as isize);
        let x1 = (x0 + self.kernel[1] as isize).min((self.w + self.padding[1]) as isize);
        ([y0, y1], [x0, x1])
    }
}

/// Max pooling: writes each window's maximum to `out` and the flat index (into `x`) of
/// its first maximum to `argmax`. Padding never wins: a window holds at least one
/// input element (padding is at most half the kernel). A NaN wins, as in PyTorch.
///
/// ```
/// use descent_tensor::kernels::{PoolGeometry, max_pool2d};
/// let g = PoolGeometry::new([1, 1, 2, 2], [2, 2], [2, 2], [0, 0], false).unwrap();
/// let (mut out, mut arg) = ([0.0], [0]);
/// max_pool2d(&g, &[1.0, 4.0, 4.0, 2.0], &mut out, &mut arg);
/// assert_eq!((out, arg), ([4.0], [1])); // ties: the first
/// ```
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn max_pool2d<T: Float>(geom: &PoolGeometry, x: &[T], out: &mut [T], argmax: &mut [usize]) {
    assert_eq!(argmax.len(), out.len(), "max_pool2d: argmax length");
    max_pool2d_with(geom, x, out, |o, at| argmax[o] = at);
}

/// [`max_pool2d`] without the positions of the maxima: the values alone, for a result
/// no gradient will flow through (recorded under `no_grad`, or of an input that wants
/// none), which then keeps nothing for a backward pass.
///
/// ```
/// use descent_tensor::kernels::{PoolGeometry, max_pool2d_values};
/// let g = PoolGeometry::new([1, 1, 2, 2], [2, 2], [2, 2], [0, 0], false).unwrap();
/// let mut out = [0.0];
/// max_pool2d_values(&g, &[1.0, 4.0, 3.0, 2.0], &mut out);
/// assert_eq!(out, [4.0]);
/// ```
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn max_pool2d_values<T: Float>(geom: &PoolGeometry, x: &[T], out: &mut [T]) {
    max_pool2d_with(geom, x, out, |_, _| {});
}

/// The loop of [`max_pool2d`], calling `keep(output index, input index)` with each
/// window's first maximum.
#[inline(always)]
fn max_pool2d_with<T: Float>(
    geom: &PoolGeometry,
    x: &[T],
    out: &mut [T],
    mut keep: impl FnMut(usize, usize),
) {
    let (plane_in, plane_out) = (geom.h * geom.w, geom.oh * geom.ow);
    assert_eq!(x.len(), geom.planes * plane_in, "max_pool2d: input length");
    assert_eq!(
        out.len(),
        geom.planes * plane_out,
        "max_pool2d: output length"
    );
    for p in 0..geom.planes {
        for oy in 0..geom.oh {
            for ox in 0..geom.ow {
                let ([y0, y1], [x0, x1]) = geom.window(oy, ox);
                let (y0, x0) = (y0.max(0) as usize, x0.max(0) as usize);
                let (y1, x1) = (
                    y1.min(geom.h as isize) as usize,
                    x1.min(geom.w as isize) as usize,
                );
                let mut best = T::neg_infinity();
                let mut at = p * plane_in + y0 * geom.w + x0;
                for y in y0..y1 {
                    for xx in x0..x1 {
                        let i = p * plane_in + y * geom.w + xx;
                        let v = x[i];
                        if v > best || v.is_nan() {
                            best = v;
                            at = i;
                            if v.is_nan() {
                                break;
                            }
                        }
                    }
                    if best.is_nan() {
                        break;
                    }
                }
                let o = p * plane_out + oy * geom.ow + ox;
                out[o] = best;
                keep(o, at);
            }
        }
    }
}

/// Backward of [`max_pool2d`]: adds each output's gradient to the input element that
/// was its maximum.
///
/// ```
/// use descent_tensor::kernels::max_pool2d_backward_acc;
/// let mut gx = [0.0; 4];
/// max_pool2d_backward_acc(&[2.0, 3.0], &[1, 1], &mut gx);
/// assert_eq!(gx, [0.0, 5.0, 0.0, 0.0]);
/// ```
pub fn max_pool2d_backward_acc<T: Float>(gout: &[T], argmax: &[usize], gx: &mut [T]) {
    for (&g, &i) in gout.iter().zip(argmax) {
        gx[i] += g;
    }
}

/// Average pooling with PyTorch's default divisor (`count_include_pad=True`): each
/// window's sum over input elements divided by its size, padding counted, but not the
/// part of a `ceil_mode` window past the padded input.
///
/// ```
/// use descent_tensor::kernels::{PoolGeometry, avg_pool2d};
/// let g = PoolGeometry::new([1, 1, 2, 2], [2, 2], [2, 2], [1, 1], false).unwrap();
/// let mut out = [0.0; 4];
/// avg_pool2d(&g, &[1.0, 2.0, 3.0, 4.0], &mut out);
/// assert_eq!(out, [0.25, 0.5, 0.75, 1.0]); // one element and three zeros per window
/// ```
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn avg_pool2d<T: Float>(geom: &PoolGeometry, x: &[T], out: &mut [T]) {
    let (plane_in, plane_out) = (geom.h * geom.w, geom.oh * geom.ow);
    assert_eq!(x.len(), geom.planes * plane_in, "avg_pool2d: input length");
    assert_eq!(
        out.len(),
        geom.planes * plane_out,
        "avg_pool2d: output length"
    );
    for p in 0..geom.planes {
        for oy in 0..geom.oh {
            for ox in 0..geom.ow {
                let (rows, cols, count) = avg_window(geom, oy, ox);
                let mut s = T::zero();
                for y in rows {
                    for xx in cols.clone() {
                        s += x[p * plane_in + y * geom.w + xx];
                    }
                }
                out[p * plane_out + oy * geom.ow + ox] = s / T::from_f64(count as f64);
            }
        }
    }
}

/// Backward of [`avg_pool2d`]: each output's gradient divided by its window's size
/// and added to every input element of the window.
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn avg_pool2d_backward_acc<T: Float>(geom: &PoolGeometry, gout: &[T], gx: &mut [T]) {
    let (plane_in, plane_out) = (geom.h * geom.w, geom.oh * geom.ow);
    assert_eq!(
        gx.len(),
        geom.planes * plane_in,
        "avg_pool2d backward: input length"
    );
    assert_eq!(
        gout.len(),
        geom.planes * plane_out,
        "avg_pool2d backward: gradient length"
    );
    for p in 0..geom.planes {
        for oy in 0..geom.oh {
            for ox in 0..geom.ow {
                let (rows, cols, count) = avg_window(geom, oy, ox);
                let g = gout[p * plane_out + oy * geom.ow + ox] / T::from_f64(count as f64);
                for y in rows {
                    for xx in cols.clone() {
                        gx[p * plane_in + y * geom.w + xx] += g;
                    }
                }
            }
        }
    }
}

/// The input rows and columns of an average window and its divisor.
fn avg_window(
    geom: &PoolGeometry,
    oy: usize,
    ox: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize) {
    let ([y0, y1], [x0, x1]) = geom.window(oy, ox);
    let count = ((y1 - y0) * (x1 - x0)) as usize;
    let clip = |a: isize, n: usize| a.clamp(0, n as isize) as usize;
    (
        clip(y0, geom.h)..clip(y1, geom.h),
        clip(x0, geom.w)..clip(x1, geom.w),
        count,
    )
}
