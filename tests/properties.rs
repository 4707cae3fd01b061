//! Property tests: random shapes (size-1 and broadcast axes included), random values
//! and random programs, against properties every correct backward pass has.
//!
//! 1. **Each op family agrees with central finite differences** (`descent::gradcheck`,
//!    `f64`, step `1e-6·max(1, |x|)`, mixed error `<= 1e-6`): element-wise unary and
//!    broadcast binary ops, reductions, matmul and matmul_t, the shape ops, softmax and
//!    the losses.
//! 2. **Random compositions** of 2 to 8 ops from a table of shape-preserving and
//!    shape-changing ops, over an input and a "bank" of weights that binary ops, matmul
//!    and the losses slice their other operand from, pass the same check.
//! 3. **The adjoint identity** `<J v, u> = <v, Jᵀ u>` on those programs: `Jᵀ u` from
//!    `backward_with(u)`, `J v` from a central difference along `v`.
//! 4. **`f32` and `f64` agree**: the same program on the same (f32-representable)
//!    inputs gives the same gradients within `f32` tolerance.
//!
//! **Kinks and poles.** A central difference straddling a kink averages two slopes, so
//! no backward rule can match it there; inputs keep away from them by margins far above
//! the step (`1e-6`): `abs`, `relu`, `leaky_relu` and negative `powi` see `|x| >= 0.05`;
//! `ln`, `sqrt` and `powf` see `x >= 0.2`; a divisor has `|b| >= 0.5`; `maximum` and
//! `minimum` compare values on grids offset by `0.05` (never closer than `0.03`);
//! `max_axis` sees values at least `0.08` apart. The composition table has no op with a
//! kink (no `relu`, `abs`, `max_axis`, `maximum`) and keeps magnitudes moderate (divides
//! by `1 + q²`, exponentiates only after `tanh`, scales sums), so any input is fine.
//!
//! **Cost and seeds.** 40 to 64 cases per property, all properties in a few seconds in
//! debug. The seed is fixed, so CI runs the same cases every time; set
//! `PROPTEST_RNG_SEED=<n>` (and `PROPTEST_CASES=<n>`) to explore others.

use descent::prelude::*;
use descent::tensor::numel;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x00de_5ce7);
    }
    // Shrinking a gradcheck failure is cheap at these sizes; keep it bounded anyway.
    c.max_shrink_iters = 2048;
    c
}

type Shape = Vec<usize>;

/// A shape of `lo..=hi` axes of extent 1 to 4 (so size-1 axes are common).
fn shape(lo: usize, hi: usize) -> impl Strategy<Value = Shape> {
    prop::collection::vec(1usize..=4, lo..=hi)
}

/// A tensor of `shape` with values from `value`.
fn tensor(shape: Shape, value: impl Strategy<Value = f64>) -> impl Strategy<Value = Tensor<f64>> {
    let n = numel(&shape);
    prop::collection::vec(value, n).prop_map(move |v| Tensor::new(&shape, v).unwrap())
}

/// A value with `lo <= |v| < hi`, either sign (away from a kink or pole at 0).
fn off_zero(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    (lo..hi, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v })
}

/// A value on the grid `0.1·k + offset` with jitter below `0.01`: two grids offset by
/// `0.05` never come closer than `0.03`.
fn on_grid(offset: f64) -> impl Strategy<Value = f64> {
    (-15i32..=15, -0.01f64..0.01).prop_map(move |(k, j)| k as f64 * 0.1 + offset + j)
}

/// A shape that broadcasts to `out`: leading axes dropped, some axes set to 1.
fn partner(out: Shape) -> impl Strategy<Value = Shape> {
    let nd = out.len();
    (0..=nd, prop::collection::vec(any::<bool>(), nd)).prop_map(move |(drop, ones)| {
        out.iter()
            .zip(&ones)
            .skip(drop)
            .map(|(&d, &one)| if one { 1 } else { d })
            .collect()
    })
}

/// Runs a gradient check and fails the case, naming it, unless every element passed.
fn check<F>(what: &str, inputs: &[Tensor<f64>], f: F) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let report = gradcheck(inputs, f, GradCheckOptions::default())
        .map_err(|e| TestCaseError::fail(format!("{what} {shapes:?}: {e}")))?;
    let total: usize = inputs.iter().map(Tensor::len).sum();
    prop_assert_eq!(report.checked, total);
    prop_assert!(
        report.passed(),
        "{} on shapes {:?}: {}",
        what,
        shapes,
        report
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// 1. Op families.

type Unary = for<'t> fn(Var<'t, f64>) -> Var<'t, f64>;

