//! Higher-order and forward-mode differentiation.
//!
//! [`grad_graph`] is a backward pass that records itself: each node's differentiable
//! rule (`*_vjp` in `descent_tape::ops`) adds its contributions as ops on the same tape,
//! so the gradients it returns are [`Var`]s that can be differentiated again, to any
//! order. [`jvp`] walks the tape forward with each node's tangent rule (`*_jvp`): a
//! directional derivative for the cost of one more forward pass. On those two rest
//! [`vjp`], [`hvp`] (a Hessian-vector product), [`jacobian`] and [`hessian`].
//!
//! The plain first-order walk ([`backward`](crate::backward)) is untouched: it keeps
//! the fast rules on buffers. A differentiable rule gives the same first-order values
//! (bit for bit for element-wise ops; `tests/higher_order.rs` states each op's bound).
//!
//! ```
//! use descent_backprop::{grad, Backward};
//! use descent_tape::Tape;
//! let tape = Tape::<f64>::new();
//! let x = tape.var(2.0);
//! let y = x * x * x; // y = x³
//! let dy = grad(y, &[x]).unwrap()[0]; // 3x², a node
//! let d2y = grad(dy, &[x]).unwrap()[0]; // 6x
//! assert_eq!(dy.item(), 12.0);
//! assert_eq!(d2y.item(), 12.0);
//! assert_eq!(d2y.backward().wrt(x).item(), 6.0); // third order, by the fast walk
//! ```

use crate::{Error, backward_with};
use descent_tape::ops::{jvp_node, vjp_node};
use descent_tape::{NodeId, Tape, Var};
use descent_tensor::{Float, Tensor, numel};
use smallvec::SmallVec;

/// The gradients of a recorded backward pass ([`grad_graph`]): for every node on a path
/// to the output, its gradient as a node of the same tape.
pub struct GradGraph<'t, T: Float> {
    tape: &'t Tape<T>,
    grads: Vec<Option<Var<'t, T>>>,
}

impl<'t, T: Float> GradGraph<'t, T> {
    /// The gradient of the output with respect to `x`, a node that can be
    /// differentiated again; `None` when no gradient reached `x` (it is zero).
    pub fn get(&self, x: Var<'t, T>) -> Option<Var<'t, T>> {
        self.grads.get(x.id().index()).copied().flatten()
    }

    /// As [`GradGraph::get`], with a zero constant shaped like `x` where no gradient
    /// reached it.
    ///
    /// ```
    /// use descent_backprop::grad_graph;
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let (x, unused) = (tape.var(3.0), tape.var(1.0));
    /// let g = grad_graph(x.sin()).unwrap();
    /// assert_eq!(g.wrt(x).item(), 3f64.cos());
    /// assert_eq!(g.wrt(unused).item(), 0.0);
    /// ```
    pub fn wrt(&self, x: Var<'t, T>) -> Var<'t, T> {
        self.get(x)
            .unwrap_or_else(|| self.tape.constant(Tensor::zeros(&x.shape())))
    }

    /// The gradient of the node named `name` ([`Var::named`]), as a node.
    ///
    /// # Errors
    /// [`Error::UnknownName`] when no node of the tape has that name.
    ///
    /// ```
    /// use descent_backprop::grad_graph;
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(0.5);
    /// let h = x.tanh().named("h");
    /// let g = grad_graph(h * h).unwrap();
    /// let dh = g.named("h").unwrap(); // 2h, a node: differentiate it again
    /// assert_eq!(dh.item(), 2.0 * 0.5f64.tanh());
    /// ```
    pub fn named(&self, name: &str) -> Result<Var<'t, T>, Error> {
        let id = {
            let read = self.tape.read();
            read.names()
                .find(|(_, n)| *n == name)
                .map(|(id, _)| id)
                .ok_or_else(|| Error::UnknownName {
                    name: name.to_owned(),
                })?
        };
        Ok(match self.grads.get(id.index()).copied().flatten() {
            Some(g) => g,
            None => {
                let shape: Vec<usize> = self.tape.read().shape(id).to_vec();
                self.tape.constant(Tensor::zeros(&shape))
            }
        })
    }
}

impl<'t, T: Float> GradGraph<'t, T> {
    /// The gradient of a scope's output (the last node recorded in the scope path
    /// `scope`, as [`Gradients::scope_deltas`](crate::Gradients::scope_deltas) takes
    /// it): "the δ of layer 2", as a node to differentiate again. `None` when no node
    /// of the forward pass is in that scope.
    ///
    /// ```
    /// use descent_backprop::grad_graph;
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(0.5);
    /// let h = { let _s = tape.scope("layer2"); x.tanh() };
    /// let g = grad_graph(h * h).unwrap();
    /// let delta = g.scope_output("layer2").unwrap(); // 2h, a node
    /// assert_eq!(delta.item(), 2.0 * 0.5f64.tanh());
    /// ```
    pub fn scope_output(&self, scope: &str) -> Option<Var<'t, T>> {
        let id = {
            let read = self.tape.read();
            (0..self.grads.len())
                .rev()
                .map(NodeId::from_index)
                .find(|&id| read.scope_of(id) == scope)?
        };
        Some(match self.grads[id.index()] {
            Some(g) => g,
            None => {
                let shape: Vec<usize> = self.tape.read().shape(id).to_vec();
                self.tape.constant(Tensor::zeros(&shape))
            }
        })
    }
}

