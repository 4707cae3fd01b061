#!/usr/bin/env python3
"""JAX oracle for tests/random_programs.rs.

Generates random programs over descent's differentiable ops, evaluates each with JAX
in float64, and writes the scalar output and its gradient with respect to every `var`
leaf to random_programs_values.rs next to this script. The Rust test replays each
program on a `Tape<f64>` and compares.

A program is text, one value per line, `vK = <op> <operands...>`, K counting from 0:

    v0 = var [2,3]              a leaf that gets a gradient (its values: `inputs`)
    v1 = const [3]              a leaf that does not (its values: `inputs` too)
    v2 = mul v0 v1              broadcast, NumPy-style
    v3 = sum_axis v2 -1 keep    an axis (negative counts from the end), keep|drop
    v4 = gather v3 0 [2,1] [1,0]    index shape, then the indices, row-major
    (index_select takes the same arguments: whole slices, an index of any shape)
    v5 = concat 1 v0 v0         an axis, then the parts
    v6 = add_scalar v4 0.5      v4 + 0.5 (scalar_sub 0.5 v4 is 0.5 - v4, and so on)
    v7 = clamp v6 -0.5 inf      bounds (either may be infinite)
    v8 = where_cond v0 [3] [1,0,1] v7   mask shape, then the 0/1 mask, row-major
    v9 = masked_fill v8 [1,3] [0,1,1] 0.5   mask shape, mask, fill value
    v10 = lstm_cell v5 v3       gates [.., 4H] (i, f, g, o), then the state [.., H]

The last line's value is the program's output, always a scalar. Shapes are written
`[2,3]`, `[]` for a scalar. Every number in the text is exact (Python's `repr`, which
Rust's `parse::<f64>` reads back bit for bit).

Validity: each op checks, on the concrete values while the program is generated, that
its mathematics is well away from any point where the engine and JAX could
legitimately differ: `ln`, `sqrt`, `powf` see inputs >= 0.1, divisors and negative
integer powers |x| >= 0.2, `relu`/`abs`/`leaky_relu` |x| >= 1e-6, `maximum`/`minimum`
operands differ by >= 1e-6, each `max_axis` lane's largest value beats the runner-up
by >= 1e-6, `clamp` inputs are >= 1e-6 from either bound; `exp`, `sinh`, `cosh` see |x| <= 3 and no value exceeds 30 in magnitude.
A step that fails a check is thrown away and another drawn, so the stream of draws,
and hence the programs, depend only on SEED.

Run from anywhere:  /work/venv-jax/bin/python tests/oracle/random_programs.py
(about five minutes alone). `--seed N --count N --out PATH` draw other programs, to explore
beyond the committed ones: point `--out` at the committed file, run the test, and
regenerate without options before committing.
"""

import argparse
import os
import re
import subprocess
from collections import Counter

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "random_programs_values.rs")

SEED = 20240617
N_PROGRAMS = 100

# Size limits on every value, so the test stays fast in a debug build.
MAX_NDIM = 4
MAX_EXTENT = 8
MAX_NUMEL = 72
MAX_ABS = 30.0
# Limits on the oracle's gradients: a program whose gradient exceeds this is redrawn
# (a relative tolerance is meaningless next to catastrophic amplification).
MAX_ABS_GRAD = 1e4

# Margins (see the docstring).
POS_MIN = 0.1  # ln, sqrt, powf
DIV_MIN = 0.2  # divisors, negative powers
KINK_MIN = 1e-6  # relu, abs, leaky_relu, maximum, minimum, max_axis
EXP_MAX = 3.0  # exp, sinh, cosh

UNARY = [
    "neg",
    "exp",
    "ln",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tanh",
    "sinh",
    "cosh",
    "sigmoid",
    "relu",
    "leaky_relu",
    "gelu",
    "softplus",
    "powi",
    "powf",
]
SCALAR = [
    "add_scalar",
    "sub_scalar",
    "mul_scalar",
    "div_scalar",
    "scalar_add",
    "scalar_sub",
    "scalar_mul",
    "scalar_div",
]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]
# Every op the generator draws from (`var`/`const` are leaves): all of descent's
# differentiable ops (the `Op` enum in crates/tape/src/ops/mod.rs), none left out.
# Scalar operands go through `Var + f64` and `f64 + Var` (and -, *, /).
OPS = (
    UNARY
    + SCALAR
    + BINARY
    + ["sum", "mean", "sum_axis", "mean_axis", "max_axis"]
    + ["matmul", "matmul_t"]
    + ["transpose", "t", "reshape", "broadcast_to", "slice", "concat", "stack", "gather"]
    + ["index_select"]
    + ["pad", "conv2d", "max_pool2d", "avg_pool2d"]
    + ["clamp", "where_cond", "masked_fill"]
    + ["lstm_gates", "lstm_cell", "lstm_hidden", "gru_gates", "gru_hidden"]
    + ["softmax", "log_softmax"]
    + ["cross_entropy", "mse", "bce_with_logits"]
)
# Relative frequency of each op in a program's body (the final reduction is extra).
WEIGHT = {op: 1.0 for op in OPS}
WEIGHT.update({op: 1.6 for op in BINARY})
WEIGHT.update({"matmul": 2.5, "matmul_t": 1.5, "sum": 0.4, "mean": 0.4})
WEIGHT.update({"cross_entropy": 0.7, "mse": 0.7, "bce_with_logits": 0.7})
WEIGHT.update({op: 0.5 for op in SCALAR})
WEIGHT.update({"conv2d": 1.5, "max_pool2d": 1.2, "avg_pool2d": 1.0})


# Ops drawn fewer than RARE times so far get RARE_BOOST times their weight.
RARE = 8
RARE_BOOST = 3.0


class Reject(Exception):
    """A step whose maths or size is out of bounds; the generator draws another."""


# ---------------------------------------------------------------------------------
# The interpreter: one line of program text, evaluated with jax.numpy. The Rust test
# has the same interpreter over descent's `Var` API.
# ---------------------------------------------------------------------------------


def parse_list(tok, conv=int):
    assert tok[0] == "[" and tok[-1] == "]", tok
    body = tok[1:-1]
    return [conv(s) for s in body.split(",")] if body else []


def fmt_list(xs):
    return "[" + ",".join(str(x) for x in xs) + "]"


def ref(tok):
    assert tok[0] == "v", tok
    return int(tok[1:])


def keepdim(tok):
    assert tok in ("keep", "drop"), tok
    return tok == "keep"


def check(cond, why):
    if not cond:
        raise Reject(why)


