//! Ops whose rules are given from outside the tape crate: a [`CustomOp`] kept on the
//! tape beside the node it made. The reverse walk lives in `descent-backprop`, which
//! depends on this crate, so an op whose backward needs a walk of its own (activation
//! checkpointing: `descent_backprop::recompute` replays a segment on a scratch tape and
//! walks it) is written there and recorded here through this door.

use super::{Contributions, DiffCtx, GradSink};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::tape::Output;
use crate::{Tape, Var};
use descent_tensor::{Float, Tensor, View};
use std::rc::Rc;

/// The rules of an op recorded with [`Tape::try_custom`]: a name for renders and
/// errors, and the backward rule (the gradient of each operand from the node's
/// gradient). The differentiable and tangent rules are optional: without them, the
/// node refuses higher-order differentiation with [`Error::HigherOrderUnsupported`].
///
/// ```
/// use descent_tape::ops::custom::CustomOp;
/// use descent_tape::{Tape, Var};
/// use descent_tensor::{Tensor, View};
/// use std::rc::Rc;
///
/// /// `y = 3x`, with its rule written by hand.
/// struct Triple;
/// impl CustomOp<f64> for Triple {
///     fn name(&self) -> &'static str {
///         "triple"
///     }
///     fn backward(&self, _: &[View<'_, f64>], _: View<'_, f64>, g: View<'_, f64>, _: &[bool])
///         -> Vec<Option<Tensor<f64>>> {
///         let data = g.data().iter().map(|g| 3.0 * g).collect();
///         vec![Some(Tensor::new(g.shape(), data).unwrap())]
///     }
/// }
///
/// let tape = Tape::<f64>::new();
/// let x = tape.var(Tensor::from([1.0, 2.0]));
/// let y = tape.try_custom(Rc::new(Triple), &[x], Tensor::from([3.0, 6.0])).unwrap();
/// assert_eq!(y.value().data(), &[3.0, 6.0]);
/// assert!(tape.to_string().contains("#1 custom[triple](#0) [2]"));
/// ```
pub trait CustomOp<T: Float> {
    /// The op's name, as renders and errors show it (`custom[name]`).
    fn name(&self) -> &'static str;

    /// The gradient of each operand, given the operands' values, the node's value and
    /// its gradient `grad` (shaped like the value): one entry per operand, shaped like
    /// it, `None` where `needs` says the operand wants none (or its gradient is zero).
    fn backward(
        &self,
        inputs: &[View<'_, T>],
        output: View<'_, T>,
        grad: View<'_, T>,
        needs: &[bool],
    ) -> Vec<Option<Tensor<T>>>;

    /// The differentiable rule: the same gradients recorded as ops on `tape` from the
    /// operands `inputs` and the gradient `grad` (a node), so that they can be
    /// differentiated again. `None` (the default) means the op has none.
    fn vjp<'t>(
        &self,
        tape: &'t Tape<T>,
        inputs: &[Var<'t, T>],
        grad: Var<'t, T>,
        needs: &[bool],
    ) -> Option<Result<Vec<Option<Var<'t, T>>>>> {
        let _ = (tape, inputs, grad, needs);
        None
    }

    /// The tangent rule: the node's tangent recorded as ops from the operands and their
    /// tangents (`None` where zero). `None` (the default) means the op has none.
    fn jvp<'t>(
        &self,
        tape: &'t Tape<T>,
        inputs: &[Var<'t, T>],
        tangents: &[Option<Var<'t, T>>],
    ) -> Option<Result<Option<Var<'t, T>>>> {
        let _ = (tape, inputs, tangents);
        None
    }
}

