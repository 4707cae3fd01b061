#!/usr/bin/env python3
"""W7 `cnn-train` in PyTorch eager: the peer of `descent-bench W7` (crates/bench/src/w7.rs).

The cnn_digits CNN as an nn.Sequential: Conv2d(1, 32, 3, padding=1), ReLU, MaxPool2d(2),
Conv2d(32, 64, 3, padding=1), ReLU, MaxPool2d(2), Flatten, Linear(256, 10); f32, mean
cross-entropy, torch.optim.SGD(lr=0.1); batch 64 of [1, 8, 8]. Data and initial values
from the SplitMix64 recipe of w7.rs (the same numbers). Each repetition starts from the
initial values: 3 warm-up steps, 20 timed; prints one JSON line with the median ms per
step over the repetitions and the final loss, and the cost of an evaluation pass over
the 8 batches with autograd recording and under torch.no_grad().

Usage: python w7_torch.py [--threads N] [--reps K]   (pin with taskset as descent-bench)
"""
import argparse
import json
import math
import time

import numpy as np
import torch

GOLDEN, M1, M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
BATCH, SIDE, CLASSES, NBATCH, WARMUP, STEPS, LR = 64, 8, 10, 8, 3, 20, 0.1


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


def data():
    n, pixels = BATCH * NBATCH, SIDE * SIDE
    x = uniform(701, n * pixels).astype(np.float32).reshape(n, pixels)
    teacher = normal(702, pixels * CLASSES).reshape(pixels, CLASSES)
    labels = np.argmax(x.astype(np.float64) @ teacher, axis=1)
    shapes = [("0.weight", (32, 1, 3, 3), 9), ("0.bias", (32,), 9),
              ("3.weight", (64, 32, 3, 3), 288), ("3.bias", (64,), 288),
              ("7.weight", (CLASSES, 256), 256), ("7.bias", (CLASSES,), 256)]
    params = {name: unif_sym(711 + i, int(np.prod(s)), 1.0 / math.sqrt(fan)).astype(np.float32).reshape(s)
              for i, (name, s, fan) in enumerate(shapes)}
    return torch.from_numpy(x.reshape(n, 1, SIDE, SIDE)), torch.from_numpy(labels), params


def model(params):
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(256, CLASSES))
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.from_numpy(params[name]))
    return net


def rep(x, labels, params):
    net = model(params)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss = None
    for k in range(WARMUP + STEPS):
        if k == WARMUP:
            t0 = time.perf_counter()
        b = k % NBATCH
        xb, yb = x[b * BATCH:(b + 1) * BATCH], labels[b * BATCH:(b + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / STEPS * 1e3, loss.item()


def eval_costs(x, labels, params, reps):
    """ms per evaluation pass, recorded and under no_grad, interleaved (as w7.rs)."""
    net = model(params)
    times = {False: [], True: []}
    for r in range(reps + 1):
        for off in (False, True):
            t0 = time.perf_counter()
            for b in range(NBATCH):
                xb, yb = x[b * BATCH:(b + 1) * BATCH], labels[b * BATCH:(b + 1) * BATCH]
                if off:
                    with torch.no_grad():
                        torch.nn.functional.cross_entropy(net(xb), yb).item()
                else:
                    torch.nn.functional.cross_entropy(net(xb), yb).item()
            if r > 0:
                times[off].append((time.perf_counter() - t0) / NBATCH * 1e3)
    return float(np.median(times[False])), float(np.median(times[True]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, labels, params = data()
    rep(x, labels, params)  # warm-up repetition
    times, losses = zip(*(rep(x, labels, params) for _ in range(a.reps)))
    recorded, no_grad = eval_costs(x, labels, params, 4 * a.reps)
    print(json.dumps({"peer": "torch", "workload": "W7", "threads": a.threads, "torch": torch.__version__,
                      "ms_per_step": {"median": float(np.median(times)), "min": min(times), "max": max(times)},
                      "final_loss": losses[-1],
                      "eval_ms_recorded": recorded, "eval_ms_no_grad": no_grad}))


if __name__ == "__main__":
    main()
