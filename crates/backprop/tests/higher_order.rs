//! Higher-order and forward-mode rules of every op, in `f64`.
//!
//! Each case wraps one op `y = op(x, ..)` in the scalar `f = Σ w ⊙ y ⊙ y` (`w` a fixed
//! random constant; the square makes the Hessian non-zero even for linear ops, and
//! sends the op's differentiable rule through a second differentiation). For every
//! case:
//! - **first order**: the differentiable walk ([`grad`]) against the fast walk
//!   ([`backward`]), bit for bit unless the case states a bound and why;
//! - **second order**: `H v` from [`hvp_with`], both compositions, against central finite
//!   differences of the fast gradient, `(∇f(x + hv) − ∇f(x − hv)) / 2h`, `h = 1e-5`
//!   (truncation `O(h²)` ≈ 1e-10, rounding ≈ 1e-16/h ≈ 1e-11), mixed error 1e-6;
//! - **tangents**: `⟨J v, u⟩ = ⟨v, Jᵀ u⟩` between [`jvp`] and [`vjp`] on `y` itself, to
//!   1e-12 relative;
//! - **third order** (element-wise ops): `∇ₓ(vᵀ ∇²f v)` by three recorded or fast walks,
//!   against central differences of the second.
//!
//! Inputs keep away from kinks and poles (by ≥ 0.1, far beyond `h`), and from ties in
//! `maximum`, `minimum`, `max_axis`, where the derivative does not exist (those are
//! the error tests at the end).

use descent_backprop::{HvpMode, backward, grad, hvp_with, jvp, vjp};
use descent_tape::{Conv1dOptions, Conv2dOptions, Pool2dOptions, Tape, Var};
use descent_tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Build = Box<dyn for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>>;

struct Case {
    name: &'static str,
    inputs: Vec<Tensor<f64>>,
    build: Build,
    /// Largest relative difference allowed between the two first-order walks (0: bit
    /// for bit), with the reason where it is not 0.
    bound: f64,
}

fn rng(name: &str) -> ChaCha8Rng {
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(salt)
}

fn uniform(r: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| r.random_range(lo..hi))
}

/// Values in `[lo, hi)` at least 0.1 from 0 (a kink or pole).
fn off_zero(r: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| {
        loop {
            let v = r.random_range(lo..hi);
            if v.abs() >= 0.1 {
                break v;
            }
        }
    })
}

/// Distinct values (no ties anywhere): a shuffled grid with small jitter.
fn distinct(r: &mut ChaCha8Rng, shape: &[usize], offset: f64) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let mut k: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        k.swap(i, r.random_range(0..=i));
    }
    Tensor::from_fn(shape, |i| {
        0.3 * k[i] as f64 - 1.0 + offset + r.random_range(0.0..0.01)
    })
}

/// `f = Σ w ⊙ y ⊙ y` on a fresh tape with `inputs` as variables.
fn scalar_of<'t>(
    tape: &'t Tape<f64>,
    case: &Case,
    inputs: &[Tensor<f64>],
) -> (Vec<Var<'t, f64>>, Var<'t, f64>, Var<'t, f64>) {
    let vars: Vec<Var<'t, f64>> = inputs.iter().map(|t| tape.var(t)).collect();
    let y = (case.build)(&vars);
    let w = tape.constant(uniform(&mut rng(case.name), &y.shape(), 0.5, 1.5));
    (vars, y, (w * y * y).sum())
}

/// The fast first-order gradient of `f` at `inputs`.
fn fast_grad(case: &Case, inputs: &[Tensor<f64>]) -> Vec<Tensor<f64>> {
    let tape = Tape::new();
    let (vars, _, f) = scalar_of(&tape, case, inputs);
    let g = backward(f).unwrap();
    vars.iter()
        .map(|v| {
            g.get(*v)
                .map(|x| x.to_tensor())
                .unwrap_or_else(|| Tensor::zeros(&v.shape()))
        })
        .collect()
}

fn shifted(inputs: &[Tensor<f64>], v: &[Tensor<f64>], h: f64) -> Vec<Tensor<f64>> {
    inputs
        .iter()
        .zip(v)
        .map(|(x, d)| Tensor::from_fn(x.shape(), |i| x.data()[i] + h * d.data()[i]))
        .collect()
}

fn directions(case: &Case, salt: &str) -> Vec<Tensor<f64>> {
    let mut r = rng(&format!("{}{salt}", case.name));
    case.inputs
        .iter()
        .map(|x| uniform(&mut r, x.shape(), -1.0, 1.0))
        .collect()
}

fn close(what: &str, case: &Case, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{}: {what}: lengths", case.name);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{}: {what}: element {i}: {a} vs {b} (tolerance {tol})",
            case.name
        );
    }
}

