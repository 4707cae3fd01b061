//! A gradient check of every op: the backward rule against central finite differences
//! (`descent::gradcheck`, `f64`, step `1e-6`, mixed error within `1e-6`).
//!
//! Shapes and values come from seeded RNGs, several per op, and include broadcast pairs
//! (`[3, 1] + [4]`, `[] * [2, 3]`, `[2, 3, 4] / [3, 1]`), size-1 axes and 0-d (scalar)
//! nodes, which take the tape's scalar fast path.
//!
//! Where an op has a kink or a pole, inputs are kept away from it, and each such place
//! says why. The common reason: the finite-difference step is `h = 1e-6·max(1, |x|)`,
//! and a kink inside `[x - h, x + h]` has no derivative there, so the central difference
//! averages the two one-sided slopes and no backward rule can match it. A margin of
//! `1e-2` is four orders of magnitude more than `h` needs; the tests use `>= 0.03`.

use descent::prelude::*;
use descent::tensor::numel;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random cases per op (on top of fixed ones).
const CASES: u64 = 5;

type Shape = Vec<usize>;

fn rng(op: &str, seed: u64) -> ChaCha8Rng {
    // A different stream per op, so that adding a test does not change another's cases.
    let salt = op.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(salt ^ seed)
}

/// Uniform values in `[lo, hi)`.
fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.random_range(lo..hi))
}

/// Uniform values in `[lo, hi)` that are at least `margin` from `point` (a kink or pole).
fn away_from(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    lo: f64,
    hi: f64,
    point: f64,
    margin: f64,
) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| {
        loop {
            let v = rng.random_range(lo..hi);
            if (v - point).abs() >= margin {
                break v;
            }
        }
    })
}

/// Values on the grid `0.1·k + offset` (k in -15..=15) with jitter below `0.01`. Two
/// tensors with offsets `0` and `0.05` never come closer than `0.03` anywhere, so
/// `maximum`/`minimum` never see a tie (a kink) under any broadcast pairing.
fn on_grid(rng: &mut ChaCha8Rng, shape: &[usize], offset: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| {
        rng.random_range(-15..=15) as f64 * 0.1 + offset + rng.random_range(-0.01..0.01)
    })
}

/// All elements pairwise at least `0.08` apart (a shuffled grid of step `0.1` with
/// jitter below `0.01`), so `max_axis` has a unique maximum in every slice with a margin
/// far above the finite-difference step: no tie, so no kink.
fn distinct(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f64> {
    let n = numel(shape);
    let mut ks: Vec<usize> = (0..n).collect();
    ks.shuffle(rng);
    let data = ks
        .iter()
        .map(|&k| (k as f64 - n as f64 / 2.0) * 0.1 + rng.random_range(-0.01..0.01))
        .collect();
    Tensor::new(shape, data).unwrap()
}

/// A shape of `lo..=hi` axes, each of extent 1 to 4 (so size-1 axes are common).
fn random_shape(rng: &mut ChaCha8Rng, lo: usize, hi: usize) -> Shape {
    let nd = rng.random_range(lo..=hi);
    (0..nd).map(|_| rng.random_range(1..=4)).collect()
}

/// A shape that broadcasts to `out`: some leading axes dropped, some axes set to 1.
fn partner(rng: &mut ChaCha8Rng, out: &[usize]) -> Shape {
    let drop = rng.random_range(0..=out.len());
    out[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.35) { 1 } else { d })
        .collect()
}

/// Operand shapes for the binary element-wise ops: fixed broadcast cases, then random
/// pairs that broadcast.
fn binary_cases(op: &str) -> Vec<(Shape, Shape)> {
    let mut cases: Vec<(Shape, Shape)> = vec![
        (vec![2, 3], vec![2, 3]),
        (vec![3, 1], vec![4]),
        (vec![], vec![2, 3]),
        (vec![2, 3], vec![]),
        (vec![2, 3, 4], vec![3, 1]),
        (vec![1], vec![2, 1, 3]),
        (vec![4, 1, 3], vec![5, 1]),
        (vec![], vec![]),
        // Five axes (more than a shape holds inline), stretched on both sides.
        (vec![2, 1, 3, 1, 2], vec![4, 3, 1, 1]),
    ];
    for seed in 0..CASES {
        let mut r = rng(op, seed);
        let out = random_shape(&mut r, 0, 4);
        cases.push((partner(&mut r, &out), partner(&mut r, &out)));
    }
    cases
}

/// Shapes for the element-wise unary ops: a scalar, size-1 axes, then random shapes.
fn unary_shapes(op: &str) -> Vec<Shape> {
    let mut shapes = vec![vec![], vec![1], vec![4, 1, 3]];
    for seed in 0..CASES {
        shapes.push(random_shape(&mut rng(op, seed), 0, 3));
    }
    shapes
}

