#!/usr/bin/env python3
"""PyTorch eager on the cases of crates/bench/benches/attention.rs (f32, batch 8, 64
tokens, width 128, 4 heads, causal mask): `mha/forward` (nn.MultiheadAttention,
batch_first, its autograd graph recorded, as descent records it),
`mha/forward_backward` (the sum of the output, backward to the input and every
parameter), `encoder/forward_backward` (nn.TransformerEncoderLayer, d_model 128,
nhead 4, dim_feedforward 512, dropout 0, ReLU, post-norm, causal src_mask).

Usage: taskset -c 0 python crates/bench/attention_torch.py --threads 1 [--reps 200]
Prints one line per case: the median µs over `reps` calls after 20 warm-up calls.
"""
import argparse
import statistics
import time

import torch

BATCH, TOKENS, WIDTH, HEADS, FEED_FORWARD = 8, 64, 128, 4, 512


def median_us(f, reps):
    for _ in range(20):
        f()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    x = (torch.rand(BATCH, TOKENS, WIDTH) - 0.5) * 2.0
    causal = torch.triu(torch.ones(TOKENS, TOKENS, dtype=torch.bool), diagonal=1)
    mha = torch.nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
    enc = torch.nn.TransformerEncoderLayer(
        WIDTH, HEADS, FEED_FORWARD, dropout=0.0, batch_first=True
    )

    def mha_forward():
        out, _ = mha(x, x, x, attn_mask=causal)
        return out

    def mha_forward_backward():
        h = x.detach().requires_grad_()
        out, _ = mha(h, h, h, attn_mask=causal)
        out.sum().backward()

    def encoder_forward_backward():
        h = x.detach().requires_grad_()
        enc(h, src_mask=causal).sum().backward()

    print(f"torch {torch.__version__}, {a.threads} thread(s)")
    for name, f in [
        ("mha/forward", mha_forward),
        ("mha/forward_backward", mha_forward_backward),
        ("encoder/forward_backward", encoder_forward_backward),
    ]:
        print(f"{name:26} {median_us(f, a.reps):9.1f} us")


if __name__ == "__main__":
    main()
