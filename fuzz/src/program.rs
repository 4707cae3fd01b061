//! Random programs from bytes, run through the engine's fallible API, with the checks
//! the fuzz target (`fuzz/fuzz_targets/programs.rs`) and the corpus replay
//! (`tests/fuzz_regressions.rs`) share. One copy: both include this file with
//! `#[path = "..."] mod program;`.
//!
//! # Decoding
//!
//! Bytes are read in order; past the end every byte reads as 0 (so any input, the empty
//! one included, is a program). Byte 0 is the header: bit 0 picks `f32` over `f64`, bit
//! 1 allows NaN and ±inf among leaf values ("special mode"), bit 2 turns anomaly
//! detection on. Then 1 to 4 leaves of 0 to 3 axes, extents 0 to 4 (size-0 and size-1
//! axes are common), each a variable or a constant, with values drawn from a moderate
//! range, a table of small and exact numbers, and a table of extremes (`±1e300`,
//! `±1e-300`, `f64::MAX`, the smallest subnormal, `1e30`, ...; in `f32` anything past
//! `f32`'s range is clamped to `±1e38` unless in special mode). Then up to
//! [`MAX_OPS`] ops, each drawn from the whole op set (every element-wise, reduction,
//! matmul, shape, softmax and loss op), plus "new leaf", "leaf on another tape" and
//! "reset the tape" (which makes every handle so far stale). Operands are picked from
//! every value made so far; axes, ranges, indices, labels and shapes are drawn from the
//! bytes, often invalid on purpose (axes in `-4..=4`, shapes with extents up to
//! `2^63` and `usize::MAX`). Binary ops, matmul, matmul_t, concat, stack and the losses
//! sometimes get a fresh operand of a compatible shape, so valid programs get deep.
//! Every op goes through its `try_` form. Finally a backward pass, chosen by a byte:
//! `backward` (on any output: a non-scalar one must be refused), `sum` then `backward`,
//! `backward_with` a cotangent of the output's shape, `backward_with` a cotangent of a
//! drawn (usually wrong) shape, or `backward_into` twice into one reused `Gradients`.
//!
//! Ops whose result would be large are not called: a growth op (binary, matmul,
//! concat, stack) whose operands span more than 256 elements, an axis reduction of an
//! empty operand that spans more than 4096, or a *valid* `broadcast_to` to more than
//! 4096 elements. An operand's span counts its zero extents as 1: an empty
//! `[2^32, 0]` holds nothing, but summing its empty axis makes `2^32` zeros. An allocation of `2^40` elements that
//! the program asked for is not a bug; the checks below are about everything else.
//!
//! # What is checked
//!
//! 1. **No panic, ever**, in any op, in backward, or in reading values and gradients.
//! 2. **Every refusal names its op**: an `Err` from `try_<op>` displays as
//!    `"<op>: ..."` (the op's API name: `add`, `sum_axis`, `matmul_t`, ...); an `Err`
//!    from the backward pass starts with `"backward"` (`backward:` or
//!    `backward_with:`).
//! 3. **Gradients have their node's shape**, for every node that has one.
//! 4. **Finite gradients where they must be.** Asserted only when *all* of these hold
//!    (otherwise the program still runs, and 1 to 3 still apply):
//!    - the element type is `f64`;
//!    - every value on the output's tape is finite with `|v| <= 1e6`;
//!    - the cotangent is finite with `|v| <= 4` (the seed `1` for `backward`);
//!    - at most [`CHECKED_OPS`] ops were recorded, no reset happened;
//!    - no op saw its operand near a pole of its derivative: `div` had every divisor
//!      `|b| >= 1e-3`; `ln` and `sqrt` every input `>= 1e-3`; `powi(n < 0)` every
//!      `|x| >= 0.1`; `powf(p)` with `p` not in `{0, 1, 2, 3}` every `|x| >= 0.1`.
//!
//!    Why that suffices: every other op has a derivative bounded on finite inputs by
//!    `max(1, |its input or output|)` times a constant (kinks, as in `abs`, `relu`,
//!    `max_axis`, `maximum`, get the rules' 0, 1 or 1/2), and with the pole margins
//!    above each local factor is at most about `1e9`. A node's gradient is a sum over
//!    at most 16 consumers of sums over at most 4096 elements, so each level of depth
//!    multiplies the bound by at most `16 · 4096 · 1e9 < 1e14`; 16 levels and a seed
//!    of 4 stay below `1e230`, far from `f64::MAX`. A non-finite gradient under these
//!    conditions is a bug in a backward rule or in the walk.
//!
//!    With anomaly detection on, such a program's backward must also succeed.

