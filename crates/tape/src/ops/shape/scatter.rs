//! `scatter_add`, gather's adjoint: forward, fast rule, differentiable and tangent
//! rules. The differentiable rule of `gather` records it, and its own differentiable
//! rule records `gather`, so a gather can be differentiated to any order.

use super::super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, resolve_axis};
use super::too_large;
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::{Float, ShapeDisplay, Tensor, kernels, numel, shape_fits};
use smallvec::smallvec;

impl<'t, T: Float> Var<'t, T> {
    /// `self` with `src` added at the positions `index` names along `axis` (PyTorch's
    /// `base.scatter_add(axis, index, src)`): with `index` of shape `index_shape` (the
    /// shape of `src`; as many axes as `self`, each extent at most `self`'s except along
    /// `axis`), `out[index[i][j]][j] += src[i][j]` for axis 0, and so on; repeated
    /// indices add up. The adjoint of [`Var::gather`], which the differentiable rule of
    /// `gather` records. Backward: `g` to `self`, `g` gathered by `index` to `src`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let base = tape.var(Tensor::<f64>::zeros(&[2, 3]));
    /// let src = tape.var(Tensor::from([[1.0], [2.0]]));
    /// let out = base.scatter_add(1, &[2, 1], &[2, 2], src);
    /// assert_eq!(out.value().data(), &[0.0, 0.0, 1.0, 0.0, 0.0, 2.0]);
    /// assert!(base.try_scatter_add(1, &[2, 1], &[2, 3], src).is_err()); // 3 is out of range
    /// ```
    pub fn scatter_add(
        self,
        axis: isize,
        index_shape: &[usize],
        index: &[usize],
        src: Var<'t, T>,
    ) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_scatter_add(axis, index_shape, index, src))
    }

    /// The fallible form of [`Var::scatter_add`]: an error for a malformed or
    /// out-of-range index, or a source whose shape is not the index's.
    pub fn try_scatter_add(
        self,
        axis: isize,
        index_shape: &[usize],
        index: &[usize],
        src: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let name = "scatter_add";
        self.tape.check(name, &self)?;
        self.tape.check(name, &src)?;
        let ax = {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            let ax = resolve_axis(&inner, name, axis, shape.len(), self.id)?;
            let shape_err = |reason: String| Error::Shape {
                op: name,
                reason,
                node: inner.node_ref(self.id),
            };
            if !shape_fits(index_shape) {
                return Err(too_large(name, index_shape, inner.node_ref(self.id)));
            }
            if inner.shape(src.id) != index_shape {
                return Err(Error::Shapes {
                    op: name,
                    reason: format!(
                        "the source's shape {} must be the index's {}",
                        ShapeDisplay(inner.shape(src.id)),
                        ShapeDisplay(index_shape)
                    ),
                    nodes: vec![inner.node_ref(self.id), inner.node_ref(src.id)],
                });
            }
            if index_shape.len() != shape.len() {
                return Err(shape_err(format!(
                    "index of shape {} must have as many axes as the base",
                    ShapeDisplay(index_shape)
                )));
            }
            if numel(index_shape) != index.len() {
                return Err(shape_err(format!(
                    "index shape {} needs {} indices, {} were given",
                    ShapeDisplay(index_shape),
                    numel(index_shape),
                    index.len()
                )));
            }
            if let Some(d) = (0..shape.len()).find(|&d| d != ax && index_shape[d] > shape[d]) {
                return Err(shape_err(format!(
                    "index shape {} exceeds the base along axis {d}",
                    ShapeDisplay(index_shape)
                )));
            }
            if let Some((position, &i)) = index.iter().enumerate().find(|(_, i)| **i >= shape[ax]) {
                return Err(Error::Index {
                    op: name,
                    index: i,
                    position,
                    extent: shape[ax],
                    node: inner.node_ref(self.id),
                });
            }
            ax
        };
        let slot = {
            let mut inner = self.tape.inner.borrow_mut();
            Tape::push_indices(&mut inner, index_shape, index)
        };
        self.tape.record(
            Op::ScatterAdd {
                axis: ax as u32,
                indices: slot,
            },
            &[self, src],
            |inner, pool| {
                let (base, s) = (inner.view(self.id), inner.view(src.id));
                let mut buf = pool.take(base.len())?;
                buf.copy_from_slice(base.data());
                kernels::gather_backward_acc(
                    s.data(),
                    base.shape(),
                    ax,
                    index,
                    index_shape,
                    &mut buf,
                );
                Ok(Output::Tensor(Tensor::new(base.shape(), buf)?))
            },
        )
    }
}

/// Backward of `scatter_add`: `g` to the base, `g` gathered by the index to the source.
pub(crate) fn scatter_add_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    indices: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        for (d, &s) in sink.grad_mut(cx.parent(0)).iter_mut().zip(cx.g.data()) {
            *d += s;
        }
    }
    if cx.needs(1) {
        let (ishape, index) = cx.indices(indices);
        let mut picked = vec![T::zero(); index.len()];
        kernels::gather(cx.g, axis as usize, index, ishape, &mut picked);
        for (d, &s) in sink.grad_mut(cx.parent(1)).iter_mut().zip(&picked) {
            *d += s;
        }
    }
}

/// Differentiable backward of `scatter_add`: `g` to the base, `gather(g)` to the source.
pub(crate) fn scatter_add_vjp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let gs = if cx.needs(1) {
        let (ishape, index) = cx.indices(indices);
        Some(g.try_gather(axis as isize, &ishape, &index)?)
    } else {
        None
    };
    Ok(smallvec![cx.needs(0).then_some(g), gs])
}

/// Tangent of `scatter_add`: the same scatter of the tangents.
pub(crate) fn scatter_add_jvp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let base = t[0].unwrap_or_else(|| cx.zeros(&cx.shape(0)));
    match t[1] {
        Some(ts) => {
            let (ishape, index) = cx.indices(indices);
            Ok(Some(base.try_scatter_add(
                axis as isize,
                &ishape,
                &index,
                ts,
            )?))
        }
        None => Ok(Some(base)),
    }
}
