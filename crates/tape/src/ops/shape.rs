//! Shape and layout ops: transpose, reshape, broadcast_to, slice, concat, stack, gather.
//! Their backward rules move gradients back to where the elements came from.

use super::{BackwardCtx, Contributions, DiffCtx, GradSink, Op, reduce_to, resolve_axis};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::{
    Float, Shape, ShapeDisplay, Tensor, View, broadcast_shapes, kernels, numel, shape_fits,
    split_at_axis,
};
use smallvec::smallvec;

impl<'t, T: Float> Var<'t, T> {
    /// Exchanges axes `a` and `b` (negative counts from the end). Backward: the same
    /// exchange. PyTorch: `x.transpose(a, b)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    /// let t = x.transpose(0, 1);
    /// assert_eq!(t.shape().as_slice(), &[3, 2]);
    /// assert_eq!(t.value().data(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// ```
    pub fn transpose(self, a: isize, b: isize) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_transpose(a, b))
    }
    /// The fallible form of [`Var::transpose`].
    pub fn try_transpose(self, a: isize, b: isize) -> Result<Var<'t, T>> {
        self.tape.check("transpose", &self)?;
        let (a, b) = {
            let inner = self.tape.inner.borrow();
            let nd = inner.shape(self.id).len();
            (
                resolve_axis(&inner, "transpose", a, nd, self.id)?,
                resolve_axis(&inner, "transpose", b, nd, self.id)?,
            )
        };
        self.tape.record(
            Op::Transpose {
                a: a as u32,
                b: b as u32,
            },
            &[self],
            |inner, pool| {
                let x = inner.view(self.id);
                let mut shape: Shape = x.shape().into();
                shape.swap(a, b);
                let mut buf = pool.take(x.len())?;
                kernels::swap_axes::<T, false>(x, a, b, &mut buf);
                Ok(Output::Tensor(Tensor::new(&shape, buf)?))
            },
        )
    }

    /// The transpose of the last two axes (a matrix's transpose). PyTorch: `x.mT`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(tape.var(Tensor::<f64>::zeros(&[2, 3])).t().shape().as_slice(), &[3, 2]);
    /// ```
    pub fn t(self) -> Var<'t, T> {
        self.transpose(-2, -1)
    }

    /// The same elements, in the same order, under another shape with as many elements.
    /// Backward: the gradient reshaped back. PyTorch: `x.reshape(shape)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([1.0, 2.0, 3.0, 4.0]));
    /// assert_eq!(x.reshape(&[2, 2]).shape().as_slice(), &[2, 2]);
    /// assert!(x.try_reshape(&[3]).is_err());
    /// ```
    pub fn reshape(self, shape: &[usize]) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_reshape(shape))
    }
    /// The fallible form of [`Var::reshape`]: an error when the element counts differ.
    pub fn try_reshape(self, shape: &[usize]) -> Result<Var<'t, T>> {
        self.tape.record(Op::Reshape, &[self], |inner, pool| {
            let x = inner.view(self.id);
            if !shape_fits(shape) {
                return Err(too_large("reshape", shape, inner.node_ref(self.id)));
            }
            if numel(shape) != x.len() {
                return Err(Error::Shape {
                    op: "reshape",
                    reason: format!(
                        "cannot reshape {} ({} elements) to {} ({} elements)",
                        ShapeDisplay(x.shape()),
                        x.len(),
                        ShapeDisplay(shape),
                        numel(shape)
                    ),
                    node: inner.node_ref(self.id),
                });
            }
            let mut buf = pool.take(x.len())?;
            buf.copy_from_slice(x.data());
            Ok(Output::Tensor(Tensor::new(shape, buf)?))
        })
    }

    /// Stretches to `shape` by NumPy broadcasting. Backward: the gradient summed over
    /// the stretched axes. PyTorch: `x.expand(shape)` (materialised here).
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([1.0, 2.0]));
    /// assert_eq!(x.broadcast_to(&[2, 2]).value().data(), &[1.0, 2.0, 1.0, 2.0]);
    /// ```
    pub fn broadcast_to(self, shape: &[usize]) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_broadcast_to(shape))
    }
    /// The fallible form of [`Var::broadcast_to`].
    pub fn try_broadcast_to(self, shape: &[usize]) -> Result<Var<'t, T>> {
        self.tape.record(Op::BroadcastTo, &[self], |inner, pool| {
            let x = inner.view(self.id);
            if !shape_fits(shape) {
                return Err(too_large("broadcast_to", shape, inner.node_ref(self.id)));
            }
            if broadcast_shapes(x.shape(), shape).as_deref() != Some(shape) {
                return Err(Error::Shape {
                    op: "broadcast_to",
                    reason: format!(
                        "{} does not broadcast to {}",
                        ShapeDisplay(x.shape()),
                        ShapeDisplay(shape)
                    ),
                    node: inner.node_ref(self.id),
                });
            }
            let mut buf = pool.take(numel(shape))?;
            let xd = x.data();
            kernels::for_each_broadcast(shape, x.shape(), x.shape(), |o, i, _| buf[o] = xd[i]);
            Ok(Output::Tensor(Tensor::new(shape, buf)?))
        })
    }

    /// Indices `start..end` along `axis`. Backward: the gradient placed back in those
    /// positions, zeros elsewhere. PyTorch: `x.narrow(axis, start, end - start)`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    /// assert_eq!(x.slice(1, 1, 3).value().data(), &[2.0, 3.0, 5.0, 6.0]);
    /// ```
    pub fn slice(self, axis: isize, start: usize, end: usize) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_slice(axis, start, end))
    }
    /// The fallible form of [`Var::slice`]: an error for a range outside the axis.
    pub fn try_slice(self, axis: isize, start: usize, end: usize) -> Result<Var<'t, T>> {
        self.tape.check("slice", &self)?;
        let ax = {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            let ax = resolve_axis(&inner, "slice", axis, shape.len(), self.id)?;
            if start > end || end > shape[ax] {
                return Err(Error::Shape {
                    op: "slice",
                    reason: format!(
                        "range {start}..{end} is outside axis {ax} of extent {}",
                        shape[ax]
                    ),
                    node: inner.node_ref(self.id),
                });
            }
            ax
        };
        let op = Op::Slice {
            axis: ax as u32,
            start: start as u32,
            end: end as u32,
        };
        self.tape.record(op, &[self], |inner, pool| {
            let x = inner.view(self.id);
            let mut shape: Shape = x.shape().into();
            shape[ax] = end - start;
            let mut buf = pool.take(numel(&shape))?;
            kernels::slice_axis(x, ax, start, end, &mut buf);
            Ok(Output::Tensor(Tensor::new(&shape, buf)?))
        })
    }

    /// Elements picked along `axis` by `index` (PyTorch's `torch.gather`): with
    /// `index` of shape `index_shape` (as many axes as `x`, each extent at most `x`'s
    /// except along `axis`), `out[i][j] = x[index[i][j]][j]` for axis 0, and so on.
    /// Backward: the gradient scatter-added back to the picked positions.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var(Tensor::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    /// let picked = x.gather(1, &[2, 1], &[2, 0]);
    /// assert_eq!(picked.value().data(), &[3.0, 4.0]);
    /// assert!(x.try_gather(1, &[2, 1], &[2, 3]).is_err()); // 3 is out of range
    /// ```
    pub fn gather(self, axis: isize, index_shape: &[usize], index: &[usize]) -> Var<'t, T> {
        Var::unwrap_or_panic(self.try_gather(axis, index_shape, index))
    }
    /// The fallible form of [`Var::gather`]: an error for a malformed or out-of-range
    /// index, naming the position of the first bad one.
    pub fn try_gather(
        self,
        axis: isize,
        index_shape: &[usize],
        index: &[usize],
    ) -> Result<Var<'t, T>> {
        self.tape.check("gather", &self)?;
        let ax = {
            let inner = self.tape.inner.borrow();
            let shape = inner.shape(self.id);
            let ax = resolve_axis(&inner, "gather", axis, shape.len(), self.id)?;
            let shape_err = |reason: String| Error::Shape {
                op: "gather",
                reason,
                node: inner.node_ref(self.id),
            };
            if !shape_fits(index_shape) {
                return Err(too_large("gather", index_shape, inner.node_ref(self.id)));
            }
            if index_shape.len() != shape.len() {
                return Err(shape_err(format!(
                    "index of shape {} must have as many axes as the operand",
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
                    "index shape {} exceeds the operand along axis {d}",
                    ShapeDisplay(index_shape)
                )));
            }
            if let Some((position, &i)) = index.iter().enumerate().find(|(_, i)| **i >= shape[ax]) {
                return Err(Error::Index {
                    op: "gather",
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
            Op::Gather {
                axis: ax as u32,
                indices: slot,
            },
            &[self],
            |inner, pool| {
                let x = inner.view(self.id);
                let mut buf = pool.take(index.len())?;
                kernels::gather(x, ax, index, index_shape, &mut buf);
                Ok(Output::Tensor(Tensor::new(index_shape, buf)?))
            },
        )
    }

    /// Joins `parts` along an existing `axis`; all other extents must agree. Backward:
    /// each part gets its slice of the gradient. PyTorch: `torch.cat(parts, axis)`.
    ///
    /// ```
    /// use descent_tape::{Tape, Var};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(Tensor::from([[1.0], [2.0]]));
    /// let b = tape.var(Tensor::from([[3.0, 4.0], [5.0, 6.0]]));
    /// let c = Var::concat(&[a, b], 1);
    /// assert_eq!(c.value().data(), &[1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
    /// ```
    pub fn concat(parts: &[Var<'t, T>], axis: isize) -> Var<'t, T> {
        Var::unwrap_or_panic(Var::try_concat(parts, axis))
    }
    /// The fallible form of [`Var::concat`]: an error naming every part's shape when
    /// they do not line up.
    pub fn try_concat(parts: &[Var<'t, T>], axis: isize) -> Result<Var<'t, T>> {
        join(parts, axis, false)
    }

    /// Joins same-shape `parts` along a new axis at `axis`. Backward: each part gets its
    /// slice. PyTorch: `torch.stack(parts, axis)`.
    ///
    /// ```
    /// use descent_tape::{Tape, Var};
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(Tensor::from([1.0, 2.0]));
    /// let b = tape.var(Tensor::from([3.0, 4.0]));
    /// assert_eq!(Var::stack(&[a, b], 1).value().data(), &[1.0, 3.0, 2.0, 4.0]);
    /// ```
    pub fn stack(parts: &[Var<'t, T>], axis: isize) -> Var<'t, T> {
        Var::unwrap_or_panic(Var::try_stack(parts, axis))
    }
    /// The fallible form of [`Var::stack`].
    pub fn try_stack(parts: &[Var<'t, T>], axis: isize) -> Result<Var<'t, T>> {
        join(parts, axis, true)
    }
}

/// The error for a requested shape too large to address.
fn too_large(op: &'static str, shape: &[usize], node: Box<crate::NodeRef>) -> Error {
    Error::Shape {
        op,
        reason: format!(
            "shape {} is too large: its extents multiply past usize::MAX",
            ShapeDisplay(shape)
        ),
        node,
    }
}

/// Concat (`new_axis = false`) or stack (`true`).
fn join<'t, T: Float>(parts: &[Var<'t, T>], axis: isize, new_axis: bool) -> Result<Var<'t, T>> {
    let name = if new_axis { "stack" } else { "concat" };
    let Some(first) = parts.first() else {
        return Err(Error::Argument {
            op: name,
            reason: "needs at least one operand".into(),
        });
    };
    let tape = first.tape;
    for p in parts {
        tape.check(name, p)?;
    }
    let (ax, out_shape) = {
        let inner = tape.inner.borrow();
        let shape0: Shape = inner.shape(first.id).into();
        let nd = shape0.len() + usize::from(new_axis);
        let ax = resolve_axis(&inner, name, axis, nd, first.id)?;
        let agree = parts.iter().all(|p| {
            let s = inner.shape(p.id);
            if new_axis {
                s == shape0.as_slice()
            } else {
                s.len() == shape0.len()
                    && s.iter()
                        .zip(&shape0)
                        .enumerate()
                        .all(|(d, (x, y))| d == ax || x == y)
            }
        });
        if !agree {
            let shapes: Vec<String> = parts
                .iter()
                .map(|p| ShapeDisplay(inner.shape(p.id)).to_string())
                .collect();
            return Err(Error::Shapes {
                op: name,
                reason: if new_axis {
                    format!(
                        "all operands must have the same shape, got {}",
                        shapes.join(", ")
                    )
                } else {
                    format!("shapes {} differ outside axis {ax}", shapes.join(", "))
                },
                nodes: parts.iter().map(|p| inner.node_ref(p.id)).collect(),
            });
        }
        let mut out = shape0.clone();
        if new_axis {
            out.insert(ax, parts.len());
        } else {
            // Extents summing past usize::MAX make a shape nothing can hold.
            let total = parts
                .iter()
                .try_fold(0usize, |acc, p| acc.checked_add(inner.shape(p.id)[ax]));
            match total {
                Some(t)
                    if shape_fits(&{
                        let mut s = out.clone();
                        s[ax] = t;
                        s
                    }) =>
                {
                    out[ax] = t
                }
                _ => {
                    return Err(Error::Shapes {
                        op: name,
                        reason: format!(
                            "the joined extent along axis {ax} is too large to address"
                        ),
                        nodes: parts.iter().map(|p| inner.node_ref(p.id)).collect(),
                    });
                }
            }
        }
        (ax, out)
    };
    let (first, count) = {
        let mut inner = tape.inner.borrow_mut();
        let first = inner.operand_lists.len() as u32;
        inner.operand_lists.extend(parts.iter().map(|p| p.id));
        (first, parts.len() as u32)
    };
    let axis = ax as u32;
    let op = if new_axis {
        Op::Stack { axis, first, count }
    } else {
        Op::Concat { axis, first, count }
    };
    tape.record(op, parts, |inner, pool| {
        let mut buf = pool.take(numel(&out_shape))?;
        let shapes: Vec<Shape> = parts
            .iter()
            .map(|p| {
                let mut s: Shape = inner.shape(p.id).into();
                if new_axis {
                    s.insert(ax, 1);
                }
                s
            })
            .collect();
        let views: Vec<View<'_, T>> = parts
            .iter()
            .zip(&shapes)
            .map(|(p, s)| View::new(s, inner.view(p.id).data()))
            .collect();
        kernels::concat(&views, ax, &mut buf);
        Ok(Output::Tensor(Tensor::new(&out_shape, buf)?))
    })
}

/// Backward of `transpose`: the same exchange of axes.
pub(crate) fn transpose_backward<T: Float, S: GradSink<T>>(
    a: u32,
    b: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let gx = sink.grad_mut(cx.parent(0));
        kernels::swap_axes::<T, true>(cx.g, a as usize, b as usize, gx);
    }
}

/// Backward of `reshape`: the gradient, element for element.
pub(crate) fn reshape_backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    if cx.needs(0) {
        for (d, &s) in sink.grad_mut(cx.parent(0)).iter_mut().zip(cx.g.data()) {
            *d += s;
        }
    }
}

/// Backward of `broadcast_to`: the gradient summed over the stretched axes.
pub(crate) fn broadcast_to_backward<T: Float, S: GradSink<T>>(
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let x = cx.input(0);
        kernels::sum_to_shape_acc(cx.g, x.shape(), sink.grad_mut(cx.parent(0)));
    }
}

/// Backward of `slice`: the gradient placed back at `start..end` along `axis`.
pub(crate) fn slice_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    start: u32,
    end: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let x = cx.input(0);
        kernels::slice_axis_backward_acc(
            cx.g.data(),
            x.shape(),
            axis as usize,
            start as usize,
            end as usize,
            sink.grad_mut(cx.parent(0)),
        );
    }
}

/// Backward of `gather`: the gradient scatter-added to the picked positions.
pub(crate) fn gather_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    indices: u32,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    if cx.needs(0) {
        let x = cx.input(0);
        let (ishape, index) = cx.indices(indices);
        kernels::gather_backward_acc(
            cx.g.data(),
            x.shape(),
            axis as usize,
            index,
            ishape,
            sink.grad_mut(cx.parent(0)),
        );
    }
}