use descent::backprop::{Gradients, backward_into};
use descent::tape::NodeId;
use descent::tensor::broadcast_shapes;
use descent::{Float, Tape, Tensor, Var, backward, backward_with};

/// Ops drawn per program at most.
pub const MAX_OPS: usize = 24;
/// Programs with more recorded ops than this are not checked for finite gradients.
pub const CHECKED_OPS: usize = 16;
/// Growth ops are skipped when an operand has more elements than this.
const GROWTH_OPERAND_CAP: usize = 256;
/// A valid `broadcast_to` to more elements than this is skipped.
const BROADCAST_CAP: usize = 4096;

/// The input, read a byte at a time; past the end every byte is 0.
struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// An axis in `-4..=4`: valid for most operands about half the time.
    fn axis(&mut self) -> isize {
        self.below(9) as isize - 4
    }
    /// A leaf extent: 0 to 4, small ones most often.
    fn extent(&mut self) -> usize {
        [0, 1, 1, 2, 2, 3, 3, 4][self.below(8)]
    }
    /// An extent for a shape argument: usually small, sometimes enormous.
    fn arg_extent(&mut self) -> usize {
        [
            0,
            1,
            2,
            3,
            4,
            5,
            8,
            1 << 16,
            1 << 32,
            1 << 63,
            usize::MAX,
            1,
            2,
            3,
            1,
            2,
        ][self.below(16)]
    }
    fn shape(&mut self, max_ndim: usize) -> Vec<usize> {
        let nd = self.below(max_ndim + 1);
        (0..nd).map(|_| self.extent()).collect()
    }
    fn arg_shape(&mut self) -> Vec<usize> {
        let nd = self.below(5);
        (0..nd).map(|_| self.arg_extent()).collect()
    }
    /// A value in `[-4, 4)`, for cotangents.
    fn moderate(&mut self) -> f64 {
        (f64::from(self.u8()) - 128.0) / 32.0
    }
    /// A leaf value.
    fn value(&mut self, special: bool) -> f64 {
        match self.below(8) {
            0..=3 => self.moderate(),
            4 => [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e-3][self.below(8)],
            5 => [
                1e300,
                -1e300,
                1e-300,
                -1e-300,
                f64::MAX,
                f64::MIN_POSITIVE,
                5e-324,
                1e30,
                -1e30,
                1e-30,
                88.0,
                710.0,
                -745.0,
                1e6,
                -1e6,
                40.0,
            ][self.below(16)],
            6 if special => [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0][self.below(4)],
            6 => f64::from(self.u8() as i8),
            _ => {
                let bits = u64::from_le_bytes([
                    self.u8(),
                    self.u8(),
                    self.u8(),
                    self.u8(),
                    self.u8(),
                    self.u8(),
                    self.u8(),
                    self.u8(),
                ]);
                let v = f64::from_bits(bits);
                if v.is_finite() || special { v } else { 0.0 }
            }
        }
    }
}

/// Runs the program the bytes describe and checks it (see the module docs). Panics
/// when a check fails.
pub fn run(data: &[u8]) {
    let mut d = Bytes { data, pos: 0 };
    let header = d.u8();
    if header & 1 == 0 {
        run_typed::<f64>(&mut d, header);
    } else {
        run_typed::<f32>(&mut d, header);
    }
}

/// Asserts that `r` is `Ok` or an error whose message starts with `"<op>:"`, and
/// returns the value if any.
fn expect_named<V, E: std::fmt::Display>(op: &str, r: Result<V, E>) -> Option<V> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(op) && msg[op.len()..].starts_with(':'),
                "an error from `{op}` does not name it: {msg}"
            );
            None
        }
    }
}

/// The shape of a live handle; `[]` for a stale one (whose ops must then fail).
fn shape_of<T: Float>(v: Var<'_, T>) -> Vec<usize> {
    if v.validate("shape").is_ok() {
        v.shape().to_vec()
    } else {
        Vec::new()
    }
}

fn numel_of<T: Float>(v: Var<'_, T>) -> usize {
    checked_numel(&shape_of(v)).unwrap_or(usize::MAX)
}

/// The element count with every zero extent taken as 1: a bound on what an op that
/// reduces or contracts an empty axis can make of `v`.
fn span_of<T: Float>(v: Var<'_, T>) -> usize {
    checked_span(&shape_of(v)).unwrap_or(usize::MAX)
}

