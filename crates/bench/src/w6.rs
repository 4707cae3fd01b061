//! W6 `tape-overhead`: a chain of N scalar ops cycling `v + x`, `v * y`, `tanh(v)`
//! from `v = x`, with a read-out every 300 ops summed left to right into the loss
//! (`shared/peers/README.md`, "Interpretation choices").
//!
//! [`record`] records it on a descent tape; [`HandTape`] is the limit: the same chain
//! on a hand-written tape of plain vectors (values, op codes, parent indices,
//! adjoints).

use descent::prelude::*;

/// The leaf values.
pub const X: f64 = 0.1;
/// The leaf values.
pub const Y: f64 = 0.9;
/// Chain ops between read-outs.
pub const EVERY: usize = 300;
/// The default chain length.
pub const N_DEFAULT: usize = 1_000_000;

/// The peers' results `(value, dL/dx, dL/dy)` for the chain lengths they published.
pub fn expected(n: usize) -> Option<(f64, f64, f64)> {
    match n {
        1_000_000 => Some((1591.5843602034167, 7586.797301185436, 4868.389328626736)),
        3_000 => Some((4.7752306036707965, 22.762668170373352, 14.606628648749231)),
        _ => None,
    }
}

/// How a chain of `n` ops splits: `common.w6_plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Chain length.
    pub n: usize,
    /// Read-outs (blocks of [`EVERY`] ops ending in one).
    pub readouts: usize,
    /// Add-mul-tanh cycles per block.
    pub block_cycles: usize,
    /// Whole cycles after the last read-out (recorded, not in the loss).
    pub tail_cycles: usize,
    /// Ops after those (`n mod 3`: an add, then a mul).
    pub tail_ops: usize,
}

impl Plan {
    /// The plan for `n` ops.
    ///
    /// # Panics
    /// If `n < 300` (no read-out, no loss).
    pub fn new(n: usize) -> Self {
        let readouts = n / EVERY;
        assert!(
            readouts >= 1,
            "W6 needs N >= {EVERY} (at least one read-out)"
        );
        Plan {
            n,
            readouts,
            block_cycles: EVERY / 3,
            tail_cycles: (n - readouts * EVERY) / 3,
            tail_ops: n % 3,
        }
    }

    /// Nodes the chain puts on a tape: 2 leaves, `n` ops, `readouts - 1` read-out adds.
    pub fn nodes(&self) -> usize {
        2 + self.n + self.readouts - 1
    }
}

/// Records the chain on `tape` (which should be empty) and returns `(loss, x, y)`.
#[inline(never)]
pub fn record(tape: &Tape, plan: Plan) -> (Var<'_>, Var<'_>, Var<'_>) {
    let x = tape.scalar(X);
    let y = tape.scalar(Y);
    let mut v = x;
    let mut acc: Option<Var<'_>> = None;
    for _ in 0..plan.readouts {
        for _ in 0..plan.block_cycles {
            v = v + x;
            v = v * y;
            v = v.tanh();
        }
        acc = Some(match acc {
            None => v,
            Some(a) => a + v,
        });
    }
    for _ in 0..plan.tail_cycles {
        v = v + x;
        v = v * y;
        v = v.tanh();
    }
    if plan.tail_ops >= 1 {
        v = v + x;
    }
    if plan.tail_ops >= 2 {
        let _ = v * y;
    }
    (acc.expect("at least one read-out"), x, y)
}

const LEAF: u8 = 0;
const ADD: u8 = 1;
const MUL: u8 = 2;
const TANH: u8 = 3;

/// The limit: a hand-written tape of plain vectors. Node `i` has value `val[i]`, op code
/// `op[i]` and parents `par[i]`; backward fills `adj` in one reverse loop.
#[derive(Debug, Default)]
pub struct HandTape {
    val: Vec<f64>,
    op: Vec<u8>,
    par: Vec<[u32; 2]>,
    adj: Vec<f64>,
}

impl HandTape {
    /// An empty tape (grows as it records).
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the tape, keeping its memory.
    pub fn clear(&mut self) {
        self.val.clear();
        self.op.clear();
        self.par.clear();
    }

    /// Nodes recorded.
    pub fn len(&self) -> usize {
        self.val.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.val.is_empty()
    }

    #[inline(always)]
    fn push(&mut self, op: u8, a: u32, b: u32, v: f64) -> u32 {
        let i = self.val.len() as u32;
        self.val.push(v);
        self.op.push(op);
        self.par.push([a, b]);
        i
    }

    #[inline(always)]
    fn add(&mut self, a: u32, b: u32) -> u32 {
        let v = self.val[a as usize] + self.val[b as usize];
        self.push(ADD, a, b, v)
    }

    #[inline(always)]
    fn mul(&mut self, a: u32, b: u32) -> u32 {
        let v = self.val[a as usize] * self.val[b as usize];
        self.push(MUL, a, b, v)
    }

    #[inline(always)]
    fn tanh(&mut self, a: u32) -> u32 {
        let v = self.val[a as usize].tanh();
        self.push(TANH, a, a, v)
    }

    /// Records the chain (after clearing) and returns the loss node; `x` is node 0 and
    /// `y` node 1.
    #[inline(never)]
    pub fn record(&mut self, plan: Plan) -> u32 {
        self.clear();
        let x = self.push(LEAF, 0, 0, X);
        let y = self.push(LEAF, 1, 1, Y);
        let mut v = x;
        let mut acc = None;
        for _ in 0..plan.readouts {
            for _ in 0..plan.block_cycles {
                v = self.add(v, x);
                v = self.mul(v, y);
                v = self.tanh(v);
            }
            acc = Some(match acc {
                None => v,
                Some(a) => self.add(a, v),
            });
        }
        for _ in 0..plan.tail_cycles {
            v = self.add(v, x);
            v = self.mul(v, y);
            v = self.tanh(v);
        }
        if plan.tail_ops >= 1 {
            v = self.add(v, x);
        }
        if plan.tail_ops >= 2 {
            self.mul(v, y);
        }
        acc.expect("at least one read-out")
    }

    /// Backward from `out` (seeded with 1): fills the adjoints of nodes `0..=out`.
    #[inline(never)]
    pub fn backward(&mut self, out: u32) {
        let n = out as usize + 1;
        self.adj.clear();
        self.adj.resize(n, 0.0);
        self.adj[n - 1] = 1.0;
        let (val, op, par, adj) = (&self.val[..n], &self.op[..n], &self.par[..n], &mut self.adj);
        for i in (0..n).rev() {
            let g = adj[i];
            let [a, b] = par[i];
            let (a, b) = (a as usize, b as usize);
            match op[i] {
                ADD => {
                    adj[a] += g;
                    adj[b] += g;
                }
                MUL => {
                    adj[a] += g * val[b];
                    adj[b] += g * val[a];
                }
                TANH => {
                    let y = val[i];
                    adj[a] += g * (1.0 - y * y);
                }
                _ => {}
            }
        }
    }

    /// A node's value.
    pub fn value(&self, i: u32) -> f64 {
        self.val[i as usize]
    }

    /// A node's adjoint after [`HandTape::backward`].
    pub fn adjoint(&self, i: u32) -> f64 {
        self.adj[i as usize]
    }
}