/// A backward pass from a scalar `output` that records itself: every gradient is a node
/// on the same tape (recorded in the scope `backward`), so it can be named, looked up
/// and differentiated again. PyTorch: `torch.autograd.grad(output, inputs,
/// create_graph=True)`; JAX: `jax.grad`.
///
/// # Errors
/// [`Error::NotScalar`] for a non-scalar output; a stale or foreign handle; an op
/// without a derivative where it is asked for one
/// ([`descent_tape::Error::NotDifferentiable`], e.g. a tie in `maximum`).
///
/// ```
/// use descent_backprop::grad_graph;
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(1.5);
/// let g = grad_graph(x.exp() * x).unwrap().wrt(x); // (1 + x)eˣ
/// assert!((g.item() - 2.5 * 1.5f64.exp()).abs() < 1e-12);
/// ```
pub fn grad_graph<T: Float>(output: Var<'_, T>) -> Result<GradGraph<'_, T>, Error> {
    scalar_output(output, "grad_graph")?;
    let seed = output.tape().constant(Tensor::scalar(T::one()));
    let relevant = relevant(output, None);
    Ok(GradGraph {
        tape: output.tape(),
        grads: record_walk(output, seed, &relevant, None)?,
    })
}

/// The gradients of a scalar `output` with respect to `wrt`, recorded as nodes (as
/// [`grad_graph`], but only along paths from `wrt`): zeros where `output` does not
/// depend on an input.
///
/// # Errors
/// As [`grad_graph`].
///
/// ```
/// use descent_backprop::grad;
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let (x, y) = (tape.var(2.0), tape.var(3.0));
/// let g = grad(x * x * y, &[x, y]).unwrap();
/// assert_eq!((g[0].item(), g[1].item()), (12.0, 4.0));
/// ```
pub fn grad<'t, T: Float>(
    output: Var<'t, T>,
    wrt: &[Var<'t, T>],
) -> Result<Vec<Var<'t, T>>, Error> {
    scalar_output(output, "grad")?;
    let seed = output.tape().constant(Tensor::scalar(T::one()));
    vjp(output, wrt, seed)
}

/// A vector-Jacobian product recorded on the tape: the gradients of
/// `Σ output ⊙ cotangent` with respect to `wrt`, as nodes. `cotangent` is a node too
/// (shaped like `output`), so the result is differentiable in it as well. PyTorch:
/// `torch.autograd.grad(output, inputs, cotangent, create_graph=True)`; JAX: `jax.vjp`.
///
/// # Errors
/// [`Error::CotangentShape`] when the cotangent's shape is not the output's; as
/// [`grad_graph`] otherwise.
///
/// ```
/// use descent_backprop::vjp;
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(Tensor::from([1.0, 2.0]));
/// let u = tape.constant(Tensor::from([1.0, 10.0]));
/// let g = vjp(x * x, &[x], u).unwrap();
/// assert_eq!(g[0].value().data(), &[2.0, 40.0]);
/// ```
pub fn vjp<'t, T: Float>(
    output: Var<'t, T>,
    wrt: &[Var<'t, T>],
    cotangent: Var<'t, T>,
) -> Result<Vec<Var<'t, T>>, Error> {
    vjp_walk(output, wrt, cotangent, false)
}