/// Backward of `concat` (`new_axis` false) and `stack` (true): each operand gets its
/// slice of the gradient along `axis`.
pub(crate) fn join_backward<T: Float, S: GradSink<T>>(
    axis: u32,
    new_axis: bool,
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let g = cx.g;
    let ax = axis as usize;
    let (outer, total, inner) = split_at_axis(g.shape(), ax);
    if outer == 0 || inner == 0 {
        // An empty gradient: nothing to hand back (and no loop over a huge outer
        // extent of empty blocks).
        return;
    }
    let mut offset = 0;
    for i in 0..cx.arity() {
        let extent = if new_axis { 1 } else { cx.input(i).shape()[ax] };
        if cx.needs(i) && extent > 0 {
            let gp = sink.grad_mut(cx.parent(i));
            let len = extent * inner;
            for o in 0..outer {
                let src = &g.data()[(o * total + offset) * inner..][..len];
                for (d, &s) in gp[o * len..(o + 1) * len].iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
        offset += extent;
    }
}

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

/// Differentiable backward of `transpose`: the same exchange.
pub(crate) fn transpose_vjp<'t, T: Float>(
    a: u32,
    b: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(g.try_transpose(a as isize, b as isize)?)])
}

/// Tangent of `transpose`: the tangent transposed.
pub(crate) fn transpose_jvp<'t, T: Float>(
    a: u32,
    b: u32,
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_transpose(a as isize, b as isize))
        .transpose()
}

