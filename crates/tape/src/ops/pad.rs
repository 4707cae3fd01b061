//! Constant zero padding of trailing axes, and its backward rule (the gradient cut back
//! to the unpadded region). The widths live in a tape slot, in PyTorch's order.

use super::{BackwardCtx, GradSink, Op};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::{Float, Shape, ShapeDisplay, Tensor, numel, shape_fits};

impl<'t, T: Float> Var<'t, T> {
    /// Adds zeros before and after trailing axes. `widths` lists `(before, after)`
    /// pairs from the **last** axis backwards, as `torch.nn.functional.pad` does:
    /// `[left, right]` pads the last axis, `[left, right, top, bottom]` the last two.
    /// `out[.., i + before] = x[.., i]`, zero elsewhere. Backward: the gradient of the
    /// unpadded region (a slice per axis). PyTorch: `F.pad(x, widths)` (mode
    /// `"constant"`, value 0).
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    /// let y = x.pad(&[1, 0, 0, 1]); // one column on the left, one row below
    /// assert_eq!(y.shape().as_slice(), &[3, 3]);
    /// assert_eq!(y.value().data(), &[0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0]);
    /// ```
    pub fn pad(self, widths: &[usize]) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_pad(widths))
    }

    /// The fallible form of [`Var::pad`]: an error naming the op, the shape and the node
    /// when `widths` has an odd length or pads more axes than `x` has, or the padded
    /// shape is too large to address.
    pub fn try_pad(self, widths: &[usize]) -> Result<Var<'t, T>> {
        self.tape.check("pad", &self)?;
        let out: Shape = {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            let fail = |reason: String| Error::Shape {
                op: "pad",
                reason,
                node: inner.node_ref(self.id),
            };
            if !widths.len().is_multiple_of(2) || widths.len() / 2 > shape.len() {
                return Err(fail(format!(
                    "widths {widths:?} must be (before, after) pairs for at most the {} axes of {}",
                    shape.len(),
                    ShapeDisplay(shape)
                )));
            }
            let mut out: Shape = shape.into();
            for (k, pair) in widths.chunks_exact(2).enumerate() {
                let d = shape.len() - 1 - k;
                out[d] = shape[d]
                    .checked_add(pair[0])
                    .and_then(|v| v.checked_add(pair[1]))
                    .ok_or_else(|| fail(format!("widths {widths:?} overflow")))?;
            }
            if !shape_fits(&out) {
                return Err(fail(format!(
                    "the padded shape {} is too large to address",
                    ShapeDisplay(&out)
                )));
            }
            out
        };
        let slot = {
            let mut inner = self.tape.inner.borrow_mut();
            Tape::push_indices(&mut inner, &[widths.len()], widths)
        };
        self.tape
            .record(Op::Pad { widths: slot }, &[self], |inner, pool| {
                let x = inner.view(self.id);
                let mut buf = pool.take(numel(&out))?;
                buf.fill(T::zero());
                for_each_row(x.shape(), &out, widths, |src, dst, len| {
                    buf[dst..dst + len].copy_from_slice(&x.data()[src..src + len]);
                });
                Ok(Output::Tensor(Tensor::new(&out, buf)?))
            })
    }
}

/// Calls `f(input offset, output offset, length)` for every row (run along the last
/// axis) of an input of shape `shape` placed in `out` with `widths` (PyTorch's order).
fn for_each_row(
    shape: &[usize],
    out: &[usize],
    widths: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let nd = shape.len();
    if nd == 0 || numel(shape) == 0 {
        if nd == 0 {
            f(0, 0, 1);
        }
        return;
    }
    let before = |d: usize| {
        let k = nd - 1 - d;
        if 2 * k < widths.len() {
            widths[2 * k]
        } else {
            0
        }
    };
    let len = shape[nd - 1];
    let rows = numel(&shape[..nd - 1]);
    let mut idx = vec![0usize; nd - 1];
    for r in 0..rows {
        // The output offset of this row's first element.
        let mut off = 0;
        for d in 0..nd - 1 {
            off = off * out[d] + idx[d] + before(d);
        }
        off = off * out[nd - 1] + before(nd - 1);
        f(r * len, off, len);
        for d in (0..nd - 1).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Backward of `pad`: each input element's gradient is the output gradient where the
/// element was placed.
pub(crate) fn pad_backward<T: Float, S: GradSink<T>>(
    widths: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let (_, widths) = cx.indices(widths);
        let x = cx.input(0);
        let g = cx.g.data();
        let gx = sink.grad_mut(cx.parent(0));
        for_each_row(x.shape(), cx.g.shape(), widths, |src, dst, len| {
            for (d, &s) in gx[src..src + len].iter_mut().zip(&g[dst..dst + len]) {
                *d += s;
            }
        });
    }
}
