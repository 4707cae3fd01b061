//! W1 `seed-descent`: gradient descent on `L(x) = ln(cosh(x))` from `x = 10`, learning
//! rate 0.01, a fresh graph every step; and its limit, the same loop with the
//! closed-form gradient `tanh(x)`.

use descent::prelude::*;

/// The starting point.
pub const X0: f64 = 10.0;
/// The learning rate.
pub const LR: f64 = 0.01;
/// The default step count.
pub const STEPS: usize = 10_000;
/// The peers' final `x` after [`STEPS`] steps.
pub const EXPECTED_X: f64 = 2.5954436797658608e-40;

/// How the parameter enters the tape each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// `tape.var(x)`, the idiomatic form (goes through a 0-d `Tensor`).
    Var,
    /// `tape.scalar(x)`, the scalar fast path.
    Scalar,
}

/// One step on `tape`: reset, record `ln(cosh(x))`, backward, update.
#[inline(always)]
pub fn step(tape: &Tape, x: f64, leaf: Leaf) -> f64 {
    tape.reset();
    let xv = match leaf {
        Leaf::Var => tape.var(x),
        Leaf::Scalar => tape.scalar(x),
    };
    let loss = xv.cosh().ln();
    let grads = loss.backward();
    x - LR * grads.wrt(xv).item()
}

/// `steps` steps of descent from [`X0`] on `tape`; returns the final `x`.
#[inline(never)]
pub fn run(tape: &Tape, steps: usize, leaf: Leaf) -> f64 {
    let mut x = X0;
    for _ in 0..steps {
        x = step(tape, x, leaf);
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
