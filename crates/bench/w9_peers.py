"""W9 `mlp-hvp` in the peers: a Hessian-vector product of W3's loss (784-512-256-10
ReLU MLP, softmax cross-entropy, batch 0 of 128, f32, W3's initial values) with
respect to all six parameters, beside one plain gradient in the same run.

- PyTorch (eager): double backward, `autograd.grad(loss, ps, create_graph=True)`, then
  `autograd.grad(<g, v>, ps)`; the gradient is `autograd.grad(loss, ps)`.
- JAX: `jit(lambda ps: jvp(grad(loss), (ps,), (v,))[1])` (forward over reverse); the
  gradient is `jit(grad(loss))`.

The direction v: parameter l (W1, b1, W2, b2, W3, b3) `unif_sym(900 + l, shape, 1)`
rounded to f32, as descent's `crates/bench/src/w9.rs` draws it. The data and weights
come from the peers' `common.py` (shared/peers, found next to the workspace or through
PEERS_DIR).

Usage: taskset -c 0 python crates/bench/w9_peers.py --peer torch|jax [--reps 5] [--threads 1]
One JSON line per peer: medians over reps of ms per call (10 calls after 2 warm-up ones).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("PEERS_DIR", os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "peers")))
if not os.path.isdir(PEERS):
    PEERS = "/work/shared/peers"
sys.path.insert(0, PEERS)
import common as C  # noqa: E402
import numpy as np  # noqa: E402

CALLS = 10


def per_call(f):
    f()
    f()
    t0 = time.perf_counter()
    for _ in range(CALLS):
        f()
    return (time.perf_counter() - t0) / CALLS * 1e3


def data():
    X, labels, p0 = C.w3_data()
    xb, lb = X[: C.W3_BATCH], labels[: C.W3_BATCH]
    v = [C.unif_sym(900 + l, p.shape, 1.0).astype(np.float32) for l, p in enumerate(p0)]
    return xb, lb, p0, v


def torch_run(args):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    xb, lb, p0, v = data()
    xb, lb = torch.from_numpy(xb), torch.from_numpy(lb)
    ps = [torch.from_numpy(p.copy()).requires_grad_(True) for p in p0]
    vs = [torch.from_numpy(x) for x in v]

    def loss_fn():
        W1, b1, W2, b2, W3, b3 = ps
        h = torch.relu(F.linear(xb, W1, b1))
        h = torch.relu(F.linear(h, W2, b2))
        return F.cross_entropy(F.linear(h, W3, b3), lb)

    def gradient():
        return torch.autograd.grad(loss_fn(), ps)

    def hvp():
        gs = torch.autograd.grad(loss_fn(), ps, create_graph=True)
        dot = sum((g * u).sum() for g, u in zip(gs, vs))
        return torch.autograd.grad(dot, ps)

    return run(args, "pytorch", gradient, hvp, lambda: [h.numpy() for h in hvp()], torch.__version__)


def jax_run(args):
    import jax
    import jax.numpy as jnp

    xb, lb, p0, v = data()
    xb, lb = jnp.asarray(xb), jnp.asarray(lb)
    ps = [jnp.asarray(p) for p in p0]
    vs = [jnp.asarray(x) for x in v]

    def loss_fn(ps):
        W1, b1, W2, b2, W3, b3 = ps
        h = jax.nn.relu(xb @ W1.T + b1)
        h = jax.nn.relu(h @ W2.T + b2)
        lp = jax.nn.log_softmax(h @ W3.T + b3, axis=-1)
        return -jnp.mean(jnp.take_along_axis(lp, lb[:, None], axis=1))

    grad = jax.jit(jax.grad(loss_fn))
    hvp_f = jax.jit(lambda ps, vs: jax.jvp(jax.grad(loss_fn), (ps,), (vs,))[1])

    def block(xs):
        for x in xs:
            x.block_until_ready()
        return xs

    return run(
        args,
        "jax",
        lambda: block(grad(ps)),
        lambda: block(hvp_f(ps, vs)),
        lambda: [np.asarray(h) for h in hvp_f(ps, vs)],
        jax.__version__,
    )


def run(args, peer, gradient, hvp, values, version):
    g_ms, h_ms, ratio = [], [], []
    for _ in range(args.reps):
        g = per_call(gradient)
        h = per_call(hvp)
        g_ms.append(g)
        h_ms.append(h)
        ratio.append(h / g)
    norm = float(np.sqrt(sum(float((h.astype(np.float64) ** 2).sum()) for h in values())))
    print(json.dumps({
        "peer": peer, "version": version, "workload": "W9", "threads": args.threads,
        "calls": CALLS, "ms_gradient": C.summarize(g_ms), "ms_hvp": C.summarize(h_ms),
        "hvp_over_gradient": C.summarize(ratio), "hvp_norm": norm,
    }, sort_keys=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", choices=["torch", "jax"], required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    (torch_run if args.peer == "torch" else jax_run)(args)


if __name__ == "__main__":
    main()