fn check_first_order(case: &Case) {
    let tape = Tape::new();
    let (vars, _, f) = scalar_of(&tape, case, &case.inputs);
    let fast = backward(f).unwrap();
    let recorded = grad(f, &vars).unwrap();
    for (v, r) in vars.iter().zip(&recorded) {
        let want = fast
            .get(*v)
            .map(|x| x.to_tensor())
            .unwrap_or_else(|| Tensor::zeros(&v.shape()));
        let got = r.value();
        if case.bound == 0.0 {
            // Equal values; a zero's sign may differ (`0 + -0` in the fast walk's
            // zeroed buffers is `+0`, where the recorded `g · 0` keeps `-0`).
            assert_eq!(
                got.data(),
                want.data(),
                "{}: first order not bit for bit",
                case.name
            );
        } else {
            close("first order", case, got.data(), want.data(), case.bound);
        }
    }
}

fn check_second_order(case: &Case) {
    let v = directions(case, "v");
    let h = 1e-5;
    let plus = fast_grad(case, &shifted(&case.inputs, &v, h));
    let minus = fast_grad(case, &shifted(&case.inputs, &v, -h));
    for mode in [HvpMode::ForwardOverReverse, HvpMode::ReverseOverReverse] {
        let tape = Tape::new();
        let (vars, _, f) = scalar_of(&tape, case, &case.inputs);
        let hv = hvp_with(f, &vars, &v, mode).unwrap();
        // Twice on the same recording: the first product's nodes change nothing.
        let again = hvp_with(f, &vars, &v, mode).unwrap();
        assert_eq!(
            hv, again,
            "{}: a second product on the same tape",
            case.name
        );
        for ((got, p), m) in hv.iter().zip(&plus).zip(&minus) {
            let fd: Vec<f64> = p
                .data()
                .iter()
                .zip(m.data())
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            close(&format!("H v ({mode:?})"), case, got.data(), &fd, 1e-6);
        }
    }
}

