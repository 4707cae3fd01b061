//! The reverse walk: from the output back to the leaves, one rule per node.

use crate::{Error, Gradients};
use descent_tape::ops::elementwise::scalar_backward;
use descent_tape::ops::{GradSink, backward_node};
use descent_tape::{Node, NodeId, Op, Tape, TapeRead, Var, summarize};
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
    let mut grads = Gradients::empty();
    backward_into(output, &mut grads)?;
    Ok(grads)
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
    let mut grads = Gradients::empty();
    walk_read(output, output.tape().read(), cotangent.view(), &mut grads)?;
    Ok(grads)
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
    #[inline]
    fn grad_for_write(&mut self, node: NodeId) -> (&mut [T], bool) {
        let i = node.index();
        self.grads.buffer_for_write(i, self.nodes[i].meta())
    }
    #[inline]
    fn grads_for_write_pair(&mut self, a: NodeId, b: NodeId) -> Option<[(&mut [T], bool); 2]> {
        let (i, j) = (a.index(), b.index());
        self.grads
            .buffers_for_write_pair([i, j], [self.nodes[i].meta(), self.nodes[j].meta()])
    }
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
    let read = output.tape().read();
    // A tensor node holds a slot; read from the node's metadata, which the walk reads
    // next anyway, rather than through its value.
    if read.nodes()[output.id().index()].meta().slot().is_some() {
        drop(read);
        return Err(not_scalar(output));
    }
    walk_read(output, read, View::scalar(&T::one()), grads)
}

/// The error for a derivative taken of a non-scalar output, out of line.
#[cold]
#[inline(never)]
pub(crate) fn not_scalar<T: Float>(output: Var<'_, T>) -> Error {
    Error::NotScalar {
        id: output.id(),
        shape: output.shape(),
    }
}

/// The walk from `output` (checked live), with the tape already borrowed as `read`.
fn walk_read<'t, T: Float>(
    output: Var<'t, T>,
    read: TapeRead<'t, T>,
    seed: View<'_, T>,
    grads: &mut Gradients<T>,
) -> Result<(), Error> {
    let tape = output.tape();
    let out = output.id().index();
    grads.prepare(&read, out + 1);
    // Only the output and the nodes before it take part.
    let nodes = &read.nodes()[..=out];
    let m = nodes[out].meta();
    if m.requires_grad() {
        if m.slot().is_none() {
            // A scalar output: one store, not a buffer lookup and a slice copy (a tenth
            // of W1's walk).
            grads.add_scalar(out, seed.item());
        } else {
            grads.buffer(out, m).copy_from_slice(seed.data());
        }
    }
    if tape.anomaly_detection() {
        for i in (0..=out).rev() {
            walk_node::<T, true>(tape, &read, nodes, grads, i)?;
        }
    } else {
        // Runs of plain scalar element-wise nodes go through the tight loop; the node
        // that ends a run (a tensor, a hook, another op) through the general step.
        let mut end = out + 1;
        while let Some(i) = scalar_run(&nodes[..end], &mut grads.scalar, &mut grads.reached) {
            walk_node::<T, false>(tape, &read, nodes, grads, i)?;
            end = i;
        }
    }
    grads.finish();
    Ok(())
}

/// The reverse walk over `nodes` for as long as each node is a scalar without hooks
/// whose rule is element-wise (or a leaf, which has none): the bulk of a scalar graph.
/// Returns the index of the first node it cannot take, or `None` when it reached the
/// start. Works on bare slices, so their bounds stay in registers.
#[inline(never)]
fn scalar_run<T: Float>(nodes: &[Node<T>], scalar: &mut [T], reached: &mut [u64]) -> Option<usize> {
    // A graph this small is in cache already: it pays no hints (W1).
    if nodes.len() > PREFETCH_AHEAD {
        scalar_run_with::<T, true>(nodes, scalar, reached)
    } else {
        scalar_run_with::<T, false>(nodes, scalar, reached)
    }
}