/// The element count of `shape` with every zero extent taken as 1, `None` when it
/// does not fit in `usize` (the engine refuses such a shape even when it is empty).
fn checked_span(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &e| a.checked_mul(e.max(1)))
}

/// The number of elements of `shape`, `None` when it does not fit in `usize`.
fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &e| a.checked_mul(e))
}

/// Bookkeeping for the finiteness check.
struct Checks {
    special: bool,
    /// No op saw an operand near a pole of its derivative.
    poles_clear: bool,
    recorded: usize,
    reset: bool,
}

impl Checks {
    /// Clears `poles_clear` unless every value of `v` satisfies `ok`.
    fn guard<T: Float>(&mut self, v: Var<'_, T>, ok: impl Fn(f64) -> bool) {
        if v.validate("guard").is_ok() && !v.value().data().iter().all(|x| ok(x.as_f64())) {
            self.poles_clear = false;
        }
    }
}

fn leaf<'t, T: Float>(tape: &'t Tape<T>, d: &mut Bytes<'_>, special: bool) -> Var<'t, T> {
    let shape = d.shape(3);
    leaf_of_shape(tape, d, special, &shape)
}

fn leaf_of_shape<'t, T: Float>(
    tape: &'t Tape<T>,
    d: &mut Bytes<'_>,
    special: bool,
    shape: &[usize],
) -> Var<'t, T> {
    let n: usize = shape.iter().product();
    let data: Vec<T> = (0..n)
        .map(|_| {
            let v = d.value(special);
            let t = T::from_f64(v);
            if !special && !t.as_f64().is_finite() {
                T::from_f64(v.signum() * 1e38)
            } else {
                t
            }
        })
        .collect();
    let t = Tensor::new(shape, data).expect("the data has the shape's length");
    if d.bool() {
        tape.var(t)
    } else {
        tape.constant(t)
    }
}

/// A shape `broadcast_to` might take from `x`'s shape.
fn broadcast_target(d: &mut Bytes<'_>, x: &[usize]) -> Vec<usize> {
    match d.below(3) {
        0 => {
            let mut s: Vec<usize> = (0..d.below(3)).map(|_| d.extent()).collect();
            s.extend_from_slice(x);
            s
        }
        1 => x
            .iter()
            .map(|&e| if e == 1 { d.arg_extent() } else { e })
            .collect(),
        _ => d.arg_shape(),
    }
}

/// A shape `reshape` might take from `x`'s shape.
fn reshape_target(d: &mut Bytes<'_>, x: &[usize]) -> Vec<usize> {
    let n: usize = x.iter().product();
    match d.below(4) {
        0 => vec![n],
        1 => vec![1, n],
        2 => x.iter().rev().copied().collect(),
        _ => d.arg_shape(),
    }
}

fn run_typed<T: Float>(d: &mut Bytes<'_>, header: u8) {
    let special = header & 2 != 0;
    let tape = Tape::<T>::new();
    let other = Tape::<T>::new();
    tape.set_anomaly_detection(header & 4 != 0);
    other.set_anomaly_detection(header & 4 != 0);
    let mut checks = Checks {
        special,
        poles_clear: true,
        recorded: 0,
        reset: false,
    };

    let mut pool: Vec<Var<'_, T>> = Vec::new();
    for _ in 0..1 + d.below(4) {
        pool.push(leaf(&tape, d, special));
    }

    for _ in 0..MAX_OPS {
        if d.done() {
            break;
        }
        let code = d.below(46);
        let x = pick(d, &pool);
        let made = step(d, &tape, &other, &pool, &mut checks, code, x);
        if let Some(v) = made {
            checks.recorded += 1;
            pool.push(v);
        }
    }

    let out = pick(d, &pool);
    run_backward(d, out, &checks);
}

