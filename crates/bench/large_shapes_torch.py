#!/usr/bin/env python3
"""PyTorch timings of the `large/...` criterion group (crates/bench/benches/kernels.rs):
the same ops and shapes, forward and backward separately, medians in microseconds.

Usage: python large_shapes_torch.py [--threads N] [--reps K]
Backward is timed as `torch.autograd.grad` of the weighted sum over the recorded graph,
kept with `retain_graph`, like descent's `backward_into` over a recorded tape.
"""
import argparse
import time

import torch


def median_us(f, reps):
    for _ in range(3):
        f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e6)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=51)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 1024, generator=g)
    logits = torch.randn(512, 1000, generator=g)
    labels = torch.tensor([(37 * i) % 1000 for i in range(512)])
    ops = [
        ("sigmoid/[1024,1024]", x, torch.sigmoid),
        ("gelu/[1024,1024]", x, lambda v: torch.nn.functional.gelu(v, approximate="tanh")),
        ("exp/[1024,1024]", x, torch.exp),
        ("sum_axis_last/[1024,1024]", x, lambda v: v.sum(-1)),
        ("max_axis_first/[1024,1024]", x, lambda v: v.max(0).values),
        ("max_axis_last/[1024,1024]", x, lambda v: v.max(-1).values),
        # contiguous(): descent's transpose makes a copy; PyTorch's is a view.
        ("transpose/[1024,1024]", x, lambda v: v.t().contiguous()),
        ("softmax/[512,1000]", logits, lambda v: torch.softmax(v, -1)),
        ("cross_entropy/[512,1000]", logits, lambda v: torch.nn.functional.cross_entropy(v, labels)),
    ]
    for name, inp, f in ops:
        leaf = inp.clone().requires_grad_()
        fwd = median_us(lambda: f(leaf), a.reps)
        out = f(leaf)
        w = torch.randn(out.shape, generator=g)
        loss = (out * w).sum()
        bwd = median_us(lambda: torch.autograd.grad(loss, leaf, retain_graph=True), a.reps)
        print(f"{name:32} forward {fwd:9.1f} us  backward {bwd:9.1f} us")


if __name__ == "__main__":
    main()