/// Runs a gradient check and asserts that it compared every input element and passed.
fn check<F>(what: &str, inputs: &[Tensor<f64>], f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let report = gradcheck(inputs, f, GradCheckOptions::default())
        .unwrap_or_else(|e| panic!("{what} on inputs of shapes {shapes:?}: {e}"));
    let total: usize = inputs.iter().map(Tensor::len).sum();
    assert_eq!(report.checked, total, "{what} {shapes:?}: {report}");
    assert!(
        report.passed(),
        "{what} on inputs of shapes {shapes:?}: {report}"
    );
}

/// Checks a unary op on every shape of `unary_shapes`, inputs drawn by `domain`.
fn check_unary<D, F>(op: &str, domain: D, f: F)
where
    D: Fn(&mut ChaCha8Rng, &[usize]) -> Tensor<f64>,
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    for (i, shape) in unary_shapes(op).iter().enumerate() {
        let x = domain(&mut rng(op, 100 + i as u64), shape);
        check(op, &[x], |_, v| f(v[0]));
    }
}

/// Checks a binary op on every pair of `binary_cases`, operands drawn by `domain`
/// (called with 0 for the left operand, 1 for the right).
fn check_binary<D, F>(op: &str, domain: D, f: F)
where
    D: Fn(&mut ChaCha8Rng, &[usize], usize) -> Tensor<f64>,
    F: for<'t> Fn(Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>,
{
    for (i, (sa, sb)) in binary_cases(op).iter().enumerate() {
        let mut r = rng(op, 100 + i as u64);
        let a = domain(&mut r, sa, 0);
        let b = domain(&mut r, sb, 1);
        check(op, &[a, b], |_, v| f(v[0], v[1]));
    }
}

fn any_real(r: &mut ChaCha8Rng, s: &[usize]) -> Tensor<f64> {
    uniform(r, s, -2.0, 2.0)
}

fn positive(r: &mut ChaCha8Rng, s: &[usize]) -> Tensor<f64> {
    uniform(r, s, 0.2, 3.0)
}

/// Inputs for ops with a kink at 0 (abs, relu, leaky_relu): at least 0.05 from it.
fn off_kink(r: &mut ChaCha8Rng, s: &[usize]) -> Tensor<f64> {
    away_from(r, s, -2.0, 2.0, 0.0, 0.05)
}

// ---------------------------------------------------------------------------------
// Binary element-wise ops, with broadcasting.

#[test]
fn gradcheck_add() {
    check_binary("add", |r, s, _| any_real(r, s), |a, b| a + b);
}

#[test]
fn gradcheck_sub() {
    check_binary("sub", |r, s, _| any_real(r, s), |a, b| a - b);
}

#[test]
fn gradcheck_mul() {
    check_binary("mul", |r, s, _| any_real(r, s), |a, b| a * b);
}

#[test]
fn gradcheck_div() {
    // Denominators in ±[0.5, 2): the pole at 0 is far, and |∂/∂b| = |a|/b² stays below
    // 8, so the central difference's truncation error (∝ h²·|a|/b⁴) is negligible.
    let domain = |r: &mut ChaCha8Rng, s: &[usize], side: usize| {
        if side == 0 {
            any_real(r, s)
        } else {
            away_from(r, s, -2.0, 2.0, 0.0, 0.5)
        }
    };
    check_binary("div", domain, |a, b| a / b);
}

#[test]
fn gradcheck_maximum() {
    // max(a, b) has a kink where a = b: the operands are drawn from offset grids, at
    // least 0.03 apart under any broadcast pairing (see `on_grid`).
    check_binary(
        "maximum",
        |r, s, side| on_grid(r, s, 0.05 * side as f64),
        |a, b| a.maximum(b),
    );
}

#[test]
fn gradcheck_minimum() {
    // As maximum: no ties, so no kink within the step.
    check_binary(
        "minimum",
        |r, s, side| on_grid(r, s, 0.05 * side as f64),
        |a, b| a.minimum(b),
    );
}

#[test]
fn gradcheck_same_operand_on_both_sides() {
    // x∘x: both partials go to the same node and must add up.
    for shape in unary_shapes("same_operand") {
        let x = uniform(
            &mut rng("same_operand", shape.len() as u64),
            &shape,
            -2.0,
            2.0,
        );
        check("x * x", std::slice::from_ref(&x), |_, v| v[0] * v[0]);
        check("x + x", std::slice::from_ref(&x), |_, v| v[0] + v[0]);
        check("x - x", std::slice::from_ref(&x), |_, v| v[0] - v[0]);
        let d = away_from(&mut rng("same_operand_div", 0), &shape, -2.0, 2.0, 0.0, 0.5);
        check("x / x", &[d], |_, v| v[0] / v[0]);
    }
}

// ---------------------------------------------------------------------------------
// Unary element-wise ops.

#[test]
fn gradcheck_neg() {
    check_unary("neg", any_real, |x| -x);
}

#[test]
fn gradcheck_powf() {
    // A non-integer exponent needs a positive base (x^p is NaN below 0), and negative
    // exponents a base away from the pole at 0: bases in [0.2, 3).
    for p in [2.5, -0.5, 0.3, 1.0, 2.0, 0.0, -1.7] {
        check_unary("powf", positive, move |x| x.powf(p));
    }
}