#[derive(Clone, Copy, Debug)]
enum Domain {
    Any,
    Positive,
    OffZero,
}

fn domain(d: Domain) -> BoxedStrategy<f64> {
    match d {
        Domain::Any => (-2.0..2.0).boxed(),
        Domain::Positive => (0.2..3.0).boxed(),
        Domain::OffZero => off_zero(0.05, 2.0).boxed(),
    }
}

const UNARY: &[(&str, Unary, Domain)] = &[
    ("neg", |x| -x, Domain::Any),
    ("exp", |x| x.exp(), Domain::Any),
    ("ln", |x| x.ln(), Domain::Positive),
    ("sqrt", |x| x.sqrt(), Domain::Positive),
    ("abs", |x| x.abs(), Domain::OffZero),
    ("sin", |x| x.sin(), Domain::Any),
    ("cos", |x| x.cos(), Domain::Any),
    ("tanh", |x| x.tanh(), Domain::Any),
    ("sinh", |x| x.sinh(), Domain::Any),
    ("cosh", |x| x.cosh(), Domain::Any),
    ("sigmoid", |x| x.sigmoid(), Domain::Any),
    ("relu", |x| x.relu(), Domain::OffZero),
    ("leaky_relu(0.1)", |x| x.leaky_relu(0.1), Domain::OffZero),
    ("gelu", |x| x.gelu(), Domain::Any),
    ("softplus", |x| x.softplus(), Domain::Any),
    ("powf(2.5)", |x| x.powf(2.5), Domain::Positive),
    ("powf(-1.5)", |x| x.powf(-1.5), Domain::Positive),
    ("powf(0)", |x| x.powf(0.0), Domain::Any),
    ("powi(0)", |x| x.powi(0), Domain::Any),
    ("powi(1)", |x| x.powi(1), Domain::Any),
    ("powi(3)", |x| x.powi(3), Domain::Any),
    ("powi(-2)", |x| x.powi(-2), Domain::OffZero),
];

type Binary = for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>;

const BINARY: &[(&str, Binary)] = &[
    ("add", |a, b| a + b),
    ("sub", |a, b| a - b),
    ("mul", |a, b| a * b),
    ("div", |a, b| a / b),
    ("maximum", |a, b| a.maximum(b)),
    ("minimum", |a, b| a.minimum(b)),
];

fn binary_case() -> impl Strategy<Value = (usize, Tensor<f64>, Tensor<f64>)> {
    (0..BINARY.len(), shape(0, 4))
        .prop_flat_map(|(op, out)| (Just(op), partner(out.clone()), partner(out)))
        .prop_flat_map(|(op, sa, sb)| {
            let (a, b): (BoxedStrategy<f64>, BoxedStrategy<f64>) = match BINARY[op].0 {
                "div" => ((-2.0..2.0).boxed(), off_zero(0.5, 2.0).boxed()),
                "maximum" | "minimum" => (on_grid(0.0).boxed(), on_grid(0.05).boxed()),
                _ => ((-2.0..2.0).boxed(), (-2.0..2.0).boxed()),
            };
            (Just(op), tensor(sa, a), tensor(sb, b))
        })
}

/// A permutation of `0..n` spread `0.1` apart with jitter below `0.01`: all values at
/// least `0.08` apart, so every slice has one maximum by a clear margin.
fn distinct(shape: Shape) -> impl Strategy<Value = Tensor<f64>> {
    let n = numel(&shape);
    (
        Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
        prop::collection::vec(-0.01f64..0.01, n),
    )
        .prop_map(move |(ks, jitter)| {
            let data = ks
                .iter()
                .zip(jitter)
                .map(|(&k, j)| (k as f64 - n as f64 / 2.0) * 0.1 + j)
                .collect();
            Tensor::new(&shape, data).unwrap()
        })
}

#[derive(Clone, Copy, Debug)]
enum Reduce {
    Sum,
    Mean,
    SumAxis,
    MeanAxis,
    MaxAxis,
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn unary_ops_match_finite_differences(
        (op, x) in (0..UNARY.len(), shape(0, 3))
            .prop_flat_map(|(op, s)| (Just(op), tensor(s, domain(UNARY[op].2))))
    ) {
        let (name, f, _) = UNARY[op];
        check(name, &[x], |_, v| f(v[0]))?;
    }

    #[test]
    fn broadcast_binary_ops_match_finite_differences((op, a, b) in binary_case()) {
        let (name, f) = BINARY[op];
        check(name, &[a, b], |_, v| f(v[0], v[1]))?;
    }
}

