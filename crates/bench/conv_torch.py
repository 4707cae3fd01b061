#!/usr/bin/env python3
"""PyTorch eager timings of the `conv2d/...` criterion group (crates/bench/benches/conv.rs):
the same shapes (f32, batch 32: 1 -> 8 and 8 -> 16 channels on 28 x 28, 3 -> 32 on
32 x 32, 32 -> 64 on 16 x 16, 64 -> 128 on 8 x 8; 3 x 3 kernels, padding 1, bias), forward alone
and forward plus backward (sum of the output as the loss, leaves made afresh each time
as the Rust bench records them on a reset tape). Medians in microseconds.

Usage: python conv_torch.py [--threads N] [--reps K]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def median_us(f, reps):
    for _ in range(5):
        f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e6)
    ts.sort()
    return ts[len(ts) // 2]


def value(shape, seed):
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    return (((7919 * i + 104729 * seed) % 2003).double() / 1001.5 - 1.0).float().reshape(shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=101)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for cin, cout, side, input_grad in [
        (1, 8, 28, False),
        (8, 16, 28, True),
        (3, 32, 32, False),
        (32, 64, 16, True),
        (64, 128, 8, True),
    ]:
        x = value((32, cin, side, side), 1)
        w = value((cout, cin, 3, 3), 2) * 0.3
        b = value((cout,), 3)

        def fwd():
            with torch.no_grad():
                xv, wv, bv = x.clone(), w.clone(), b.clone()
            return F.conv2d(xv, wv.requires_grad_(), bv.requires_grad_(), padding=1)

        def fwd_bwd():
            xv = x.clone().requires_grad_(input_grad)
            wv, bv = w.clone().requires_grad_(), b.clone().requires_grad_()
            F.conv2d(xv, wv, bv, padding=1).sum().backward()
            return wv.grad

        name = f"conv2d/32x{cin}x{side}x{side}_to_{cout}"
        print(f"{name}/forward  {median_us(fwd, a.reps):.1f} us  (threads {a.threads})")
        print(f"{name}/forward_backward  {median_us(fwd_bwd, a.reps):.1f} us  (threads {a.threads})")


if __name__ == "__main__":
    main()