/// [`scalar_run`], asking for the nodes ahead of the walk when `PREFETCH`.
#[inline(always)]
fn scalar_run_with<T: Float, const PREFETCH: bool>(
    nodes: &[Node<T>],
    scalar: &mut [T],
    reached: &mut [u64],
) -> Option<usize> {
    for (i, node) in nodes.iter().enumerate().rev() {
        if PREFETCH {
            // Unconditional, at node 0 near the start (a line already close): a branch
            // here cost W6 0.6 ns of its 6 a node.
            let ahead = i.saturating_sub(PREFETCH_AHEAD);
            prefetch(nodes, ahead);
            prefetch(scalar, ahead);
        }
        let m = node.meta();
        if !m.requires_grad() {
            continue;
        }
        if m.slot().is_some() || m.has_hook() {
            return Some(i);
        }
        if reached[i / 64] & (1 << (i % 64)) == 0 {
            continue;
        }
        let g = scalar[i];
        let elementwise = scalar_backward(nodes, node, g, |p, d| {
            crate::gradients::accumulate(scalar, reached, p, d)
        });
        if !elementwise {
            return Some(i);
        }
    }
    None
}

/// How many nodes ahead of the walk `scalar_run_with` asks for the nodes and gradients it
/// will read: about 16 KB of nodes, within L1. A graph larger than the L2 cache walks
/// memory backward faster than the processor's own prefetcher fetches it: W6's million
/// nodes took 9.5-9.7 ns a node backward without the hint and 5.9-6.1 with it (96 nodes
/// ahead: 6.9; 192: 6.6; 800-1,600: 6.0-6.6), where a graph that fits in L2 takes 4.4
/// (`descent-bench W6 --n N`).
const PREFETCH_AHEAD: usize = 400;

/// Asks the processor to bring the cache line holding `slice[i]` close, for a walk that
/// reads it soon. A hint: it changes no value and cannot fault, whatever `i` is.
#[inline(always)]
fn prefetch<E>(slice: &[E], i: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let line = slice.as_ptr().wrapping_add(i);
        // SAFETY: `_mm_prefetch` is unsafe only for being a `target_feature(enable =
        // "sse")` function, and SSE is part of every x86_64 target. PREFETCHT0 reads
        // no value into the program, writes nothing and never faults, at any address;
        // `wrapping_add` makes the address without the in-bounds rule of `add`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, i);
}

/// One step of the reverse walk: node `i`'s rule, if a gradient reached it and it
/// requires one; hooks first, and anomaly checks when `ANOMALY`.
///
/// Out of line: inlined, every op's rule made the walk's entry a 10-12 KB function whose
/// prologue and stack frame a scalar graph paid on every walk although its nodes take
/// `scalar_run` (W1: 788 → 766 instructions a step, callgrind); a call per node that
/// ends a run costs the tensor workloads nothing measurable (`compare_builds.sh`, W2-W6
/// within 1% or faster).
#[inline(never)]
fn walk_node<T: Float, const ANOMALY: bool>(
    tape: &Tape<T>,
    read: &TapeRead<'_, T>,
    nodes: &[Node<T>],
    grads: &mut Gradients<T>,
    i: usize,
) -> Result<(), Error> {
    let node = &nodes[i];
    let m = node.meta();
    if !m.requires_grad() {
        return Ok(());
    }
    // Tape indices fit in a u32 (the tape hands out u32 ids).
    let id = NodeId::from_index(i);
    match m.slot() {
        None => {
            if !grads.is_reached(i) {
                return Ok(());
            }
            if m.has_hook() {
                tape.run_hooks(id, &[], std::slice::from_mut(&mut grads.scalar[i]));
            }
            let g = grads.scalar[i];
            if ANOMALY && !g.is_finite() {
                return Err(anomaly_at(read, grads, id, None));
            }
            // Scalar element-wise nodes are handled on numbers, without building views.
            if !scalar_backward(nodes, node, g, |p, d| grads.add_scalar(p, d)) {
                let mut sink = Sink {
                    grads: &mut *grads,
                    nodes,
                };
                backward_node(read, id, View::scalar(&g), &mut sink);
            }
            if ANOMALY {
                // Element-wise operands are scalars, checked cheaply; other rules
                // (sum, losses) may feed tensors, checked in full.
                let elementwise = matches!(node.op(), Op::Unary(_) | Op::Binary(_));
                let suspect = !elementwise
                    || read.parents(id).iter().any(|p| {
                        grads.is_reached(p.index()) && !grads.scalar[p.index()].is_finite()
                    });
                if suspect {
                    check_operands(read, grads, id, View::scalar(&g))?;
                }
            }
        }
        Some(slot) => {
            let s = slot as usize;
            let Some(mut buf) = grads.tensor[s].take() else {
                return Ok(());
            };
            let shape = grads.shapes[s].clone();
            if m.has_hook() {
                tape.run_hooks(id, &shape, &mut buf);
            }
            if ANOMALY && buf.iter().any(|v| !v.is_finite()) {
                grads.tensor[s] = Some(buf);
                return Err(anomaly_at(read, grads, id, None));
            }
            if !node.op().is_leaf() {
                let mut sink = Sink {
                    grads: &mut *grads,
                    nodes,
                };
                backward_node(read, id, View::new(&shape, &buf), &mut sink);
            }
            if ANOMALY {
                check_operands(read, grads, id, View::new(&shape, &buf))?;
            }
            if grads.is_dropped(i) {
                // No rule reads it again (the walk only goes back), and no lookup may:
                // the next rule that needs a buffer this size writes into this one.
                grads.spare.give(buf);
            } else {
                grads.tensor[s] = Some(buf);
            }
        }
    }
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
        if let Some(g) = grads.stored(p)
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
    let g = grads.stored(bad);
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
    // Walks into the store directly rather than through `backward`'s `Result`: moving
    // the store out of a `Result` copied it, a fifth of W1's per-step instructions
    // over the walk itself.
    #[inline]
    fn backward(self) -> Gradients<T> {
        let mut grads = Gradients::empty();
        if let Err(e) = backward_into(self, &mut grads) {
            failed(e)
        }
        grads
    }
    fn try_backward(self) -> Result<Gradients<T>, Error> {
        backward(self)
    }
    fn backward_with(self, cotangent: &Tensor<T>) -> Gradients<T> {
        match backward_with(self, cotangent) {
            Ok(g) => g,
            Err(e) => failed(e),
        }
    }
}