#[test]
fn gradcheck_powi() {
    // Integer exponents take any sign of base; negative exponents have a pole at 0, so
    // |x| >= 0.3 (the derivative n·x^(n-1) is then at most 2/0.3³ ≈ 74 for n = -2).
    for n in [-2, -1, 0, 1, 2, 3, 4] {
        check_unary(
            "powi",
            |r, s| away_from(r, s, -2.0, 2.0, 0.0, 0.3),
            move |x| x.powi(n),
        );
    }
}

#[test]
fn gradcheck_exp() {
    check_unary("exp", any_real, |x| x.exp());
}

#[test]
fn gradcheck_ln() {
    // ln is defined for positive inputs only; [0.2, 3) keeps the pole at 0 far away.
    check_unary("ln", positive, |x| x.ln());
}

#[test]
fn gradcheck_sqrt() {
    // √x: positive inputs, away from the infinite slope at 0.
    check_unary("sqrt", positive, |x| x.sqrt());
}

#[test]
fn gradcheck_abs() {
    // |x| has a kink at 0: inputs at least 0.05 from it (see the module comment).
    check_unary("abs", off_kink, |x| x.abs());
}

#[test]
fn gradcheck_sin() {
    check_unary("sin", |r, s| uniform(r, s, -4.0, 4.0), |x| x.sin());
}

#[test]
fn gradcheck_cos() {
    check_unary("cos", |r, s| uniform(r, s, -4.0, 4.0), |x| x.cos());
}

#[test]
fn gradcheck_tanh() {
    check_unary("tanh", |r, s| uniform(r, s, -3.0, 3.0), |x| x.tanh());
}

#[test]
fn gradcheck_sinh() {
    check_unary("sinh", any_real, |x| x.sinh());
}

#[test]
fn gradcheck_cosh() {
    check_unary("cosh", any_real, |x| x.cosh());
}

#[test]
fn gradcheck_sigmoid() {
    // Both branches of the stable form (x >= 0 and x < 0).
    check_unary("sigmoid", |r, s| uniform(r, s, -6.0, 6.0), |x| x.sigmoid());
}

#[test]
fn gradcheck_relu() {
    // Kink at 0: inputs at least 0.05 from it.
    check_unary("relu", off_kink, |x| x.relu());
}

#[test]
fn gradcheck_leaky_relu() {
    // Kink at 0: inputs at least 0.05 from it.
    for alpha in [0.01, 0.2, 1.5] {
        check_unary("leaky_relu", off_kink, move |x| x.leaky_relu(alpha));
    }
}

#[test]
fn gradcheck_gelu() {
    check_unary("gelu", |r, s| uniform(r, s, -4.0, 4.0), |x| x.gelu());
}

#[test]
fn gradcheck_softplus() {
    // Both branches of max(x, 0) + ln(1 + e^-|x|), whose sum is smooth at 0.
    check_unary(
        "softplus",
        |r, s| uniform(r, s, -6.0, 6.0),
        |x| x.softplus(),
    );
}

// ---------------------------------------------------------------------------------
// Scalars, tensors and plain numbers mixed.

#[test]
fn gradcheck_scalar_var_times_tensor() {
    for (i, shape) in unary_shapes("scalar_tensor").iter().enumerate() {
        let mut r = rng("scalar_tensor", i as u64);
        let s = uniform(&mut r, &[], -2.0, 2.0);
        let x = uniform(&mut r, shape, -2.0, 2.0);
        let inputs = [s, x];
        check("s * x", &inputs, |_, v| v[0] * v[1]);
        check("x * s", &inputs, |_, v| v[1] * v[0]);
        check("s + x", &inputs, |_, v| v[0] + v[1]);
        check("x - s", &inputs, |_, v| v[1] - v[0]);
        check("s - x", &inputs, |_, v| v[0] - v[1]);
        // s / x and x / s with the denominator away from 0.
        let d = away_from(&mut r, shape, -2.0, 2.0, 0.0, 0.5);
        let e = away_from(&mut r, &[], -2.0, 2.0, 0.0, 0.5);
        check("s / x", &[inputs[0].clone(), d], |_, v| v[0] / v[1]);
        check("x / s", &[e, inputs[1].clone()], |_, v| v[1] / v[0]);
        // A scalar var feeding both a tensor and a scalar path.
        check("s * x + s * s", &inputs, |_, v| v[0] * v[1] + v[0] * v[0]);
    }
}

#[test]
fn gradcheck_operators_with_plain_numbers() {
    for (i, shape) in unary_shapes("plain_numbers").iter().enumerate() {
        let mut r = rng("plain_numbers", i as u64);
        let x = [uniform(&mut r, shape, -2.0, 2.0)];
        check("2.0 * x", &x, |_, v| 2.0 * v[0]);
        check("x * 2.0", &x, |_, v| v[0] * 2.0);
        check("x / 3.0", &x, |_, v| v[0] / 3.0);
        check("1.0 - x", &x, |_, v| 1.0 - v[0]);
        check("x - 1.0", &x, |_, v| v[0] - 1.0);
        check("0.5 + x", &x, |_, v| 0.5 + v[0]);
        check("x + 0.5", &x, |_, v| v[0] + 0.5);
        check("(2.0 * x - 1.0) / 3.0", &x, |_, v| (2.0 * v[0] - 1.0) / 3.0);
        // A number over x: x away from the pole at 0.
        let d = [away_from(&mut r, shape, -2.0, 2.0, 0.0, 0.5)];
        check("3.0 / x", &d, |_, v| 3.0 / v[0]);
        check("1.0 - 3.0 / x * x", &d, |_, v| 1.0 - 3.0 / v[0] * v[0]);
    }
}