/// As [`vjp`], but each of `wrt` is taken as independent of the others: the walk stops
/// at them, so an input that depends on another passes no gradient on to it (partial
/// derivatives, where [`vjp`] gives total ones). The differentiable rule of a
/// checkpointed segment needs this: its inputs are the segment's operands, one of
/// which (the state) may itself depend on another (a parameter).
pub(crate) fn vjp_partial<'t, T: Float>(
    output: Var<'t, T>,
    wrt: &[Var<'t, T>],
    cotangent: Var<'t, T>,
) -> Result<Vec<Var<'t, T>>, Error> {
    vjp_walk(output, wrt, cotangent, true)
}

fn vjp_walk<'t, T: Float>(
    output: Var<'t, T>,
    wrt: &[Var<'t, T>],
    cotangent: Var<'t, T>,
    partial: bool,
) -> Result<Vec<Var<'t, T>>, Error> {
    output.validate("vjp")?;
    cotangent.validate("vjp")?;
    for w in wrt {
        w.validate("vjp")?;
    }
    if cotangent.shape() != output.shape() {
        return Err(Error::CotangentShape {
            id: output.id(),
            output: output.shape(),
            cotangent: cotangent.shape(),
        });
    }
    let relevant = relevant(output, Some(wrt));
    let stop: Option<Vec<bool>> = partial.then(|| {
        let mut stop = vec![false; relevant.len()];
        for w in wrt {
            if let Some(s) = stop.get_mut(w.id().index()) {
                *s = true;
            }
        }
        stop
    });
    let grads = record_walk(output, cotangent, &relevant, stop.as_deref())?;
    Ok(wrt
        .iter()
        .map(|w| match grads.get(w.id().index()).copied().flatten() {
            Some(g) => g,
            None => output.tape().constant(Tensor::zeros(&w.shape())),
        })
        .collect())
}

/// Forward mode: the directional derivative of `output` at the current values, along
/// `tangents` (one per input in `wrt`, shaped like it), recorded as a node (so it can
/// be differentiated again). One walk over the tape from the first input to the output,
/// each node's tangent rule turning its operands' tangents into its own. PyTorch:
/// `torch.func.jvp`; JAX: `jax.jvp`.
///
/// # Errors
/// [`Error::Argument`] when the counts or shapes of `wrt` and `tangents` differ; as
/// [`grad_graph`] otherwise.
///
/// ```
/// use descent_backprop::jvp;
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let (x, y) = (tape.var(2.0), tape.var(3.0));
/// let f = x * y + x.sin();
/// let (dx, dy) = (tape.constant(1.0), tape.constant(0.5));
/// let d = jvp(f, &[x, y], &[dx, dy]).unwrap(); // (y + cos x)·1 + x·0.5
/// assert!((d.item() - (3.0 + 2f64.cos() + 1.0)).abs() < 1e-15);
/// ```
pub fn jvp<'t, T: Float>(
    output: Var<'t, T>,
    wrt: &[Var<'t, T>],
    tangents: &[Var<'t, T>],
) -> Result<Var<'t, T>, Error> {
    output.validate("jvp")?;
    let tan = tangent_walk(wrt, tangents, &[output.id()], "jvp")?;
    Ok(match tan[output.id().index()] {
        Some(t) => t,
        None => output.tape().constant(Tensor::zeros(&output.shape())),
    })
}

/// How [`hvp_with`] composes the two passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HvpMode {
    /// The tangent of the recorded gradient (JAX's `jvp(grad(f))`): a recorded
    /// backward, then one forward-mode walk over the nodes between the inputs and the
    /// gradients. Measured the cheaper of the two on W9 (an MLP's loss: 8.3 against
    /// 8.8 ms, and 14.0 against 14.5 on a busier run), so the default.
    #[default]
    ForwardOverReverse,
    /// The gradient of `⟨∇f, v⟩` (PyTorch's double backward): a recorded backward,
    /// then the fast first-order walk over forward and backward.
    ReverseOverReverse,
}

