//! The reverse walk: from the output back to the leaves, one rule per node.

use crate::{Error, Gradients};
use descent_tape::ops::{GradSink, backward_node};
use descent_tape::{Node, NodeId, Op, TapeRead, Var, summarize};
use descent_tensor::{Float, Tensor, View};

/// Runs backward from a scalar output, seeding its gradient with 1.
///
/// Every node on a path from a variable leaf to the output gets its gradient; nodes
/// recorded after the output, constants, and nodes that do not reach the output cost
/// nothing.
///
/// ```
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(2.0);
/// let y = x.ln() * x;                // y = x ln x, dy/dx = ln x + 1
/// let grads = descent_backprop::backward(y).unwrap();
/// assert!((grads.wrt(x).item() - (2f64.ln() + 1.0)).abs() < 1e-15);
/// ```
pub fn backward<T: Float>(output: Var<'_, T>) -> Result<Gradients<T>, Error> {
    output.validate("backward")?;
    let shape = output.shape();
    if !shape.is_empty() {
        return Err(Error::NotScalar {
            id: output.id(),
            shape,
        });
    }
    walk(output, View::scalar(&T::one()))
}

/// Runs backward from an output of any shape, seeding its gradient with `cotangent`
/// (a vector-Jacobian product: the gradient of `Σ output ⊙ cotangent`).
///
/// ```
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(Tensor::from([1.0, 2.0]));
/// let y = x * x;
/// let grads = descent_backprop::backward_with(y, &Tensor::from([1.0, 10.0])).unwrap();
/// assert_eq!(grads.wrt(x).data(), &[2.0, 40.0]);
/// ```
pub fn backward_with<T: Float>(
    output: Var<'_, T>,
    cotangent: &Tensor<T>,
) -> Result<Gradients<T>, Error> {
    output.validate("backward_with")?;
    let shape = output.shape();
    if shape.as_slice() != cotangent.shape() {
        return Err(Error::CotangentShape {
            id: output.id(),
            output: shape,
            cotangent: cotangent.shape().into(),
        });
    }
    walk(output, cotangent.view())
}

struct Sink<'a, T: Float> {
    grads: &'a mut Gradients<T>,
    nodes: &'a [Node<T>],
}

impl<T: Float> GradSink<T> for Sink<'_, T> {
    #[inline]
    fn grad_mut(&mut self, node: NodeId) -> &mut [T] {
        let i = node.index();
        self.grads.buffer(i, self.nodes[i].meta())
    }
}

fn walk<T: Float>(output: Var<'_, T>, seed: View<'_, T>) -> Result<Gradients<T>, Error> {
    let mut grads = Gradients::empty();
    walk_into(output, seed, &mut grads)?;
    Ok(grads)
}

/// Runs backward from a scalar output into `grads`, reusing its memory: the form for a
/// training loop that should not allocate once warm.
///
/// ```
/// use descent_backprop::{backward_into, Gradients};
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let mut grads = Gradients::empty();
/// for step in 0..3 {
///     tape.reset();
///     let x = tape.var(step as f64);
///     backward_into(x * x, &mut grads).unwrap();
///     assert_eq!(grads.wrt(x).item(), 2.0 * step as f64);
/// }
/// ```
pub fn backward_into<T: Float>(output: Var<'_, T>, grads: &mut Gradients<T>) -> Result<(), Error> {
    output.validate("backward")?;
    let is_tensor = matches!(
        output.tape().read().node_value(output.id()),
        descent_tape::Value::Tensor(_)
    );
    if is_tensor {
        return Err(Error::NotScalar {
            id: output.id(),
            shape: output.shape(),
        });
    }
    walk_into(output, View::scalar(&T::one()), grads)
}