proptest! {
    #![proptest_config(config(40))]

    #[test]
    fn reductions_match_finite_differences(
        (op, axis, keepdim, x) in (
            prop::sample::select(vec![
                Reduce::Sum, Reduce::Mean, Reduce::SumAxis, Reduce::MeanAxis, Reduce::MaxAxis,
            ]),
            shape(1, 4),
        )
            .prop_flat_map(|(op, s)| {
                let nd = s.len() as isize;
                let values = match op {
                    Reduce::MaxAxis => distinct(s).boxed(),
                    _ => tensor(s, -2.0..2.0).boxed(),
                };
                (Just(op), -nd..nd, any::<bool>(), values)
            })
    ) {
        let what = format!("{op:?}(axis {axis}, keepdim {keepdim})");
        check(&what, &[x], |_, v| match op {
            Reduce::Sum => v[0].sum(),
            Reduce::Mean => v[0].mean(),
            Reduce::SumAxis => v[0].sum_axis(axis, keepdim),
            Reduce::MeanAxis => v[0].mean_axis(axis, keepdim),
            Reduce::MaxAxis => v[0].max_axis(axis, keepdim),
        })?;
    }

    #[test]
    fn matmul_matches_finite_differences(
        (a, b) in (1usize..=4, 1usize..=4, 1usize..=4, shape(0, 2))
            .prop_flat_map(|(m, k, n, batch)| (Just((m, k, n)), partner(batch.clone()), partner(batch)))
            .prop_flat_map(|((m, k, n), ba, bb)| {
                let sa = [ba, vec![m, k]].concat();
                let sb = [bb, vec![k, n]].concat();
                (tensor(sa, -2.0..2.0), tensor(sb, -2.0..2.0))
            })
    ) {
        check("matmul", &[a, b], |_, v| v[0].matmul(v[1]))?;
    }

    #[test]
    fn matmul_t_matches_finite_differences(
        (a, b) in (1usize..=4, 1usize..=4, 1usize..=4, shape(0, 2))
            .prop_flat_map(|(m, k, n, batch)| {
                let sa = [batch, vec![m, k]].concat();
                (tensor(sa, -2.0..2.0), tensor(vec![n, k], -2.0..2.0))
            })
    ) {
        check("matmul_t", &[a, b], |_, v| v[0].matmul_t(v[1]))?;
    }

    #[test]
    fn transpose_matches_finite_differences(
        (a, b, x) in shape(1, 4).prop_flat_map(|s| {
            let nd = s.len() as isize;
            (-nd..nd, -nd..nd, tensor(s, -2.0..2.0))
        })
    ) {
        check(&format!("transpose({a}, {b})"), &[x], |_, v| v[0].transpose(a, b))?;
    }

    #[test]
    fn reshape_matches_finite_differences(
        (to, x) in shape(0, 4).prop_flat_map(|s| {
            // Any arrangement of the same extents, with size-1 axes added or not.
            let dims = s.clone();
            let to = (Just(dims).prop_shuffle(), 0usize..3, any::<bool>())
                .prop_map(|(mut d, ones, flat)| {
                    if flat {
                        d = vec![numel(&d)];
                    }
                    for i in 0..ones {
                        d.insert(i % (d.len() + 1), 1);
                    }
                    d
                });
            (to, tensor(s, -2.0..2.0))
        })
    ) {
        // Squared after, so the gradient depends on where each element went.
        check(&format!("reshape to {to:?}"), &[x], |_, v| {
            let y = v[0].reshape(&to);
            y * y
        })?;
    }

    #[test]
    fn broadcast_to_matches_finite_differences(
        (to, x) in shape(0, 4)
            .prop_flat_map(|out| (Just(out.clone()), partner(out)))
            .prop_flat_map(|(out, from)| (Just(out), tensor(from, -2.0..2.0)))
    ) {
        check(&format!("broadcast_to {to:?}"), &[x], |_, v| v[0].broadcast_to(&to))?;
    }

    #[test]
    fn slice_matches_finite_differences(
        (axis, start, end, x) in shape(1, 4).prop_flat_map(|s| {
            let nd = s.len();
            (0..nd, Just(s))
        })
        .prop_flat_map(|(ax, s)| {
            let e = s[ax];
            (Just(ax), Just(s), 0..=e).prop_flat_map(move |(ax, s, start)| {
                let nd = s.len() as isize;
                let axis = prop_oneof![Just(ax as isize), Just(ax as isize - nd)];
                (axis, Just(start), start..=e, tensor(s, -2.0..2.0))
            })
        })
    ) {
        check(&format!("slice({axis}, {start}..{end})"), &[x], |_, v| {
            v[0].slice(axis, start, end)
        })?;
    }

    #[test]
    fn concat_matches_finite_differences(
        (axis, parts) in (shape(1, 3), 2usize..=3).prop_flat_map(|(s, k)| {
            let nd = s.len();
            (0..nd, Just(s), prop::collection::vec(1usize..=3, k))
        })
        .prop_flat_map(|(ax, s, extents)| {
            let parts: Vec<_> = extents
                .iter()
                .map(|&e| {
                    let mut p = s.clone();
                    p[ax] = e;
                    tensor(p, -2.0..2.0)
                })
                .collect();
            (Just(ax as isize - if ax % 2 == 0 { 0 } else { s.len() as isize }), parts)
        })
    ) {
        check(&format!("concat along {axis}"), &parts, |_, v| Var::concat(v, axis))?;
    }

    #[test]
    fn stack_matches_finite_differences(
        (axis, parts) in (shape(0, 3), 2usize..=3).prop_flat_map(|(s, k)| {
            let nd = s.len() as isize;
            (-(nd + 1)..=nd, prop::collection::vec(tensor(s, -2.0..2.0), k))
        })
    ) {
        check(&format!("stack along {axis}"), &parts, |_, v| Var::stack(v, axis))?;
    }

    #[test]
    fn gather_matches_finite_differences(
        (axis, index_shape, index, x) in shape(1, 3).prop_flat_map(|s| {
            let nd = s.len();
            (0..nd, Just(s))
        })
        .prop_flat_map(|(ax, s)| {
            // The index may be smaller than the operand off the axis, any length on it.
            let ishape: Vec<BoxedStrategy<usize>> = s
                .iter()
                .enumerate()
                .map(|(d, &e)| if d == ax { (1usize..=5).boxed() } else { (1..=e).boxed() })
                .collect();
            (Just(ax), Just(s), ishape)
        })
        .prop_flat_map(|(ax, s, ishape)| {
            let n = numel(&ishape);
            let extent = s[ax];
            (
                Just(ax as isize),
                Just(ishape),
                prop::collection::vec(0..extent, n),
                tensor(s, -2.0..2.0),
            )
        })
    ) {
        check(&format!("gather({axis}, {index_shape:?}, {index:?})"), &[x], |_, v| {
            v[0].gather(axis, &index_shape, &index)
        })?;
    }

    #[test]
    fn softmax_and_log_softmax_match_finite_differences(
        (log, axis, x) in (any::<bool>(), shape(1, 3)).prop_flat_map(|(log, s)| {
            let nd = s.len() as isize;
            (Just(log), -nd..nd, tensor(s, -3.0..3.0))
        })
    ) {
        let name = if log { "log_softmax" } else { "softmax" };
        check(&format!("{name}({axis})"), &[x], |_, v| {
            if log { v[0].log_softmax(axis) } else { v[0].softmax(axis) }
        })?;
    }

    #[test]
    fn cross_entropy_matches_finite_differences(
        (labels, x) in (1usize..=4, 1usize..=5).prop_flat_map(|(n, c)| {
            (prop::collection::vec(0..c, n), tensor(vec![n, c], -3.0..3.0))
        })
    ) {
        check(&format!("cross_entropy({labels:?})"), &[x], |_, v| v[0].cross_entropy(&labels))?;
    }

    #[test]
    fn mse_and_bce_match_finite_differences(
        (bce, x, t) in (any::<bool>(), shape(0, 3)).prop_flat_map(|(bce, s)| {
            let target = if bce { (0.0..=1.0).boxed() } else { (-2.0..2.0).boxed() };
            (Just(bce), tensor(s.clone(), -3.0..3.0), tensor(s, target))
        })
    ) {
        // Both operands are variables: the target's gradient is checked too.
        let name = if bce { "bce_with_logits" } else { "mse" };
        check(name, &[x, t], |_, v| {
            if bce { v[0].bce_with_logits(v[1]) } else { v[0].mse(v[1]) }
        })?;
    }
}