def eval_line(line, env, inputs, concrete):
    """Evaluates one line given `env` (the values so far) and `inputs` (an iterator
    over the leaves' values). With `concrete`, also checks the validity margins."""
    lhs, rhs = line.split(" = ")
    assert ref(lhs) == len(env), line
    tok = rhs.split()
    op, args = tok[0], tok[1:]

    if op in ("var", "const"):
        shape = parse_list(args[0])
        v = next(inputs)
        assert tuple(v.shape) == tuple(shape), line
        return v

    def val(t):
        return env[ref(t)]

    def margin(x, lo, why):
        if concrete:
            check(float(jnp.min(x)) >= lo, why)

    if op in UNARY:
        x = val(args[0])
        if op == "neg":
            return -x
        if op == "exp":
            if concrete:
                check(float(jnp.max(x)) <= EXP_MAX, "exp of a large value")
            return jnp.exp(x)
        if op == "ln":
            margin(x, POS_MIN, "ln near 0")
            return jnp.log(x)
        if op == "sqrt":
            margin(x, POS_MIN, "sqrt near 0")
            return jnp.sqrt(x)
        if op == "abs":
            margin(jnp.abs(x), KINK_MIN, "abs at its kink")
            return jnp.abs(x)
        if op == "sin":
            return jnp.sin(x)
        if op == "cos":
            return jnp.cos(x)
        if op == "tanh":
            return jnp.tanh(x)
        if op in ("sinh", "cosh"):
            if concrete:
                check(float(jnp.max(jnp.abs(x))) <= EXP_MAX, f"{op} of a large value")
            return jnp.sinh(x) if op == "sinh" else jnp.cosh(x)
        if op == "sigmoid":
            return jax.nn.sigmoid(x)
        if op == "relu":
            margin(jnp.abs(x), KINK_MIN, "relu at its kink")
            return jax.nn.relu(x)
        if op == "leaky_relu":
            alpha = float(args[1])
            margin(jnp.abs(x), KINK_MIN, "leaky_relu at its kink")
            return jnp.where(x > 0, x, alpha * x)
        if op == "gelu":
            # descent's gelu is the tanh form (crates/tape/src/ops/activation.rs).
            return jax.nn.gelu(x, approximate=True)
        if op == "softplus":
            return jax.nn.softplus(x)
        if op == "powi":
            n = int(args[1])
            if n < 0:
                margin(jnp.abs(x), DIV_MIN, "negative power near 0")
            return x**n  # a Python int: lax.integer_pow, defined for x < 0
        if op == "powf":
            p = float(args[1])
            margin(x, POS_MIN, "powf near 0 or below")
            return jnp.power(x, p)

    if op in SCALAR:
        if op.startswith("scalar_"):
            c, x = float(args[0]), val(args[1])
        else:
            x, c = val(args[0]), float(args[1])
        if op == "scalar_div":
            margin(jnp.abs(x), DIV_MIN, "division by a value near 0")
        return {
            "add_scalar": lambda: x + c,
            "sub_scalar": lambda: x - c,
            "mul_scalar": lambda: x * c,
            "div_scalar": lambda: x / c,
            "scalar_add": lambda: c + x,
            "scalar_sub": lambda: c - x,
            "scalar_mul": lambda: c * x,
            "scalar_div": lambda: c / x,
        }[op]()

    if op in BINARY:
        a, b = val(args[0]), val(args[1])
        if concrete:
            check(
                len(np.broadcast_shapes(a.shape, b.shape)) <= MAX_NDIM,
                "too many axes",
            )
        if op == "add":
            return a + b
        if op == "sub":
            return a - b
        if op == "mul":
            return a * b
        if op == "div":
            margin(jnp.abs(b), DIV_MIN, "division by a value near 0")
            return a / b
        margin(jnp.abs(a - b), KINK_MIN, f"{op} of (nearly) tied operands")
        return jnp.maximum(a, b) if op == "maximum" else jnp.minimum(a, b)

    if op == "sum":
        return jnp.sum(val(args[0]))
    if op == "mean":
        return jnp.mean(val(args[0]))
    if op in ("sum_axis", "mean_axis", "max_axis"):
        x, ax, keep = val(args[0]), int(args[1]), keepdim(args[2])
        if op == "sum_axis":
            return jnp.sum(x, axis=ax, keepdims=keep)
        if op == "mean_axis":
            return jnp.mean(x, axis=ax, keepdims=keep)
        if concrete and x.shape[ax] > 1:
            top2 = jnp.sort(x, axis=ax)
            gap = jnp.take(top2, -1, axis=ax) - jnp.take(top2, -2, axis=ax)
            check(float(jnp.min(gap)) >= KINK_MIN, "max_axis with a (near) tie")
        return jnp.max(x, axis=ax, keepdims=keep)

    if op == "matmul":
        return jnp.matmul(val(args[0]), val(args[1]))
    if op == "matmul_t":
        return jnp.matmul(val(args[0]), val(args[1]).T)

    if op == "transpose":
        return jnp.swapaxes(val(args[0]), int(args[1]), int(args[2]))
    if op == "t":
        return jnp.swapaxes(val(args[0]), -2, -1)
    if op == "reshape":
        return jnp.reshape(val(args[0]), parse_list(args[1]))
    if op == "broadcast_to":
        return jnp.broadcast_to(val(args[0]), parse_list(args[1]))
    if op == "slice":
        x, ax, start, end = val(args[0]), int(args[1]), int(args[2]), int(args[3])
        return jax.lax.slice_in_dim(x, start, end, axis=ax % x.ndim)
    if op in ("concat", "stack"):
        ax, parts = int(args[0]), [val(t) for t in args[1:]]
        return jnp.concatenate(parts, axis=ax) if op == "concat" else jnp.stack(parts, axis=ax)
    if op == "gather":
        # torch.gather: the index may be smaller than x along the other axes; only
        # x's leading part along those axes is read.
        x, ax = val(args[0]), int(args[1]) % val(args[0]).ndim
        ishape, idx = parse_list(args[2]), parse_list(args[3])
        index = np.asarray(idx, dtype=np.int64).reshape(ishape)
        lead = tuple(slice(None) if d == ax else slice(0, ishape[d]) for d in range(x.ndim))
        return jnp.take_along_axis(x[lead], jnp.asarray(index), axis=ax)
    if op == "index_select":
        # numpy's take: whole slices along the axis, the index of any shape.
        x, ax = val(args[0]), int(args[1]) % val(args[0]).ndim
        ishape, idx = parse_list(args[2]), parse_list(args[3])
        index = np.asarray(idx, dtype=np.int64).reshape(ishape)
        return jnp.take(x, jnp.asarray(index), axis=ax)

    if op == "clamp":
        # torch.clamp; a bound may be infinite (a one-sided clamp).
        x, lo, hi = val(args[0]), float(args[1]), float(args[2])
        margin(jnp.abs(x - lo), KINK_MIN, "clamp at its lower bound")
        margin(jnp.abs(x - hi), KINK_MIN, "clamp at its upper bound")
        return jnp.clip(x, lo, hi)
    if op == "where_cond":
        # torch.where(cond, x, y): the mask is data (no gradient), all three broadcast.
        x, y = val(args[0]), val(args[3])
        cond = np.asarray(parse_list(args[2]), dtype=bool).reshape(parse_list(args[1]))
        return jnp.where(jnp.asarray(cond), x, y)
    if op == "masked_fill":
        # x.masked_fill(mask, value) = where(mask, value, x).
        x, value = val(args[0]), float(args[3])
        mask = np.asarray(parse_list(args[2]), dtype=bool).reshape(parse_list(args[1]))
        return jnp.where(jnp.asarray(mask), value, x)

    if op in ("gru_gates", "gru_hidden"):
        # The GRU cell of torch.nn.GRUCell, gates r, z, n along the last axis.
        a, b = val(args[0]), val(args[1])
        if op == "gru_gates":
            pr, pz, pn = jnp.split(a, 3, axis=-1)
            qr, qz, qn = jnp.split(b, 3, axis=-1)
            r = jax.nn.sigmoid(pr + qr)
            return jnp.concatenate([r, jax.nn.sigmoid(pz + qz), jnp.tanh(pn + r * qn)], axis=-1)
        _, z, n = jnp.split(a, 3, axis=-1)
        return (1 - z) * n + z * b

    if op in ("lstm_gates", "lstm_cell", "lstm_hidden"):
        # The LSTM cell of torch.nn.LSTMCell, gates i, f, g, o along the last axis.
        a = val(args[0])
        i, f, g, o = jnp.split(a, 4, axis=-1)
        if op == "lstm_gates":
            sig = jax.nn.sigmoid
            return jnp.concatenate([sig(i), sig(f), jnp.tanh(g), sig(o)], axis=-1)
        c = val(args[1])
        return f * c + i * g if op == "lstm_cell" else o * jnp.tanh(c)

    if op == "pad":
        # PyTorch's F.pad: (before, after) pairs from the last axis backwards.
        x, widths = val(args[0]), parse_list(args[1])
        pairs = [(0, 0)] * x.ndim
        for k in range(len(widths) // 2):
            pairs[x.ndim - 1 - k] = (widths[2 * k], widths[2 * k + 1])
        return jnp.pad(x, pairs)
    if op == "conv2d":
        # X [n, c, h, w], W [o, c / groups, kh, kw], bias [o] or none; cross-correlation.
        x, w = val(args[0]), val(args[1])
        b = None if args[2] == "none" else val(args[2])
        stride, pad, dil, groups = parse_list(args[3]), parse_list(args[4]), parse_list(args[5]), int(args[6])
        y = jax.lax.conv_general_dilated(
            x, w, window_strides=stride, padding=[(pad[0], pad[0]), (pad[1], pad[1])],
            rhs_dilation=dil, feature_group_count=groups,
            dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=jax.lax.Precision.HIGHEST)
        return y if b is None else y + b[None, :, None, None]
    if op in ("max_pool2d", "avg_pool2d"):
        x, k, st, pad = val(args[0]), parse_list(args[1]), parse_list(args[2]), parse_list(args[3])
        window, strides = (1, 1, k[0], k[1]), (1, 1, st[0], st[1])
        padding = ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1]))
        if op == "avg_pool2d":
            # count_include_pad: every window lies inside the padded input here.
            s_ = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
            return s_ / (k[0] * k[1])
        if concrete:
            check(pool_gap(np.asarray(x), k, st, pad) >= KINK_MIN, "max_pool2d window tie")
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding)

    if op == "softmax":
        return jax.nn.softmax(val(args[0]), axis=int(args[1]))
    if op == "log_softmax":
        return jax.nn.log_softmax(val(args[0]), axis=int(args[1]))

    if op == "cross_entropy":
        x, labels = val(args[0]), parse_list(args[1])
        lp = jax.nn.log_softmax(x, axis=-1)
        return -jnp.mean(lp[jnp.arange(len(labels)), jnp.asarray(labels)])
    if op == "mse":
        x, t = val(args[0]), val(args[1])
        return jnp.mean((x - t) ** 2)
    if op == "bce_with_logits":
        # max(x, 0) - x t + ln(1 + e^-|x|) is softplus(x) - x t: the smooth form, so
        # JAX's rules for max and abs at their kinks play no part.
        x, t = val(args[0]), val(args[1])
        return jnp.mean(jax.nn.softplus(x) - x * t)

    raise AssertionError(f"unknown op in {line!r}")


