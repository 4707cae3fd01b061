//! Random programs checked against a JAX oracle in float64.
//!
//! `tests/oracle/random_programs.py` (see the README there) draws random programs over
//! descent's differentiable ops, from a fixed seed, and evaluates each with JAX: its
//! scalar output, and the gradient of that output with respect to every `var` leaf. It
//! writes them, with the programs' text and leaf values, to
//! `tests/oracle/random_programs_values.rs`. This test replays every program on a
//! `Tape<f64>` through the public API, runs backward, and compares.
//!
//! A program is one line per value, `vK = op operands...` (the script's docstring
//! describes the format); [`replay`] below is its interpreter, one match arm per op.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use descent::prelude::*;

#[path = "oracle/random_programs_values.rs"]
mod oracle;

use oracle::{PROGRAMS, Program};

/// Tolerance: `|descent - JAX| <= TOL · max(1, |JAX|)`, element by element. Both sides
/// compute in `f64`, in different orders and with different `exp`/`tanh` kernels, so
/// they differ by rounding: at most 1.8e-15 on the committed programs, and 4.9e-14 (a
/// gradient summing terms of ~15 to -0.28) over 500 more drawn from seeds 1 and 2. The
/// test prints its largest error (`--nocapture`).
const TOL: f64 = 1e-12;

/// A program, replayed: its output and its `var` leaves (line index and handle).
struct Replayed<'t> {
    output: Var<'t, f64>,
    vars: Vec<(usize, Var<'t, f64>)>,
}

fn parse<T: std::str::FromStr>(tok: &str, what: &str) -> T {
    tok.parse()
        .unwrap_or_else(|_| panic!("bad {what} {tok:?} in program text"))
}

/// `[2,3]` as `[2, 3]`; `[]` as an empty list.
fn list<T: std::str::FromStr>(tok: &str) -> Vec<T> {
    let body = tok
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or_else(|| panic!("bad list {tok:?} in program text"));
    if body.is_empty() {
        return Vec::new();
    }
    body.split(',').map(|t| parse(t, "list element")).collect()
}

fn keepdim(tok: &str) -> bool {
    match tok {
        "keep" => true,
        "drop" => false,
        _ => panic!("expected keep or drop, got {tok:?}"),
    }
}