/// The panicking forms' failure, out of line: the walk's callers stay small.
#[cold]
#[inline(never)]
fn failed(e: Error) -> ! {
    panic!("{e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain longer than the prefetch distance, so that the walk's hints point both
    /// ahead of it and, near the start, at node 0; its gradient against the chain rule
    /// carried forward by hand. Miri runs it (`.ci/miri`): the hints are `unsafe`.
    #[test]
    fn long_scalar_chain_matches_the_chain_rule_by_hand() {
        let (x0, y0) = (0.3, -0.7);
        let tape = Tape::<f64>::new();
        let (x, y) = (tape.var(x0), tape.var(y0));
        let mut v = x;
        // (value, d/dx, d/dy) of the chain, forward.
        let (mut value, mut dx, mut dy) = (x0, 1.0, 0.0);
        for _ in 0..(PREFETCH_AHEAD + 100) / 3 {
            v = (v * y + x).tanh();
            let inner = value * y0 + x0;
            let slope = 1.0 - inner.tanh().powi(2);
            (dx, dy) = (slope * (dx * y0 + 1.0), slope * (dy * y0 + value));
            value = inner.tanh();
        }
        assert!(tape.len() > PREFETCH_AHEAD);
        let grads = backward(v).unwrap();
        // Not bit for bit: Miri's `tanh` is off by a few units in the last place.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert!(close(v.item(), value), "{} against {value}", v.item());
        let (gx, gy) = (grads.wrt(x).item(), grads.wrt(y).item());
        assert!(close(gx, dx), "d/dx {gx} against {dx}");
        assert!(close(gy, dy), "d/dy {gy} against {dy}");
    }

    /// Under `Keep::Leaves` a chain of same-shape nodes is walked on a handful of
    /// buffers, each given back and taken again, instead of one a node.
    #[test]
    fn leaves_only_walks_a_chain_on_a_few_buffers() {
        let tape = Tape::<f64>::new();
        let x = tape.var(Tensor::from(vec![0.5; 64]));
        let mut v = x;
        for _ in 0..100 {
            v = (v * 0.9).tanh();
        }
        let loss = v.sum();
        let held = |g: &Gradients<f64>| g.tensor.iter().flatten().count() + g.spare.len();
        let all = loss.backward();
        assert_eq!(held(&all), 201, "every node's own buffer");
        let mut leaves = Gradients::empty().keeping(crate::Keep::Leaves);
        backward_into(loss, &mut leaves).unwrap();
        assert_eq!(
            leaves.tensor.iter().flatten().count(),
            1,
            "x's gradient alone"
        );
        assert!(held(&leaves) <= 3, "{} buffers", held(&leaves));
        assert_eq!(leaves.wrt(x).data(), all.wrt(x).data());
    }
}