def pool_gap(x, k, st, pad):
    """The smallest gap between a pooling window's largest and second-largest input
    (inf for windows of one input)."""
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * pad[0], w + 2 * pad[1]), -np.inf)
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w] = x
    oh, ow = (h + 2 * pad[0] - k[0]) // st[0] + 1, (w + 2 * pad[1] - k[1]) // st[1] + 1
    gap = np.inf
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * st[0]:i * st[0] + k[0], j * st[1]:j * st[1] + k[1]].reshape(n, c, -1)
            top = np.sort(win, axis=-1)
            if top.shape[-1] > 1:
                d = top[..., -1] - top[..., -2]
                gap = min(gap, float(np.min(np.where(np.isfinite(d), d, np.inf))))
    return gap


def evaluate(lines, inputs):
    """The values of all lines, as a function of the leaves' values (traceable)."""
    env = []
    it = iter(inputs)
    for line in lines:
        env.append(jnp.asarray(eval_line(line, env, it, False)))
    return env


# ---------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------


class Gen:
    def __init__(self, rng):
        self.rng = rng
        self.lines = []  # program text
        self.kinds = []  # per value: "var", "const" or "op"
        self.inputs = []  # leaves' values, in order
        self.env = []  # concrete values
        self.uses = []  # per value: how many lines read it

    # ---- drawing ----

    def coin(self, p):
        return self.rng.random() < p

    def choice(self, xs):
        return xs[int(self.rng.integers(len(xs)))]

    def extent(self):
        # Size-1 axes are common on purpose.
        return int(self.choice([1, 1, 2, 2, 3, 3, 4, 5]))

    def shape(self, lo=0, hi=3):
        while True:
            s = tuple(self.extent() for _ in range(int(self.rng.integers(lo, hi + 1))))
            if np.prod(s, dtype=np.int64) <= 40:
                return s

    def values(self, shape, positive=False, unit=False):
        n = int(np.prod(shape, dtype=np.int64))
        if unit:
            v = self.rng.uniform(0.0, 1.0, n)
        elif positive:
            v = self.rng.uniform(0.3, 2.0, n)
        else:
            v = self.rng.uniform(-2.0, 2.0, n)
        return np.asarray(v, dtype=np.float64).reshape(shape)

    # ---- transactions: a step's lines are committed only if all of them are valid ----

    def try_lines(self, steps):
        """`steps`: a list of (text with `{}` for the new value's index, leaf value or
        None, kind). Evaluates them on top of the program; commits and returns the
        new indices, or raises Reject and leaves the program as it was."""
        lines, new_inputs, kinds, env = [], [], [], list(self.env)
        for text, leaf, kind in steps:
            line = f"v{len(self.env) + len(lines)} = " + text
            lines.append(line)
            kinds.append(kind)
            if leaf is not None:
                new_inputs.append(jnp.asarray(leaf))
        it_vals = iter(new_inputs)
        for line in lines:
            v = jnp.asarray(eval_line(line, env, it_vals, True))
            check(v.ndim <= MAX_NDIM, "too many axes")
            check(all(d <= MAX_EXTENT for d in v.shape), "an extent too large")
            check(v.size <= MAX_NUMEL, "too many elements")
            check(v.size > 0, "empty")
            check(bool(jnp.all(jnp.isfinite(v))), "not finite")
            check(float(jnp.max(jnp.abs(v))) <= MAX_ABS, "a value too large")
            env.append(v)
        first = len(self.env)
        for line, kind in zip(lines, kinds):
            for t in line.split(" = ")[1].split()[1:]:
                if re.fullmatch(r"v\d+", t):
                    self.uses[ref(t)] += 1
            self.lines.append(line)
            self.kinds.append(kind)
            self.uses.append(0)
        self.env = env
        self.inputs.extend(new_inputs)
        return list(range(first, len(self.env)))

    # A step under construction: refs to new values are written `n0`, `n1`, ... (the
    # step's own values, in order) and resolved when the step is committed.
    def commit(self, steps):
        base = len(self.env)
        resolved = []
        for text, leaf, kind in steps:
            toks = [
                f"v{base + int(t[1:])}" if re.fullmatch(r"n\d+", t) else t for t in text.split()
            ]
            resolved.append((" ".join(toks), leaf, kind))
        return self.try_lines(resolved)

    # ---- picking operands ----

    def shape_of(self, i):
        return tuple(self.env[i].shape)

    def pick(self, pred=lambda s: True):
        """An existing value whose shape satisfies `pred`, preferring the unused and the
        recent, avoiding constants; None if there is none."""
        cands = [i for i in range(len(self.env)) if pred(self.shape_of(i))]
        if not cands:
            return None
        nonconst = [i for i in cands if self.kinds[i] != "const"] or cands
        fresh = [i for i in nonconst if self.uses[i] == 0]
        if fresh and self.coin(0.65):
            return fresh[-1] if self.coin(0.6) else self.choice(fresh)
        return self.choice(nonconst)

    def leaf_step(self, shape, positive=False, unit=False, const=None):
        if const is None:
            const = self.coin(0.3)
        kind = "const" if const else "var"
        return (f"{kind} {fmt_list(shape)}", self.values(shape, positive, unit), kind)

    def operand(self, steps, shape, positive=False, allow_existing=True):
        """A reference for a second operand of exactly `shape`: an existing value (if
        one fits) or a new leaf appended to `steps`."""
        if allow_existing and self.coin(0.35):
            i = self.pick(lambda s: s == tuple(shape))
            if i is not None:
                return f"v{i}"
        steps.append(self.leaf_step(shape, positive))
        return f"n{len(steps) - 1}"

    def positive(self, steps, x, lo):
        """A reference to a value >= lo computed from `x` (a ref), appending the ops."""
        xv = self.env[ref(x)] if x.startswith("v") else None
        if xv is not None and float(jnp.min(xv)) >= lo:
            return x
        k = len(steps)
        r = self.rng.integers(4)
        if r == 0:
            steps.append((f"exp {x}", None, "op"))
        elif r == 1:
            steps.append((f"softplus {x}", None, "op"))
            steps.append((f"add_scalar n{k} 0.25", None, "op"))
            return f"n{k + 1}"
        elif r == 2:
            steps.append((f"sigmoid {x}", None, "op"))
            steps.append((f"scalar_add 0.5 n{k}", None, "op"))
            return f"n{k + 1}"
        else:
            steps.append((f"mul {x} {x}", None, "op"))
            steps.append((f"add_scalar n{k} 0.5", None, "op"))
            return f"n{k + 1}"
        return f"n{k}"

    def axis(self, shape, negative=True):
        """An axis of `shape`, mostly one of extent > 1 (reducing or normalising over
        an extent-1 axis is trivial); written negative now and then."""
        nd = len(shape)
        wide = [d for d in range(nd) if shape[d] > 1]
        ax = self.choice(wide) if wide and self.coin(0.85) else int(self.rng.integers(nd))
        return ax - nd if negative and self.coin(0.35) else ax

    # ---- shapes ----

    def broadcast_partner(self, shape):
        """A random shape that broadcasts with `shape` (smaller, larger or scalar)."""
        r = self.rng.integers(5)
        s = list(shape)
        if r == 0:
            return ()
        if r == 1 and s:
            # drop leading axes, set some to 1
            s = s[int(self.rng.integers(len(s) + 1)) :]
            return tuple(1 if self.coin(0.3) else d for d in s)
        if r == 2 and len(s) < 3:
            # a new leading axis, and 1s stretched
            return (self.extent(),) + tuple(self.extent() if d == 1 else d for d in s)
        if r == 3:
            return tuple(1 if self.coin(0.4) else d for d in s)
        return tuple(s)

    def factor_shape(self, n):
        """A random shape with `n` elements, 1 to 3 axes, some of extent 1."""
        for _ in range(20):
            nd = int(self.rng.integers(1, 4))
            dims = []
            rest = n
            for _ in range(nd - 1):
                divs = [d for d in range(1, rest + 1) if rest % d == 0 and d <= MAX_EXTENT]
                d = self.choice(divs)
                dims.append(d)
                rest //= d
            dims.append(rest)
            if rest <= MAX_EXTENT:
                self.rng.shuffle(dims)
                return tuple(int(d) for d in dims)
        return (n,)

    # ---- steps, one op each (plus the leaves and helpers it needs) ----

    def step(self, op):
        x = self.pick()
        xs = self.shape_of(x)
        X = f"v{x}"
        nd = len(xs)
        steps = []

        if op in UNARY:
            if op in ("ln", "sqrt", "powf"):
                X = self.positive(steps, X, POS_MIN)
            arg = ""
            if op == "leaky_relu":
                arg = " " + repr(float(self.choice([0.01, 0.1, 0.2, 0.3])))
            elif op == "powi":
                arg = " " + str(self.choice([-2, -1, 2, 2, 3, 3, 4]))
            elif op == "powf":
                arg = " " + repr(float(self.choice([0.5, 1.5, 2.5, -0.5, 0.3, 1.75])))
            steps.append((f"{op} {X}{arg}", None, "op"))

        elif op in SCALAR:
            c = float(self.choice([0.5, -1.5, 2.0, 0.25, 3.0, -0.75, 1.25]))
            if op == "scalar_div":
                X = self.positive(steps, X, DIV_MIN) if self.coin(0.5) else X
            text = f"{op} {c!r} {X}" if op.startswith("scalar_") else f"{op} {X} {c!r}"
            steps.append((text, None, "op"))

        elif op in BINARY:
            if self.coin(0.12) and op in ("add", "sub", "mul"):
                Y = X
            else:
                ys = self.broadcast_partner(xs)
                Y = None
                if self.coin(0.4):
                    i = self.pick(lambda s: _broadcasts(s, xs) and s != ())
                    if i is not None and i != x:
                        Y = f"v{i}"
                if Y is None:
                    steps.append(self.leaf_step(ys, positive=(op == "div")))
                    Y = f"n{len(steps) - 1}"
            if op == "div" and self.coin(0.3):
                Y = self.positive(steps, Y, DIV_MIN)
            a, b = (X, Y) if self.coin(0.6) else (Y, X)
            steps.append((f"{op} {a} {b}", None, "op"))

        elif op in ("sum", "mean"):
            steps.append((f"{op} {X}", None, "op"))

        elif op in ("sum_axis", "mean_axis", "max_axis"):
            if nd == 0:
                return None
            ax = self.axis(xs)
            keep = "keep" if self.coin(0.5) else "drop"
            steps.append((f"{op} {X} {ax} {keep}", None, "op"))

        elif op == "matmul":
            if nd >= 2 and self.coin(0.7):
                k = xs[-1]
                # the right operand: 2-d, or batched with batch axes that broadcast
                if nd > 2 and self.coin(0.3):
                    rs = tuple(1 if self.coin(0.5) else d for d in xs[:-2]) + (k, self.extent())
                elif nd == 2 and self.coin(0.25):
                    rs = (self.extent(), k, self.extent())
                else:
                    rs = (k, self.extent())
                Y = None
                if self.coin(0.4):
                    i = self.pick(lambda s: len(s) == 2 and s[0] == k)
                    if i is not None:
                        Y = f"v{i}"
                if Y is None:
                    steps.append(self.leaf_step(rs))
                    Y = f"n{len(steps) - 1}"
                steps.append((f"matmul {X} {Y}", None, "op"))
            elif nd >= 2:
                # x on the right: a new [m, k] (or batched) on the left
                k = xs[-2]
                if self.coin(0.7):
                    ls = (self.extent(), k)
                elif nd == 2:
                    ls = (self.extent(), self.extent(), k)
                else:
                    ls = tuple(1 if self.coin(0.5) else d for d in xs[:-2]) + (self.extent(), k)
                steps.append(self.leaf_step(ls))
                steps.append((f"matmul n{len(steps) - 1} {X}", None, "op"))
            else:
                return None

        elif op == "matmul_t":
            if nd < 2:
                return None
            if self.coin(0.7):
                k = xs[-1]
                Y = None
                if self.coin(0.4):
                    i = self.pick(lambda s: len(s) == 2 and s[1] == k)
                    if i is not None:
                        Y = f"v{i}"
                if Y is None:
                    steps.append(self.leaf_step((self.extent(), k)))
                    Y = f"n{len(steps) - 1}"
                steps.append((f"matmul_t {X} {Y}", None, "op"))
            elif nd == 2:
                k = xs[1]
                ls = (self.extent(), k) if self.coin(0.6) else (self.extent(), self.extent(), k)
                steps.append(self.leaf_step(ls))
                steps.append((f"matmul_t n{len(steps) - 1} {X}", None, "op"))
            else:
                return None

        elif op == "transpose":
            if nd < 2:
                return None
            a, b = self.rng.choice(nd, size=2, replace=False)
            a = int(a) - (nd if self.coin(0.3) else 0)
            b = int(b) - (nd if self.coin(0.3) else 0)
            steps.append((f"transpose {X} {a} {b}", None, "op"))

        elif op == "t":
            if nd < 2:
                return None
            steps.append((f"t {X}", None, "op"))

        elif op == "reshape":
            n = int(np.prod(xs, dtype=np.int64))
            steps.append((f"reshape {X} {fmt_list(self.factor_shape(n))}", None, "op"))

        elif op == "broadcast_to":
            s = [self.extent() + 1 if d == 1 and self.coin(0.7) else d for d in xs]
            if len(s) < 3 and (self.coin(0.4) or tuple(s) == xs):
                s = [self.extent() + 1] + s
            steps.append((f"broadcast_to {X} {fmt_list(s)}", None, "op"))

        elif op == "slice":
            axes = [d for d in range(nd) if xs[d] >= 2]
            if not axes:
                return None
            ax = self.choice(axes)
            start = int(self.rng.integers(0, xs[ax]))
            end = int(self.rng.integers(start + 1, xs[ax] + 1))
            if (start, end) == (0, xs[ax]):
                end -= 1
            ax_txt = ax - nd if self.coin(0.3) else ax
            steps.append((f"slice {X} {ax_txt} {start} {end}", None, "op"))

        elif op == "concat":
            if nd == 0:
                return None
            ax = int(self.rng.integers(nd))
            parts = [X]
            for _ in range(int(self.rng.integers(1, 3))):
                if self.coin(0.3):
                    parts.append(X)  # the same value twice: gradients accumulate
                    continue
                s = list(xs)
                s[ax] = int(self.rng.integers(1, 4))
                parts.append(self.operand(steps, tuple(s)))
            self.rng.shuffle(parts)
            ax_txt = ax - nd if self.coin(0.3) else ax
            steps.append((f"concat {ax_txt} " + " ".join(parts), None, "op"))

        elif op == "stack":
            parts = [X]
            for _ in range(int(self.rng.integers(1, 3))):
                parts.append(X if self.coin(0.3) else self.operand(steps, xs))
            self.rng.shuffle(parts)
            ax = int(self.rng.integers(-(nd + 1), nd + 1))
            steps.append((f"stack {ax} " + " ".join(parts), None, "op"))

        elif op == "gather":
            if nd == 0:
                return None
            ax = int(self.rng.integers(nd))
            ishape = [
                int(self.rng.integers(1, 4)) if d == ax else int(self.rng.integers(1, xs[d] + 1))
                for d in range(nd)
            ]
            n = int(np.prod(ishape, dtype=np.int64))
            # repeated indices are likely: the backward scatter must add
            idx = [int(i) for i in self.rng.integers(0, xs[ax], n)]
            ax_txt = ax - nd if self.coin(0.3) else ax
            steps.append((f"gather {X} {ax_txt} {fmt_list(ishape)} {fmt_list(idx)}", None, "op"))

        elif op == "index_select":
            if nd == 0:
                return None
            ax = int(self.rng.integers(nd))
            ishape = [int(self.rng.integers(1, 4)) for _ in range(int(self.rng.integers(0, 3)))]
            n = int(np.prod(ishape, dtype=np.int64))
            # repeated indices are likely: the backward scatter must add
            idx = [int(i) for i in self.rng.integers(0, xs[ax], n)]
            ax_txt = ax - nd if self.coin(0.3) else ax
            steps.append((f"index_select {X} {ax_txt} {fmt_list(ishape)} {fmt_list(idx)}", None, "op"))

        elif op == "clamp":
            lo = float(self.choice([-1.5, -0.75, -0.25, 0.0, 0.5]))
            hi = lo + float(self.choice([0.5, 1.0, 2.0]))
            r = int(self.rng.integers(4))
            if r == 0:
                lo = float("-inf")
            elif r == 1:
                hi = float("inf")
            steps.append((f"clamp {X} {lo!r} {hi!r}", None, "op"))

        elif op in ("where_cond", "masked_fill"):
            cs = self.broadcast_partner(xs)
            mask = [int(b) for b in self.rng.integers(0, 2, int(np.prod(cs, dtype=np.int64)))]
            if op == "masked_fill":
                if not _broadcasts(cs, xs):
                    return None
                c = float(self.choice([0.5, -1.0, 0.0, 2.0]))
                steps.append((f"masked_fill {X} {fmt_list(cs)} {fmt_list(mask)} {c!r}", None, "op"))
            else:
                Y = None
                if self.coin(0.4):
                    i = self.pick(lambda s: _broadcasts(s, xs) and s != ())
                    if i is not None and i != x:
                        Y = f"v{i}"
                        ys = self.shape_of(i)
                if Y is None:
                    ys = self.broadcast_partner(xs)
                    steps.append(self.leaf_step(ys))
                    Y = f"n{len(steps) - 1}"
                try:
                    np.broadcast_shapes(cs, xs, ys)
                except ValueError:
                    return None
                a, b = (X, Y) if self.coin(0.6) else (Y, X)
                steps.append((f"where_cond {a} {fmt_list(cs)} {fmt_list(mask)} {b}", None, "op"))

        elif op in ("gru_gates", "gru_hidden"):
            # Gates [.., 3H]: an existing value whose last axis fits, or a new leaf.
            if nd >= 1 and xs[-1] % 3 == 0 and self.coin(0.7):
                A, lead, h = X, list(xs[:-1]), xs[-1] // 3
            else:
                lead = [self.extent() for _ in range(int(self.rng.integers(0, 3)))]
                h = int(self.choice([1, 2]))
                if np.prod(lead + [3 * h], dtype=np.int64) > MAX_NUMEL:
                    return None
                steps.append(self.leaf_step(tuple(lead + [3 * h])))
                A = f"n{len(steps) - 1}"
            if op == "gru_gates":
                Q = self.operand(steps, tuple(lead + [3 * h]))
                steps.append((f"gru_gates {A} {Q}", None, "op"))
            else:
                if self.coin(0.5):
                    Q = self.operand(steps, tuple(lead + [3 * h]))
                    steps.append((f"gru_gates {A} {Q}", None, "op"))
                    A = f"n{len(steps) - 1}"
                H = self.operand(steps, tuple(lead + [h]))
                steps.append((f"gru_hidden {A} {H}", None, "op"))

        elif op in ("lstm_gates", "lstm_cell", "lstm_hidden"):
            # Gates [.., 4H]: an existing value whose last axis fits, or a new leaf
            # (for the state ops, often passed through lstm_gates first, as in a cell).
            if nd >= 1 and xs[-1] % 4 == 0 and self.coin(0.7):
                A, lead, h = X, list(xs[:-1]), xs[-1] // 4
            else:
                lead = [self.extent() for _ in range(int(self.rng.integers(0, 3)))]
                h = int(self.choice([1, 2]))
                if np.prod(lead + [4 * h], dtype=np.int64) > MAX_NUMEL:
                    return None
                steps.append(self.leaf_step(tuple(lead + [4 * h])))
                A = f"n{len(steps) - 1}"
                if op != "lstm_gates" and self.coin(0.5):
                    steps.append((f"lstm_gates {A}", None, "op"))
                    A = f"n{len(steps) - 1}"
            if op == "lstm_gates":
                steps.append((f"lstm_gates {A}", None, "op"))
            else:
                C = self.operand(steps, tuple(lead + [h]))
                steps.append((f"{op} {A} {C}", None, "op"))

        elif op == "pad":
            if nd == 0:
                return None
            axes = int(self.rng.integers(1, min(nd, 2) + 1))
            widths = [int(w) for w in self.rng.integers(0, 3, 2 * axes)]
            out = list(xs)
            for k in range(axes):
                out[nd - 1 - k] += widths[2 * k] + widths[2 * k + 1]
            if sum(widths) == 0 or np.prod(out) > MAX_NUMEL:
                return None
            steps.append((f"pad {X} {fmt_list(widths)}", None, "op"))

        elif op == "conv2d":
            groups = self.choice([1, 1, 2])
            cin = groups * int(self.rng.integers(1, 3))
            cout = groups * int(self.rng.integers(1, 3))
            k = [int(self.rng.integers(1, 3)), int(self.rng.integers(1, 4))]
            stride = [int(self.rng.integers(1, 3)), int(self.rng.integers(1, 3))]
            pad = [int(self.rng.integers(0, 2)), int(self.rng.integers(0, 2))]
            dil = [int(self.rng.integers(1, 3)), 1]
            n = int(self.rng.integers(1, 3))
            h, w = int(self.rng.integers(2, 5)), int(self.rng.integers(3, 6))
            span = [dil[i] * (k[i] - 1) + 1 for i in range(2)]
            if h + 2 * pad[0] < span[0] or w + 2 * pad[1] < span[1] or n * cin * h * w > MAX_NUMEL:
                return None
            X = self.operand(steps, (n, cin, h, w))
            steps.append(self.leaf_step((cout, cin // groups, k[0], k[1]), const=False))
            W = f"n{len(steps) - 1}"
            B = "none"
            if self.coin(0.6):
                steps.append(self.leaf_step((cout,)))
                B = f"n{len(steps) - 1}"
            steps.append((f"conv2d {X} {W} {B} {fmt_list(stride)} {fmt_list(pad)} {fmt_list(dil)} {groups}", None, "op"))

        elif op in ("max_pool2d", "avg_pool2d"):
            k = [int(self.rng.integers(1, 3)), int(self.rng.integers(2, 4))]
            st = [int(self.rng.integers(1, 3)), int(self.rng.integers(1, 3))]
            pad = [int(self.rng.integers(0, k[0] // 2 + 1)), int(self.rng.integers(0, k[1] // 2 + 1))]
            n, c = int(self.rng.integers(1, 3)), int(self.rng.integers(1, 3))
            h, w = int(self.rng.integers(2, 5)), int(self.rng.integers(3, 6))
            if h + 2 * pad[0] < k[0] or w + 2 * pad[1] < k[1] or n * c * h * w > MAX_NUMEL:
                return None
            X = self.operand(steps, (n, c, h, w))
            steps.append((f"{op} {X} {fmt_list(k)} {fmt_list(st)} {fmt_list(pad)}", None, "op"))

        elif op in ("softmax", "log_softmax"):
            if nd == 0:
                return None
            steps.append((f"{op} {X} {self.axis(xs)}", None, "op"))

        elif op == "cross_entropy":
            if nd != 2:
                return None
            labels = [int(i) for i in self.rng.integers(0, xs[1], xs[0])]
            steps.append((f"cross_entropy {X} {fmt_list(labels)}", None, "op"))

        elif op == "mse":
            Y = self.operand(steps, xs)
            if Y == X:
                return None
            a, b = (X, Y) if self.coin(0.7) else (Y, X)
            steps.append((f"mse {a} {b}", None, "op"))

        elif op == "bce_with_logits":
            # targets in [0, 1]: a new leaf, or a sigmoid of another value
            if self.coin(0.7):
                steps.append(self.leaf_step(xs, unit=True))
                T = f"n{len(steps) - 1}"
            else:
                i = self.pick(lambda s: s == xs)
                if i is None or i == x:
                    return None
                steps.append((f"sigmoid v{i}", None, "op"))
                T = f"n{len(steps) - 1}"
            steps.append((f"bce_with_logits {X} {T}", None, "op"))

        else:
            raise AssertionError(op)

        return self.commit(steps)

    def reduce_to_scalar(self, i, final):
        """Steps reducing value `i` to a scalar; returns the scalar's index."""
        s = self.shape_of(i)
        if s == ():
            return i
        X = f"v{i}"
        for _ in range(50):
            r = self.rng.random()
            steps = []
            if r < 0.45 or not final:
                # a weighted sum with a fixed constant, so gradients are not all one
                steps.append(self.leaf_step(s, const=True))
                steps.append((f"mul {X} n0", None, "op"))
                steps.append(("sum n1", None, "op"))
            elif r < 0.55:
                steps.append((f"sum {X}", None, "op"))
            elif r < 0.65:
                steps.append((f"mean {X}", None, "op"))
            elif r < 0.78:
                steps.append(self.leaf_step(s, const=True))
                steps.append((f"mse {X} n0", None, "op"))
            elif r < 0.9:
                steps.append(self.leaf_step(s, unit=True, const=True))
                steps.append((f"bce_with_logits {X} n0", None, "op"))
            elif len(s) == 2:
                labels = [int(j) for j in self.rng.integers(0, s[1], s[0])]
                steps.append((f"cross_entropy {X} {fmt_list(labels)}", None, "op"))
            else:
                continue
            try:
                return self.commit(steps)[-1]
            except Reject:
                continue
        raise Reject("could not reduce")


def _broadcasts(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def generate(rng, drawn):
    """One program. `drawn` counts the ops in the bodies of the programs so far; an op
    drawn fewer than RARE times gets RARE_BOOST times its weight, so that every op
    is exercised several times."""
    while True:
        g = Gen(rng)
        # 1 to 3 starting leaves that get gradients
        for _ in range(int(rng.integers(1, 4))):
            s = g.shape(1, 3) if g.coin(0.85) else ()
            g.commit([g.leaf_step(s, positive=g.coin(0.25), const=False)])
        body = int(rng.integers(3, 10))
        done, attempts = 0, 0
        ops = list(WEIGHT)
        p = np.asarray([WEIGHT[o] * (RARE_BOOST if drawn[o] < RARE else 1.0) for o in ops])
        p = p / p.sum()
        body_ops = []
        while done < body and attempts < 400:
            attempts += 1
            op = ops[int(rng.choice(len(ops), p=p))]
            try:
                if g.step(op) is not None:
                    done += 1
                    body_ops.append(op)
            except Reject:
                pass
        g.body_ops = body_ops
        try:
            out = g.reduce_to_scalar(len(g.env) - 1, final=True)
            # Fold in every other value nothing has read, so that every leaf matters.
            spare = [
                i
                for i in range(len(g.env) - 1)
                if g.uses[i] == 0 and g.kinds[i] != "const" and i != out
            ]
            for i in spare:
                j = g.reduce_to_scalar(i, final=False)
                out = g.commit([(f"add v{out} v{j}", None, "op")])[-1]
        except Reject:
            continue
        assert g.env[-1].shape == ()
        return g


def oracle(g, directions=None):
    """JAX's output and gradient with respect to every var leaf, as a function of the
    leaves (not the values recorded during generation). With `directions` (one array
    per var leaf), also the forward tangent of the output along them and the
    Hessian-vector product, forward over reverse: `jvp(f, vars, v)` and
    `jvp(grad(f), vars, v)`."""
    kinds = [k for k in g.kinds if k in ("var", "const")]
    var_pos = [n for n, k in enumerate(kinds) if k == "var"]

    def f(*vars_):
        inputs = list(g.inputs)
        for n, v in zip(var_pos, vars_):
            inputs[n] = v
        return evaluate(g.lines, inputs)[-1]

    args = tuple(g.inputs[n] for n in var_pos)
    argnums = tuple(range(len(args)))
    out, grads = jax.value_and_grad(f, argnums=argnums)(*args)
    grads = [np.asarray(gr, dtype=np.float64) for gr in grads]
    if directions is None:
        return float(out), grads
    v = tuple(jnp.asarray(d) for d in directions)
    _, tangent = jax.jvp(f, args, v)
    _, hvp = jax.jvp(lambda *a: jax.grad(f, argnums=argnums)(*a), args, v)
    return float(out), grads, float(tangent), [np.asarray(h, dtype=np.float64) for h in hvp]


def directions_for(seed, n, g):
    """The direction of program `n`'s tangent and Hessian-vector product: uniform in
    [-1, 1) per var leaf, from a stream of its own (seeded by the seed and the program's
    number), so that adding these did not change the programs drawn."""
    rng = np.random.default_rng([seed, n])
    kinds = [k for k in g.kinds if k in ("var", "const")]
    shapes = [np.shape(x) for x, k in zip(g.inputs, kinds) if k == "var"]
    return [rng.uniform(-1.0, 1.0, size=s).astype(np.float64) for s in shapes]


# ---------------------------------------------------------------------------------
# Emission
# ---------------------------------------------------------------------------------


def depth(lines):
    """The number of ops on the longest path from a leaf to the output."""
    d = []
    for line in lines:
        toks = line.split(" = ")[1].split()
        if toks[0] in ("var", "const"):
            d.append(0)
        else:
            d.append(1 + max((d[ref(t)] for t in toks[1:] if re.fullmatch(r"v\d+", t)), default=0))
    return d[-1]


def rust_f64s(arr):
    flat = np.asarray(arr, dtype=np.float64).reshape(-1)
    return "&[" + ", ".join(repr(float(v)) for v in flat) + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--count", type=int, default=N_PROGRAMS)
    ap.add_argument("--out", default=OUT)
    opts = ap.parse_args()
    seed, count, out_path = opts.seed, opts.count, opts.out
    rng = np.random.default_rng(seed)
    programs = []
    op_counts = Counter()
    drawn = Counter()
    while len(programs) < count:
        g = generate(rng, drawn)
        out, grads = oracle(g)
        ok = np.isfinite(out) and all(np.all(np.isfinite(gr)) for gr in grads)
        if not ok or max((float(np.max(np.abs(gr))) for gr in grads), default=0) > MAX_ABS_GRAD:
            continue
        # The graph's output agrees with the value computed while generating it.
        assert abs(out - float(g.env[-1])) <= 1e-12 * max(1.0, abs(out))
        programs.append((g, out, grads))
        drawn.update(g.body_ops)
        for line in g.lines:
            op_counts[line.split(" = ")[1].split()[0]] += 1

    missing = [op for op in OPS if op_counts[op] == 0]
    if missing and count >= N_PROGRAMS:
        raise AssertionError(f"ops never drawn: {missing}")
    if missing:
        print(f"warning: ops never drawn: {missing}")

    body = []
    for n, (g, out, grads) in enumerate(programs):
        text = ", ".join(f'"{line}\\n"' for line in g.lines)
        inputs = ", ".join(rust_f64s(v) for v in g.inputs)
        grad_txt = ", ".join(rust_f64s(gr) for gr in grads)
        # Second order and forward mode, after the programs are fixed (their own stream).
        v = directions_for(seed, n, g)
        _, _, tangent, hvp = oracle(g, v)
        dir_txt = ", ".join(rust_f64s(d) for d in v)
        hvp_txt = ", ".join(rust_f64s(h) for h in hvp)
        body.append(
            f"    // {n}\n"
            f"    Program {{ text: concat!({text}), inputs: &[{inputs}], "
            f"output: {out!r}, grads: &[{grad_txt}], directions: &[{dir_txt}], "
            f"tangent: {tangent!r}, hvp: &[{hvp_txt}] }},"
        )

    jaxlib_version = getattr(jax.lib, "__version__", "?")
    lines_total = sum(len(g.lines) for g, _, _ in programs)
    ops_total = sum(sum(1 for k in g.kinds if k == "op") for g, _, _ in programs)
    counts = ", ".join(f"{op} {op_counts[op]}" for op in OPS)
    header = f"""\
// @generated by tests/oracle/random_programs.py: do not edit, rerun the script (README.md).
// JAX {jax.__version__}, jaxlib {jaxlib_version}, float64, backend {jax.default_backend()}.
// Seed {seed}: {len(programs)} programs, {lines_total} lines, {ops_total} ops.
// Lines per op: {counts}.

/// One random program and JAX's results for it.
pub struct Program {{
    /// The program, one `vK = op operands...` line per value (see the script).
    pub text: &'static str,
    /// The values of its `var` and `const` leaves, in order of appearance, row-major.
    pub inputs: &'static [&'static [f64]],
    /// The value of its last line, a scalar.
    pub output: f64,
    /// The gradient of the output with respect to each `var` leaf, in order, row-major.
    pub grads: &'static [&'static [f64]],
    /// A direction per `var` leaf (uniform in [-1, 1), its own seeded stream).
    pub directions: &'static [&'static [f64]],
    /// The output's forward tangent along `directions` (`jax.jvp`).
    pub tangent: f64,
    /// The Hessian-vector product along `directions`, per `var` leaf
    /// (`jax.jvp(jax.grad(f), ...)`).
    pub hvp: &'static [&'static [f64]],
}}

/// The seed the script drew the programs from.
pub const SEED: u64 = {seed};

/// The programs, in the order they were drawn.
pub const PROGRAMS: &[Program] = &[
"""
    with open(out_path, "w") as f:
        f.write(header)
        f.write("\n".join(body))
        f.write("\n];\n")

    # Lay the file out as `cargo fmt` would, so that formatting the crate leaves it alone.
    try:
        subprocess.run(["rustfmt", "--edition", "2024", out_path], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"warning: rustfmt failed ({e}); run `cargo fmt` before committing")

    print(f"wrote {len(programs)} programs ({lines_total} lines, {ops_total} ops) to {out_path}")
    nops = [sum(1 for k in g.kinds if k == "op") for g, _, _ in programs]
    depths = [depth(g.lines) for g, _, _ in programs]
    grad_elems = np.concatenate([gr.reshape(-1) for _, _, grads in programs for gr in grads])
    print(
        f"ops per program {min(nops)}..{max(nops)} (mean {np.mean(nops):.1f}), "
        f"longest chain {min(depths)}..{max(depths)} (mean {np.mean(depths):.1f}), "
        f"{grad_elems.size} gradient elements, {np.mean(grad_elems == 0):.1%} exactly 0"
    )
    print("lines per op:", counts)


if __name__ == "__main__":
    main()