// ---------------------------------------------------------------------------------
// 2–4. Random programs.

/// The number of weights in the bank that binary ops, matmul and losses slice their
/// other operand from.
const BANK: usize = 32;

/// One step of a program. Each applies to whatever shape the value has then; a step
/// that does not fit (an axis op on a 0-d value, a product too large for the bank)
/// applies `tanh` instead, so every program is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    // Shape-preserving.
    Tanh,
    Sigmoid,
    Sin,
    Softplus,
    Gelu,
    ExpOfTanh,
    TimesTanh,
    MulBank,
    AddBank,
    DivBank,
    Softmax,
    LogSoftmax,
    // Shape-changing.
    SumAxis,
    MeanAxis,
    Sum,
    Mean,
    Transpose,
    Flatten,
    Unsqueeze,
    BroadcastUp,
    Slice,
    ConcatSin,
    StackBank,
    Gather,
    MatMulBank,
    MatMulTBank,
    Mse,
    Bce,
    CrossEntropy,
}

const STEPS: &[Step] = &[
    Step::Tanh,
    Step::Sigmoid,
    Step::Sin,
    Step::Softplus,
    Step::Gelu,
    Step::ExpOfTanh,
    Step::TimesTanh,
    Step::MulBank,
    Step::AddBank,
    Step::DivBank,
    Step::Softmax,
    Step::LogSoftmax,
    Step::SumAxis,
    Step::MeanAxis,
    Step::Sum,
    Step::Mean,
    Step::Transpose,
    Step::Flatten,
    Step::Unsqueeze,
    Step::BroadcastUp,
    Step::Slice,
    Step::ConcatSin,
    Step::StackBank,
    Step::Gather,
    Step::MatMulBank,
    Step::MatMulTBank,
    Step::Mse,
    Step::Bce,
    Step::CrossEntropy,
];