/// The Hessian-vector product `H v` of a scalar `output` with respect to `wrt` (the
/// Hessian of the concatenated inputs times the concatenated `v`), one tensor per
/// input. Composed as [`HvpMode::default`] says; [`hvp_with`] chooses. The nodes it
/// records stay on the tape (a rewind would make every handle stale): a loop of many
/// products on one recorded loss can take a [`Tape::checkpoint`] after the loss and
/// rewind to it, or record the loss afresh after a reset.
///
/// # Errors
/// [`Error::Argument`] when `v` does not match `wrt`; as [`grad_graph`] otherwise.
///
/// ```
/// use descent_backprop::hvp;
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(Tensor::from([1.0, 2.0]));
/// let f = (x * x * x).sum(); // H = diag(6x)
/// let hv = hvp(f, &[x], &[Tensor::from([1.0, 1.0])]).unwrap();
/// assert_eq!(hv[0].data(), &[6.0, 12.0]);
/// ```
pub fn hvp<'t, T: Float>(
    output: Var<'t, T>,
    wrt: &[Var<'t, T>],
    v: &[Tensor<T>],
) -> Result<Vec<Tensor<T>>, Error> {
    hvp_with(output, wrt, v, HvpMode::default())
}

/// [`hvp`], composed as `mode` says. Both give the same values up to rounding.
///
/// # Errors
/// As [`hvp`].
///
/// ```
/// use descent_backprop::{hvp_with, HvpMode};
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(0.5);
/// let f = x.sin();
/// let v = [descent_tensor::Tensor::scalar(2.0)];
/// let hv = hvp_with(f, &[x], &v, HvpMode::ForwardOverReverse).unwrap();
/// assert_eq!(hv[0].item(), -0.5f64.sin() * 2.0);
/// ```
pub fn hvp_with<'t, T: Float>(
    output: Var<'t, T>,
    wrt: &[Var<'t, T>],
    v: &[Tensor<T>],
    mode: HvpMode,
) -> Result<Vec<Tensor<T>>, Error> {
    scalar_output(output, "hvp")?;
    if v.len() != wrt.len() {
        return Err(Error::Argument {
            op: "hvp",
            reason: format!("{} vectors given for {} inputs", v.len(), wrt.len()),
        });
    }
    let tape = output.tape();
    {
        let grads = grad(output, wrt)?;
        let vs: Vec<Var<'t, T>> = v.iter().map(|t| tape.constant(t)).collect();
        match mode {
            HvpMode::ForwardOverReverse => {
                let ends: Vec<NodeId> = grads.iter().map(|g| g.id()).collect();
                let tan = tangent_walk(wrt, &vs, &ends, "hvp")?;
                Ok(grads
                    .iter()
                    .zip(wrt)
                    .map(|(g, w)| match tan[g.id().index()] {
                        Some(t) => t.value(),
                        None => Tensor::zeros(&w.shape()),
                    })
                    .collect())
            }
            HvpMode::ReverseOverReverse => {
                let mut dot: Option<Var<'t, T>> = None;
                for ((g, v), w) in grads.iter().zip(&vs).zip(wrt) {
                    if v.shape() != w.shape() {
                        return Err(shape_mismatch("hvp", w, v));
                    }
                    let term = g.try_mul(*v)?.try_sum()?;
                    dot = Some(match dot {
                        Some(d) => d.try_add(term)?,
                        None => term,
                    });
                }
                let Some(dot) = dot else {
                    return Ok(Vec::new());
                };
                let gg = crate::backward(dot)?;
                Ok(wrt
                    .iter()
                    .map(|w| match gg.get(*w) {
                        Some(view) => view.to_tensor(),
                        None => Tensor::zeros(&w.shape()),
                    })
                    .collect())
            }
        }
    }
}

/// How [`jacobian`] builds the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JacobianMode {
    /// One forward-mode walk per input element (a column each): cheaper for few inputs.
    Forward,
    /// One backward walk per output element (a row each): cheaper for few outputs.
    Reverse,
    /// Forward when the input has fewer elements than the output, else reverse.
    #[default]
    Auto,
}

