#!/usr/bin/env python3
"""JAX oracle for tests/classic_graphs.rs.

Computes, in float64, the loss of four small classic graphs and its gradient with
respect to every input / parameter (and to the hidden states, the "delta" of each
layer), and writes them as Rust constants to classic_graphs_values.rs next to this
script. The inputs below are written literally here AND in tests/classic_graphs.rs;
the generated file also carries them (`*_IN` constants) so the Rust test can assert
that the two copies have not drifted apart.

Run from anywhere:  /work/venv-jax/bin/python tests/oracle/classic_graphs.py
"""

import os
import subprocess

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "classic_graphs_values.rs")

# ---------------------------------------------------------------------------------
# Inputs (keep in sync with tests/classic_graphs.rs; the test checks the *_IN copies).
# ---------------------------------------------------------------------------------

# a. single neuron
NEURON_X = [0.5, -1.5, 2.0]
NEURON_W = [0.3, -0.2, 0.1]
NEURON_B = 0.05

# b. 2-layer MLP
MLP_X = [[0.2, -0.4, 1.0], [1.5, 0.3, -0.7], [-0.9, 0.8, 0.1], [0.6, -1.1, -0.3]]
MLP_W1 = [
    [0.1, -0.3, 0.25, 0.4, -0.15],
    [0.35, 0.2, -0.45, 0.05, 0.3],
    [-0.2, 0.15, 0.1, -0.35, 0.45],
]
MLP_B1 = [0.01, -0.02, 0.03, 0.0, -0.05]
MLP_W2 = [[0.5, -0.25], [-0.4, 0.3], [0.2, 0.6], [-0.1, -0.35], [0.45, 0.15]]
MLP_B2 = [0.1, -0.1]
MLP_T = [[0.3, -0.2], [0.0, 0.5], [-0.4, 0.1], [0.25, -0.6]]

# c. softmax cross-entropy
CE_X = [[1.0, -0.5, 0.25, 2.0], [-1.5, 0.75, 1.25, -0.3], [0.4, 0.9, -1.1, 0.6]]
CE_W = [
    [0.2, -0.1, 0.4, -0.3, 0.05],
    [0.15, 0.35, -0.25, 0.1, -0.4],
    [-0.05, 0.3, 0.2, -0.15, 0.25],
    [0.45, -0.2, 0.1, 0.3, -0.35],
]
CE_B = [0.1, -0.2, 0.05, 0.0, 0.15]
CE_LABELS = [2, 0, 4]

# d. 3-step vanilla RNN
RNN_XS = [
    [[0.5, -0.3, 0.8], [-0.6, 0.2, 0.1]],
    [[0.1, 0.9, -0.4], [0.7, -0.5, 0.3]],
    [[-0.2, 0.4, 0.6], [0.3, 0.3, -0.9]],
]
RNN_WX = [[0.3, -0.2, 0.5, 0.1], [-0.4, 0.25, 0.15, -0.3], [0.2, 0.35, -0.1, 0.45]]
RNN_WH = [
    [0.1, -0.3, 0.2, 0.05],
    [0.25, 0.15, -0.2, 0.1],
    [-0.15, 0.2, 0.3, -0.25],
    [0.05, -0.1, 0.15, 0.35],
]
RNN_B = [0.02, -0.01, 0.03, -0.04]
RNN_WO = [[0.6], [-0.45], [0.3], [0.5]]
RNN_T = [[0.2], [-0.3]]


def a(v):
    return jnp.asarray(v, dtype=jnp.float64)


def mse(y, t):
    return jnp.mean((y - t) ** 2)


# ---------------------------------------------------------------------------------
# The graphs. Each returns the loss; hidden states take an additive zero "probe" so
# that the gradient with respect to the probe is the gradient with respect to the
# hidden state (what descent's `grads.wrt(h)` returns).
# ---------------------------------------------------------------------------------


def neuron(w, b):
    y = jnp.tanh(jnp.dot(w, a(NEURON_X)) + b)
    return (y - 0.5) ** 2


def mlp(w1, b1, w2, b2, probe_h):
    h = jnp.tanh(a(MLP_X) @ w1 + b1) + probe_h
    y = h @ w2 + b2
    return mse(y, a(MLP_T))


def ce_logits(w, b):
    return a(CE_X) @ w + b


def ce_from_logits(z):
    lp = jax.nn.log_softmax(z, axis=-1)
    return -jnp.mean(lp[jnp.arange(len(CE_LABELS)), jnp.asarray(CE_LABELS)])


def ce_composite(w, b):
    return ce_from_logits(ce_logits(w, b))