/// A program: steps with a parameter each (which axis, which bank slice, keepdim).
#[derive(Clone)]
struct Program {
    steps: Vec<(Step, u8)>,
    x: Tensor<f64>,
    bank: Tensor<f64>,
}

/// With the input's shape, which a tensor's `Debug` leaves out.
impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("steps", &self.steps)
            .field("x_shape", &self.x.shape())
            .field("x", &self.x.data())
            .field("bank", &self.bank.data())
            .finish()
    }
}

fn program() -> impl Strategy<Value = Program> {
    program_of(shape(0, 3))
}

/// A program on an input of a shape from `shapes`.
fn program_of(shapes: impl Strategy<Value = Shape>) -> impl Strategy<Value = Program> {
    (
        prop::collection::vec((prop::sample::select(STEPS), any::<u8>()), 2..=8),
        shapes.prop_flat_map(|s| tensor(s, -1.5..1.5)),
        tensor(vec![BANK], -1.0..1.0),
    )
        .prop_map(|(steps, x, bank)| Program { steps, x, bank })
}

/// The first `numel(shape)` weights of the bank, shaped.
fn from_bank<'t, T: Float>(bank: Var<'t, T>, shape: &[usize]) -> Var<'t, T> {
    bank.slice(0, 0, numel(shape)).reshape(shape)
}

/// A shape broadcasting to `shape` with some axes (bits of `p`) set to 1, small
/// enough for the bank.
fn bank_partner(shape: &[usize], p: u8) -> Vec<usize> {
    let mut s: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if p >> i & 1 == 1 { 1 } else { d })
        .collect();
    if p & 0x80 != 0 && !s.is_empty() {
        s.remove(0);
    }
    while numel(&s) > BANK {
        let i = (0..s.len()).max_by_key(|&i| s[i]).unwrap();
        s[i] = 1;
    }
    s
}

/// Runs `steps` from `x`, in `T`.
fn run<'t, T: Float>(steps: &[(Step, u8)], x: Var<'t, T>, bank: Var<'t, T>) -> Var<'t, T> {
    let mut h = x;
    for &(step, p) in steps {
        h = apply(step, p, h, bank).unwrap_or_else(|| h.tanh());
    }
    h
}