#[test]
fn gradcheck_fan_out() {
    // One node read by several ops: its gradient is the sum over every use.
    for (i, shape) in unary_shapes("fan_out").iter().enumerate() {
        let x = [uniform(&mut rng("fan_out", i as u64), shape, -2.0, 2.0)];
        check("fan-out", &x, |_, v| {
            let h = v[0].tanh();
            h * h + h.exp() * v[0] - h.sin() / 2.0
        });
    }
}

// ---------------------------------------------------------------------------------
// Reductions.

#[test]
fn gradcheck_sum() {
    for (i, shape) in unary_shapes("sum").iter().enumerate() {
        let x = uniform(&mut rng("sum", i as u64), shape, -2.0, 2.0);
        check("sum", &[x], |_, v| v[0].sum());
    }
}

#[test]
fn gradcheck_mean() {
    for (i, shape) in unary_shapes("mean").iter().enumerate() {
        let x = uniform(&mut rng("mean", i as u64), shape, -2.0, 2.0);
        check("mean", &[x], |_, v| v[0].mean());
        // Through a nonlinearity, so the gradient is not uniform.
        let x = uniform(&mut rng("mean2", i as u64), shape, -2.0, 2.0);
        check("mean of squares", &[x], |_, v| (v[0] * v[0]).mean());
    }
}

/// Shapes with at least one axis, fixed size-1 cases first.
fn axis_shapes(op: &str) -> Vec<Shape> {
    let mut shapes = vec![vec![1], vec![5], vec![3, 1], vec![1, 4], vec![2, 1, 3]];
    for seed in 0..CASES {
        shapes.push(random_shape(&mut rng(op, seed), 1, 3));
    }
    shapes
}

/// Every axis of `nd`, positive and negative.
fn all_axes(nd: usize) -> impl Iterator<Item = isize> {
    let nd = nd as isize;
    (0..nd).chain(-nd..0)
}

#[test]
fn gradcheck_sum_axis() {
    for (i, shape) in axis_shapes("sum_axis").iter().enumerate() {
        let x = uniform(&mut rng("sum_axis", 100 + i as u64), shape, -2.0, 2.0);
        for axis in all_axes(shape.len()) {
            for keepdim in [false, true] {
                check(
                    &format!("sum_axis({axis}, {keepdim})"),
                    std::slice::from_ref(&x),
                    |_, v| v[0].sum_axis(axis, keepdim),
                );
            }
        }
    }
}

#[test]
fn gradcheck_mean_axis() {
    for (i, shape) in axis_shapes("mean_axis").iter().enumerate() {
        let x = uniform(&mut rng("mean_axis", 100 + i as u64), shape, -2.0, 2.0);
        for axis in all_axes(shape.len()) {
            for keepdim in [false, true] {
                check(
                    &format!("mean_axis({axis}, {keepdim})"),
                    std::slice::from_ref(&x),
                    |_, v| v[0].mean_axis(axis, keepdim),
                );
            }
        }
    }
}