/// Replays `program` on `tape`, line by line; `line` tracks the line being replayed,
/// for the report if an op panics.
fn replay<'t>(tape: &'t Tape<f64>, program: &Program, line: &mut usize) -> Replayed<'t> {
    let mut vals: Vec<Var<'t, f64>> = Vec::new();
    let mut vars = Vec::new();
    let mut inputs = program.inputs.iter();
    for (k, text) in program.text.lines().enumerate() {
        *line = k;
        let (lhs, rhs) = text
            .split_once(" = ")
            .unwrap_or_else(|| panic!("bad line {text:?}"));
        assert_eq!(lhs, format!("v{k}"), "values are numbered in order");
        let tok: Vec<&str> = rhs.split_whitespace().collect();
        let (op, args) = (tok[0], &tok[1..]);
        let v = |i: usize| -> Var<'t, f64> {
            let t = args[i];
            let j: usize = parse(t.strip_prefix('v').unwrap_or(t), "value reference");
            vals[j]
        };
        let int = |i: usize| -> isize { parse(args[i], "integer") };
        let num = |i: usize| -> f64 { parse(args[i], "number") };
        let out = match op {
            "var" | "const" => {
                let shape: Vec<usize> = list(args[0]);
                let data = inputs.next().expect("fewer inputs than leaves");
                let value = Tensor::new(&shape, data.to_vec()).expect("input of the leaf's size");
                if op == "var" {
                    let x = tape.var(value);
                    vars.push((k, x));
                    x
                } else {
                    tape.constant(value)
                }
            }

            "neg" => -v(0),
            "exp" => v(0).exp(),
            "ln" => v(0).ln(),
            "sqrt" => v(0).sqrt(),
            "abs" => v(0).abs(),
            "sin" => v(0).sin(),
            "cos" => v(0).cos(),
            "tanh" => v(0).tanh(),
            "sinh" => v(0).sinh(),
            "cosh" => v(0).cosh(),
            "sigmoid" => v(0).sigmoid(),
            "relu" => v(0).relu(),
            "leaky_relu" => v(0).leaky_relu(num(1)),
            "gelu" => v(0).gelu(),
            "softplus" => v(0).softplus(),
            "powi" => v(0).powi(parse(args[1], "exponent")),
            "powf" => v(0).powf(num(1)),

            "add_scalar" => v(0) + num(1),
            "sub_scalar" => v(0) - num(1),
            "mul_scalar" => v(0) * num(1),
            "div_scalar" => v(0) / num(1),
            "scalar_add" => num(0) + v(1),
            "scalar_sub" => num(0) - v(1),
            "scalar_mul" => num(0) * v(1),
            "scalar_div" => num(0) / v(1),

            "add" => v(0) + v(1),
            "sub" => v(0) - v(1),
            "mul" => v(0) * v(1),
            "div" => v(0) / v(1),
            "maximum" => v(0).maximum(v(1)),
            "minimum" => v(0).minimum(v(1)),

            "sum" => v(0).sum(),
            "mean" => v(0).mean(),
            "sum_axis" => v(0).sum_axis(int(1), keepdim(args[2])),
            "mean_axis" => v(0).mean_axis(int(1), keepdim(args[2])),
            "max_axis" => v(0).max_axis(int(1), keepdim(args[2])),

            "matmul" => v(0).matmul(v(1)),
            "matmul_t" => v(0).matmul_t(v(1)),

            "transpose" => v(0).transpose(int(1), int(2)),
            "t" => v(0).t(),
            "reshape" => v(0).reshape(&list::<usize>(args[1])),
            "broadcast_to" => v(0).broadcast_to(&list::<usize>(args[1])),
            "slice" => v(0).slice(int(1), parse(args[2], "start"), parse(args[3], "end")),
            "concat" | "stack" => {
                let parts: Vec<Var<'t, f64>> = (1..args.len()).map(v).collect();
                if op == "concat" {
                    Var::concat(&parts, int(0))
                } else {
                    Var::stack(&parts, int(0))
                }
            }
            "gather" => v(0).gather(int(1), &list::<usize>(args[2]), &list::<usize>(args[3])),
            "index_select" => {
                v(0).index_select(int(1), &list::<usize>(args[2]), &list::<usize>(args[3]))
            }

            "pad" => v(0).pad(&list::<usize>(args[1])),
            "clamp" => v(0).clamp(num(1), num(2)),
            "lstm_gates" => v(0).lstm_gates(),
            "lstm_cell" => v(0).lstm_cell(v(1)),
            "lstm_hidden" => v(0).lstm_hidden(v(1)),
            "gru_gates" => v(0).gru_gates(v(1)),
            "gru_hidden" => v(0).gru_hidden(v(1)),
            "where_cond" | "masked_fill" => {
                let mask = Tensor::new(&list::<usize>(args[1]), list::<f64>(args[2]))
                    .expect("a mask of its shape");
                if op == "where_cond" {
                    v(0).where_cond(&mask, v(3))
                } else {
                    v(0).masked_fill(&mask, num(3))
                }
            }
            "conv2d" => {
                let pair =
                    |i: usize| -> [usize; 2] { list::<usize>(args[i]).try_into().expect("a pair") };
                let bias = (args[2] != "none").then(|| v(2));
                let options = Conv2dOptions::new()
                    .stride(pair(3))
                    .padding(pair(4))
                    .dilation(pair(5))
                    .groups(parse(args[6], "groups"));
                v(0).conv2d(v(1), bias, options)
            }
            "max_pool2d" | "avg_pool2d" => {
                let pair =
                    |i: usize| -> [usize; 2] { list::<usize>(args[i]).try_into().expect("a pair") };
                let options = Pool2dOptions::new(pair(1)).stride(pair(2)).padding(pair(3));
                if op == "max_pool2d" {
                    v(0).max_pool2d(options)
                } else {
                    v(0).avg_pool2d(options)
                }
            }

            "softmax" => v(0).softmax(int(1)),
            "log_softmax" => v(0).log_softmax(int(1)),

            "cross_entropy" => v(0).cross_entropy(&list::<usize>(args[1])),
            "mse" => v(0).mse(v(1)),
            "bce_with_logits" => v(0).bce_with_logits(v(1)),

            _ => panic!("unknown op {op:?}"),
        };
        vals.push(out);
    }
    assert!(inputs.next().is_none(), "more inputs than leaves");
    Replayed {
        output: *vals.last().expect("an empty program"),
        vars,
    }
}