def ce_fused(w, b):
    z = ce_logits(w, b)
    picked = z[jnp.arange(len(CE_LABELS)), jnp.asarray(CE_LABELS)]
    return jnp.mean(jax.scipy.special.logsumexp(z, axis=-1) - picked)


def rnn(wx, wh, b, wo, p1, p2, p3):
    h = jnp.zeros((2, 4), dtype=jnp.float64)
    for x, p in zip(RNN_XS, (p1, p2, p3)):
        h = jnp.tanh(a(x) @ wx + h @ wh + b) + p
    y = h @ wo
    return mse(y, a(RNN_T))


# ---------------------------------------------------------------------------------
# Emission
# ---------------------------------------------------------------------------------

consts = []


def emit(name, value):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        consts.append(f"pub const {name}: f64 = {float(arr)!r};")
        return
    flat = ", ".join(repr(float(v)) for v in arr.reshape(-1))
    shape = ", ".join(str(d) for d in arr.shape)
    consts.append(f"pub const {name}: &[f64] = &[{flat}];")
    consts.append(f"pub const {name}_SHAPE: &[usize] = &[{shape}];")


def emit_grads(prefix, fn, args, names):
    loss, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
    emit(f"{prefix}_LOSS", loss)
    for n, g in zip(names, grads):
        emit(f"{prefix}_GRAD_{n}", g)


# a
emit("NEURON_IN_X", NEURON_X)
emit("NEURON_IN_W", NEURON_W)
emit("NEURON_IN_B", NEURON_B)
emit_grads("NEURON", neuron, (a(NEURON_W), a(NEURON_B)), ("W", "B"))

# b
mlp_inputs = [("X", MLP_X), ("W1", MLP_W1), ("B1", MLP_B1), ("W2", MLP_W2), ("B2", MLP_B2)]
for n, v in mlp_inputs + [("T", MLP_T)]:
    emit(f"MLP_IN_{n}", v)
emit_grads(
    "MLP",
    mlp,
    (a(MLP_W1), a(MLP_B1), a(MLP_W2), a(MLP_B2), jnp.zeros((4, 5))),
    ("W1", "B1", "W2", "B2", "H"),
)

# c
for n, v in [("X", CE_X), ("W", CE_W), ("B", CE_B)]:
    emit(f"CE_IN_{n}", v)
consts.append(f"pub const CE_IN_LABELS: &[usize] = &{CE_LABELS!r};")
ce_args = (a(CE_W), a(CE_B))
emit_grads("CE", ce_composite, ce_args, ("W", "B"))
# The gradient with respect to the logits (descent's δ of the logits node).
emit("CE_GRAD_LOGITS", jax.grad(ce_from_logits)(ce_logits(*ce_args)))
# JAX's own fused form (logsumexp minus the picked logit), a check on the oracle.
fused_loss, fused_grads = jax.value_and_grad(ce_fused, argnums=(0, 1))(*ce_args)
emit("CE_FUSED_LOSS", fused_loss)
emit("CE_FUSED_GRAD_W", fused_grads[0])
emit("CE_FUSED_GRAD_B", fused_grads[1])

# d
emit("RNN_IN_XS", RNN_XS)
for n, v in [("WX", RNN_WX), ("WH", RNN_WH), ("B", RNN_B), ("WO", RNN_WO), ("T", RNN_T)]:
    emit(f"RNN_IN_{n}", v)
z = jnp.zeros((2, 4))
emit_grads(
    "RNN",
    rnn,
    (a(RNN_WX), a(RNN_WH), a(RNN_B), a(RNN_WO), z, z, z),
    ("WX", "WH", "B", "WO", "H1", "H2", "H3"),
)

jaxlib_version = getattr(jax.lib, "__version__", "?")
header = f"""\
// @generated by tests/oracle/classic_graphs.py: do not edit, rerun the script (README.md).
// JAX {jax.__version__}, jaxlib {jaxlib_version}, float64, backend {jax.default_backend()}.
//
// `*_IN_*` are the inputs the script used; `*_LOSS` the loss; `*_GRAD_*` the gradient
// of the loss with respect to one input, row-major, with its `_SHAPE`.
"""

with open(OUT, "w") as f:
    f.write(header)
    f.write("\n".join(consts))
    f.write("\n")

# Lay the file out as `cargo fmt` would, so that formatting the crate leaves it alone.
try:
    subprocess.run(["rustfmt", "--edition", "2024", OUT], check=True)
except (OSError, subprocess.CalledProcessError) as e:
    print(f"warning: rustfmt failed ({e}); run `cargo fmt` before committing")

print(f"wrote {len(consts)} constants to {OUT}")
