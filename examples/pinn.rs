//! A physics-informed network: `u'' + u = 0` with `u(0) = 0`, `u'(0) = 1` on `[0, 2π]`,
//! whose solution is `sin t`. The loss holds derivatives of the network's output with
//! respect to its input, taken by differentiating the tape's own gradients.
//!
//! - The trial solution `u(t) = t + t² N(t)` meets both initial conditions whatever the
//!   network `N` (1 -> 16 -> 16 -> 1, tanh, its input scaled to `[-1, 1]`), so the loss
//!   is the equation's residual alone: `r(t) = u''(t) + u(t)` at 64 evenly spaced
//!   collocation points.
//! - `u'` and `u''` are recorded gradients (`descent::backprop::grad`): each sample's
//!   `u` depends only on its own `t`, so the gradient of `Σ u` with respect to the
//!   input column is the column of `u'(tᵢ)`, and differentiating again gives `u''`.
//! - Training is Levenberg–Marquardt on the residuals: the Jacobian of `r` with respect
//!   to the flat parameter vector (`descent::backprop::jacobian`, one backward walk per
//!   collocation point, each through the recorded second derivative), then the damped
//!   Gauss–Newton step `(JᵀJ + μI) δ = −Jᵀr` by Cholesky.
//!
//! It prints the residual's mean square every few iterations and the maximum error
//! against `sin t` on 1,001 points of `[0, 2π]`, and fails if that is above `1e-3`.
//!
//! Run it with `cargo run --release --example pinn`.

#[path = "common/mod.rs"]
mod common;
use descent::backprop::{JacobianMode, grad, jacobian};
use descent::prelude::*;
use std::error::Error;
use std::f64::consts::PI;
use std::time::Instant;

const HIDDEN: usize = 16;
const POINTS: usize = 64;
const ITERATIONS: usize = 150;

/// Where each layer's weights sit in the flat parameter vector: `(offset, rows, cols)`.
const LAYERS: [(usize, usize); 3] = [(HIDDEN, 1), (HIDDEN, HIDDEN), (1, HIDDEN)];

fn param_count() -> usize {
    LAYERS.iter().map(|&(o, i)| o * i + o).sum()
}

/// `u(t)` at the points `t` (`[M, 1]`, a variable) with parameters `p` (flat).
fn u<'t>(t: Var<'t, f64>, p: Var<'t, f64>) -> Var<'t, f64> {
    let mut h = t * (1.0 / PI) - 1.0;
    let mut at = 0;
    for (l, &(o, i)) in LAYERS.iter().enumerate() {
        let w = p.slice(0, at, at + o * i).reshape(&[o, i]);
        at += o * i;
        let b = p.slice(0, at, at + o);
        at += o;
        h = h.matmul_t(w) + b;
        if l + 1 < LAYERS.len() {
            h = h.tanh();
        }
    }
    t + t * t * h
}

/// The residual `u'' + u` at the points `ts`, recorded on `tape`, with the parameters'
/// node.
fn residual<'t>(
    tape: &'t Tape<f64>,
    ts: &Tensor<f64>,
    params: &Tensor<f64>,
) -> Result<(Var<'t, f64>, Var<'t, f64>), Box<dyn Error>> {
    let p = tape.var(params);
    let t = tape.var(ts);
    let uu = u(t, p);
    let du = grad(uu.sum(), &[t])?[0];
    let d2u = grad(du.sum(), &[t])?[0];
    Ok((p, (d2u + uu).reshape(&[ts.shape()[0]])))
}

/// Solves `(A + μI) x = b` for a symmetric positive definite `A` (`n × n`) by Cholesky.
fn solve(a: &[f64], mu: f64, b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j] + if i == j { mu } else { 0.0 };
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = if i == j {
                s.max(1e-300).sqrt()
            } else {
                s / l[j * n + j]
            };
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    x
}

fn main() -> Result<(), Box<dyn Error>> {
    common::command_line(
        "A physics-informed network solving u'' + u = 0, u(0) = 0, u'(0) = 1 on [0, 2π] (solution sin t), trained on derivatives of its output with respect to its input",
        "usage: pinn",
        0,
    );
    let start = Instant::now();
    let n = param_count();
    // Small seeded initial weights (SplitMix64), Xavier-like scale.
    let mut state = 7u64;
    let mut uniform = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64) * 2.0 - 1.0
    };
    let mut params = Tensor::from_fn(&[n], |_| 0.5 * uniform());
    let ts = Tensor::from_fn(&[POINTS, 1], |i| 2.0 * PI * i as f64 / (POINTS - 1) as f64);

    let mut mu = 1e-2;
    let mut mse = f64::INFINITY;
    for it in 0..ITERATIONS {
        let tape = Tape::new();
        let (p, r) = residual(&tape, &ts, &params)?;
        let rv = r.value();
        mse = rv.data().iter().map(|v| v * v).sum::<f64>() / POINTS as f64;
        if it % 50 == 0 {
            println!("iteration {it:>4}: mean square residual {mse:.3e}, damping {mu:.1e}");
        }
        if mse < 1e-14 {
            break;
        }
        let j = jacobian(r, p, JacobianMode::Reverse)?; // [POINTS, n]
        let jd = j.data();
        let mut jtj = vec![0.0; n * n];
        let mut jtr = vec![0.0; n];
        for k in 0..POINTS {
            let row = &jd[k * n..(k + 1) * n];
            for a in 0..n {
                jtr[a] -= row[a] * rv.data()[k];
                for b in 0..=a {
                    jtj[a * n + b] += row[a] * row[b];
                }
            }
        }
        for a in 0..n {
            for b in 0..a {
                jtj[b * n + a] = jtj[a * n + b];
            }
        }
        // Levenberg–Marquardt: accept the step if it lowers the residual, else damp more.
        loop {
            let delta = solve(&jtj, mu, &jtr);
            let trial = Tensor::from_fn(&[n], |i| params.data()[i] + delta[i]);
            let tape = Tape::new();
            let (_, rt) = residual(&tape, &ts, &trial)?;
            let mse_t = rt.value().data().iter().map(|v| v * v).sum::<f64>() / POINTS as f64;
            if mse_t < mse {
                params = trial;
                mu = (mu / 3.0).max(1e-12);
                break;
            }
            mu *= 4.0;
            if mu > 1e8 {
                break;
            }
        }
    }
    println!("final mean square residual {mse:.3e}");

    // The error against sin t on a fine grid.
    let grid = Tensor::from_fn(&[1001, 1], |i| 2.0 * PI * i as f64 / 1000.0);
    let tape = Tape::new();
    let uu = u(tape.constant(&grid), tape.constant(&params)).value();
    let max_err = grid
        .data()
        .iter()
        .zip(uu.data())
        .map(|(t, v)| (v - t.sin()).abs())
        .fold(0.0, f64::max);
    println!("max |u(t) - sin t| on [0, 2π] (1,001 points): {max_err:.3e}");
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    if max_err > 1e-3 {
        return Err(format!("max error {max_err:.3e} is above 1e-3").into());
    }
    Ok(())
}