/// Differentiable backward of `reshape`: `g` reshaped back.
pub(crate) fn reshape_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(g.try_reshape(&cx.shape(0))?)])
}

/// Tangent of `reshape`: the tangent reshaped.
pub(crate) fn reshape_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_reshape(&cx.out_shape())).transpose()
}

/// Differentiable backward of `broadcast_to`: `g` summed over the stretched axes.
pub(crate) fn broadcast_to_vjp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    Ok(smallvec![Some(reduce_to(g, &cx.shape(0))?)])
}

/// Tangent of `broadcast_to`: the tangent broadcast.
pub(crate) fn broadcast_to_jvp<'t, T: Float>(
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_broadcast_to(&cx.out_shape()))
        .transpose()
}

/// Differentiable backward of `slice`: `g` between zero blocks along the axis (a
/// `concat`, so it differentiates again).
pub(crate) fn slice_vjp<'t, T: Float>(
    axis: u32,
    start: u32,
    end: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let shape = cx.shape(0);
    let ax = axis as usize;
    let mut parts = Vec::with_capacity(3);
    for (from, to) in [(0, start as usize), (end as usize, shape[ax])] {
        if to > from {
            let mut s = shape.clone();
            s[ax] = to - from;
            parts.push((from, cx.zeros(&s)));
        }
    }
    parts.push((start as usize, g));
    parts.sort_by_key(|p| p.0);
    let parts: Vec<Var<'t, T>> = parts.into_iter().map(|p| p.1).collect();
    Ok(smallvec![Some(Var::try_concat(&parts, ax as isize)?)])
}

