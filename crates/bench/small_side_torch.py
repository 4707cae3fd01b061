#!/usr/bin/env python3
"""torch.matmul on the shapes and layouts of crates/bench/benches/small_side.rs (f32):
`xWt` = x @ W.t() (W [n, k], overwriting), `gW` = g @ W (W [k, n], added into c with
addmm_, as autograd's accumulation), `gtx` = g.t() @ x (g [k, m], added into c).

Usage: taskset -c 0 python crates/bench/small_side_torch.py --threads 1 [--reps 200]
Prints one line per shape: layout, m x k x n, median µs over `reps` calls (after 20
warm-up calls), GFLOP/s (2mkn / median).
"""
import argparse
import statistics
import time

import torch

SHAPES = [
    ("xWt", 16, 512, 2048), ("xWt", 16, 2048, 2048), ("gW", 16, 2048, 2048), ("gW", 16, 2048, 512),
    ("gtx", 2048, 16, 512), ("gtx", 2048, 16, 2048), ("xWt", 32, 1024, 1024), ("gW", 32, 1024, 1024),
    ("gtx", 1024, 32, 1024), ("gtx", 1024, 32, 256), ("xWt", 8, 1024, 1024), ("gW", 8, 1024, 1024),
    ("gtx", 1024, 8, 1024), ("xWt", 64, 1024, 1024), ("gW", 64, 1024, 1024), ("gtx", 1024, 64, 1024),
    ("xWt", 32, 128, 512), ("gW", 32, 512, 128), ("gtx", 512, 32, 128), ("xWt", 1600, 32, 512), ("gtx", 512, 1600, 32),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {a.threads} thread(s)")
    for layout, m, k, n in SHAPES:
        if layout == "xWt":
            x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
            c = torch.empty(m, n)
            f = lambda: torch.matmul(x, w.t(), out=c)  # noqa: E731
        elif layout == "gW":
            x, w = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
            c = torch.zeros(m, n)
            f = lambda: c.addmm_(x, w)  # noqa: E731
        else:
            x, w = torch.randn(k, m, generator=g), torch.randn(k, n, generator=g)
            c = torch.zeros(m, n)
            f = lambda: c.addmm_(x.t(), w)  # noqa: E731
        for _ in range(20):
            f()
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        med = statistics.median(ts) * 1e6
        print(f"{layout:4} {m}x{k}x{n:<6} {med:9.1f} us {2 * m * k * n / med / 1e3:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
