//! A gradient check of `where_cond`, `masked_fill` and `clamp`: each backward rule
//! against central finite differences (`descent::gradcheck`, f64, mixed error within
//! `1e-6`), on seeded random shapes, with broadcast operands and fan-out.
//!
//! `clamp` has a kink at each bound: its inputs are a shuffled grid `0.1·k` with jitter
//! below `0.01` and its bounds sit half-way between grid points (`0.05` off), so no
//! input is within `0.04` of a bound, far more than the finite-difference step needs.

use descent::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.random_range(-1.0..1.0))
}

/// Distinct values on the grid `0.1·k` (plus jitter below `0.01`) around zero.
fn spread(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n)
        .map(|k| 0.1 * k as f64 - 0.1 * (n / 2) as f64 + rng.random_range(0.0..0.01))
        .collect();
    v.shuffle(rng);
    Tensor::from_fn(shape, |i| v[i])
}

fn mask(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| if rng.random_bool(0.5) { 1.0 } else { 0.0 })
}

fn check<F>(what: &str, inputs: &[Tensor<f64>], f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report =
        gradcheck(inputs, f, GradCheckOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let total: usize = inputs.iter().map(Tensor::len).sum();
    assert_eq!(report.checked, total, "{what}: {report}");
    assert!(report.passed(), "{what}: {report}");
}

#[test]
fn where_cond_both_operands_with_broadcasting() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // (cond, a, b): same shapes, each operand broadcast in turn, all three at once.
    let cases: [(&[usize], &[usize], &[usize]); 6] = [
        (&[3, 4], &[3, 4], &[3, 4]),
        (&[4], &[3, 4], &[3, 4]),
        (&[3, 4], &[3, 1], &[4]),
        (&[2, 1, 4], &[3, 1], &[1]),
        (&[1], &[2, 3], &[2, 3]),
        (&[2, 3, 1], &[1, 5], &[2, 1, 5]),
    ];
    for (cs, a, b) in cases {
        let cond = mask(&mut rng, cs);
        let what = format!("where_cond cond {cs:?} a {a:?} b {b:?}");
        let (ta, tb) = (uniform(&mut rng, a), uniform(&mut rng, b));
        check(&what, &[ta.clone(), tb.clone()], |_, v| {
            v[0].where_cond(&cond, v[1])
        });
        // A non-linear graph around it, with `a` fanning out to both sides.
        check(&what, &[ta, tb], |_, v| {
            let y = v[0].tanh().where_cond(&cond, v[1] * v[0].sum());
            y.powi(2).sum()
        });
    }
}

#[test]
fn masked_fill_passes_the_unmasked_elements() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for shape in [&[5][..], &[2, 3], &[2, 2, 3]] {
        let m = mask(&mut rng, shape);
        let x = uniform(&mut rng, shape);
        check(&format!("masked_fill {shape:?}"), &[x], |_, v| {
            v[0].masked_fill(&m, 0.75).sin()
        });
    }
    // A mask that broadcasts against the input (a row mask).
    let m = mask(&mut rng, &[4]);
    check(
        "masked_fill row mask",
        &[uniform(&mut rng, &[3, 4])],
        |_, v| v[0].exp().masked_fill(&m, -2.0),
    );
}

#[test]
fn clamp_two_sided_and_one_sided() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for case in 0..8 {
        let shape = [rng.random_range(1..4), rng.random_range(2..6)];
        let x = spread(&mut rng, &shape);
        // Bounds half-way between grid points.
        let lo = 0.1 * rng.random_range(-6..0) as f64 + 0.05;
        let hi = lo + 0.1 * rng.random_range(1..6) as f64;
        let (lo, hi) = match case % 4 {
            0 => (lo, hi),
            1 => (f64::NEG_INFINITY, hi),
            2 => (lo, f64::INFINITY),
            _ => (lo, lo + 0.1),
        };
        let what = format!("clamp {shape:?} [{lo}, {hi}]");
        check(&what, std::slice::from_ref(&x), |_, v| v[0].clamp(lo, hi));
        check(&what, &[x], |_, v| {
            (v[0].clamp(lo, hi) * v[0]).sum() + v[0].clamp(lo, hi).exp().sum()
        });
    }
    // A 0-d operand.
    check("clamp scalar", &[Tensor::scalar(0.3)], |_, v| {
        v[0].clamp(-1.0, 1.0) * v[0]
    });
}
