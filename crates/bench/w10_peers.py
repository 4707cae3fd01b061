#!/usr/bin/env python3
"""W10 `wide-mlp` in the peers: the peer of `descent-bench W10` (crates/bench/src/w10.rs).

A 512 -> 2048 -> 2048 -> 10 ReLU MLP, f32, batch 16, mean softmax cross-entropy, one plain
SGD step (learning rate 0.01, no momentum) per batch: forward, loss, backward, update.
8 batches of 16; step k uses batch k mod 8; 5 warm-up steps, then 50 timed. Each
repetition starts from the initial values.

Data and initial values (SplitMix64 streams of shared/peers/common.py, as descent draws
them): teacher T [512, 10] normal seed 1000; X [128, 512] normal seed 1001 rounded to f32;
labels argmax(f64(X) @ T); layer l: W [out, in] unif_sym(1/sqrt(in)) seed 1011 + 2l,
b [out] seed 1012 + 2l, rounded to f32.

- PyTorch eager: F.linear / relu / F.cross_entropy, torch.optim.SGD(lr=0.01).
- JAX: jit(step) of value_and_grad and the update (parameters donated), as the W3 peer.

Usage: taskset -c 0 python crates/bench/w10_peers.py --peer torch|jax [--threads 1] [--reps 5]
       python crates/bench/w10_peers.py --keys   (the input checksums descent's test compares)
One JSON line: the median over repetitions of ms per step, and the final loss.
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

SIZES = [512, 2048, 2048, 10]
BATCH, NBATCH, WARMUP, STEPS, LR = 16, 8, 5, 50, 0.01


def data():
    n = BATCH * NBATCH
    T = C.normal_arr(1000, (SIZES[0], SIZES[3]))
    X = C.normal_arr(1001, (n, SIZES[0])).astype(np.float32)
    labels = np.argmax(X.astype(np.float64) @ T, axis=1).astype(np.int64)
    params = []
    for l in range(3):
        bound = 1.0 / np.sqrt(SIZES[l])
        params.append(C.unif_sym(1011 + 2 * l, (SIZES[l + 1], SIZES[l]), bound).astype(np.float32))
        params.append(C.unif_sym(1012 + 2 * l, (SIZES[l + 1],), bound).astype(np.float32))
    return X, labels, params


def key(a):
    """descent_bench::peer_key: sum over i of (i + 1) * bits(a[i]), wrapping."""
    bits = a.ravel().view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        return int((bits * np.arange(1, bits.size + 1, dtype=np.uint64)).sum(dtype=np.uint64))


def torch_run(args):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    X, labels, p0 = data()
    Xb = torch.from_numpy(X).split(BATCH)
    Lb = torch.from_numpy(labels).split(BATCH)
    times, losses = [], []
    for _ in range(args.reps + 1):  # the first repetition warms up and is dropped
        ps = [torch.from_numpy(p.copy()).requires_grad_(True) for p in p0]
        W1, b1, W2, b2, W3, b3 = ps
        opt = torch.optim.SGD(ps, lr=LR)
        for k in range(WARMUP + STEPS):
            if k == WARMUP:
                t0 = time.perf_counter()
            xb, lb = Xb[k % NBATCH], Lb[k % NBATCH]
            h = torch.relu(F.linear(xb, W1, b1))
            h = torch.relu(F.linear(h, W2, b2))
            loss = F.cross_entropy(F.linear(h, W3, b3), lb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append((time.perf_counter() - t0) / STEPS * 1e3)
        losses.append(loss.item())
    return "torch", torch.__version__, "eager", times[1:], losses[1:]


def jax_run(args):
    import jax
    import jax.numpy as jnp

    X, labels, p0 = data()
    Xb = [jnp.asarray(X[i * BATCH:(i + 1) * BATCH]) for i in range(NBATCH)]
    Lb = [jnp.asarray(labels[i * BATCH:(i + 1) * BATCH]) for i in range(NBATCH)]

    def loss_fn(ps, xb, lb):
        W1, b1, W2, b2, W3, b3 = ps
        h = jax.nn.relu(xb @ W1.T + b1)
        h = jax.nn.relu(h @ W2.T + b2)
        lp = jax.nn.log_softmax(h @ W3.T + b3, axis=-1)
        return -jnp.mean(jnp.take_along_axis(lp, lb[:, None], axis=1))

    def step(ps, xb, lb):
        loss, gs = jax.value_and_grad(loss_fn)(ps, xb, lb)
        return [p - LR * g for p, g in zip(ps, gs)], loss

    cstep = jax.jit(step, donate_argnums=(0,))
    times, losses = [], []
    for _ in range(args.reps + 1):  # the first repetition compiles and is dropped
        ps = [jnp.asarray(p) for p in p0]
        for k in range(WARMUP + STEPS):
            if k == WARMUP:
                for p in ps:
                    p.block_until_ready()
                t0 = time.perf_counter()
            ps, loss = cstep(ps, Xb[k % NBATCH], Lb[k % NBATCH])
        for p in ps:
            p.block_until_ready()
        times.append((time.perf_counter() - t0) / STEPS * 1e3)
        losses.append(float(loss))
    return "jax", jax.__version__, "jit(step)", times[1:], losses[1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", choices=["torch", "jax"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keys", action="store_true")
    args = ap.parse_args()
    if args.keys:
        X, labels, p0 = data()
        lab = int(sum((i + 1) * int(l) for i, l in enumerate(labels)))
        print(json.dumps({"x": key(X), "labels": lab, "labels_head": labels[:10].tolist(),
                          "params": [key(p) for p in p0]}))
        return
    if args.peer is None:
        ap.error("--peer or --keys")
    peer, version, variant, times, losses = (torch_run if args.peer == "torch" else jax_run)(args)
    gflop = 6 * BATCH * sum(SIZES[l] * SIZES[l + 1] for l in range(3)) / 1e9
    ms = C.summarize(times)
    print(json.dumps({"peer": peer, "version": version, "workload": "W10", "variant": variant,
                      "threads": args.threads, "steps": STEPS, "warmup": WARMUP, "ms_per_step": ms,
                      "achieved_gflops": gflop / (ms["median"] / 1e3), "final_loss": losses[0],
                      "final_loss_all": losses}, sort_keys=True))


if __name__ == "__main__":
    main()