fn check_tangents(case: &Case) {
    let tape = Tape::new();
    let (vars, y, _) = scalar_of(&tape, case, &case.inputs);
    let v = directions(case, "t");
    let u = uniform(&mut rng(&format!("{}u", case.name)), &y.shape(), -1.0, 1.0);
    let tv: Vec<Var<'_, f64>> = v.iter().map(|t| tape.constant(t)).collect();
    let jv = jvp(y, &vars, &tv).unwrap().value();
    let lhs: f64 = jv.data().iter().zip(u.data()).map(|(a, b)| a * b).sum();
    let jtu = vjp(y, &vars, tape.constant(&u)).unwrap();
    let rhs: f64 = jtu
        .iter()
        .zip(&v)
        .map(|(g, d)| {
            g.value()
                .data()
                .iter()
                .zip(d.data())
                .map(|(a, b)| a * b)
                .sum::<f64>()
        })
        .sum();
    assert!(
        (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
        "{}: <Jv, u> = {lhs} but <v, J^T u> = {rhs}",
        case.name
    );
}

/// `∇ₓ(vᵀ ∇²f(x) v)`: two recorded walks and a fast one.
fn third(case: &Case, inputs: &[Tensor<f64>], v: &[Tensor<f64>]) -> Vec<Tensor<f64>> {
    let tape = Tape::new();
    let (vars, _, f) = scalar_of(&tape, case, inputs);
    fn dot<'t>(tape: &'t Tape<f64>, g: &[Var<'t, f64>], v: &[Tensor<f64>]) -> Var<'t, f64> {
        g.iter()
            .zip(v)
            .map(|(g, d)| (*g * tape.constant(d)).sum())
            .reduce(|a, b| a + b)
            .unwrap()
    }
    let g1 = grad(f, &vars).unwrap();
    let g2 = grad(dot(&tape, &g1, v), &vars).unwrap();
    let g3 = backward(dot(&tape, &g2, v)).unwrap();
    vars.iter()
        .map(|x| {
            g3.get(*x)
                .map(|t| t.to_tensor())
                .unwrap_or_else(|| Tensor::zeros(&x.shape()))
        })
        .collect()
}

/// `H(x) v` by two recorded walks, for the finite differences of the third order.
fn hv_recorded(case: &Case, inputs: &[Tensor<f64>], v: &[Tensor<f64>]) -> Vec<Tensor<f64>> {
    let tape = Tape::new();
    let (vars, _, f) = scalar_of(&tape, case, inputs);
    hvp_with(f, &vars, v, HvpMode::ReverseOverReverse).unwrap()
}

fn check_third_order(case: &Case) {
    let v = directions(case, "3");
    let h = 1e-4;
    let got = third(case, &case.inputs, &v);
    let plus = hv_recorded(case, &shifted(&case.inputs, &v, h), &v);
    let minus = hv_recorded(case, &shifted(&case.inputs, &v, -h), &v);
    for ((g, p), m) in got.iter().zip(&plus).zip(&minus) {
        let fd: Vec<f64> = p
            .data()
            .iter()
            .zip(m.data())
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect();
        close("third order", case, g.data(), &fd, 1e-5);
    }
}

fn check(case: Case, third_order: bool) {
    check_first_order(&case);
    check_second_order(&case);
    check_tangents(&case);
    if third_order {
        check_third_order(&case);
    }
}

fn unary(name: &'static str, x: Tensor<f64>, f: for<'t> fn(Var<'t, f64>) -> Var<'t, f64>) -> Case {
    Case {
        name,
        inputs: vec![x],
        build: Box::new(move |v| f(v[0])),
        bound: 0.0,
    }
}

#[test]
fn unary_ops_to_third_order() {
    let s = [3, 4];
    let r = &mut rng("unary");
    let cases = [
        unary("neg", uniform(r, &s, -2.0, 2.0), |x| -x),
        unary("powf", uniform(r, &s, 0.2, 2.0), |x| x.powf(2.5)),
        unary("powi", uniform(r, &s, -2.0, 2.0), |x| x.powi(3)),
        unary("powi_negative", off_zero(r, &s, -2.0, 2.0), |x| x.powi(-2)),
        unary("exp", uniform(r, &s, -2.0, 2.0), |x| x.exp()),
        unary("ln", uniform(r, &s, 0.2, 3.0), |x| x.ln()),
        unary("sqrt", uniform(r, &s, 0.2, 3.0), |x| x.sqrt()),
        unary("abs", off_zero(r, &s, -2.0, 2.0), |x| x.abs()),
        unary("sin", uniform(r, &s, -3.0, 3.0), |x| x.sin()),
        unary("cos", uniform(r, &s, -3.0, 3.0), |x| x.cos()),
        unary("tanh", uniform(r, &s, -2.0, 2.0), |x| x.tanh()),
        unary("sinh", uniform(r, &s, -2.0, 2.0), |x| x.sinh()),
        unary("cosh", uniform(r, &s, -2.0, 2.0), |x| x.cosh()),
        unary("sigmoid", uniform(r, &s, -3.0, 3.0), |x| x.sigmoid()),
        unary("relu", off_zero(r, &s, -2.0, 2.0), |x| x.relu()),
        unary("leaky_relu", off_zero(r, &s, -2.0, 2.0), |x| {
            x.leaky_relu(0.1)
        }),
        unary("gelu", uniform(r, &s, -3.0, 3.0), |x| x.gelu()),
        unary("softplus", uniform(r, &s, -3.0, 3.0), |x| x.softplus()),
        unary("scalar_tanh", uniform(r, &[], -2.0, 2.0), |x| x.tanh()),
    ];
    for case in cases {
        check(case, true);
    }
}

/// Operations with a plain number, one node each (`mul_scalar`, ...): their recorded
/// rules scale by the constant derivative in one node, bit for bit the fast rule's.
#[test]
fn ops_with_a_plain_number_to_third_order() {
    let s = [3, 4];
    let r = &mut rng("number");
    let cases = [
        unary("add_scalar", uniform(r, &s, -2.0, 2.0), |x| x + 0.3),
        unary("sub_scalar", uniform(r, &s, -2.0, 2.0), |x| x - 0.3),
        unary("rsub_scalar", uniform(r, &s, -2.0, 2.0), |x| 0.3 - x),
        unary("mul_scalar", uniform(r, &s, -2.0, 2.0), |x| x * 0.3),
        unary("mul_scalar_left", uniform(r, &s, -2.0, 2.0), |x| -1.7 * x),
        unary("div_scalar", uniform(r, &s, -2.0, 2.0), |x| x / 0.3),
        unary("rdiv_scalar", off_zero(r, &s, -2.0, 2.0), |x| 0.3 / x),
        unary("scalar_rdiv_scalar", uniform(r, &[], 0.5, 2.0), |x| 2.0 / x),
        unary("scalar_mul_scalar", uniform(r, &[], -2.0, 2.0), |x| x * 3.0),
    ];
    for case in cases {
        check(case, true);
    }
}

fn binary(
    name: &'static str,
    a: Tensor<f64>,
    b: Tensor<f64>,
    f: for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>,
) -> Case {
    Case {
        name,
        inputs: vec![a, b],
        build: Box::new(move |v| f(v[0], v[1])),
        bound: 0.0,
    }
}

#[test]
fn binary_ops_to_third_order_with_broadcasting() {
    let r = &mut rng("binary");
    for (sa, sb) in [
        (vec![3, 4], vec![3, 4]),
        (vec![3, 1], vec![4]),
        (vec![], vec![2, 3]),
    ] {
        // Same shapes: bit for bit. Broadcast: the fast rule adds each element's term
        // into the operand's gradient in output order, the differentiable rule sums
        // with `sum_axis`: the same terms grouped differently (a few ulps).
        let bound = if sa == sb { 0.0 } else { 1e-14 };
        let cases = [
            binary(
                "add",
                uniform(r, &sa, -2.0, 2.0),
                uniform(r, &sb, -2.0, 2.0),
                |a, b| a + b,
            ),
            binary(
                "sub",
                uniform(r, &sa, -2.0, 2.0),
                uniform(r, &sb, -2.0, 2.0),
                |a, b| a - b,
            ),
            binary(
                "mul",
                uniform(r, &sa, -2.0, 2.0),
                uniform(r, &sb, -2.0, 2.0),
                |a, b| a * b,
            ),
            binary(
                "div",
                uniform(r, &sa, -2.0, 2.0),
                off_zero(r, &sb, 0.3, 2.0),
                |a, b| a / b,
            ),
            binary(
                "maximum",
                distinct(r, &sa, 0.0),
                distinct(r, &sb, 0.15),
                |a, b| a.maximum(b),
            ),
            binary(
                "minimum",
                distinct(r, &sa, 0.0),
                distinct(r, &sb, 0.15),
                |a, b| a.minimum(b),
            ),
        ];
        for mut case in cases {
            case.bound = bound;
            check(case, true);
        }
    }
}

fn one(
    name: &'static str,
    x: Tensor<f64>,
    bound: f64,
    f: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64> + 'static,
) -> Case {
    Case {
        name,
        inputs: vec![x],
        build: Box::new(move |v| f(v[0])),
        bound,
    }
}

#[test]
fn reductions() {
    let r = &mut rng("reduce");
    let s = [3, 4];
    let cases = [
        one("sum", uniform(r, &s, -2.0, 2.0), 0.0, |x| x.sum()),
        one("mean", uniform(r, &s, -2.0, 2.0), 0.0, |x| x.mean()),
        one("sum_axis", uniform(r, &s, -2.0, 2.0), 0.0, |x| {
            x.sum_axis(1, false)
        }),
        one("sum_axis_keepdim", uniform(r, &s, -2.0, 2.0), 0.0, |x| {
            x.sum_axis(0, true)
        }),
        one("mean_axis", uniform(r, &s, -2.0, 2.0), 0.0, |x| {
            x.mean_axis(0, false)
        }),
        one("max_axis", distinct(r, &s, 0.0), 0.0, |x| {
            x.max_axis(1, false)
        }),
        one("max_axis_keepdim", distinct(r, &[2, 3, 2], 0.0), 0.0, |x| {
            x.max_axis(1, true)
        }),
    ];
    for case in cases {
        check(case, false);
    }
}

#[test]
fn matrix_products() {
    let r = &mut rng("matmul");
    // The differentiable rule multiplies a materialised transpose where the fast rule
    // reads the GEMM with strides: the same products, summed in blocks that may differ,
    // so the two agree to rounding (k ≤ 4 terms: well within 1e-14).
    let cases = [
        binary(
            "matmul",
            uniform(r, &[3, 4], -1.0, 1.0),
            uniform(r, &[4, 2], -1.0, 1.0),
            |a, b| a.matmul(b),
        ),
        binary(
            "matmul_batched",
            uniform(r, &[2, 3, 4], -1.0, 1.0),
            uniform(r, &[4, 2], -1.0, 1.0),
            |a, b| a.matmul(b),
        ),
        binary(
            "matmul_batched_both",
            uniform(r, &[2, 3, 4], -1.0, 1.0),
            uniform(r, &[1, 4, 2], -1.0, 1.0),
            |a, b| a.matmul(b),
        ),
        binary(
            "matmul_t",
            uniform(r, &[3, 4], -1.0, 1.0),
            uniform(r, &[2, 4], -1.0, 1.0),
            |a, b| a.matmul_t(b),
        ),
        binary(
            "matmul_t_batched",
            uniform(r, &[2, 3, 4], -1.0, 1.0),
            uniform(r, &[2, 4], -1.0, 1.0),
            |a, b| a.matmul_t(b),
        ),
    ];
    for mut case in cases {
        case.bound = 1e-14;
        check(case, false);
    }
}

#[test]
fn shape_ops() {
    let r = &mut rng("shape");
    let cases = [
        one("transpose", uniform(r, &[2, 3, 4], -2.0, 2.0), 0.0, |x| {
            x.transpose(0, 2)
        }),
        one("reshape", uniform(r, &[3, 4], -2.0, 2.0), 0.0, |x| {
            x.reshape(&[2, 6])
        }),
        // The fast rule sums the stretched axes in one pass, the differentiable rule one
        // `sum_axis` per axis: the same terms, grouped differently (a few ulps).
        one("broadcast_to", uniform(r, &[3, 1], -2.0, 2.0), 1e-15, |x| {
            x.broadcast_to(&[2, 3, 4])
        }),
        one("slice", uniform(r, &[3, 5], -2.0, 2.0), 0.0, |x| {
            x.slice(1, 1, 4)
        }),
        one("slice_start", uniform(r, &[4, 2], -2.0, 2.0), 0.0, |x| {
            x.slice(0, 0, 2)
        }),
        one("gather", uniform(r, &[3, 4], -2.0, 2.0), 0.0, |x| {
            x.gather(1, &[3, 3], &[0, 3, 3, 1, 1, 2, 2, 0, 0])
        }),
    ];
    for case in cases {
        check(case, false);
    }
    let joins = [
        binary(
            "concat",
            uniform(r, &[2, 3], -2.0, 2.0),
            uniform(r, &[2, 1], -2.0, 2.0),
            |a, b| Var::concat(&[a, b, a], 1),
        ),
        binary(
            "stack",
            uniform(r, &[2, 3], -2.0, 2.0),
            uniform(r, &[2, 3], -2.0, 2.0),
            |a, b| Var::stack(&[a, b], 1),
        ),
        binary(
            "scatter_add",
            uniform(r, &[3, 4], -2.0, 2.0),
            uniform(r, &[2, 4], -2.0, 2.0),
            |a, b| a.scatter_add(0, &[2, 4], &[0, 2, 2, 1, 0, 0, 1, 2], b),
        ),
    ];
    for case in joins {
        check(case, false);
    }
}

#[test]
fn softmax_and_losses() {
    let r = &mut rng("losses");
    // Softmax's fast rule sums `y·g` in eight lanes (`dot_lanes`); the differentiable
    // rule records `sum_axis`, which adds in order: the same terms in another order
    // (4 terms here: a few ulps).
    let cases = [
        one("softmax", uniform(r, &[3, 4], -2.0, 2.0), 1e-14, |x| {
            x.softmax(1)
        }),
        one(
            "softmax_axis0",
            uniform(r, &[3, 4], -2.0, 2.0),
            1e-14,
            |x| x.softmax(0),
        ),
        one("log_softmax", uniform(r, &[3, 4], -2.0, 2.0), 1e-14, |x| {
            x.log_softmax(-1)
        }),
        // The fast rule computes the softmax per row with `softmax_lane`; the
        // differentiable one records the `softmax` op: equal to rounding.
        one(
            "cross_entropy",
            uniform(r, &[4, 3], -2.0, 2.0),
            1e-14,
            |x| x.cross_entropy(&[0, 2, 1, 2]),
        ),
    ];
    for case in cases {
        check(case, false);
    }
    let pairs = [
        binary(
            "mse",
            uniform(r, &[3, 4], -2.0, 2.0),
            uniform(r, &[3, 4], -2.0, 2.0),
            |a, b| a.mse(b),
        ),
        binary(
            "bce_with_logits",
            uniform(r, &[3, 4], -2.0, 2.0),
            uniform(r, &[3, 4], 0.0, 1.0),
            |a, b| a.bce_with_logits(b),
        ),
    ];
    for mut case in pairs {
        // mse: the same operations in the same order, bit for bit. bce: the fast rule
        // divides `g(σ(x) − t)` by n in one expression per element, as here.
        case.bound = 1e-15;
        check(case, false);
    }
}

#[test]
fn an_mlp_loss_has_the_finite_difference_hessian() {
    let r = &mut rng("mlp");
    let case = Case {
        name: "mlp",
        inputs: vec![
            uniform(r, &[4, 3], -1.0, 1.0),
            uniform(r, &[5, 3], -1.0, 1.0),
            uniform(r, &[5], -0.5, 0.5),
            uniform(r, &[2, 5], -1.0, 1.0),
        ],
        build: Box::new(|v| {
            let h = (v[0].matmul_t(v[1]) + v[2]).tanh();
            h.matmul_t(v[3]).cross_entropy(&[0, 1, 1, 0])
        }),
        bound: 1e-14,
    };
    check(case, false);
}

fn not_differentiable(result: Result<Vec<Var<'_, f64>>, descent_backprop::Error>, op: &str) {
    let err = result.expect_err("a tie must be refused");
    let msg = err.to_string();
    let named = match &err {
        descent_backprop::Error::Tape(descent_tape::Error::NotDifferentiable { op: o, .. }) => *o,
        _ => "",
    };
    assert_eq!(named, op, "{err:?}");
    assert!(
        msg.contains(op) && msg.contains("not differentiable"),
        "{msg}"
    );
}

#[test]
fn ties_are_refused_by_the_differentiable_and_tangent_rules() {
    let tape = Tape::<f64>::new();
    let a = tape.var(Tensor::from([1.0, 2.0, 3.0]));
    let b = tape.var(Tensor::from([0.0, 2.0, 4.0]));
    for (y, op) in [(a.maximum(b), "maximum"), (a.minimum(b), "minimum")] {
        let f = (y * y).sum();
        // The fast walk gives PyTorch's even split at the tie ...
        assert_eq!(backward(f).unwrap().wrt(a).data()[1], 2.0);
        // ... but a gradient to differentiate again, or a tangent, would be wrong there.
        not_differentiable(grad(f, &[a, b]), op);
        let t = tape.constant(Tensor::from([1.0, 1.0, 1.0]));
        not_differentiable(jvp(y, &[a], &[t]).map(|v| vec![v]), op);
    }
    let x = tape.var(Tensor::from([[1.0, 5.0, 5.0], [0.0, 1.0, 2.0]]));
    let m = x.max_axis(1, false).sum();
    not_differentiable(grad(m, &[x]), "max_axis");
    let err = grad(m, &[x]).err().unwrap().to_string();
    assert!(err.contains("positions 1 and 2"), "{err}");
}

#[test]
fn padding_and_max_pooling() {
    let r = &mut rng("pool");
    let cases = [
        one("pad", uniform(r, &[2, 3, 4], -2.0, 2.0), 0.0, |x| {
            x.pad(&[1, 2, 0, 1])
        }),
        one("max_pool2d", distinct(r, &[2, 2, 5, 5], 0.0), 0.0, |x| {
            x.max_pool2d(Pool2dOptions::new(2).stride(2).padding(1))
        }),
        one(
            "max_pool2d_overlapping",
            distinct(r, &[1, 2, 4, 5], 0.0),
            0.0,
            |x| x.max_pool2d(Pool2dOptions::new([3, 2]).stride(1)),
        ),
    ];
    for case in cases {
        check(case, false);
    }
    // A tie in a window is refused, as in max_axis.
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::new(&[1, 1, 2, 2], vec![1.0, 4.0, 4.0, 2.0]).unwrap());
    let m = x.max_pool2d(Pool2dOptions::new(2)).sum();
    not_differentiable(grad(m, &[x]), "max_pool2d");
}

/// Convolution and average pooling: their recorded backward is `conv_input_grad`,
/// `conv_weight_grad` and a sum for the bias, or `avg_pool2d_backward`, the fast
/// rule's kernels as ops, so first order is bit for bit; second order is checked over
/// a grid of options (stride, padding, dilation, groups, bias or not, batch 1 and 2).
#[test]
fn convolution_and_average_pooling() {
    let r = &mut rng("conv");
    let mut cases = Vec::new();
    // (stride, padding, dilation, groups, bias, batch)
    type Options = ([usize; 2], [usize; 2], [usize; 2], usize, bool, usize);
    let grid: [Options; 6] = [
        ([1, 1], [0, 0], [1, 1], 1, false, 1),
        ([2, 1], [1, 1], [1, 2], 2, true, 2),
        ([1, 2], [2, 0], [2, 1], 1, true, 1),
        ([2, 2], [1, 2], [1, 1], 4, false, 2),
        ([3, 1], [0, 1], [2, 2], 2, true, 2),
        ([1, 1], [1, 1], [1, 1], 1, true, 3),
    ];
    for (k, &(stride, padding, dilation, groups, bias, n)) in grid.iter().enumerate() {
        let o = Conv2dOptions::new()
            .stride(stride)
            .padding(padding)
            .dilation(dilation)
            .groups(groups);
        let mut inputs = vec![
            uniform(r, &[n, 4, 5, 6], -1.0, 1.0),
            uniform(r, &[4, 4 / groups, 3, 2], -1.0, 1.0),
        ];
        if bias {
            inputs.push(uniform(r, &[4], -1.0, 1.0));
        }
        cases.push(Case {
            name: [
                "conv2d_0", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "conv2d_5",
            ][k],
            inputs,
            build: Box::new(move |v| v[0].conv2d(v[1], v.get(2).copied(), o)),
            bound: 0.0,
        });
    }
    for (name, n, bias, o) in [
        (
            "conv1d",
            3,
            false,
            Conv1dOptions::new().stride(2).padding(2),
        ),
        (
            "conv1d_bias",
            1,
            true,
            Conv1dOptions::new().dilation(2).groups(2).padding(1),
        ),
    ] {
        let mut inputs = vec![
            uniform(r, &[n, 2, 9], -1.0, 1.0),
            uniform(r, &[4, 2 / o.groups, 3], -1.0, 1.0),
        ];
        if bias {
            inputs.push(uniform(r, &[4], -1.0, 1.0));
        }
        cases.push(Case {
            name,
            inputs,
            build: Box::new(move |v| v[0].conv1d(v[1], v.get(2).copied(), o)),
            bound: 0.0,
        });
    }
    cases.push(one(
        "avg_pool2d",
        uniform(r, &[2, 3, 5, 4], -1.0, 1.0),
        0.0,
        |x| x.avg_pool2d(Pool2dOptions::new(2).padding(1).ceil_mode(true)),
    ));
    cases.push(one(
        "avg_pool2d_overlapping",
        uniform(r, &[1, 2, 6, 5], -1.0, 1.0),
        0.0,
        |x| x.avg_pool2d(Pool2dOptions::new([3, 2]).stride([2, 1]).padding([1, 0])),
    ));
    // The new ops themselves, each with both operands variables.
    let o = Conv2dOptions::new()
        .stride(2)
        .padding(1)
        .dilation([1, 2])
        .groups(2);
    cases.push(Case {
        name: "conv_input_grad",
        inputs: vec![
            uniform(r, &[2, 4, 3, 2], -1.0, 1.0),
            uniform(r, &[4, 1, 3, 2], -1.0, 1.0),
        ],
        build: Box::new(move |v| v[0].conv2d_input_grad(v[1], &[2, 2, 5, 4], o)),
        bound: 0.0,
    });
    cases.push(Case {
        name: "conv_weight_grad",
        inputs: vec![
            uniform(r, &[2, 2, 5, 4], -1.0, 1.0),
            uniform(r, &[2, 4, 3, 2], -1.0, 1.0),
        ],
        build: Box::new(move |v| v[0].conv2d_weight_grad(v[1], &[4, 1, 3, 2], o)),
        bound: 0.0,
    });
    let o1 = Conv1dOptions::new().stride(2).padding(1);
    cases.push(Case {
        name: "conv1d_input_grad",
        inputs: vec![
            uniform(r, &[2, 3, 4], -1.0, 1.0),
            uniform(r, &[3, 2, 3], -1.0, 1.0),
        ],
        build: Box::new(move |v| v[0].conv1d_input_grad(v[1], &[2, 2, 8], o1)),
        bound: 0.0,
    });
    cases.push(Case {
        name: "conv1d_weight_grad",
        inputs: vec![
            uniform(r, &[2, 2, 8], -1.0, 1.0),
            uniform(r, &[2, 3, 4], -1.0, 1.0),
        ],
        build: Box::new(move |v| v[0].conv1d_weight_grad(v[1], &[3, 2, 3], o1)),
        bound: 0.0,
    });
    cases.push(one(
        "avg_pool2d_backward",
        uniform(r, &[2, 3, 3, 3], -1.0, 1.0),
        0.0,
        |g| {
            g.avg_pool2d_backward(
                &[2, 3, 5, 4],
                Pool2dOptions::new(2).padding(1).ceil_mode(true),
            )
        },
    ));
    for case in cases {
        check(case, false);
    }
}

/// A small CNN, `tanh` between layers, through `grad` of a gradient: a gradient
/// penalty `‖∂L/∂x‖²` (WGAN-GP style) differentiated to the weights, against central
/// finite differences of the penalty itself.
#[test]
fn gradient_penalty_through_a_convolution() {
    let r = &mut rng("penalty");
    let x = uniform(r, &[2, 2, 6, 6], -1.0, 1.0);
    let w1 = uniform(r, &[4, 1, 3, 3], -0.8, 0.8);
    let b1 = uniform(r, &[4], -0.5, 0.5);
    let w2 = uniform(r, &[3, 4, 3], -0.8, 0.8);
    fn penalty<'t>(tape: &'t Tape<f64>, x: &Tensor<f64>, w: [Var<'t, f64>; 3]) -> Var<'t, f64> {
        let xv = tape.var(x);
        let h = xv
            .conv2d(
                w[0],
                Some(w[1]),
                Conv2dOptions::new().padding(1).stride(2).groups(2),
            )
            .tanh()
            .avg_pool2d(Pool2dOptions::new(2).padding(1).ceil_mode(true));
        let s = h.shape();
        let h = h.reshape(&[s[0], s[1], s[2] * s[3]]);
        let l = h
            .conv1d(w[2], None, Conv1dOptions::new().padding(1))
            .tanh()
            .sum();
        let gx = grad(l, &[xv]).unwrap()[0];
        (gx * gx).sum()
    }
    let tape = Tape::new();
    let ws = [tape.var(&w1), tape.var(&b1), tape.var(&w2)];
    let p = penalty(&tape, &x, ws);
    let got = grad(p, &ws).unwrap();
    let h = 1e-6;
    for (k, t) in [&w1, &b1, &w2].into_iter().enumerate() {
        for i in 0..t.data().len() {
            let at = |d: f64| {
                let tape = Tape::new();
                let mut ts = [w1.clone(), b1.clone(), w2.clone()];
                ts[k] = Tensor::from_fn(t.shape(), |j| t.data()[j] + if j == i { d } else { 0.0 });
                let ws = [tape.var(&ts[0]), tape.var(&ts[1]), tape.var(&ts[2])];
                penalty(&tape, &x, ws).value().data()[0]
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let g = got[k].value().data()[i];
            assert!(
                (g - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                "operand {k}[{i}]: {g} vs {fd}"
            );
        }
    }
}

/// `clamp` (inputs on `distinct`'s grid, bounds half-way between grid points, so at
/// least 0.14 from any input), `where_cond` with both operands broadcast, and
/// `masked_fill`. Their recorded rules are `where_cond`s of a fixed mask, so second
/// derivatives come from the square in `f` only.
#[test]
fn selection_ops() {
    let r = &mut rng("select");
    let cond = Tensor::from_fn(&[2, 3, 4], |_| if r.random_bool(0.5) { 1.0 } else { 0.0 });
    let row = Tensor::from_fn(&[4], |_| if r.random_bool(0.5) { 1.0 } else { 0.0 });
    let cases = vec![
        one("clamp", distinct(r, &[3, 5], 0.0), 0.0, |x| {
            x.clamp(-0.55, 0.65)
        }),
        one("clamp_one_sided", distinct(r, &[2, 6], 0.0), 0.0, |x| {
            x.clamp(f64::NEG_INFINITY, 0.35)
        }),
        one(
            "masked_fill",
            uniform(r, &[3, 4], -1.0, 1.0),
            0.0,
            move |x| x.masked_fill(&row, 0.5),
        ),
        Case {
            name: "where_cond",
            inputs: vec![
                uniform(r, &[3, 1], -1.0, 1.0),
                uniform(r, &[2, 1, 4], -1.0, 1.0),
            ],
            build: Box::new(move |v| v[0].where_cond(&cond, v[1])),
            bound: 0.0,
        },
    ];
    for case in cases {
        check(case, false);
    }
}

/// The fused LSTM ops, each alone and as a whole cell: smooth everywhere, so to third
/// order. Their differentiable rules record the fast rules' arithmetic in the same
/// order (`(1 - y)(y + u)` for the gates; products; `(g·o)(1 - tanh²c)`), bit for bit.
#[test]
fn lstm_cell_ops_to_third_order() {
    let r = &mut rng("lstm");
    let cases = vec![
        one("lstm_gates", uniform(r, &[2, 3, 8], -2.0, 2.0), 0.0, |x| {
            x.lstm_gates()
        }),
        Case {
            name: "lstm_cell",
            inputs: vec![
                uniform(r, &[2, 3, 8], -1.0, 1.0),
                uniform(r, &[2, 3, 2], -2.0, 2.0),
            ],
            build: Box::new(|v| v[0].lstm_cell(v[1])),
            bound: 0.0,
        },
        Case {
            name: "lstm_hidden",
            inputs: vec![
                uniform(r, &[3, 12], -1.0, 1.0),
                uniform(r, &[3, 3], -2.0, 2.0),
            ],
            build: Box::new(|v| v[0].lstm_hidden(v[1])),
            bound: 0.0,
        },
        Case {
            name: "lstm_cell_whole",
            inputs: vec![
                uniform(r, &[4, 8], -2.0, 2.0),
                uniform(r, &[4, 2], -2.0, 2.0),
            ],
            build: Box::new(|v| {
                let a = v[0].lstm_gates();
                let c = a.lstm_cell(v[1]);
                a.lstm_hidden(c) + c
            }),
            bound: 0.0,
        },
    ];
    for case in cases {
        check(case, true);
    }
}

/// The fused GRU ops, each alone and as a whole cell, to third order. Their
/// differentiable rules record the fast rules' arithmetic in the same order, bit for
/// bit.
#[test]
fn gru_cell_ops_to_third_order() {
    let r = &mut rng("gru");
    let cases = vec![
        Case {
            name: "gru_gates",
            inputs: vec![
                uniform(r, &[2, 3, 6], -2.0, 2.0),
                uniform(r, &[2, 3, 6], -2.0, 2.0),
            ],
            build: Box::new(|v| v[0].gru_gates(v[1])),
            bound: 0.0,
        },
        Case {
            name: "gru_hidden",
            inputs: vec![
                uniform(r, &[3, 9], -1.0, 1.0),
                uniform(r, &[3, 3], -2.0, 2.0),
            ],
            build: Box::new(|v| v[0].gru_hidden(v[1])),
            bound: 0.0,
        },
        Case {
            name: "gru_cell_whole",
            inputs: vec![
                uniform(r, &[4, 6], -2.0, 2.0),
                uniform(r, &[4, 6], -2.0, 2.0),
                uniform(r, &[4, 2], -2.0, 2.0),
            ],
            build: Box::new(|v| v[0].gru_gates(v[1]).gru_hidden(v[2])),
            bound: 0.0,
        },
    ];
    for case in cases {
        check(case, true);
    }
}

/// The one op that still refuses higher order: a `custom` op given without recorded
/// rules. A convolution and an average pooling before it are no longer refused, so the
/// error names the custom op and its node.
#[test]
fn a_custom_op_without_recorded_rules_is_refused_by_name() {
    use descent_tape::ops::custom::CustomOp;
    use descent_tensor::View;
    struct Triple;
    impl CustomOp<f64> for Triple {
        fn name(&self) -> &'static str {
            "triple"
        }
        fn backward(
            &self,
            _: &[View<'_, f64>],
            _: View<'_, f64>,
            g: View<'_, f64>,
            _: &[bool],
        ) -> Vec<Option<Tensor<f64>>> {
            let data = g.data().iter().map(|g| 3.0 * g).collect();
            vec![Some(Tensor::new(g.shape(), data).unwrap())]
        }
    }
    let tape = Tape::<f64>::new();
    let x = tape.var(uniform(&mut rng("custom"), &[1, 2, 4, 4], -1.0, 1.0));
    let w = tape.var(uniform(&mut rng("custom w"), &[2, 1, 3, 3], -1.0, 1.0));
    let p = x
        .conv2d(w, None, Conv2dOptions::new().padding(1).groups(2))
        .avg_pool2d(Pool2dOptions::new(2));
    let tripled = p.value().map(|v| 3.0 * v);
    let t = tape
        .try_custom(std::rc::Rc::new(Triple), &[p], tripled)
        .unwrap();
    let f = (t * t).sum();
    // First order through it works; the recorded backward is refused, naming it.
    assert!(backward(f).is_ok());
    let err = grad(f, &[x, w]).expect_err("a custom op without a vjp is refused");
    match &err {
        descent_backprop::Error::Tape(descent_tape::Error::HigherOrderUnsupported {
            op, ..
        }) => assert_eq!(*op, "custom"),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("node 4 (custom"), "{err}");
    // Without the custom op, the same graph differentiates twice.
    let g = (p * p).sum();
    let r = &mut rng("custom v");
    let v = [
        uniform(r, &[1, 2, 4, 4], -1.0, 1.0),
        uniform(r, &[2, 1, 3, 3], -1.0, 1.0),
    ];
    assert!(hvp_with(g, &[x, w], &v, HvpMode::ForwardOverReverse).is_ok());
}