/// An operand: the most recent values are the likeliest (and past the end of the
/// input, it is the last value made).
fn pick<'t, T: Float>(d: &mut Bytes<'_>, pool: &[Var<'t, T>]) -> Var<'t, T> {
    pool[pool.len() - 1 - d.below(pool.len())]
}

/// One op. Returns the value it made, if any.
#[allow(clippy::too_many_arguments)]
fn step<'t, T: Float>(
    d: &mut Bytes<'_>,
    tape: &'t Tape<T>,
    other: &'t Tape<T>,
    pool: &[Var<'t, T>],
    checks: &mut Checks,
    code: usize,
    x: Var<'t, T>,
) -> Option<Var<'t, T>> {
    let special = checks.special;
    // An operand for a binary op, matmul or a loss: one made so far, or a fresh leaf of
    // a shape that fits `x`.
    let partner = |d: &mut Bytes<'_>, fit: &dyn Fn(&mut Bytes<'_>, &[usize]) -> Vec<usize>| {
        if d.below(3) == 0 {
            let s = fit(d, &shape_of(x));
            // A fresh leaf is data the program must hold: only of modest size (x itself
            // may be a huge broadcast, which a leaf of its shape would have to fill).
            if checked_span(&s).is_some_and(|n| n <= 1 << 16) {
                leaf_of_shape(tape, d, special, &s)
            } else {
                pick(d, pool)
            }
        } else {
            pick(d, pool)
        }
    };
    let small = |vs: &[Var<'t, T>]| vs.iter().all(|&v| span_of(v) <= GROWTH_OPERAND_CAP);
    // Reducing an empty axis fills the rest of the shape, which may be enormous.
    let reduction_fits = numel_of(x) != 0 || span_of(x) <= BROADCAST_CAP;
    match code {
        0 => expect_named("neg", x.try_neg()),
        1 => expect_named("exp", x.try_exp()),
        2 => {
            let r = expect_named("ln", x.try_ln());
            checks.guard(x, |v| v >= 1e-3);
            r
        }
        3 => {
            let r = expect_named("sqrt", x.try_sqrt());
            checks.guard(x, |v| v >= 1e-3);
            r
        }
        4 => expect_named("abs", x.try_abs()),
        5 => expect_named("sin", x.try_sin()),
        6 => expect_named("cos", x.try_cos()),
        7 => expect_named("tanh", x.try_tanh()),
        8 => expect_named("sinh", x.try_sinh()),
        9 => expect_named("cosh", x.try_cosh()),
        10 => expect_named("sigmoid", x.try_sigmoid()),
        11 => expect_named("relu", x.try_relu()),
        12 => {
            let alpha = [0.01, 0.2, -1.0, 0.0, 3.0, f64::NAN][d.below(if special { 6 } else { 5 })];
            expect_named("leaky_relu", x.try_leaky_relu(alpha))
        }
        13 => expect_named("gelu", x.try_gelu()),
        14 => expect_named("softplus", x.try_softplus()),
        15 => {
            let table = [
                0.0,
                0.5,
                -0.5,
                1.5,
                2.0,
                -1.0,
                3.0,
                1.0 / 3.0,
                f64::INFINITY,
                f64::NAN,
            ];
            let p = table[d.below(if special { 10 } else { 8 })];
            let r = expect_named("powf", x.try_powf(p));
            if !p.is_finite() {
                checks.poles_clear = false;
            } else if ![0.0, 1.0, 2.0, 3.0].contains(&p) {
                checks.guard(x, |v| v.abs() >= 0.1);
            }
            r
        }
        16 => {
            let n = [0, 1, 2, 3, -1, -2, -3, i32::MAX, i32::MIN][d.below(9)];
            let r = expect_named("powi", x.try_powi(n));
            if n < 0 {
                checks.guard(x, |v| v.abs() >= 0.1);
            }
            r
        }
        17..=22 => {
            // A partner of a suffix of x's shape, or of x's shape with 1s.
            let y = partner(d, &|d, s| {
                let keep = d.below(s.len() + 1);
                s[keep..]
                    .iter()
                    .map(|&e| if d.below(4) == 0 { 1 } else { e })
                    .collect()
            });
            let (a, b) = if d.bool() { (x, y) } else { (y, x) };
            if !small(&[a, b]) {
                return None;
            }
            match code {
                17 => expect_named("add", a.try_add(b)),
                18 => expect_named("sub", a.try_sub(b)),
                19 => expect_named("mul", a.try_mul(b)),
                20 => {
                    let r = expect_named("div", a.try_div(b));
                    checks.guard(b, |v| v.abs() >= 1e-3);
                    r
                }
                21 => expect_named("maximum", a.try_maximum(b)),
                _ => expect_named("minimum", a.try_minimum(b)),
            }
        }
        23 => expect_named("sum", x.try_sum()),
        24 => expect_named("mean", x.try_mean()),
        25 => {
            let (axis, keep) = (d.axis(), d.bool());
            if !reduction_fits {
                return None;
            }
            expect_named("sum_axis", x.try_sum_axis(axis, keep))
        }
        26 => {
            let (axis, keep) = (d.axis(), d.bool());
            if !reduction_fits {
                return None;
            }
            expect_named("mean_axis", x.try_mean_axis(axis, keep))
        }
        27 => {
            let (axis, keep) = (d.axis(), d.bool());
            if !reduction_fits {
                return None;
            }
            expect_named("max_axis", x.try_max_axis(axis, keep))
        }
        28 | 29 => {
            let t = code == 29;
            // A partner [k, n] (or [n, k] for matmul_t) that fits x's last axis.
            let y = partner(d, &|d, s| {
                let k = s.last().copied().unwrap_or(1);
                let n = d.extent();
                let mut out = if t { vec![n, k] } else { vec![k, n] };
                if !t && d.below(4) == 0 {
                    out.insert(0, d.extent());
                }
                out
            });
            if !small(&[x, y]) {
                return None;
            }
            if t {
                expect_named("matmul_t", x.try_matmul_t(y))
            } else {
                expect_named("matmul", x.try_matmul(y))
            }
        }
        30 => {
            let (a, b) = (d.axis(), d.axis());
            expect_named("transpose", x.try_transpose(a, b))
        }
        31 => {
            let s = reshape_target(d, &shape_of(x));
            expect_named("reshape", x.try_reshape(&s))
        }
        32 => {
            let xs = shape_of(x);
            let s = broadcast_target(d, &xs);
            let valid = broadcast_shapes(&xs, &s).as_deref() == Some(&s[..]);
            if valid && checked_numel(&s).is_none_or(|n| n > BROADCAST_CAP) && !s.contains(&0) {
                return None;
            }
            expect_named("broadcast_to", x.try_broadcast_to(&s))
        }
        33 => {
            let axis = d.axis();
            let (start, end) = (d.below(6), d.below(6));
            expect_named("slice", x.try_slice(axis, start, end))
        }
        34 => {
            let axis = d.axis();
            let mut ishape = shape_of(x);
            for e in ishape.iter_mut() {
                match d.below(6) {
                    0 => *e = d.arg_extent(),
                    1 => *e = e.saturating_sub(1),
                    _ => {}
                }
            }
            if d.below(8) == 0 {
                ishape.push(1);
            }
            let n = match checked_numel(&ishape) {
                Some(n) if n <= 256 && d.below(8) != 0 => n,
                _ => d.below(8),
            };
            let index: Vec<usize> = (0..n)
                .map(|_| [0, 1, 2, 0, 1, 3, 4, 9][d.below(8)])
                .collect();
            expect_named("gather", x.try_gather(axis, &ishape, &index))
        }
        35 | 36 => {
            let count = d.below(4);
            let mut parts = Vec::with_capacity(count);
            for i in 0..count {
                if i > 0 && d.below(2) == 0 {
                    // Same shape as x: always joins (stack) or joins on any axis (concat).
                    let s = shape_of(x);
                    parts.push(leaf_of_shape(tape, d, special, &s));
                } else if i == 0 {
                    parts.push(x);
                } else {
                    parts.push(pick(d, pool));
                }
            }
            if !small(&parts) {
                return None;
            }
            let axis = d.axis();
            if code == 35 {
                expect_named("concat", Var::try_concat(&parts, axis))
            } else {
                expect_named("stack", Var::try_stack(&parts, axis))
            }
        }
        37 => {
            let axis = d.axis();
            expect_named("softmax", x.try_softmax(axis))
        }
        38 => {
            let axis = d.axis();
            expect_named("log_softmax", x.try_log_softmax(axis))
        }
        39 => {
            let rows = shape_of(x).first().copied().unwrap_or(0);
            // A caller holds one label per row; a program whose logits have more rows
            // than any label list could (an empty tensor with a huge extent) gets a
            // short, wrong-length list instead, which must be refused.
            let n = if d.below(4) == 0 || rows > 4096 {
                d.below(5)
            } else {
                rows
            };
            let labels: Vec<usize> = (0..n)
                .map(|_| [0, 1, 2, 0, 1, 3, 4, 7][d.below(8)])
                .collect();
            expect_named("cross_entropy", x.try_cross_entropy(&labels))
        }
        40 | 41 => {
            let t = partner(d, &|_, s| s.to_vec());
            if code == 40 {
                expect_named("mse", x.try_mse(t))
            } else {
                expect_named("bce_with_logits", x.try_bce_with_logits(t))
            }
        }
        42 => Some(leaf(tape, d, special)),
        43 => Some(leaf(other, d, special)),
        44 => {
            // Rare on purpose: every handle so far goes stale.
            if d.u8() == 0xA5 {
                tape.reset();
                checks.reset = true;
            }
            None
        }
        _ => {
            // An operator form with a number, through the fallible API: x op constant.
            let c = tape.constant(Tensor::scalar(T::from_f64(d.value(special))));
            expect_named("mul", x.try_mul(c))
        }
    }
}