/// The Jacobian of `output` with respect to `input`, shaped `output.shape ++
/// input.shape` (PyTorch's `torch.autograd.functional.jacobian`, JAX's `jacfwd` /
/// `jacrev`), built as `mode` says. Forward mode records each column's tangents on the
/// tape (reverse mode records nothing).
///
/// # Errors
/// As [`grad_graph`] (without the scalar requirement).
///
/// ```
/// use descent_backprop::{jacobian, JacobianMode};
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(Tensor::from([1.0, 2.0]));
/// let y = x * x; // J = diag(2x)
/// for mode in [JacobianMode::Forward, JacobianMode::Reverse] {
///     let j = jacobian(y, x, mode).unwrap();
///     assert_eq!(j.shape(), &[2, 2]);
///     assert_eq!(j.data(), &[2.0, 0.0, 0.0, 4.0]);
/// }
/// ```
pub fn jacobian<'t, T: Float>(
    output: Var<'t, T>,
    input: Var<'t, T>,
    mode: JacobianMode,
) -> Result<Tensor<T>, Error> {
    output.validate("jacobian")?;
    input.validate("jacobian")?;
    let (oshape, ishape) = (output.shape(), input.shape());
    let (m, n) = (numel(&oshape), numel(&ishape));
    let forward = match mode {
        JacobianMode::Forward => true,
        JacobianMode::Reverse => false,
        JacobianMode::Auto => n < m,
    };
    let mut data = vec![T::zero(); m * n];
    let tape = output.tape();
    if forward {
        for j in 0..n {
            let t = tape.constant(one_hot(&ishape, j));
            let column = jvp(output, &[input], &[t])?.value();
            for (k, &v) in column.data().iter().enumerate() {
                data[k * n + j] = v;
            }
        }
    } else {
        for k in 0..m {
            let grads = backward_with(output, &one_hot(&oshape, k))?;
            if let Some(row) = grads.get(input) {
                data[k * n..(k + 1) * n].copy_from_slice(row.data());
            }
        }
    }
    let mut shape = oshape.to_vec();
    shape.extend_from_slice(&ishape);
    Ok(Tensor::new(&shape, data).map_err(descent_tape::Error::from)?)
}

/// The Hessian of a scalar `output` with respect to `input`, shaped `input.shape ++
/// input.shape`: the reverse-mode Jacobian of the recorded gradient (which stays on the
/// tape). PyTorch: `torch.autograd.functional.hessian`; JAX:
/// `jax.hessian`.
///
/// # Errors
/// As [`grad_graph`].
///
/// ```
/// use descent_backprop::hessian;
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(Tensor::from([1.0, 2.0]));
/// let f = (x.slice(0, 0, 1) * x.slice(0, 1, 2)).sum(); // x₀x₁
/// assert_eq!(hessian(f, x).unwrap().data(), &[0.0, 1.0, 1.0, 0.0]);
/// ```
pub fn hessian<'t, T: Float>(output: Var<'t, T>, input: Var<'t, T>) -> Result<Tensor<T>, Error> {
    scalar_output(output, "hessian")?;
    let g = grad(output, &[input])?[0];
    jacobian(g, input, JacobianMode::Reverse)
}

/// A tensor of `shape` with a 1 at flat position `at`.
fn one_hot<T: Float>(shape: &[usize], at: usize) -> Tensor<T> {
    let mut t = Tensor::zeros(shape);
    t.data_mut()[at] = T::one();
    t
}

fn scalar_output<T: Float>(output: Var<'_, T>, op: &'static str) -> Result<(), Error> {
    output.validate(op)?;
    if !output.shape().is_empty() {
        return Err(crate::walk::not_scalar(output));
    }
    Ok(())
}

fn shape_mismatch<T: Float>(op: &'static str, w: &Var<'_, T>, t: &Var<'_, T>) -> Error {
    Error::Argument {
        op,
        reason: format!(
            "input node {} has shape {:?} but its vector has shape {:?}",
            w.id().index(),
            w.shape().as_slice(),
            t.shape().as_slice()
        ),
    }
}

/// Which nodes up to `output` want a gradient: those that require one and, when `wrt`
/// is given, lie on a path from one of its nodes.
fn relevant<T: Float>(output: Var<'_, T>, wrt: Option<&[Var<'_, T>]>) -> Vec<bool> {
    let read = output.tape().read();
    let out = output.id().index();
    let nodes = read.nodes();
    match wrt {
        None => (0..=out).map(|i| nodes[i].meta().requires_grad()).collect(),
        Some(wrt) => {
            let mut mark = vec![false; out + 1];
            for w in wrt {
                if let Some(m) = mark.get_mut(w.id().index()) {
                    *m = true;
                }
            }
            let start = wrt.iter().map(|w| w.id().index()).min().unwrap_or(out + 1);
            for i in start..=out {
                if !mark[i] && nodes[i].meta().requires_grad() {
                    let id = NodeId::from_index(i);
                    mark[i] = read.parents(id).iter().any(|p| mark[p.index()]);
                }
            }
            mark
        }
    }
}