fn apply<'t, T: Float>(step: Step, p: u8, h: Var<'t, T>, bank: Var<'t, T>) -> Option<Var<'t, T>> {
    let shape: Vec<usize> = h.shape().to_vec();
    let nd = shape.len();
    let n = numel(&shape);
    let c = |v: f64| T::from_f64(v);
    let axis = || (nd > 0).then(|| p as usize % nd);
    Some(match step {
        Step::Tanh => h.tanh(),
        Step::Sigmoid => h.sigmoid(),
        Step::Sin => h.sin(),
        Step::Softplus => h.softplus(),
        Step::Gelu => h.gelu(),
        Step::ExpOfTanh => h.tanh().exp(),
        Step::TimesTanh => h * h.tanh(),
        Step::MulBank => h * from_bank(bank, &bank_partner(&shape, p)),
        Step::AddBank => h + from_bank(bank, &bank_partner(&shape, p)),
        Step::DivBank => {
            let q = from_bank(bank, &bank_partner(&shape, p));
            h / (q * q + c(1.0))
        }
        Step::Softmax => h.softmax(axis()? as isize),
        Step::LogSoftmax => h.log_softmax(axis()? as isize),
        Step::SumAxis => h.sum_axis(axis()? as isize, p & 0x40 != 0) * c(0.5),
        // Means of nothing are refused (an error, not NaN): the step is skipped.
        Step::MeanAxis => h
            .try_mean_axis(axis()? as isize - nd as isize, p & 0x40 != 0)
            .ok()?,
        Step::Sum => h.sum() * c(0.25),
        Step::Mean => h.try_mean().ok()?,
        Step::Transpose if nd >= 2 => {
            h.transpose(axis()? as isize, (p as usize / nd % nd) as isize)
        }
        Step::Flatten => h.reshape(&[n]),
        Step::Unsqueeze if nd < 4 => {
            let mut s = shape.clone();
            s.insert(p as usize % (nd + 1), 1);
            h.reshape(&s)
        }
        Step::BroadcastUp if nd < 4 && n * 3 <= 64 => {
            // Stretch a size-1 axis if there is one, else add a leading one.
            let mut s = shape.clone();
            match s.iter().position(|&d| d == 1) {
                Some(i) => s[i] = 2 + p as usize % 2,
                None => s.insert(0, 2 + p as usize % 2),
            }
            h.broadcast_to(&s)
        }
        Step::Slice => {
            let ax = axis()?;
            let e = shape[ax];
            if e < 2 {
                return None;
            }
            let start = (p as usize / 4) % e;
            let end = start + 1 + (p as usize / 16) % (e - start);
            h.slice(ax as isize, start, end)
        }
        Step::ConcatSin if nd > 0 && n * 2 <= 64 => Var::concat(&[h, h.sin()], axis()? as isize),
        Step::StackBank if n <= BANK && n * 2 <= 64 => {
            let other = from_bank(bank, &shape);
            Var::stack(&[h, other], (p as usize % (nd + 1)) as isize)
        }
        Step::Gather => {
            let ax = axis()?;
            let e = shape[ax];
            if e == 0 {
                return None;
            }
            let index: Vec<usize> = (0..n)
                .map(|i| (i * (p as usize | 1) + p as usize) % e)
                .collect();
            h.gather(ax as isize, &shape, &index)
        }
        Step::MatMulBank => {
            let h = if nd < 2 { h.reshape(&[1, n]) } else { h };
            let k = *h.shape().last().unwrap();
            let cols = 1 + p as usize % 3;
            if k * cols > BANK {
                return None;
            }
            h.matmul(from_bank(bank, &[k, cols])) * c(1.0 / k.max(1) as f64)
        }
        Step::MatMulTBank => {
            // `x Wᵀ` with W in PyTorch's [out, in] layout, as `Linear` computes it.
            let h = if nd < 2 { h.reshape(&[1, n]) } else { h };
            let k = *h.shape().last().unwrap();
            let rows = 1 + p as usize % 3;
            if k * rows > BANK {
                return None;
            }
            h.matmul_t(from_bank(bank, &[rows, k])) * c(1.0 / k.max(1) as f64)
        }
        Step::Mse if n <= BANK => h.try_mse(from_bank(bank, &shape)).ok()?,
        Step::Bce if n <= BANK => h
            .try_bce_with_logits(from_bank(bank, &shape).sigmoid())
            .ok()?,
        Step::CrossEntropy if nd == 2 && n > 0 => {
            let labels: Vec<usize> = (0..shape[0]).map(|i| (i + p as usize) % shape[1]).collect();
            h.cross_entropy(&labels)
        }
        _ => return None,
    })
}

/// The output of `prog` on a fresh tape, for a cotangent of its shape.
fn output_shape(prog: &Program) -> Vec<usize> {
    let tape = Tape::<f64>::new();
    let out = run(&prog.steps, tape.var(&prog.x), tape.var(&prog.bank));
    out.shape().to_vec()
}