/// Tangent of `slice`: the tangent sliced.
pub(crate) fn slice_jvp<'t, T: Float>(
    axis: u32,
    start: u32,
    end: u32,
    _cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    t[0].map(|t| t.try_slice(axis as isize, start as usize, end as usize))
        .transpose()
}

/// Differentiable backward of `concat` and `stack`: each operand's slice of `g`.
pub(crate) fn join_vjp<'t, T: Float>(
    axis: u32,
    new_axis: bool,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let mut out = Contributions::new();
    let mut offset = 0;
    for i in 0..cx.arity() {
        let shape = cx.shape(i);
        let extent = if new_axis { 1 } else { shape[axis as usize] };
        out.push(if cx.needs(i) {
            let part = g.try_slice(axis as isize, offset, offset + extent)?;
            Some(if new_axis {
                part.try_reshape(&shape)?
            } else {
                part
            })
        } else {
            None
        });
        offset += extent;
    }
    Ok(out)
}

/// Tangent of `concat` and `stack`: the tangents joined (zeros where an operand has
/// none).
pub(crate) fn join_jvp<'t, T: Float>(
    axis: u32,
    new_axis: bool,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let parts: Vec<Var<'t, T>> = (0..cx.arity())
        .map(|i| t[i].unwrap_or_else(|| cx.zeros(&cx.shape(i))))
        .collect();
    join(&parts, axis as isize, new_axis).map(Some)
}

/// Differentiable backward of `gather`: `g` scatter-added into zeros at the picked
/// positions (the `scatter_add` op, whose own rules gather again).
pub(crate) fn gather_vjp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    if !cx.needs(0) {
        return Ok(smallvec![None]);
    }
    let (ishape, index) = cx.indices(indices);
    let zeros = cx.zeros(&cx.shape(0));
    Ok(smallvec![Some(zeros.try_scatter_add(
        axis as isize,
        &ishape,
        &index,
        g
    )?)])
}

/// Tangent of `gather`: the tangent gathered.
pub(crate) fn gather_jvp<'t, T: Float>(
    axis: u32,
    indices: u32,
    cx: &DiffCtx<'t, T>,
    t: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let Some(t) = t[0] else { return Ok(None) };
    let (ishape, index) = cx.indices(indices);
    Ok(Some(t.try_gather(axis as isize, &ishape, &index)?))
}
