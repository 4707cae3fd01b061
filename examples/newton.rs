//! Newton–CG against gradient descent and Adam, on an ill-conditioned logistic
//! regression: second-order steps from Hessian-vector products.
//!
//! The problem: 400 samples of 20 features (feature `j` scaled by `1.3^j`, so the
//! Hessian's condition number is large), labels drawn from a logistic teacher, and the
//! loss `mean bce_with_logits(X w, y) + 1e-3/2 ‖w‖²` (strictly convex). Each method
//! runs until the gradient's norm is below `1e-8` (or a budget of iterations):
//! - gradient descent with step `1/L` (`L` the Hessian's largest eigenvalue, found by
//!   power iteration on Hessian-vector products);
//! - Adam (lr 0.05);
//! - Newton–CG: each iteration solves `H p = −g` by conjugate gradient, each CG step one
//!   Hessian-vector product (`descent::backprop::hvp`: a recorded backward pass and a
//!   second walk over it, never the 20 × 20 Hessian), then a backtracking line search.
//!
//! It prints a table (iterations, gradient and Hessian-vector evaluations, time, final
//! gradient norm) and writes `out/newton/convergence.png`, the gradient norm per
//! iteration of each method (log scale).
//!
//! Run it with `cargo run --release --example newton`.

#[path = "common/mod.rs"]
mod common;
use descent::plot::{self, Curve, CurveOptions, CurveStyle};
use descent::prelude::*;
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

const N: usize = 400;
const D: usize = 20;
const LAMBDA: f64 = 1e-3;
const TOL: f64 = 1e-8;

/// The data set: `x` `[N, D]` row-major, `y` `[N, 1]` in {0, 1}.
struct Problem {
    x: Tensor<f64>,
    y: Tensor<f64>,
}

/// SplitMix64: a reproducible stream of uniform numbers in `[0, 1)`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }
}

impl Problem {
    fn new() -> Self {
        let mut r = Rng(2024);
        let teacher: Vec<f64> = (0..D)
            .map(|j| (r.next() * 2.0 - 1.0) / 1.3f64.powi(j as i32))
            .collect();
        let mut x = vec![0.0; N * D];
        let mut y = vec![0.0; N];
        for i in 0..N {
            let mut z = 0.0;
            for j in 0..D {
                let v = (r.next() * 2.0 - 1.0) * 1.3f64.powi(j as i32);
                x[i * D + j] = v;
                z += v * teacher[j];
            }
            y[i] = if r.next() < 1.0 / (1.0 + (-3.0 * z).exp()) {
                1.0
            } else {
                0.0
            };
        }
        Problem {
            x: Tensor::new(&[N, D], x).expect("N·D values"),
            y: Tensor::new(&[N, 1], y).expect("N values"),
        }
    }

    /// The loss at `w` recorded on `tape`, with `w` as its variable.
    fn loss<'t>(&self, tape: &'t Tape<f64>, w: &Tensor<f64>) -> (Var<'t, f64>, Var<'t, f64>) {
        let wv = tape.var(w);
        let logits = tape.constant(&self.x).matmul(wv);
        let fit = logits.bce_with_logits(tape.constant(&self.y));
        (wv, fit + (wv * wv).sum() * (LAMBDA / 2.0))
    }

    /// Loss and gradient at `w` (one fast backward pass).
    fn value_grad(&self, w: &Tensor<f64>) -> (f64, Tensor<f64>) {
        let tape = Tape::new();
        let (wv, loss) = self.loss(&tape, w);
        (loss.item(), loss.backward().wrt(wv).to_tensor())
    }

    /// `L`, the Hessian's largest eigenvalue at `w = 0`, where it is largest (there
    /// `σ'(z) = 1/4`, its maximum): 100 steps of power iteration on Hessian-vector
    /// products.
    fn lipschitz(&self) -> Result<f64, Box<dyn Error>> {
        let tape = Tape::new();
        let (wv, loss) = self.loss(&tape, &Tensor::zeros(&[D, 1]));
        let mut v = Tensor::<f64>::ones(&[D, 1]);
        let mut lambda = 0.0;
        for _ in 0..100 {
            let hv = hvp(loss, &[wv], &[v])?.remove(0);
            lambda = dot(&hv, &hv).sqrt();
            v = hv.map(|x| x / lambda);
        }
        Ok(lambda)
    }
}

fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &Tensor<f64>, y: &Tensor<f64>) -> Tensor<f64> {
    Tensor::from_fn(y.shape(), |i| a * x.data()[i] + y.data()[i])
}

/// One method's run: the gradient norm per iteration and what it cost.
struct Run {
    name: &'static str,
    norms: Vec<f64>,
    grads: usize,
    hvps: usize,
    seconds: f64,
}

fn gradient_descent(p: &Problem, budget: usize, lipschitz: f64) -> Run {
    let t0 = Instant::now();
    let step = 1.0 / lipschitz;
    let mut w = Tensor::zeros(&[D, 1]);
    let mut norms = Vec::new();
    for _ in 0..budget {
        let (_, g) = p.value_grad(&w);
        norms.push(dot(&g, &g).sqrt());
        if norms[norms.len() - 1] < TOL {
            break;
        }
        w = axpy(-step, &g, &w);
    }
    let grads = norms.len();
    Run {
        name: "gradient descent (step 1/L)",
        norms,
        grads,
        hvps: 0,
        seconds: t0.elapsed().as_secs_f64(),
    }
}