/// The backward pass, its checks, and the finiteness check.
fn run_backward<T: Float>(d: &mut Bytes<'_>, out: Var<'_, T>, checks: &Checks) {
    let mode = d.below(5);
    let live = out.validate("backward").is_ok();
    let out_shape = shape_of(out);
    let mut cotangent_ok = true;
    let (grads, target) = match mode {
        0 => (expect_named_prefix(backward(out)), out),
        1 => match expect_named("sum", out.try_sum()) {
            Some(s) => (expect_named_prefix(backward(s)), s),
            None => return,
        },
        2 | 3 => {
            let shape = if mode == 2 || !live {
                out_shape.clone()
            } else {
                d.arg_shape()
            };
            // A wrong shape may be enormous: build only cotangents of modest size.
            let Some(n) = checked_numel(&shape).filter(|&n| n <= 1 << 16) else {
                return;
            };
            let data: Vec<T> = (0..n)
                .map(|_| {
                    let v = if checks.special && d.below(8) == 0 {
                        f64::NAN
                    } else {
                        d.moderate()
                    };
                    T::from_f64(v)
                })
                .collect();
            cotangent_ok = data.iter().all(|v| v.as_f64().is_finite());
            // A shape too large to address is refused by Tensor::new (even when it
            // holds no element); such a cotangent cannot be built, so there is nothing
            // to test.
            let Ok(c) = Tensor::new(&shape, data) else {
                return;
            };
            (expect_named_prefix(backward_with(out, &c)), out)
        }
        _ => {
            // Twice into one buffer: the second pass must give the same gradients.
            let mut g = Gradients::empty();
            let first = expect_named_prefix(backward_into(out, &mut g));
            if first.is_some() {
                let snapshot = format!("{g:?}");
                let again = backward_into(out, &mut g);
                assert!(again.is_ok(), "a second backward_into failed: {again:?}");
                assert_eq!(
                    snapshot,
                    format!("{g:?}"),
                    "backward_into is not repeatable"
                );
                (Some(g), out)
            } else {
                (None, out)
            }
        }
    };

    let checkable = T::NAME == "f64"
        && live
        && cotangent_ok
        && checks.poles_clear
        && !checks.reset
        && checks.recorded <= CHECKED_OPS
        && forward_bounded(target);
    if checkable {
        // A well-formed request on a checkable program must succeed: a scalar output
        // for `backward`/`sum`/`backward_into`, or a cotangent of the output's shape.
        let well_formed = match mode {
            0 | 4 => out_shape.is_empty(),
            1 => true,
            2 => true,
            _ => false,
        };
        if well_formed {
            assert!(
                grads.is_some(),
                "backward failed on a program with bounded, finite values"
            );
        }
    }
    let Some(grads) = grads else { return };
    let read = target.tape().read();
    for i in 0..=target.id().index() {
        let id = NodeId::from_index(i);
        let Some(g) = grads.by_id(id) else { continue };
        assert_eq!(
            g.shape(),
            read.shape(id),
            "the gradient of node {i} has the wrong shape"
        );
        if checkable {
            if std::env::var_os("DESCENT_FUZZ_TRACE").is_some()
                && !g.data().iter().all(|v| v.as_f64().is_finite())
            {
                eprintln!("{}", target.tape());
            }
            assert!(
                g.data().iter().all(|v| v.as_f64().is_finite()),
                "node {i} ({}) has a non-finite gradient {:?} in a program with finite, \
                 bounded values away from poles",
                read.nodes()[i].op(),
                g.data()
            );
        }
    }
}

/// An error from the backward pass must start with `backward` (`backward:` or
/// `backward_with:`).
fn expect_named_prefix<V, E: std::fmt::Display>(r: Result<V, E>) -> Option<V> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("backward"),
                "an error from the backward pass does not say so: {msg}"
            );
            None
        }
    }
}

/// Every value on the output's tape is finite and at most `1e6` in magnitude.
fn forward_bounded<T: Float>(out: Var<'_, T>) -> bool {
    let read = out.tape().read();
    (0..read.nodes().len()).all(|i| {
        read.value(NodeId::from_index(i))
            .data()
            .iter()
            .all(|v| v.as_f64().is_finite() && v.as_f64().abs() <= 1e6)
    })
}
