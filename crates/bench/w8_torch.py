#!/usr/bin/env python3
"""W8 `lstm-train` in PyTorch eager: the peer of `descent-bench W8` (crates/bench/src/w8.rs).

An nn.LSTM(32, 128, batch_first=True) and an nn.Linear(128, 10) on the last hidden state,
f32, mean cross-entropy, torch.optim.SGD(lr=0.1); batch 32, 50 steps. Data and initial
values from the SplitMix64 recipe of w8.rs (the same numbers). Each repetition starts
from the initial values: 3 warm-up steps, 20 timed; prints one JSON line with the median
ms per step over the repetitions and the final loss.

With `--gru`, an nn.GRU in place of the LSTM (weights of 3 gates, the same seeds): the
peer of `descent-bench W8 --gru`.

Usage: python w8_torch.py [--threads N] [--reps K] [--gru]   (pin with taskset as descent-bench)
"""
import argparse
import json
import math
import time

import numpy as np
import torch

GOLDEN, M1, M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
BATCH, SEQ, INPUT, HIDDEN, CLASSES, NBATCH, WARMUP, STEPS, LR = 32, 50, 32, 128, 10, 8, 3, 20, 0.1


def uniform(seed, n):
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def normal(seed, n):
    u = uniform(seed, 2 * n)
    return np.sqrt(-2.0 * np.log(1.0 - u[0::2])) * np.cos(2.0 * np.pi * u[1::2])


def unif_sym(seed, n, bound):
    return (2.0 * uniform(seed, n) - 1.0) * bound


def data(gates=4):
    n = BATCH * NBATCH
    x = normal(801, n * SEQ * INPUT).astype(np.float32).reshape(n, SEQ, INPUT)
    teacher = normal(802, INPUT * CLASSES).reshape(INPUT, CLASSES)
    labels = np.argmax(x.astype(np.float64).mean(axis=1) @ teacher, axis=1)
    bound = 1.0 / math.sqrt(HIDDEN)
    shapes = [("weight_ih_l0", (gates * HIDDEN, INPUT)), ("weight_hh_l0", (gates * HIDDEN, HIDDEN)),
              ("bias_ih_l0", (gates * HIDDEN,)), ("bias_hh_l0", (gates * HIDDEN,)),
              ("head.weight", (CLASSES, HIDDEN)), ("head.bias", (CLASSES,))]
    params = {name: unif_sym(811 + i, int(np.prod(s)), bound).astype(np.float32).reshape(s)
              for i, (name, s) in enumerate(shapes)}
    return torch.from_numpy(x), torch.from_numpy(labels), params


def rep(x, labels, params, gru=False):
    lstm = (torch.nn.GRU if gru else torch.nn.LSTM)(INPUT, HIDDEN, batch_first=True)
    head = torch.nn.Linear(HIDDEN, CLASSES)
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            p.copy_(torch.from_numpy(params[name]))
        head.weight.copy_(torch.from_numpy(params["head.weight"]))
        head.bias.copy_(torch.from_numpy(params["head.bias"]))
    opt = torch.optim.SGD(list(lstm.parameters()) + list(head.parameters()), lr=LR)
    loss = None
    for k in range(WARMUP + STEPS):
        if k == WARMUP:
            t0 = time.perf_counter()
        b = k % NBATCH
        xb, yb = x[b * BATCH:(b + 1) * BATCH], labels[b * BATCH:(b + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        out, _ = lstm(xb)
        loss = torch.nn.functional.cross_entropy(head(out[:, -1]), yb)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / STEPS * 1e3, loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--gru", action="store_true", help="a GRU layer in place of the LSTM")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, labels, params = data(3 if a.gru else 4)
    rep(x, labels, params, a.gru)  # warm-up repetition
    times, losses = zip(*(rep(x, labels, params, a.gru) for _ in range(a.reps)))
    print(json.dumps({"peer": "torch", "workload": "W8", "cell": "gru" if a.gru else "lstm",
                      "threads": a.threads, "torch": torch.__version__,
                      "ms_per_step": {"median": float(np.median(times)), "min": min(times), "max": max(times)},
                      "final_loss": losses[-1]}))


if __name__ == "__main__":
    main()