fn adam(p: &Problem, budget: usize) -> Run {
    let t0 = Instant::now();
    let (lr, b1, b2, eps) = (0.05, 0.9, 0.999, 1e-8);
    let mut w = Tensor::zeros(&[D, 1]);
    let (mut m, mut v) = (vec![0.0; D], vec![0.0; D]);
    let mut norms = Vec::new();
    for k in 1..=budget {
        let (_, g) = p.value_grad(&w);
        norms.push(dot(&g, &g).sqrt());
        if norms[norms.len() - 1] < TOL {
            break;
        }
        let wd = w.data_mut();
        for j in 0..D {
            let gj = g.data()[j];
            m[j] = b1 * m[j] + (1.0 - b1) * gj;
            v[j] = b2 * v[j] + (1.0 - b2) * gj * gj;
            let mh = m[j] / (1.0 - b1.powi(k as i32));
            let vh = v[j] / (1.0 - b2.powi(k as i32));
            wd[j] -= lr * mh / (vh.sqrt() + eps);
        }
    }
    let grads = norms.len();
    Run {
        name: "Adam (lr 0.05)",
        norms,
        grads,
        hvps: 0,
        seconds: t0.elapsed().as_secs_f64(),
    }
}

fn newton_cg(p: &Problem, budget: usize) -> Result<Run, Box<dyn Error>> {
    let t0 = Instant::now();
    let mut w = Tensor::zeros(&[D, 1]);
    let (mut norms, mut grads, mut hvps) = (Vec::new(), 0, 0);
    for _ in 0..budget {
        // The loss recorded once per iteration; each `hvp` below records a backward
        // pass on top of it and removes it again.
        let tape = Tape::new();
        let (wv, loss) = p.loss(&tape, &w);
        let f = loss.item();
        let g = loss.backward().wrt(wv).to_tensor();
        grads += 1;
        let gnorm = dot(&g, &g).sqrt();
        norms.push(gnorm);
        if gnorm < TOL {
            break;
        }
        // Conjugate gradient on H s = −g, to a relative residual of min(0.5, √‖g‖).
        let mut s = Tensor::zeros(&[D, 1]);
        let mut r = g.map(|v| -v);
        let mut d = r.clone();
        let mut rr = dot(&r, &r);
        let stop = (0.5f64).min(gnorm.sqrt()) * gnorm;
        for _ in 0..2 * D {
            let hd = hvp(loss, &[wv], std::slice::from_ref(&d))?.remove(0);
            hvps += 1;
            let alpha = rr / dot(&d, &hd);
            s = axpy(alpha, &d, &s);
            r = axpy(-alpha, &hd, &r);
            let rr_next = dot(&r, &r);
            if rr_next.sqrt() < stop {
                break;
            }
            d = axpy(rr_next / rr, &d, &r);
            rr = rr_next;
        }
        // Backtracking (Armijo) from the full Newton step.
        let slope = dot(&g, &s);
        let mut t = 1.0;
        loop {
            let trial = axpy(t, &s, &w);
            let (ft, _) = p.value_grad(&trial);
            if ft <= f + 1e-4 * t * slope || t < 1e-10 {
                w = trial;
                break;
            }
            t *= 0.5;
        }
    }
    Ok(Run {
        name: "Newton-CG (H v products)",
        norms,
        grads,
        hvps,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let out: PathBuf = match common::command_line(
        "Newton-CG (Hessian-vector products in conjugate gradient) against gradient descent and Adam on an ill-conditioned logistic regression",
        "usage: newton [OUT_DIR]  (default: out/newton/ in the workspace)",
        1,
    )
    .pop()
    {
        Some(dir) => dir.into(),
        None => [env!("CARGO_MANIFEST_DIR"), "out", "newton"].iter().collect(),
    };
    std::fs::create_dir_all(&out)?;
    let p = Problem::new();
    let budget = 20_000;
    let lipschitz = p.lipschitz()?;
    let runs = [
        gradient_descent(&p, budget, lipschitz),
        adam(&p, budget),
        newton_cg(&p, 100)?,
    ];

    println!("logistic regression, {N} samples x {D} features, tolerance ||grad|| < {TOL:e}\n");
    println!(
        "{:<30} {:>10} {:>10} {:>8} {:>10} {:>14}  reached",
        "method", "iterations", "gradients", "H v", "time (ms)", "final ||grad||"
    );
    for r in &runs {
        let last = *r.norms.last().expect("at least one iteration");
        println!(
            "{:<30} {:>10} {:>10} {:>8} {:>10.1} {:>14.3e}  {}",
            r.name,
            r.norms.len() - 1,
            r.grads,
            r.hvps,
            r.seconds * 1e3,
            last,
            if last < TOL { "yes" } else { "no (budget)" }
        );
    }

    let curves: Vec<Curve> = runs
        .iter()
        .map(|r| {
            let pts = r
                .norms
                .iter()
                .enumerate()
                .map(|(k, &n)| (k as f64, n.max(1e-16)))
                .collect();
            Curve::new(r.name, pts).style(CurveStyle::Points)
        })
        .collect();
    let png = out.join("convergence.png");
    plot::save_curves_png(
        &curves,
        &png,
        &CurveOptions {
            title: "Logistic regression: gradient norm per iteration".into(),
            x_desc: "iteration".into(),
            y_desc: "||gradient||".into(),
            log_y: true,
            ..CurveOptions::default()
        },
    )?;
    println!("\nwrote {}", png.display());
    let newton = &runs[2];
    if *newton.norms.last().expect("an iteration") >= TOL {
        return Err("Newton-CG did not reach the tolerance".into());
    }
    Ok(())
}
