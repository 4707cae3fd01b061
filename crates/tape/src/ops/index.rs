//! Indexing ops: `index_select`, whole slices picked by an integer index along one
//! axis (an embedding lookup is `index_select` along axis 0). Its backward rule
//! scatter-adds the gradient back to the picked slices.
//!
//! The index lives on the tape (a slot of integer data, as `gather`'s does), so the op
//! stays 16 bytes and a program may drop its own copy of the index once recorded.

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, resolve_axis};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::{Float, Shape, ShapeDisplay, Tensor, numel, shape_fits};

impl<'t, T: Float> Var<'t, T> {
    /// Whole slices of `self` picked along `axis` by `index` (an index of any shape,
    /// `index_shape`, given row-major), NumPy's `take`:
    ///
    /// `out[a.., k.., b..] = x[a.., index[k..], b..]`, of shape
    /// `x.shape[..axis] ++ index_shape ++ x.shape[axis + 1..]`.
    ///
    /// Derivative: `∂out[a, k, b] / ∂x[a, i, b] = 1` where `index[k] = i`, so backward
    /// adds each slice of the gradient into the slice it was read from (a scatter-add:
    /// an index that repeats gathers every contribution).
    ///
    /// PyTorch: `torch.index_select(x, axis, index)` for a 1-d index;
    /// `F.embedding(index, weight)` is `weight.index_select(0, index_shape, index)` for
    /// an index of any shape.
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// // An embedding table of 3 rows of width 2, looked up by a [2, 2] index.
    /// let table = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]));
    /// let e = table.index_select(0, &[2, 2], &[2, 0, 2, 1]);
    /// assert_eq!(e.shape().as_slice(), &[2, 2, 2]);
    /// assert_eq!(e.value().data(), &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0, 3.0, 4.0]);
    /// // Row 2 was read twice, row 1 once, row 0 once.
    /// let grads = e.sum().backward();
    /// assert_eq!(grads.wrt(table).data(), &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0]);
    /// // Columns, as torch.index_select(x, 1, [1, 1]).
    /// assert_eq!(table.index_select(1, &[2], &[1, 1]).value().data(), &[2.0, 2.0, 4.0, 4.0, 6.0, 6.0]);
    /// assert!(table.try_index_select(0, &[1], &[3]).is_err()); // row 3 does not exist
    /// ```
    pub fn index_select(self, axis: isize, index_shape: &[usize], index: &[usize]) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_index_select(axis, index_shape, index))
    }

    /// The fallible form of [`Var::index_select`]: an error naming the op, the operand
    /// (its node and shape) and the index shape for a scalar operand, an axis out of
    /// range, an index whose length does not match its shape, or an index out of range
    /// (with its position in the index).
    pub fn try_index_select(
        self,
        axis: isize,
        index_shape: &[usize],
        index: &[usize],
    ) -> Result<Var<'t, T>> {
        const OP: &str = "index_select";
        self.tape.check(OP, &self)?;
        let (ax, out_shape) = {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            let shape_err = |reason: String| Error::Shape {
                op: OP,
                reason,
                node: inner.node_ref(self.id),
            };
            if shape.is_empty() {
                return Err(shape_err(
                    "a scalar has no axis to select along; reshape it to [1] first".into(),
                ));
            }
            let ax = resolve_axis(&inner, OP, axis, shape.len(), self.id)?;
            if numel(index_shape) != index.len() || !shape_fits(index_shape) {
                return Err(shape_err(format!(
                    "index shape {} needs {} indices, {} were given",
                    ShapeDisplay(index_shape),
                    numel(index_shape),
                    index.len()
                )));
            }
            if let Some((position, &i)) = index.iter().enumerate().find(|(_, i)| **i >= shape[ax]) {
                return Err(Error::Index {
                    op: OP,
                    index: i,
                    position,
                    extent: shape[ax],
                    node: inner.node_ref(self.id),
                });
            }
            let mut out: Shape = shape[..ax].into();
            out.extend_from_slice(index_shape);
            out.extend_from_slice(&shape[ax + 1..]);
            if !shape_fits(&out) {
                return Err(shape_err(format!(
                    "the result's shape {} is too large: its extents multiply past usize::MAX",
                    ShapeDisplay(&out)
                )));
            }
            (ax, out)
        };
        let slot = {
            let mut inner = self.tape.inner.borrow_mut();
            Tape::push_indices(&mut inner, index_shape, index)
        };
        self.tape.record(
            Op::IndexSelect {
                axis: ax as u32,
                indices: slot,
            },
            &[self],
            |inner, pool| {
                let x = inner.view(self.id);
                let (outer, extent, inner_len) = split(x.shape(), ax);
                let mut buf = pool.take(numel(&out_shape))?;
                let src = x.data();
                let k = index.len();
                for o in 0..outer {
                    for (j, &i) in index.iter().enumerate() {
                        let from = (o * extent + i) * inner_len;
                        let to = (o * k + j) * inner_len;
                        buf[to..to + inner_len].copy_from_slice(&src[from..from + inner_len]);
                    }
                }
                Ok(Output::Tensor(Tensor::new(&out_shape, buf)?))
            },
        )
    }
}

/// `(outer, extent, inner)`: the product of the extents before `axis`, the extent of
/// `axis`, and the product of those after it.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// Backward of `index_select`: each slice of the gradient added into the slice of the
/// operand it was read from.
pub(crate) fn index_select_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    indices: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if !cx.needs(0) {
        return;
    }
    let x = cx.input(0);
    let (outer, extent, inner_len) = split(x.shape(), axis as usize);
    let (_, index) = cx.indices(indices);
    let g = cx.g.data();
    let gx = sink.grad_mut(cx.parent(0));
    let k = index.len();
    for o in 0..outer {
        for (j, &i) in index.iter().enumerate() {
            let from = (o * k + j) * inner_len;
            let to = (o * extent + i) * inner_len;
            for (d, s) in gx[to..to + inner_len]
                .iter_mut()
                .zip(&g[from..from + inner_len])
            {
                *d += *s;
            }
        }
    }
}

/// Differentiable backward of `index_select`: the gradient, viewed as `[outer, k,
/// inner]`, scatter-added into zeros shaped `[outer, extent, inner]` at the picked
/// slices (`scatter_add`, whose own rules close the loop), then shaped like the operand.
pub(crate) fn index_select_vjp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec::smallvec![None]);
    }
    let shape = cx.shape(0);
    let (outer, extent, inner_len) = split(&shape, axis as usize);
    let (_, index) = cx.indices(indices);
    let k = index.len();
    // One index per element of the gradient: the slice each one was read from.
    let full: Vec<usize> = (0..outer * k * inner_len)
        .map(|e| index[e / inner_len % k])
        .collect();
    let spread = [outer, k, inner_len];
    let base = cx.zeros(&[outer, extent, inner_len]);
    let gx = base.try_scatter_add(1, &spread, &full, g.try_reshape(&spread)?)?;
    Ok(smallvec::smallvec![Some(gx.try_reshape(&shape)?)])
}

/// Tangent of `index_select` (linear): the same slices of the operand's tangent.
pub(crate) fn index_select_jvp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(tx) = t[0] else { return Ok(None) };
    let (index_shape, index) = cx.indices(indices);
    Ok(Some(tx.try_index_select(
        axis as isize,
        &index_shape,
        &index,
    )?))
}
