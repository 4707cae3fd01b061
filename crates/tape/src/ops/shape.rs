//! Shape and layout ops: transpose, reshape, broadcast_to, slice, concat, stack, gather
//! (here), and scatter_add (`shape/scatter.rs`), gather's adjoint. Their backward rules
//! move gradients back to where the elements came from; their differentiable and
//! tangent rules are in `shape/diff.rs`.

mod diff;
mod scatter;

pub(crate) use diff::{
    broadcast_to_jvp, broadcast_to_vjp, gather_jvp, gather_vjp, join_jvp, join_vjp, reshape_jvp,
    reshape_vjp, slice_jvp, slice_vjp, transpose_jvp, transpose_vjp,
};
pub(crate) use scatter::{scatter_add_backward, scatter_add_jvp, scatter_add_vjp};

use super::{BackwardCtx, GradSink, Op, resolve_axis};
use crate::Var;
use crate::error::{Error, Result};
use crate::tape::{Output, Tape};
use descent_tensor::{
    Float, Shape, ShapeDisplay, Tensor, View, broadcast_shapes, kernels, numel, shape_fits,
    split_at_axis,
};

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
            kernels::for_each_broadcast_row(shape, x.shape(), x.shape(), |r| {
                let row = &mut buf[r.out..r.out + r.len];
                if r.a_step == 1 {
                    row.copy_from_slice(&xd[r.a..r.a + r.len]);
                } else {
                    row.fill(xd[r.a]);
                }
            });
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
        // Written, not zeroed and added, when the parent's buffer is fresh (W8 zeroed
        // each step's gate gradient first: 2.6% of its step), and vectorised.
        let (grad, fresh) = sink.grad_for_write(cx.parent(0));
        super::elementwise::write_or_add(
            grad,
            fresh,
            [cx.g.data()],
            #[inline(always)]
            |[g]| g,
        );
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