/// `flat` as a multi-index into `shape`, e.g. `[1, 0, 2]`.
fn multi_index(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        idx[d] = flat % n.max(1);
        flat /= n.max(1);
    }
    idx
}

/// The largest error seen, `|descent - JAX| / max(1, |JAX|)`, and where.
#[derive(Default)]
struct Worst {
    err: f64,
    at: String,
}

/// The program's text, indented, for a failure message.
fn listing(index: usize, program: &Program) -> String {
    let mut s = format!(
        "program {index} (its leaves' values: PROGRAMS[{index}].inputs in \
         tests/oracle/random_programs_values.rs):\n"
    );
    for line in program.text.lines() {
        let _ = writeln!(s, "    {line}");
    }
    s
}

/// Replays program `index` and compares it with JAX; returns one message per
/// disagreement (at most one per leaf, the first element out of tolerance).
fn check_program(index: usize, program: &Program, worst: &mut Worst) -> Vec<String> {
    let mut failures = Vec::new();
    let tape = Tape::<f64>::new();
    // The line being replayed, and whether backward has started.
    let mut line = 0;
    let mut replaying = true;
    let replayed = catch_unwind(AssertUnwindSafe(|| {
        let r = replay(&tape, program, &mut line);
        replaying = false;
        let grads = r.output.backward();
        (r, grads)
    }));
    let (r, grads) = match replayed {
        Ok(x) => x,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            let at = match program.text.lines().nth(line) {
                Some(text) if replaying => format!("replaying line {line}, `{text}`"),
                _ => "in backward".to_string(),
            };
            failures.push(format!(
                "program {index}: panicked {at}: {msg}\n{}",
                listing(index, program)
            ));
            return failures;
        }
    };

    let mut compare = |what: &str, shape: &[usize], got: &[f64], want: &[f64]| {
        assert_eq!(
            got.len(),
            want.len(),
            "program {index}: {what}: sizes differ"
        );
        for (e, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g - w).abs() / w.abs().max(1.0);
            if err > TOL || err.is_nan() {
                failures.push(format!(
                    "program {index}, {what}, element {e} (index {:?} of shape {shape:?}): \
                     descent {g:e}, JAX {w:e}, error {err:e} > {TOL:e}\n{}",
                    multi_index(e, shape),
                    listing(index, program),
                ));
                return;
            }
            if err > worst.err {
                worst.err = err;
                worst.at = format!("program {index}, {what}, element {e} ({g:e} vs {w:e})");
            }
        }
    };

    assert!(
        r.output.shape().is_empty(),
        "program {index}: the output is not a scalar"
    );
    compare("output", &[], &[r.output.item()], &[program.output]);
    assert_eq!(
        r.vars.len(),
        program.grads.len(),
        "program {index}: {} var leaves but {} expected gradients",
        r.vars.len(),
        program.grads.len()
    );
    for (n, (&(k, x), want)) in r.vars.iter().zip(program.grads).enumerate() {
        let g = grads.wrt(x);
        let shape = x.shape();
        assert_eq!(
            g.shape(),
            shape.as_slice(),
            "program {index}: gradient of leaf v{k} has the wrong shape"
        );
        compare(
            &format!("gradient wrt leaf v{k} (var #{n})"),
            &shape,
            g.data(),
            want,
        );
    }
    failures
}