fn walk_into<T: Float>(
    output: Var<'_, T>,
    seed: View<'_, T>,
    grads: &mut Gradients<T>,
) -> Result<(), Error> {
    let tape = output.tape();
    let anomaly = tape.anomaly_detection();
    let read = tape.read();
    let out = output.id().index();
    grads.prepare(&read, out + 1);
    let nodes = read.nodes();
    if nodes[out].meta().requires_grad() {
        let buf = grads.buffer(out, nodes[out].meta());
        buf.copy_from_slice(seed.data());
    }
    for i in (0..=out).rev() {
        let node = &nodes[i];
        let m = node.meta();
        if !m.requires_grad() {
            continue;
        }
        // Tape indices fit in a u32 (the tape hands out u32 ids).
        let id = NodeId::from_index(i);
        match m.slot() {
            None => {
                if !grads.is_reached(i) {
                    continue;
                }
                if m.has_hook() {
                    tape.run_hooks(id, &[], std::slice::from_mut(&mut grads.scalar[i]));
                }
                let g = grads.scalar[i];
                if anomaly && !g.is_finite() {
                    return Err(anomaly_at(&read, grads, id, None));
                }
                // Scalar element-wise nodes, the bulk of a scalar graph, are handled
                // here without building views. Their operands are scalar nodes.
                match *node.op() {
                    Op::Unary(u) => {
                        let p = node.args()[0].index();
                        if nodes[p].meta().requires_grad() {
                            let x = nodes[p].scalar();
                            grads.scalar[p] += g * u.derivative(x, node.scalar());
                            grads.mark(p);
                        }
                    }
                    Op::Binary(b) => {
                        let [pa, pb] = node.args();
                        let (pa, pb) = (pa.index(), pb.index());
                        let (da, db) =
                            b.partials(nodes[pa].scalar(), nodes[pb].scalar(), node.scalar());
                        if nodes[pa].meta().requires_grad() {
                            grads.scalar[pa] += g * da;
                            grads.mark(pa);
                        }
                        if nodes[pb].meta().requires_grad() {
                            grads.scalar[pb] += g * db;
                            grads.mark(pb);
                        }
                    }
                    _ if node.op().is_leaf() => {}
                    _ => {
                        let mut sink = Sink {
                            grads: &mut *grads,
                            nodes,
                        };
                        backward_node(&read, id, View::scalar(&g), &mut sink);
                    }
                }
                if anomaly {
                    // Element-wise operands are scalars, checked cheaply; other rules
                    // (sum, losses) may feed tensors, checked in full.
                    let elementwise = matches!(node.op(), Op::Unary(_) | Op::Binary(_));
                    let suspect = !elementwise
                        || read
                            .parents(id)
                            .iter()
                            .any(|p| !grads.scalar[p.index()].is_finite());
                    if suspect {
                        check_operands(&read, grads, id, View::scalar(&g))?;
                    }
                }
            }
            Some(slot) => {
                let s = slot as usize;
                let Some(mut buf) = grads.tensor[s].take() else {
                    continue;
                };
                let shape = grads.shapes[s].clone();
                if m.has_hook() {
                    tape.run_hooks(id, &shape, &mut buf);
                }
                if anomaly && buf.iter().any(|v| !v.is_finite()) {
                    grads.tensor[s] = Some(buf);
                    return Err(anomaly_at(&read, grads, id, None));
                }
                if !node.op().is_leaf() {
                    let mut sink = Sink {
                        grads: &mut *grads,
                        nodes,
                    };
                    backward_node(&read, id, View::new(&shape, &buf), &mut sink);
                }
                if anomaly {
                    check_operands(&read, grads, id, View::new(&shape, &buf))?;
                }
                grads.tensor[s] = Some(buf);
            }
        }
    }
    grads.finish();
    Ok(())
}

/// After node `id`'s rule ran: an error if it gave any operand a non-finite gradient.
fn check_operands<T: Float>(
    read: &TapeRead<'_, T>,
    grads: &Gradients<T>,
    id: NodeId,
    incoming: View<'_, T>,
) -> Result<(), Error> {
    for &p in read.parents(id) {
        if let Some(g) = grads.by_id(p)
            && g.data().iter().any(|v| !v.is_finite())
        {
            let mut err = anomaly_at(read, grads, p, Some(id));
            if let Error::NonFiniteGradient { incoming: inc, .. } = &mut err {
                *inc = summarize(incoming.data().iter().map(|v| v.as_f64()));
            }
            return Err(err);
        }
    }
    Ok(())
}

/// The report for node `bad`, whose gradient is not finite: made by the rule of
/// `by` (or by a hook or the seed, when `by` is `None`).
fn anomaly_at<T: Float>(
    read: &TapeRead<'_, T>,
    grads: &Gradients<T>,
    bad: NodeId,
    by: Option<NodeId>,
) -> Error {
    let g = grads.by_id(bad);
    let value = g
        .and_then(|g| g.data().iter().copied().find(|v| !v.is_finite()))
        .map_or(f64::NAN, |v| v.as_f64());
    let source = by.unwrap_or(bad);
    Error::NonFiniteGradient {
        node: Box::new(read.node_ref(bad)),
        value,
        by: by.map(|b| Box::new(read.node_ref(b))),
        incoming: String::new(),
        operands: read
            .parents(source)
            .iter()
            .map(|&p| descent_tape::Operand {
                node: Box::new(read.node_ref(p)),
                values: summarize(read.value(p).data().iter().map(|v| v.as_f64())),
            })
            .collect(),
    }
}

/// Runs backward as a method of the output: `loss.backward()`.
///
/// ```
/// use descent_backprop::Backward;
/// let tape = descent_tape::Tape::<f64>::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.tanh().backward().wrt(x).item(), 1.0);
/// ```
pub trait Backward<T: Float> {
    /// [`backward`], panicking on error.
    #[must_use = "backward returns the gradients; look them up (`grads.wrt(x)`)"]
    fn backward(self) -> Gradients<T>;
    /// [`backward`].
    fn try_backward(self) -> Result<Gradients<T>, Error>;
    /// [`backward_with`], panicking on error.
    #[must_use = "backward_with returns the gradients; look them up (`grads.wrt(x)`)"]
    fn backward_with(self, cotangent: &Tensor<T>) -> Gradients<T>;
}

impl<T: Float> Backward<T> for Var<'_, T> {
    fn backward(self) -> Gradients<T> {
        match backward(self) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        }
    }
    fn try_backward(self) -> Result<Gradients<T>, Error> {
        backward(self)
    }
    fn backward_with(self, cotangent: &Tensor<T>) -> Gradients<T> {
        match backward_with(self, cotangent) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        }
    }
}
