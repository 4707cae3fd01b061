//! Gradient descent on one scalar, with a fresh graph every step: workload W1,
//! `seed-descent`, the first of the six reference workloads W1..W6 that descent is
//! measured on (`docs/WORKLOADS.md`).
//!
//! The loss is `L(x) = ln(cosh(x))`, whose gradient is `tanh(x)`. Starting from
//! `x = 10`, plain gradient descent (learning rate 0.01, 10,000 steps) drives `x` to 0:
//! for about 1,000 steps `tanh(x) ≈ 1` and `x` falls by 0.01 a step, then `x` shrinks
//! by a factor `≈ 0.99` a step, down to about `2.6e-40`.
//!
//! Every step resets one reused tape, records the graph `x -> cosh -> ln` on it, runs
//! backward and reads `dL/dx`: the pattern of a training loop, on the smallest graph
//! there is. The same loop is then written by hand with the closed-form gradient
//! `tanh(x)` and the two final values are compared, bit for bit, and with the value
//! the reference implementations (PyTorch, JAX) print.
//!
//! The engine does not compute `tanh(x)`: the chain rule gives
//! `dL/dx = (1 / cosh x) · sinh x`, which can differ from `tanh(x)` in the last bit;
//! a third loop, by hand with exactly that expression, shows where any difference
//! comes from.
//!
//! Run it with `cargo run --release --example seed_descent`.

#[path = "common/mod.rs"]
mod common;
use descent::prelude::*;
use std::time::Instant;

const X0: f64 = 10.0;
const LR: f64 = 0.01;
const STEPS: usize = 10_000;
/// Final `x` printed by the reference implementations (`shared/peers/README.md`).
const PEER_X: f64 = 2.595_443_679_765_860_8e-40;

fn relative_difference(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// How two final values compare: bit for bit, or their relative difference.
fn agreement(a: f64, b: f64) -> String {
    if a.to_bits() == b.to_bits() {
        "identical, bit for bit".to_owned()
    } else {
        format!(
            "differ: relative difference {:.3e}",
            relative_difference(a, b)
        )
    }
}

fn main() {
    common::command_line(
        "Gradient descent on one scalar with a fresh graph every step (workload W1).",
        "usage: seed_descent",
        0,
    );
    // Recorded on the tape: one reset, three nodes, one backward per step.
    let tape = Tape::<f64>::new();
    let mut x = X0;
    let start = Instant::now();
    for step in 1..=STEPS {
        tape.reset();
        let xv = tape.var(x);
        let loss = xv.cosh().ln();
        let grads = loss.backward();
        x -= LR * grads.wrt(xv).item();
        if step % 1_000 == 0 {
            println!("step {step:>6}  x = {x:e}");
        }
    }
    let elapsed = start.elapsed();
    println!(
        "tape: {} nodes a step, {:.3} µs a step (reset + record + backward + update)",
        tape.len(),
        elapsed.as_secs_f64() * 1e6 / STEPS as f64
    );

    // The same loop by hand, with the closed-form gradient.
    let start = Instant::now();
    let mut by_hand = X0;
    for _ in 0..STEPS {
        by_hand -= LR * std::hint::black_box(by_hand).tanh();
    }
    let hand_time = start.elapsed();

    // By hand again, with the expression the chain rule gives: ln' = 1/u at u = cosh x,
    // times cosh' = sinh x.
    let mut chain_rule = X0;
    for _ in 0..STEPS {
        chain_rule -= LR * (chain_rule.cosh().recip() * chain_rule.sinh());
    }

    let hand_us = hand_time.as_secs_f64() * 1e6 / STEPS as f64;
    println!();
    println!("final x, tape:                       {x:e}");
    println!("final x, by hand with tanh(x):       {by_hand:e}  ({hand_us:.3} µs a step)");
    println!("final x, by hand, (1/cosh x)·sinh x: {chain_rule:e}");
    println!("final x, peers:                      {PEER_X:e}");
    println!();
    let vs_hand = agreement(x, by_hand);
    let vs_chain_rule = agreement(x, chain_rule);
    let vs_peers = agreement(x, PEER_X);
    println!("tape vs by hand with tanh(x):        {vs_hand}");
    println!("tape vs by hand, (1/cosh x)·sinh x:  {vs_chain_rule}");
    println!("tape vs peers:                       {vs_peers}");
}