#[test]
fn random_programs_match_jax() {
    let start = std::time::Instant::now();
    let mut worst = Worst::default();
    let mut failures = Vec::new();
    for (index, program) in PROGRAMS.iter().enumerate() {
        failures.extend(check_program(index, program, &mut worst));
    }
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(5).map(String::as_str).collect();
        panic!(
            "{} disagreement(s) with JAX (the first {} below); programs from seed {}\n\n{}",
            failures.len(),
            shown.len(),
            oracle::SEED,
            shown.join("\n")
        );
    }
    eprintln!(
        "{} programs (seed {}) agree with JAX in {:.2?}; largest error {:e} at {}",
        PROGRAMS.len(),
        oracle::SEED,
        start.elapsed(),
        worst.err,
        if worst.at.is_empty() { "-" } else { &worst.at },
    );
}

/// Tolerance of the second-order and forward-mode checks, as [`TOL`]:
/// `|descent - JAX| <= HVP_TOL · max(1, |JAX|)`. A Hessian-vector product sums more
/// products of rounded terms than a gradient (a backward pass differentiated again),
/// and both sides order them differently: 5.3e-15 at most on the committed programs
/// (the test prints its largest error), so ten times `TOL` leaves room for programs
/// drawn from other seeds.
const HVP_TOL: f64 = 1e-11;

/// Every program's Hessian-vector product along its `directions` (both compositions,
/// `descent::backprop::hvp_with`) and the forward tangent of its output
/// (`descent::backprop::jvp`), against JAX's `jvp(grad(f))` and `jvp(f)`.
#[test]
fn random_programs_second_order_and_tangents_match_jax() {
    use descent::backprop::{HvpMode, hvp_with, jvp};
    let start = std::time::Instant::now();
    let mut worst = (0.0f64, String::new());
    let mut failures = Vec::new();
    for (index, program) in PROGRAMS.iter().enumerate() {
        let tape = Tape::<f64>::new();
        let mut line = 0;
        let r = replay(&tape, program, &mut line);
        let vars: Vec<Var<'_, f64>> = r.vars.iter().map(|&(_, v)| v).collect();
        let dirs: Vec<Tensor<f64>> = vars
            .iter()
            .zip(program.directions)
            .map(|(v, d)| Tensor::new(&v.shape(), d.to_vec()).expect("a direction per leaf"))
            .collect();
        // The first element out of tolerance, as a message; the largest error seen so far.
        let mut compare = |what: &str, got: &[f64], want: &[f64]| -> Option<String> {
            for (e, (&g, &w)) in got.iter().zip(want).enumerate() {
                let err = (g - w).abs() / w.abs().max(1.0);
                if err > HVP_TOL || err.is_nan() {
                    return Some(format!(
                        "program {index}, {what}, element {e}: descent {g:e}, JAX {w:e}, \
                         error {err:e}\n{}",
                        listing(index, program)
                    ));
                }
                if err > worst.0 {
                    worst = (err, format!("program {index}, {what}, element {e}"));
                }
            }
            None
        };
        for mode in [HvpMode::ForwardOverReverse, HvpMode::ReverseOverReverse] {
            match hvp_with(r.output, &vars, &dirs, mode) {
                Ok(hv) => {
                    for (n, (h, want)) in hv.iter().zip(program.hvp).enumerate() {
                        let what = format!("H v ({mode:?}) of var #{n}");
                        failures.extend(compare(&what, h.data(), want));
                    }
                }
                Err(e) => failures.push(format!("program {index}: hvp ({mode:?}): {e}")),
            }
        }
        let tangents: Vec<Var<'_, f64>> = dirs.iter().map(|d| tape.constant(d)).collect();
        match jvp(r.output, &vars, &tangents) {
            Ok(t) => failures.extend(compare("tangent", &[t.item()], &[program.tangent])),
            Err(e) => failures.push(format!("program {index}: jvp: {e}")),
        }
    }
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(5).map(String::as_str).collect();
        panic!(
            "{} disagreement(s) with JAX (the first {} below)\n\n{}",
            failures.len(),
            shown.len(),
            shown.join("\n")
        );
    }
    eprintln!(
        "{} programs: H v and tangents agree with JAX in {:.2?}; largest error {:e} at {}",
        PROGRAMS.len(),
        start.elapsed(),
        worst.0,
        if worst.1.is_empty() { "-" } else { &worst.1 },
    );
}
