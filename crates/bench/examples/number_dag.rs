//! A random scalar program with plain numbers in it (`x * 0.5`, `1.5 - x`, ...), timed
//! three ways in one process, interleaved: the numbers as one node each (`x * c`
//! records `mul_scalar(c)`), as a constant node and a binary node (what `x * c`
//! recorded before, written out as `x.try_mul(tape.constant(c))`), and with the
//! constant nodes hoisted (one per distinct number a step, reused). Each step: reset,
//! record, `backward_into`. Prints nodes a step and ns per program op (medians).
//!
//! ```text
//! cargo run --release -p descent-bench --example number_dag [-- OPS REPS [FORM]]
//! ```
//!
//! `FORM` (0, 1 or 2) runs one form alone, for an instruction count that the machine's
//! load does not blur:
//!
//! ```text
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/number_dag 2000 2 0
//! ```

use descent::backprop::backward_into;
use descent::prelude::*;
use std::time::Instant;

#[derive(Clone, Copy)]
enum Instr {
    /// An op between two earlier values: 0 add, 1 sub, 2 mul.
    Pair(u8, usize, usize),
    /// An op of an earlier value and the `k`-th number: 0 `x + c`, 1 `c - x`, 2 `x * c`,
    /// 3 `x / c`, 4 `c * x`.
    Number(u8, usize, usize),
    /// `tanh` of an earlier value.
    Tanh(usize),
}

const NUMBERS: [f64; 4] = [0.5, 1.5, -2.0, 0.1];
const LEAVES: usize = 8;

/// SplitMix64, for a program that is the same on every machine.
fn program(ops: usize) -> Vec<Instr> {
    let mut s = 0x5eed_u64;
    let mut next = move |n: usize| {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    };
    (0..ops)
        .map(|i| {
            let avail = LEAVES + i;
            // Operands mostly recent, as in an expression.
            let (kind, op, k) = (next(5), next(5), next(NUMBERS.len()));
            let (a, b) = (
                avail - 1 - next(avail.min(16)),
                avail - 1 - next(avail.min(16)),
            );
            match kind {
                // Two in five ops between values, two with a number, one `tanh`.
                0 | 1 => Instr::Pair((op % 3) as u8, a, b),
                2 | 3 => Instr::Number(op as u8, a, k),
                _ => Instr::Tanh(a),
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Form {
    Number,
    ConstantNode,
    Hoisted,
}

fn run<'t>(tape: &'t Tape<f64>, prog: &[Instr], form: Form) -> Var<'t, f64> {
    let mut vals: Vec<Var<'t, f64>> = (0..LEAVES)
        .map(|i| tape.var(0.1 * i as f64 - 0.3))
        .collect();
    let hoisted: Vec<Var<'t, f64>> = match form {
        Form::Hoisted => NUMBERS.iter().map(|&c| tape.constant(c)).collect(),
        Form::Number | Form::ConstantNode => Vec::new(),
    };
    for &ins in prog {
        let v = match ins {
            Instr::Pair(op, a, b) => {
                let (a, b) = (vals[a], vals[b]);
                match op {
                    0 => a + b,
                    1 => a - b,
                    _ => (a * b).tanh(),
                }
            }
            Instr::Number(op, a, k) => {
                let x = vals[a];
                let c = NUMBERS[k];
                match form {
                    Form::Number => match op {
                        0 => x + c,
                        1 => c - x,
                        2 => x * c,
                        3 => x / c,
                        _ => c * x,
                    },
                    Form::ConstantNode | Form::Hoisted => {
                        let cv = if form == Form::Hoisted {
                            hoisted[k]
                        } else {
                            tape.constant(c)
                        };
                        match op {
                            0 => x + cv,
                            1 => cv - x,
                            2 => x * cv,
                            3 => x / cv,
                            _ => cv * x,
                        }
                    }
                }
            }
            Instr::Tanh(a) => vals[a].tanh(),
        };
        vals.push(v);
    }
    vals[vals.len() - 4..]
        .iter()
        .fold(tape.constant(0.0), |s, &v| s + v)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let ops = args.first().copied().unwrap_or(2000);
    let reps = args.get(1).copied().unwrap_or(15);
    let prog = program(ops);
    let tape = Tape::<f64>::with_capacity(4 * ops);
    let mut grads = Gradients::empty();
    let forms = [
        ("one node per number", Form::Number),
        ("constant node + binary (before)", Form::ConstantNode),
        ("constant nodes hoisted", Form::Hoisted),
    ];
    let only = args.get(2).copied();
    let steps = (200_000 / ops).max(10);
    let mut times = vec![Vec::new(); forms.len()];
    let mut nodes = [0; 3];
    let mut results = [0.0; 3];
    for rep in 0..=reps {
        for (f, &(_, form)) in forms.iter().enumerate() {
            if only.is_some_and(|o| o != f) {
                continue;
            }
            let t = Instant::now();
            for _ in 0..steps {
                tape.reset();
                let loss = run(&tape, &prog, form);
                backward_into(loss, &mut grads).expect("a scalar loss");
                results[f] = loss.item();
            }
            let ns = t.elapsed().as_secs_f64() * 1e9 / (steps * ops) as f64;
            nodes[f] = tape.len();
            if rep > 0 {
                times[f].push(ns);
            }
        }
    }
    if only.is_none() {
        assert_eq!(
            results[0].to_bits(),
            results[1].to_bits(),
            "same value either way"
        );
    }
    println!(
        "random scalar program: {ops} ops ({} with a number), {reps} reps of {steps} steps",
        prog.iter()
            .filter(|i| matches!(i, Instr::Number(..)))
            .count()
    );
    for (f, (name, _)) in forms.iter().enumerate() {
        if only.is_some_and(|o| o != f) {
            continue;
        }
        println!(
            "{name:34} {:6} nodes a step  {:6.2} ns per op (median)",
            nodes[f],
            median(times[f].clone())
        );
    }
}