#[test]
fn gradcheck_max_axis() {
    // max has a kink where two elements of a slice tie: all elements are distinct by
    // at least 0.08 (see `distinct`).
    for (i, shape) in axis_shapes("max_axis").iter().enumerate() {
        let x = distinct(&mut rng("max_axis", 100 + i as u64), shape);
        for axis in all_axes(shape.len()) {
            for keepdim in [false, true] {
                check(
                    &format!("max_axis({axis}, {keepdim})"),
                    std::slice::from_ref(&x),
                    |_, v| v[0].max_axis(axis, keepdim),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Matrix multiply.

#[test]
fn gradcheck_matmul() {
    for seed in 0..CASES {
        let mut r = rng("matmul", seed);
        let mut d = || r.random_range(1..=4usize);
        let (m, k, n, b) = (d(), d(), d(), d());
        let cases: Vec<(&str, Shape, Shape)> = vec![
            ("2-d", vec![m, k], vec![k, n]),
            ("batched", vec![b, m, k], vec![b, k, n]),
            ("batched lhs, 2-d rhs", vec![b, m, k], vec![k, n]),
            ("4-d lhs, 2-d rhs", vec![2, b, m, k], vec![k, n]),
            ("2-d lhs, batched rhs", vec![m, k], vec![b, k, n]),
            ("broadcast batch", vec![2, 1, m, k], vec![5, k, n]),
            ("batch of 1 against 3", vec![1, m, k], vec![3, k, n]),
            ("batch of 3 against 1", vec![3, m, k], vec![1, k, n]),
            ("row times column", vec![1, k], vec![k, 1]),
            ("column times row", vec![m, 1], vec![1, n]),
        ];
        for (what, sa, sb) in cases {
            let mut r = rng("matmul_values", seed);
            let a = uniform(&mut r, &sa, -2.0, 2.0);
            let bt = uniform(&mut r, &sb, -2.0, 2.0);
            check(&format!("matmul {what}"), &[a, bt], |_, v| {
                v[0].matmul(v[1])
            });
        }
    }
    // The spec's broadcast example, and a square matrix times itself (fan-in to both
    // operands of one node).
    let mut r = rng("matmul_fixed", 0);
    let a = uniform(&mut r, &[2, 1, 3, 4], -2.0, 2.0);
    let b = uniform(&mut r, &[5, 4, 2], -2.0, 2.0);
    check("matmul [2,1,3,4]@[5,4,2]", &[a, b], |_, v| {
        v[0].matmul(v[1])
    });
    let sq = uniform(&mut r, &[3, 3], -2.0, 2.0);
    check("x @ x", &[sq], |_, v| v[0].matmul(v[0]));
}

#[test]
fn gradcheck_matmul_t() {
    for seed in 0..CASES {
        let mut r = rng("matmul_t", seed);
        let mut d = || r.random_range(1..=4usize);
        let (m, k, n, b) = (d(), d(), d(), d());
        let cases: Vec<(&str, Shape, Shape)> = vec![
            ("2-d", vec![m, k], vec![n, k]),
            ("batched lhs", vec![b, m, k], vec![n, k]),
            ("row", vec![1, k], vec![n, k]),
            ("one output", vec![m, k], vec![1, k]),
        ];
        for (what, sa, sb) in cases {
            let mut r = rng("matmul_t_values", seed);
            let a = uniform(&mut r, &sa, -2.0, 2.0);
            let w = uniform(&mut r, &sb, -2.0, 2.0);
            check(&format!("matmul_t {what}"), &[a, w], |_, v| {
                v[0].matmul_t(v[1])
            });
        }
    }
    // x @ xᵀ: both operands are one node.
    let mut r = rng("matmul_t_fixed", 0);
    let x = uniform(&mut r, &[3, 4], -2.0, 2.0);
    check("x @ xT", &[x], |_, v| v[0].matmul_t(v[0]));
}

// ---------------------------------------------------------------------------------
// Shape ops.

#[test]
fn gradcheck_transpose() {
    let cases: Vec<(Shape, isize, isize)> = vec![
        (vec![2, 3], 0, 1),
        (vec![2, 3], 1, 0),
        (vec![2, 3], -1, -2),
        (vec![1, 4], 0, 1),
        (vec![2, 3, 4], 0, 2),
        (vec![2, 3, 4], 1, 2),
        (vec![2, 3, 4], 0, 1),
        (vec![2, 3, 4], -1, -3),
        (vec![2, 3, 4], 1, 1),
        (vec![2, 1, 3, 2], 0, 3),
        (vec![2, 1, 3, 2], 1, 2),
    ];
    for (i, (shape, a, b)) in cases.into_iter().enumerate() {
        let x = uniform(&mut rng("transpose", i as u64), &shape, -2.0, 2.0);
        check(&format!("transpose({a}, {b})"), &[x], |_, v| {
            v[0].transpose(a, b)
        });
    }
    for seed in 0..CASES {
        let mut r = rng("transpose_random", seed);
        let shape = random_shape(&mut r, 2, 4);
        let nd = shape.len() as i64;
        let mut axis = || r.random_range(0..2 * nd) - nd;
        let (a, b) = (axis(), axis());
        let (a, b) = (a as isize, b as isize);
        let x = uniform(&mut r, &shape, -2.0, 2.0);
        check(&format!("transpose({a}, {b})"), &[x], |_, v| {
            v[0].transpose(a, b)
        });
    }
}

#[test]
fn gradcheck_t() {
    for (i, shape) in [vec![2, 3], vec![3, 1], vec![2, 3, 4], vec![1, 2, 3, 2]]
        .iter()
        .enumerate()
    {
        let x = uniform(&mut rng("t", i as u64), shape, -2.0, 2.0);
        check("t()", &[x], |_, v| v[0].t());
    }
}

#[test]
fn gradcheck_reshape() {
    let cases: Vec<(Shape, Shape)> = vec![
        (vec![2, 3, 4], vec![6, 4]),
        (vec![2, 3, 4], vec![4, 6]),
        (vec![2, 3, 4], vec![24]),
        (vec![2, 3, 4], vec![2, 12, 1]),
        (vec![6], vec![1, 2, 1, 3]),
        (vec![], vec![1]),
        (vec![1], vec![]),
        (vec![1, 1], vec![]),
    ];
    for (i, (from, to)) in cases.into_iter().enumerate() {
        let x = uniform(&mut rng("reshape", i as u64), &from, -2.0, 2.0);
        // Multiplied after the reshape, so the gradient varies by position.
        check(&format!("reshape {from:?} -> {to:?}"), &[x], |_, v| {
            let y = v[0].reshape(&to);
            y * y
        });
    }
}

#[test]
fn gradcheck_broadcast_to() {
    let mut cases: Vec<(Shape, Shape)> = vec![
        (vec![3, 1], vec![2, 3, 4]),
        (vec![], vec![2, 2]),
        (vec![4], vec![3, 4]),
        (vec![1], vec![5]),
        (vec![2, 1, 3], vec![2, 4, 3]),
        (vec![1, 1], vec![1, 1]),
        (vec![3], vec![3]),
    ];
    for seed in 0..CASES {
        let mut r = rng("broadcast_to", seed);
        let out = random_shape(&mut r, 0, 3);
        cases.push((partner(&mut r, &out), out));
    }
    for (i, (from, to)) in cases.into_iter().enumerate() {
        let x = uniform(&mut rng("broadcast_to_values", i as u64), &from, -2.0, 2.0);
        check(&format!("broadcast_to {from:?} -> {to:?}"), &[x], |_, v| {
            v[0].broadcast_to(&to)
        });
    }
}

#[test]
fn gradcheck_slice() {
    let mut cases: Vec<(Shape, isize, usize, usize)> = vec![
        (vec![5], 0, 1, 4),
        (vec![2, 5], 1, 0, 5),
        (vec![2, 5], -1, 2, 3),
        (vec![4, 3], 0, 3, 4),
        (vec![2, 3, 4], 1, 1, 3),
        (vec![2, 3, 4], -3, 0, 1),
        (vec![2, 3, 4], 2, 2, 2),
    ];
    for seed in 0..CASES {
        let mut r = rng("slice", seed);
        let shape = random_shape(&mut r, 1, 3);
        let ax = r.random_range(0..shape.len());
        let start = r.random_range(0..shape[ax]);
        let end = r.random_range(start + 1..=shape[ax]);
        let axis = if r.random_bool(0.5) {
            ax as isize
        } else {
            ax as isize - shape.len() as isize
        };
        cases.push((shape, axis, start, end));
    }
    for (i, (shape, axis, start, end)) in cases.into_iter().enumerate() {
        let x = uniform(&mut rng("slice_values", i as u64), &shape, -2.0, 2.0);
        check(
            &format!("slice({axis}, {start}..{end}) of {shape:?}"),
            &[x],
            |_, v| v[0].slice(axis, start, end),
        );
    }
}

#[test]
fn gradcheck_concat() {
    for seed in 0..2 * CASES {
        let mut r = rng("concat", seed);
        let base = random_shape(&mut r, 1, 3);
        let ax = r.random_range(0..base.len());
        let parts = if seed % 2 == 0 { 2 } else { 3 };
        let inputs: Vec<Tensor<f64>> = (0..parts)
            .map(|_| {
                let mut s = base.clone();
                s[ax] = r.random_range(1..=3);
                uniform(&mut r, &s, -2.0, 2.0)
            })
            .collect();
        for axis in [ax as isize, ax as isize - base.len() as isize] {
            check(
                &format!("concat of {parts} along {axis}"),
                &inputs,
                |_, v| Var::concat(v, axis),
            );
        }
    }
    // The same node twice: both slices of the gradient go to it.
    let x = uniform(&mut rng("concat_same", 0), &[2, 3], -2.0, 2.0);
    check("concat [x, x]", std::slice::from_ref(&x), |_, v| {
        Var::concat(&[v[0], v[0]], 1)
    });
    check("concat [x, x * x, x]", &[x], |_, v| {
        Var::concat(&[v[0], v[0] * v[0], v[0]], 0)
    });
}

#[test]
fn gradcheck_stack() {
    for seed in 0..2 * CASES {
        let mut r = rng("stack", seed);
        // 0-d parts too: a stack of scalar nodes.
        let shape = random_shape(&mut r, 0, 3);
        let nd = shape.len() as isize;
        let parts = if seed % 2 == 0 { 2 } else { 3 };
        let inputs: Vec<Tensor<f64>> = (0..parts)
            .map(|_| uniform(&mut r, &shape, -2.0, 2.0))
            .collect();
        for axis in (0..=nd).chain(-(nd + 1)..0) {
            check(
                &format!("stack of {parts} {shape:?} along {axis}"),
                &inputs,
                |_, v| Var::stack(v, axis),
            );
        }
    }
    let x = uniform(&mut rng("stack_same", 0), &[3], -2.0, 2.0);
    check("stack [x, x]", &[x], |_, v| Var::stack(&[v[0], v[0]], 0));
}

#[test]
fn gradcheck_gather() {
    for seed in 0..2 * CASES {
        let mut r = rng("gather", seed);
        let shape = random_shape(&mut r, 1, 3);
        let ax = r.random_range(0..shape.len());
        let index_shape: Shape = shape
            .iter()
            .enumerate()
            .map(|(d, &e)| {
                if d == ax {
                    r.random_range(1..=5)
                } else {
                    r.random_range(1..=e)
                }
            })
            .collect();
        // Indices drawn with replacement: repeats are common and must accumulate.
        let index: Vec<usize> = (0..numel(&index_shape))
            .map(|_| r.random_range(0..shape[ax]))
            .collect();
        let x = uniform(&mut r, &shape, -2.0, 2.0);
        for axis in [ax as isize, ax as isize - shape.len() as isize] {
            check(
                &format!("gather({axis}, {index_shape:?}, {index:?}) of {shape:?}"),
                std::slice::from_ref(&x),
                |_, v| v[0].gather(axis, &index_shape, &index),
            );
        }
    }
}

#[test]
fn gradcheck_gather_repeated_indices_accumulate() {
    let x = Tensor::from([0.5, -1.0, 2.0]);
    check("gather with repeats", std::slice::from_ref(&x), |_, v| {
        v[0].gather(0, &[5], &[1, 1, 2, 1, 0])
    });
    // And the values: every pick of element 1 adds its cotangent.
    let tape = Tape::<f64>::new();
    let xv = tape.var(x);
    let picked = xv.gather(0, &[5], &[1, 1, 2, 1, 0]);
    let grads = picked.backward_with(&Tensor::from([1.0, 10.0, 100.0, 1000.0, 10000.0]));
    assert_eq!(grads.wrt(xv).data(), &[10000.0, 1011.0, 100.0]);
    // 2-d, along axis 1, with a column picked twice in a row.
    let m = Tensor::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    check("gather 2-d with repeats", &[m], |_, v| {
        v[0].gather(1, &[2, 4], &[2, 2, 0, 2, 1, 1, 1, 0])
    });
}

#[test]
fn gradcheck_scatter_add() {
    for seed in 0..CASES {
        let mut r = rng("scatter_add", seed);
        let shape = random_shape(&mut r, 1, 3);
        let ax = r.random_range(0..shape.len());
        let index_shape: Shape = shape
            .iter()
            .enumerate()
            .map(|(d, &e)| {
                if d == ax {
                    r.random_range(1..=5)
                } else {
                    r.random_range(1..=e)
                }
            })
            .collect();
        // Repeated positions must add up, forward and backward.
        let index: Vec<usize> = (0..numel(&index_shape))
            .map(|_| r.random_range(0..shape[ax]))
            .collect();
        let base = uniform(&mut r, &shape, -2.0, 2.0);
        let src = uniform(&mut r, &index_shape, -2.0, 2.0);
        check(
            &format!("scatter_add({ax}, {index_shape:?}, {index:?}) into {shape:?}"),
            &[base, src],
            |_, v| v[0].scatter_add(ax as isize, &index_shape, &index, v[1]),
        );
    }
    // The values: each source element lands on its position, repeats adding.
    let tape = Tape::<f64>::new();
    let base = tape.var(Tensor::from([1.0, 2.0, 3.0]));
    let src = tape.var(Tensor::from([10.0, 20.0, 30.0, 40.0]));
    let out = base.scatter_add(0, &[4], &[2, 0, 2, 2], src);
    assert_eq!(out.value().data(), &[21.0, 2.0, 83.0]);
    let grads = out.backward_with(&Tensor::from([1.0, 10.0, 100.0]));
    assert_eq!(grads.wrt(base).data(), &[1.0, 10.0, 100.0]);
    assert_eq!(grads.wrt(src).data(), &[100.0, 1.0, 100.0, 100.0]);
}

// ---------------------------------------------------------------------------------
// Softmax and losses.

#[test]
fn gradcheck_softmax() {
    for (i, shape) in axis_shapes("softmax").iter().enumerate() {
        let x = uniform(&mut rng("softmax", 100 + i as u64), shape, -3.0, 3.0);
        for axis in all_axes(shape.len()) {
            check(
                &format!("softmax({axis}) of {shape:?}"),
                std::slice::from_ref(&x),
                |_, v| v[0].softmax(axis),
            );
        }
    }
}

#[test]
fn gradcheck_log_softmax() {
    for (i, shape) in axis_shapes("log_softmax").iter().enumerate() {
        let x = uniform(&mut rng("log_softmax", 100 + i as u64), shape, -3.0, 3.0);
        for axis in all_axes(shape.len()) {
            check(
                &format!("log_softmax({axis}) of {shape:?}"),
                std::slice::from_ref(&x),
                |_, v| v[0].log_softmax(axis),
            );
        }
    }
}

#[test]
fn gradcheck_cross_entropy() {
    for seed in 0..2 * CASES {
        let mut r = rng("cross_entropy", seed);
        let (n, c) = (r.random_range(1..=4), r.random_range(1..=5));
        let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..c)).collect();
        // Large logits now and then, to exercise the max-subtracted log-sum-exp.
        let scale = if seed % 3 == 2 { 30.0 } else { 3.0 };
        let x = uniform(&mut r, &[n, c], -scale, scale);
        check(
            &format!("cross_entropy [{n}, {c}] labels {labels:?}"),
            &[x],
            |_, v| v[0].cross_entropy(&labels),
        );
    }
    // Upstream of the loss: a layer, so the loss's gradient is propagated further.
    let mut r = rng("cross_entropy_layer", 0);
    let x = uniform(&mut r, &[3, 4], -1.0, 1.0);
    let w = uniform(&mut r, &[4, 5], -1.0, 1.0);
    let b = uniform(&mut r, &[5], -1.0, 1.0);
    check("cross_entropy of a layer", &[x, w, b], |_, v| {
        (v[0].matmul(v[1]) + v[2]).tanh().cross_entropy(&[4, 0, 2])
    });
}

#[test]
fn gradcheck_mse() {
    for (i, shape) in unary_shapes("mse").iter().enumerate() {
        let mut r = rng("mse", 100 + i as u64);
        let x = uniform(&mut r, shape, -2.0, 2.0);
        let t = uniform(&mut r, shape, -2.0, 2.0);
        // Both operands are variables, so both rules are checked.
        check(&format!("mse {shape:?}"), &[x, t], |_, v| v[0].mse(v[1]));
    }
}

#[test]
fn gradcheck_bce_with_logits() {
    for (i, shape) in unary_shapes("bce_with_logits").iter().enumerate() {
        let mut r = rng("bce_with_logits", 100 + i as u64);
        // Logits of both signs (both branches of max(x, 0) and |x|: their sum is smooth
        // at 0), targets in [0, 1].
        let x = uniform(&mut r, shape, -4.0, 4.0);
        let t = uniform(&mut r, shape, 0.0, 1.0);
        check(&format!("bce_with_logits {shape:?}"), &[x, t], |_, v| {
            v[0].bce_with_logits(v[1])
        });
    }
}

// ---------------------------------------------------------------------------------
// The checker itself can fail.

#[test]
fn gradcheck_detects_a_missing_gradient_path() {
    // f(x) = x · stop(x), where the second factor is read back as a constant: the
    // finite differences see f(x) = x² (slope 2x), the backward pass sees only the
    // path through the first factor (slope x). A backward rule that dropped a term
    // would look just like this, and the check must fail.
    let x = Tensor::from([0.7, -1.3, 2.0]);
    let detached = gradcheck(
        std::slice::from_ref(&x),
        |t, v| v[0] * t.constant(v[0].value()),
        GradCheckOptions::default(),
    )
    .unwrap();
    assert!(
        !detached.passed(),
        "a missing path went unnoticed: {detached}"
    );
    let worst = detached
        .worst
        .expect("a failing check names its worst element");
    assert!(
        (worst.numeric - 2.0 * worst.analytic).abs() < 1e-6,
        "numeric should be twice analytic: {detached}"
    );
    assert!(detached.to_string().contains("FAILED"), "{detached}");
    // The same function without the detach passes.
    check("x * x", &[x], |_, v| v[0] * v[0]);
}

#[test]
fn gradcheck_detects_a_kink_inside_the_step() {
    // Why inputs are kept off kinks: at x = 0, relu's rule gives 0 (PyTorch's choice),
    // while the central difference averages the slopes 0 and 1 and gives 0.5.
    let report = gradcheck(
        &[Tensor::from([0.0])],
        |_, v| v[0].relu(),
        GradCheckOptions::default(),
    )
    .unwrap();
    assert!(!report.passed(), "{report}");
}

// ---------------------------------------------------------------------------------
// Zero-sized tensors: nothing to compare, but backward must run and shape its output.

#[test]
fn gradcheck_zero_sized() {
    let empty = |s: &[usize]| Tensor::<f64>::zeros(s);
    let mut r = rng("zero_sized", 0);
    // k = 0: the product is all zeros; the operands have no elements.
    check("matmul k = 0", &[empty(&[2, 0]), empty(&[0, 3])], |_, v| {
        v[0].matmul(v[1])
    });
    check(
        "batched matmul k = 0",
        &[empty(&[2, 3, 0]), empty(&[0, 4])],
        |_, v| v[0].matmul(v[1]),
    );
    // n = 0 and m = 0: empty products of operands that do have elements.
    let a = uniform(&mut r, &[2, 3], -1.0, 1.0);
    check("matmul n = 0", &[a.clone(), empty(&[3, 0])], |_, v| {
        v[0].matmul(v[1])
    });
    check("matmul m = 0", &[empty(&[0, 2]), a.clone()], |_, v| {
        v[0].matmul(v[1]).sum()
    });
    check(
        "batched matmul n = 0",
        &[empty(&[4, 2, 3]), empty(&[4, 3, 0])],
        |_, v| v[0].matmul(v[1]),
    );
    // An empty slice, an empty part in a concat, a sum over an empty axis.
    check("empty slice", std::slice::from_ref(&a), |_, v| {
        v[0].slice(1, 2, 2)
    });
    check(
        "concat with an empty part",
        &[a.clone(), empty(&[2, 0])],
        |_, v| Var::concat(v, 1),
    );
    check("sum_axis of an empty axis", &[empty(&[2, 0, 3])], |_, v| {
        v[0].sum_axis(1, false)
    });
    check("sum of nothing", &[empty(&[0])], |_, v| v[0].sum());
}
