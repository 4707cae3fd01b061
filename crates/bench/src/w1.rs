//! W1 `seed-descent`: gradient descent on `L(x) = ln(cosh(x))` from `x = 10`, learning
//! rate 0.01, a fresh graph every step; and its limit, the same loop with the
//! closed-form gradient `tanh(x)`.

use descent::backprop::backward_into;
use descent::prelude::*;

/// The starting point.
pub const X0: f64 = 10.0;
/// The learning rate.
pub const LR: f64 = 0.01;
/// The default step count.
pub const STEPS: usize = 10_000;
/// The peers' final `x` after [`STEPS`] steps.
pub const EXPECTED_X: f64 = 2.5954436797658608e-40;

/// How each step gets its gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `loss.backward()`: a fresh `Gradients` each step, the simplest form.
    Fresh,
    /// `backward_into(loss, &mut grads)`: one `Gradients` refilled every step, the form
    /// for a loop that should not allocate once warm.
    Reused,
}

/// One step on `tape`: reset, record `ln(cosh(x))`, backward, update.
#[inline(always)]
pub fn step(tape: &Tape, x: f64, mode: Mode, grads: &mut Gradients<f64>) -> f64 {
    tape.reset();
    let xv = tape.var(x);
    let loss = xv.cosh().ln();
    match mode {
        Mode::Fresh => *grads = loss.backward(),
        Mode::Reused => backward_into(loss, grads).expect("a scalar loss"),
    }
    x - LR * grads.wrt(xv).item()
}

/// `steps` steps of descent from [`X0`] on `tape`; returns the final `x`.
#[inline(never)]
pub fn run(tape: &Tape, steps: usize, mode: Mode) -> f64 {
    let mut grads = Gradients::empty();
    let mut x = X0;
    for _ in 0..steps {
        x = step(tape, x, mode, &mut grads);
    }
    x
}

/// The arithmetic a step on the tape does, without the tape: `cosh` and `ln` forward,
/// `sinh` and a division backward, `x -= lr · sinh(x) · (1 / cosh(x))`. What a step
/// costs beyond this is the tape's; and it slows with the host's load as the tape's
/// loop does, which the closed form, one `tanh` a step, does less.
#[inline(never)]
pub fn run_floor(steps: usize) -> f64 {
    let mut x = X0;
    for _ in 0..steps {
        let c = x.cosh();
        // The loss, which the tape computes and keeps, and nothing here reads.
        std::hint::black_box(c.ln());
        x -= LR * ((1.0 / c) * x.sinh());
    }
    x
}

/// The limit: the same loop by hand, `x -= lr * tanh(x)`.
#[inline(never)]
pub fn run_limit(steps: usize) -> f64 {
    let mut x = X0;
    for _ in 0..steps {
        // Each step depends on the last: the loop cannot be folded away.
        x -= LR * x.tanh();
    }
    x
}