impl<T: Float> Tape<T> {
    /// Records a node with value `value`, operands `inputs` and the rules of `rule`.
    /// The value is the caller's to compute (the tape does not run the op forward);
    /// the node requires a gradient when an operand does (outside `no_grad`).
    ///
    /// # Errors
    /// A stale or foreign handle among `inputs`; no input at all; a non-finite value
    /// while anomaly detection is on (as every op).
    pub fn try_custom<'t>(
        &'t self,
        rule: Rc<dyn CustomOp<T>>,
        inputs: &[Var<'t, T>],
        value: Tensor<T>,
    ) -> Result<Var<'t, T>> {
        if inputs.is_empty() {
            return Err(Error::Argument {
                op: "custom",
                reason: format!("'{}' needs at least one operand", rule.name()),
            });
        }
        for v in inputs {
            self.check("custom", v)?;
        }
        let (rule, first, count) = {
            let mut inner = self.inner.borrow_mut();
            let first = inner.operand_lists.len() as u32;
            inner.operand_lists.extend(inputs.iter().map(|v| v.id));
            inner.custom.push(rule);
            ((inner.custom.len() - 1) as u32, first, inputs.len() as u32)
        };
        let result = self.record(Op::Custom { rule, first, count }, inputs, |_, _| {
            Ok(Output::Tensor(value))
        });
        if result.is_err() {
            // Nothing of a refused op stays on the tape.
            let mut inner = self.inner.borrow_mut();
            inner.operand_lists.truncate(first as usize);
            inner.custom.truncate(rule as usize);
        }
        result
    }
}

/// The backward rule of a custom node: its rule's gradients, added into the operands'.
pub(crate) fn custom_backward<T: Float, S: GradSink<T>>(
    rule: u32,
    cx: &super::BackwardCtx<'_, T>,
    sink: &mut S,
) {
    let inputs: Vec<View<'_, T>> = (0..cx.arity()).map(|i| cx.input(i)).collect();
    let needs: Vec<bool> = (0..cx.arity()).map(|i| cx.needs(i)).collect();
    let rule = Rc::clone(&cx.inner.custom[rule as usize]);
    let grads = rule.backward(&inputs, cx.out, cx.g, &needs);
    assert_eq!(
        grads.len(),
        cx.arity(),
        "custom op '{}': backward gave {} gradients for {} operands",
        rule.name(),
        grads.len(),
        cx.arity()
    );
    for (i, g) in grads.into_iter().enumerate() {
        let (Some(g), true) = (g, needs[i]) else {
            continue;
        };
        assert_eq!(
            g.shape(),
            cx.input(i).shape(),
            "custom op '{}': the gradient of operand {i} has the wrong shape",
            rule.name()
        );
        let dst = sink.grad_mut(cx.parent(i));
        for (d, s) in dst.iter_mut().zip(g.data()) {
            *d += *s;
        }
    }
}

fn rule_of<T: Float>(tape: &Tape<T>, rule: u32) -> Rc<dyn CustomOp<T>> {
    Rc::clone(&tape.inner.borrow().custom[rule as usize])
}

/// The differentiable rule of a custom node: its rule's, or an error naming it.
pub(crate) fn custom_vjp<'t, T: Float>(
    rule: u32,
    cx: &DiffCtx<'t, T>,
    g: Var<'t, T>,
) -> Result<Contributions<'t, T>> {
    let rule = rule_of(cx.tape, rule);
    let inputs: Vec<Var<'t, T>> = cx.parents.iter().map(|&p| cx.tape.handle(p)).collect();
    match rule.vjp(cx.tape, &inputs, g, &cx.needs) {
        Some(r) => Ok(r?.into_iter().collect()),
        None => {
            Err(cx.higher_order_unsupported("this custom op gives no differentiable backward rule"))
        }
    }
}

/// The tangent rule of a custom node: its rule's, or an error naming it.
pub(crate) fn custom_jvp<'t, T: Float>(
    rule: u32,
    cx: &DiffCtx<'t, T>,
    tangents: &[Option<Var<'t, T>>],
) -> Result<Option<Var<'t, T>>> {
    let rule = rule_of(cx.tape, rule);
    let inputs: Vec<Var<'t, T>> = cx.parents.iter().map(|&p| cx.tape.handle(p)).collect();
    match rule.jvp(cx.tape, &inputs, tangents) {
        Some(r) => r,
        None => Err(cx.higher_order_unsupported("this custom op gives no tangent rule")),
    }
}

/// The rule's name, for renders: `custom[name]`.
pub(crate) fn custom_name<T: Float>(inner: &crate::tape::Inner<T>, rule: u32) -> &'static str {
    inner.custom[rule as usize].name()
}
