#!/usr/bin/env python3
"""JAX oracle for crates/backprop/tests/conv_hvp_jax.rs.

A tiny CNN loss in float64, every input a variable:

    h  = conv2d(x, w1, b1, stride (2, 1), padding (1, 2), dilation (1, 2), groups 2)
    p  = avg_pool2d(tanh(h), kernel 2, stride 2, padding 1)   # zeros counted, PyTorch's default
    q  = conv1d(reshape(p, [n, c, h*w]), w2, b2, stride 2, padding 1, dilation 2, groups 3)
    L  = sum(c ⊙ tanh(q)) + 0.1 · sum(q²)

It writes conv_hvp.json next to this script: the inputs, the fixed weights `c`, a
direction per input, the loss, its gradient and the Hessian-vector product along the
direction (`jax.jvp(jax.grad(L))`, forward over reverse), each flat and row-major with
its shape. The Rust test reads the inputs from the JSON, so the two cannot drift.

Run from the repo root:
    /work/peers-env/venv-jax/bin/python crates/backprop/tests/oracle/conv_hvp.py
"""

import json
import os

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_hvp.json")
NAMES = ["x", "w1", "b1", "w2", "b2"]
SHAPES = {
    "x": (2, 4, 7, 8),
    "w1": (6, 2, 3, 2),
    "b1": (6,),
    "w2": (3, 2, 3),
    "b2": (3,),
}


def conv(x, w, b, stride, padding, dilation, groups):
    """PyTorch's conv2d (NCHW, OIHW, cross-correlation, symmetric zero padding)."""
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=stride,
        padding=[(p, p) for p in padding],
        rhs_dilation=dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=groups,
        precision=jax.lax.Precision.HIGHEST,
    )
    return y + b.reshape((1, -1) + (1,) * (x.ndim - 2))


def conv1d(x, w, b, stride, padding, dilation, groups):
    """conv1d as conv2d over height 1, as descent runs it."""
    y = conv(x[:, :, None, :], w[:, :, None, :], b, (1, stride), (0, padding), (1, dilation), groups)
    return y[:, :, 0, :]


def avg_pool2d(x, k, s, p):
    """PyTorch's avg_pool2d with count_include_pad=True and ceil_mode=False."""
    xp = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    total = jax.lax.reduce_window(xp, 0.0, jax.lax.add, (1, 1, k, k), (1, 1, s, s), "VALID")
    return total / (k * k)


def loss(params, c):
    x, w1, b1, w2, b2 = params
    h = conv(x, w1, b1, (2, 1), (1, 2), (1, 2), 2)
    p = avg_pool2d(jnp.tanh(h), 2, 2, 1)
    n, ch, ph, pw = p.shape
    q = conv1d(p.reshape(n, ch, ph * pw), w2, b2, 2, 1, 2, 3)
    return jnp.sum(c * jnp.tanh(q)) + 0.1 * jnp.sum(q * q)


def main():
    rng = np.random.default_rng(20261206)
    params = [rng.uniform(-1.0, 1.0, SHAPES[k]) for k in NAMES]
    dirs = [rng.uniform(-1.0, 1.0, SHAPES[k]) for k in NAMES]
    params = [jnp.asarray(a) for a in params]
    dirs = [jnp.asarray(a) for a in dirs]
    # The output's shape, for the fixed weights c.
    q_shape = jax.eval_shape(
        lambda ps: conv1d(
            avg_pool2d(jnp.tanh(conv(ps[0], ps[1], ps[2], (2, 1), (1, 2), (1, 2), 2)), 2, 2, 1).reshape(2, 6, -1),
            ps[3],
            ps[4],
            2,
            1,
            2,
            3,
        ),
        params,
    ).shape
    c = jnp.asarray(rng.uniform(0.5, 1.5, q_shape))
    f = lambda ps: loss(ps, c)  # noqa: E731
    value, grads = jax.value_and_grad(f)(params)
    _, hv = jax.jvp(jax.grad(f), (params,), (dirs,))

    def flat(a):
        return [float(v) for v in np.asarray(a).reshape(-1)]

    out = {
        "generator": f"crates/backprop/tests/oracle/conv_hvp.py, JAX {jax.__version__}, float64, cpu",
        "loss": float(value),
        "c": flat(c),
        "c_shape": list(q_shape),
    }
    for k, a, d, g, h in zip(NAMES, params, dirs, grads, hv):
        out[f"{k}_shape"] = list(SHAPES[k])
        out[k] = flat(a)
        out[f"{k}_dir"] = flat(d)
        out[f"{k}_grad"] = flat(g)
        out[f"{k}_hvp"] = flat(h)
    with open(OUT, "w") as fh:
        # One key per line, so that the Rust test's reader stays trivial; floats as
        # Python's repr, which reads back to the same f64.
        fh.write("{\n")
        items = list(out.items())
        for i, (k, v) in enumerate(items):
            fh.write(f"  {json.dumps(k)}: {json.dumps(v)}{',' if i + 1 < len(items) else ''}\n")
        fh.write("}\n")
    print(f"wrote {OUT}: loss {float(value)!r}")


if __name__ == "__main__":
    main()