/// The recorded reverse walk from `output`, seeded with `seed`: each relevant node's
/// differentiable rule, in reverse creation order, contributions summed in the order
/// the fast walk sums them. Nodes marked in `stop` keep what reaches them and pass
/// nothing on.
fn record_walk<'t, T: Float>(
    output: Var<'t, T>,
    seed: Var<'t, T>,
    relevant: &[bool],
    stop: Option<&[bool]>,
) -> Result<Vec<Option<Var<'t, T>>>, Error> {
    let tape = output.tape();
    let out = output.id().index();
    let mut grads: Vec<Option<Var<'t, T>>> = vec![None; out + 1];
    grads[out] = Some(seed);
    let _scope = tape.scope("backward");
    for i in (0..=out).rev() {
        let Some(g) = grads[i] else { continue };
        if !relevant[i] || stop.is_some_and(|s| s[i]) {
            continue;
        }
        let id = NodeId::from_index(i);
        let parents: SmallVec<[NodeId; 2]> = tape.read().parents(id).into();
        if parents.is_empty() {
            continue;
        }
        let contributions = vjp_node(tape, id, g, |p| relevant[p.index()])?;
        for (p, c) in parents.iter().zip(contributions) {
            if let Some(c) = c {
                let slot = &mut grads[p.index()];
                *slot = Some(match *slot {
                    Some(prev) => prev.try_add(c)?,
                    None => c,
                });
            }
        }
    }
    Ok(grads)
}

/// The forward-mode walk: tangents of the nodes from the first of `wrt` that lead to one
/// of `outputs`, seeded with `tangents`; `None` where a tangent is zero.
fn tangent_walk<'t, T: Float>(
    wrt: &[Var<'t, T>],
    tangents: &[Var<'t, T>],
    outputs: &[NodeId],
    op: &'static str,
) -> Result<Vec<Option<Var<'t, T>>>, Error> {
    let end = outputs.iter().map(|o| o.index()).max().unwrap_or(0);
    if wrt.len() != tangents.len() {
        return Err(Error::Argument {
            op,
            reason: format!("{} tangents given for {} inputs", tangents.len(), wrt.len()),
        });
    }
    let mut tan: Vec<Option<Var<'t, T>>> = vec![None; end + 1];
    let Some(first) = wrt.first() else {
        return Ok(tan);
    };
    let tape = first.tape();
    for (w, t) in wrt.iter().zip(tangents) {
        w.validate(op)?;
        t.validate(op)?;
        if w.shape() != t.shape() {
            return Err(shape_mismatch(op, w, t));
        }
        if let Some(slot) = tan.get_mut(w.id().index()) {
            *slot = Some(match *slot {
                Some(prev) => prev.try_add(*t)?,
                None => *t,
            });
        }
    }
    let start = wrt.iter().map(|w| w.id().index()).min().unwrap_or(0);
    // Only the nodes the outputs depend on: others (recorded in between, but off the
    // path) cost nothing and cannot fail.
    let mut wanted = vec![false; end + 1];
    {
        let read = tape.read();
        for o in outputs {
            wanted[o.index()] = true;
        }
        for i in (start..=end).rev() {
            if wanted[i] {
                for p in read.parents(NodeId::from_index(i)) {
                    wanted[p.index()] = true;
                }
            }
        }
    }
    let _scope = tape.scope("tangent");
    for i in start..=end {
        if tan[i].is_some() || !wanted[i] {
            continue;
        }
        let id = NodeId::from_index(i);
        let pt: SmallVec<[Option<Var<'t, T>>; 2]> = tape
            .read()
            .parents(id)
            .iter()
            .map(|p| tan[p.index()])
            .collect();
        if pt.iter().any(Option::is_some) {
            tan[i] = jvp_node(tape, id, &pt)?;
        }
    }
    Ok(tan)
}
