//! Activation checkpointing: a segment of the program recorded as one node, whose
//! intermediate values are recomputed during backward instead of kept.
//!
//! A tape keeps every intermediate value until the walk has used it, so the memory
//! of a long chain (an RNN over a thousand steps) grows with its length times the
//! values each step makes. [`recompute`] runs a segment on a scratch tape, keeps only
//! its output on the tape, and registers a rule that, when the walk reaches the
//! node, runs the segment again on a scratch tape from the same inputs and walks it
//! backward. Memory then holds one value per segment plus one segment's worth of
//! intermediates; time pays one more forward pass of each segment.
//!
//! Both rules live here, beside the forward: the first-order rule (replay and walk)
//! and, for higher order, the segment recorded again on the tape itself, so that its
//! gradient is a graph that can be differentiated (no saving there).

use crate::higher;
use crate::{Error, backward_with};
use descent_tape::ops::custom::CustomOp;
use descent_tape::{Tape, Var};
use descent_tensor::bins::{self, Parkable};
use descent_tensor::{Float, Tensor, View};
use std::rc::Rc;

/// The program of a segment: from its inputs on a tape, its output on the same tape.
type Body<T> =
    dyn for<'s> Fn(&'s Tape<T>, &[Var<'s, T>]) -> Result<Var<'s, T>, descent_tape::Error>;

/// Records `body(inputs)` as one node whose intermediates are recomputed during
/// backward, not kept (activation checkpointing; PyTorch's
/// `torch.utils.checkpoint.checkpoint`).
///
/// `body` receives a tape and the inputs' values as leaves on it, and returns the
/// segment's output. It must compute from those inputs alone, the same way every
/// time: it runs once now and once more when the walk reaches the node. Every value
/// that needs a gradient (parameters included: bind them on the main tape and pass
/// them in) must be an input; a segment that binds a parameter itself is refused,
/// since that parameter's gradient would be lost. Constants it owns (moved into the
/// closure) are fine.
///
/// The gradients equal those of the same program recorded plainly up to rounding:
/// a segment's contributions to an input are summed inside the segment before they
/// join the rest, a different grouping of the same terms. They are the same bits for
/// any thread count. Higher order works through the node (its differentiable rule
/// records the segment on the tape again, and saves nothing there).
///
/// ```
/// use descent_backprop::{Backward, recompute};
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
///
/// let tape = Tape::<f64>::new();
/// let h0 = tape.var(Tensor::from([0.5, -0.25]));
/// let w = tape.var(Tensor::from([[0.9, 0.1], [-0.2, 0.8]]));
/// // Ten steps h ← tanh(h W), checkpointed one step at a time: the tape keeps each
/// // step's output and nothing of its inside.
/// let mut h = h0;
/// for _ in 0..10 {
///     h = recompute(&[h, w], |_, v| {
///         let (h, w) = (v[0], v[1]);
///         h.reshape(&[1, 2]).try_matmul(w)?.try_tanh()?.try_reshape(&[2])
///     })
///     .unwrap();
/// }
/// let loss = h.sum();
/// let grads = loss.backward();
///
/// // The same program recorded plainly gives the same gradients.
/// let plain = Tape::<f64>::new();
/// let (p0, pw) = (plain.var(Tensor::from([0.5, -0.25])), plain.var(Tensor::from([[0.9, 0.1], [-0.2, 0.8]])));
/// let mut p = p0;
/// for _ in 0..10 {
///     p = p.reshape(&[1, 2]).matmul(pw).tanh().reshape(&[2]);
/// }
/// let reference = p.sum().backward();
/// for (a, b) in grads.wrt(w).data().iter().zip(reference.wrt(pw).data()) {
///     assert!((a - b).abs() < 1e-14);
/// }
/// assert_eq!(tape.len(), 2 + 10 + 1); // the inputs, one node a step, the sum
/// ```
///
/// # Errors
/// No input; a stale or foreign handle among the inputs; the errors `body` returns;
/// [`Error::Argument`] if `body` binds a parameter on its tape.
pub fn recompute<'t, T, F>(inputs: &[Var<'t, T>], body: F) -> Result<Var<'t, T>, Error>
where
    T: Float,
    F: for<'s> Fn(&'s Tape<T>, &[Var<'s, T>]) -> Result<Var<'s, T>, descent_tape::Error> + 'static,
{
    let Some(first) = inputs.first() else {
        return Err(Error::Argument {
            op: "recompute",
            reason: "a segment needs at least one input".into(),
        });
    };
    for v in inputs {
        v.validate("recompute")?;
    }
    let tape = first.tape();
    let segment = Segment {
        body: Rc::new(body),
    };
    let values: Vec<Tensor<T>> = inputs.iter().map(Var::value).collect();
    let views: Vec<View<'_, T>> = values.iter().map(Tensor::view).collect();
    let needs: Vec<bool> = inputs.iter().map(Var::requires_grad).collect();
    let value = with_scratch(|scratch| -> Result<Tensor<T>, Error> {
        let (_, out) = segment.replay(scratch, &views, &needs)?;
        if !scratch.bindings().is_empty() {
            return Err(Error::Argument {
                op: "recompute",
                reason: "the segment bound a parameter on its own tape, so its gradient \
                         would be lost: bind it on the main tape and pass it as an input"
                    .into(),
            });
        }
        Ok(out.value())
    })?;
    Ok(tape.try_custom(Rc::new(segment), inputs, value)?)
}

/// A recorded segment: its program, run again when its gradient is needed.
struct Segment<T: Float> {
    body: Rc<Body<T>>,
}

impl<T: Float> Segment<T> {
    /// Runs the program on `scratch` from leaves holding `inputs` (variables where
    /// `needs`, constants elsewhere).
    fn replay<'s>(
        &self,
        scratch: &'s Tape<T>,
        inputs: &[View<'_, T>],
        needs: &[bool],
    ) -> Result<(Vec<Var<'s, T>>, Var<'s, T>), Error> {
        let leaves: Vec<Var<'s, T>> = inputs
            .iter()
            .zip(needs)
            .map(|(&x, &n)| {
                if n {
                    scratch.var(x)
                } else {
                    scratch.constant(x)
                }
            })
            .collect();
        let out = (self.body)(scratch, &leaves)?;
        out.validate("recompute")?;
        Ok((leaves, out))
    }
}

impl<T: Float> CustomOp<T> for Segment<T> {
    fn name(&self) -> &'static str {
        "recompute"
    }

    fn backward(
        &self,
        inputs: &[View<'_, T>],
        _output: View<'_, T>,
        grad: View<'_, T>,
        needs: &[bool],
    ) -> Vec<Option<Tensor<T>>> {
        with_scratch(|scratch| {
            // The program ran on these inputs when it was recorded; the same ops on the
            // same values cannot fail now.
            let (leaves, out) = self
                .replay(scratch, inputs, needs)
                .expect("recompute: the segment failed when replayed on the inputs it ran on");
            let grads = backward_with(out, &grad.to_tensor())
                .expect("recompute: the replayed segment's walk failed");
            leaves
                .iter()
                .zip(needs)
                .map(|(&leaf, &n)| {
                    if n {
                        grads.get(leaf).map(|g| g.to_tensor())
                    } else {
                        None
                    }
                })
                .collect()
        })
    }

    fn vjp<'t>(
        &self,
        tape: &'t Tape<T>,
        inputs: &[Var<'t, T>],
        grad: Var<'t, T>,
        needs: &[bool],
    ) -> Option<Result<Vec<Option<Var<'t, T>>>, descent_tape::Error>> {
        let record = || -> Result<Vec<Option<Var<'t, T>>>, Error> {
            let out = (self.body)(tape, inputs)?;
            let wrt: Vec<Var<'t, T>> = inputs
                .iter()
                .zip(needs)
                .filter(|(_, n)| **n)
                .map(|(v, _)| *v)
                .collect();
            let mut grads = higher::vjp_partial(out, &wrt, grad)?.into_iter();
            Ok(needs
                .iter()
                .map(|&n| if n { grads.next() } else { None })
                .collect())
        };
        Some(record().map_err(into_tape_error))
    }

    fn jvp<'t>(
        &self,
        tape: &'t Tape<T>,
        inputs: &[Var<'t, T>],
        tangents: &[Option<Var<'t, T>>],
    ) -> Option<Result<Option<Var<'t, T>>, descent_tape::Error>> {
        let record = || -> Result<Option<Var<'t, T>>, Error> {
            let out = (self.body)(tape, inputs)?;
            let (wrt, tans): (Vec<Var<'t, T>>, Vec<Var<'t, T>>) = inputs
                .iter()
                .zip(tangents)
                .filter_map(|(v, t)| t.map(|t| (*v, t)))
                .unzip();
            if wrt.is_empty() {
                return Ok(None);
            }
            Ok(Some(higher::jvp(out, &wrt, &tans)?))
        };
        Some(record().map_err(into_tape_error))
    }
}

/// A walk's error inside a rule the tape runs, as the tape's error type.
fn into_tape_error(e: Error) -> descent_tape::Error {
    match e {
        Error::Tape(e) => e,
        other => descent_tape::Error::Argument {
            op: "recompute",
            reason: other.to_string(),
        },
    }
}

/// A tape kept per thread for replaying segments, so that a backward pass over many
/// segments reuses one tape's memory instead of allocating a tape per segment.
struct Scratch<T: Float>(Tape<T>);

impl<T: Float> Parkable for Scratch<T> {
    // Segments nest (a segment's program may checkpoint its own parts): one tape per
    // level in use; deeper nesting makes new tapes.
    const PER_THREAD: usize = 4;
}

/// Runs `f` on an empty scratch tape of this thread, then empties it and keeps it.
fn with_scratch<T: Float, R>(f: impl FnOnce(&Tape<T>) -> R) -> R {
    let Scratch(tape) = bins::take().unwrap_or_else(|| Scratch(Tape::new()));
    tape.reset();
    let result = f(&tape);
    tape.reset();
    bins::park(Scratch(tape));
    result
}