/// Deterministic values in (-1, 1) for a direction or cotangent.
fn probe(shape: &[usize], salt: f64) -> Tensor<f64> {
    Tensor::from_fn(shape, |i| {
        ((i as f64 + 1.0) * (0.618_033_988_749_895 + salt)).fract() * 2.0 - 1.0
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn random_compositions_match_finite_differences(prog in program()) {
        let steps = prog.steps.clone();
        check(&format!("{steps:?}"), &[prog.x.clone(), prog.bank.clone()], |tape, v| {
            let _ = tape;
            run(&steps, v[0], v[1])
        })?;
    }

    #[test]
    fn the_adjoint_identity_holds(prog in program()) {
        let out_shape = output_shape(&prog);
        let u = probe(&out_shape, 0.1);
        let (vx, vb) = (probe(prog.x.shape(), 0.2), probe(prog.bank.shape(), 0.3));
        // <v, Jᵀu> from the backward pass.
        let tape = Tape::<f64>::new();
        let (x, bank) = (tape.var(&prog.x), tape.var(&prog.bank));
        let out = run(&prog.steps, x, bank);
        let grads = backward_with(out, &u).unwrap();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let terms: Vec<f64> = [(vx.data(), grads.wrt(x).data()), (vb.data(), grads.wrt(bank).data())]
            .iter()
            .flat_map(|(v, g)| v.iter().zip(g.iter()).map(|(a, b)| a * b))
            .collect();
        let vjp: f64 = terms.iter().sum();
        // <Jv, u> from a central difference along v.
        let h = 1e-6;
        let eval = |t: f64| -> Vec<f64> {
            let tape = Tape::<f64>::new();
            let xs = Tensor::new(prog.x.shape(), prog.x.data().iter().zip(vx.data()).map(|(a, b)| a + t * b).collect()).unwrap();
            let bs = Tensor::new(prog.bank.shape(), prog.bank.data().iter().zip(vb.data()).map(|(a, b)| a + t * b).collect()).unwrap();
            run(&prog.steps, tape.var(xs), tape.var(bs)).value().data().to_vec()
        };
        let (up, down) = (eval(h), eval(-h));
        let jv: Vec<f64> = up.iter().zip(&down).map(|(a, b)| (a - b) / (2.0 * h)).collect();
        let jvp = dot(&jv, u.data());
        // The scale: the sum's terms before cancellation.
        let scale = 1.0 + terms.iter().map(|t| t.abs()).sum::<f64>();
        prop_assert!(
            (jvp - vjp).abs() <= 1e-6 * scale,
            "<Jv, u> = {jvp:e} but <v, Jᵀu> = {vjp:e} (scale {scale:e}) for {:?}",
            prog.steps
        );
    }

    #[test]
    fn f32_and_f64_give_the_same_gradients(prog in program()) {
        // Inputs rounded to f32, so both precisions start from the same numbers.
        let round = |t: &Tensor<f64>| t.map(|v| v as f32 as f64);
        let (x64, b64) = (round(&prog.x), round(&prog.bank));
        let u = probe(&output_shape(&prog), 0.1).map(|v| v as f32 as f64);

        let tape = Tape::<f64>::new();
        let (x, bank) = (tape.var(&x64), tape.var(&b64));
        let out = run(&prog.steps, x, bank);
        let y64 = out.value();
        let g = backward_with(out, &u).unwrap();
        let (gx64, gb64) = (g.wrt(x).to_tensor(), g.wrt(bank).to_tensor());

        let tape32 = Tape::<f32>::new();
        let (x, bank) = (tape32.var(x64.cast::<f32>()), tape32.var(b64.cast::<f32>()));
        let out = run(&prog.steps, x, bank);
        let y32 = out.value();
        let g = backward_with(out, &u.cast::<f32>()).unwrap();
        let (gx32, gb32) = (g.wrt(x).to_tensor(), g.wrt(bank).to_tensor());

        for (what, a, b) in [("output", &y32, &y64), ("dx", &gx32, &gx64), ("dbank", &gb32, &gb64)] {
            prop_assert_eq!(a.shape(), b.shape());
            // f32 rounding, relative to the tensor's largest magnitude.
            let scale = 1.0 + b.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (i, (&a, &b)) in a.data().iter().zip(b.data()).enumerate() {
                prop_assert!(
                    (a as f64 - b).abs() <= 1e-4 * scale,
                    "{} element {}: f32 {:e} vs f64 {:e} for {:?}", what, i, a, b, prog.steps
                );
            }
        }
    }
}

/// `c[i, j] = Σ_l a[i, l] · b[l, j]` by the textbook loop, for `a: [m, k]`, `b: [k, n]`
/// given by element functions.
fn naive_product(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> f64,
    b: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|l| a(i, l) * b(l, j)).sum();
        }
    }
    c
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (g - w).abs() <= 1e-11 * (1.0 + w.abs()),
            "{} element {}: {} vs {}",
            what,
            i,
            g,
            w
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(4))]

    /// Products large enough for the parallel GEMM (`m·n·k >= 2²⁰`, split over rayon's
    /// pool), forward and backward, against the textbook loop in `f64`: `matmul`
    /// (`ga = g bᵀ`, `gb = aᵀ g`) and `matmul_t` with an `[out, in]` weight
    /// (`ga = g w`, `gw = gᵀ a`).
    #[test]
    fn large_products_and_their_gradients_match_the_textbook_loop(
        (m, k, n, a, b, g) in (120usize..=150, 80usize..=100, 120usize..=150)
            .prop_flat_map(|(m, k, n)| (
                Just(m), Just(k), Just(n),
                tensor(vec![m, k], -1.0..1.0),
                tensor(vec![k, n], -1.0..1.0),
                tensor(vec![m, n], -1.0..1.0),
            ))
    ) {
        let (ad, bd, gd) = (a.data(), b.data(), g.data());
        let tape = Tape::<f64>::new();
        let (av, bv) = (tape.var(&a), tape.var(&b));
        let y = av.matmul(bv);
        assert_close("a @ b", y.value().data(), &naive_product(m, k, n, |i, l| ad[i * k + l], |l, j| bd[l * n + j]))?;
        let grads = backward_with(y, &g).unwrap();
        assert_close("ga", grads.wrt(av).data(), &naive_product(m, n, k, |i, j| gd[i * n + j], |j, l| bd[l * n + j]))?;
        assert_close("gb", grads.wrt(bv).data(), &naive_product(k, m, n, |l, i| ad[i * k + l], |i, j| gd[i * n + j]))?;

        // The same weight as [out, in] = bᵀ, through matmul_t.
        let w = Tensor::from_fn(&[n, k], |idx| bd[(idx % k) * n + idx / k]);
        let tape = Tape::<f64>::new();
        let (av, wv) = (tape.var(&a), tape.var(&w));
        let y = av.matmul_t(wv);
        assert_close("a @ wᵀ", y.value().data(), &naive_product(m, k, n, |i, l| ad[i * k + l], |l, j| bd[l * n + j]))?;
        let grads = backward_with(y, &g).unwrap();
        assert_close("ga (matmul_t)", grads.wrt(av).data(), &naive_product(m, n, k, |i, j| gd[i * n + j], |j, l| bd[l * n + j]))?;
        // gw[j, l] = Σ_i g[i, j] a[i, l]
        assert_close("gw", grads.wrt(wv).data(), &naive_product(n, m, k, |j, i| gd[i * n + j], |i, l| ad[i * k + l]))?;
    }
}

/// The case the property below shrank to, kept as a plain test: `broadcast_to` from a
/// shape with no elements panicked in backward (`chunks_exact(0)` in
/// `kernels::sum_to_shape_acc`).
#[test]
fn broadcast_to_from_an_empty_tensor_has_an_empty_gradient() {
    for (from, to) in [
        (vec![0], vec![2, 0]),
        (vec![1, 0], vec![3, 0]),
        (vec![0, 4, 0], vec![2, 0, 4, 0]),
    ] {
        let tape = Tape::<f64>::new();
        let x = tape.var(Tensor::<f64>::zeros(&from));
        let y = x.broadcast_to(&to);
        let grads = backward_with(y, &Tensor::zeros(&to)).unwrap();
        assert_eq!(grads.wrt(x).shape(), from.as_slice());
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Tensors with no elements (an axis of extent 0) go through every op of the table
    /// forward and backward: no panic, and every gradient has its input's shape. (This
    /// found `broadcast_to` from a shape with no elements panicking in backward.)
    #[test]
    fn programs_on_empty_tensors_run_forward_and_backward(
        prog in program_of(
            prop::collection::vec(0usize..=3, 1..=3).prop_filter("an empty tensor", |s| numel(s) == 0)
        )
    ) {
        let tape = Tape::<f64>::new();
        let (x, bank) = (tape.var(&prog.x), tape.var(&prog.bank));
        let out = run(&prog.steps, x, bank);
        let u = probe(&out.shape(), 0.1);
        let grads = backward_with(out, &u).unwrap();
        prop_assert_eq!(grads.wrt(x).shape(), prog.x.shape());
        prop_assert_eq!(grads.wrt(bank).shape(), prog.bank.shape());
        // Gradients are finite. (Programs with a mean are let off: a mean over nothing
        // gave NaN, as in PyTorch; it is now refused, and the step skipped.)
        let means = prog.steps.iter().any(|(s, _)| matches!(s, Step::Mean | Step::MeanAxis | Step::Mse | Step::Bce));
        if !means {
            prop_assert!(grads.wrt(bank).data().iter().all(|v| v.is_finite()), "{:?}", prog.steps);
        }
    }
}
