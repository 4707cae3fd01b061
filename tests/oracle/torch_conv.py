"""Writes `tests/fixtures/torch_conv.safetensors`, the PyTorch values `tests/torch_conv.rs`
checks descent's convolution and pooling against.

Run from the repository root with a Python that has torch and safetensors:

    /work/peers-env/venv-torch/bin/python tests/oracle/torch_conv.py

Inputs are not stored: every tensor is `value(i, seed) = ((7919 i + 104729 seed) mod 2003)
/ 1001.5 - 1` over its flat index `i`, which IEEE arithmetic computes to the same bits
in Python and Rust (an integer, one correctly rounded division, one subtraction). Within
a tensor of fewer than 2003 elements no two values are equal, so max pooling never sees
a tie. The loss is `sum(out * g)` with the cotangent `g = value(i, 7)`, so the stored
gradients are vector-Jacobian products with `g`.

For each case the file holds `<case>.out`, `<case>.gx` and, for convolutions,
`<case>.gw` and `<case>.gb`, all float64. Case names spell their settings, so the Rust
test rebuilds them from the name's parts (it walks the same grid and fails on a missing
name).
"""

import itertools
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "torch_conv.safetensors"


def value(shape, seed):
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    k = (7919 * i + 104729 * seed) % 2003
    return (k.to(torch.float64) / 1001.5 - 1.0).reshape(shape)


def conv_cases(tensors):
    # conv2d: x [N, 4, 6, 5], weight [4, 4/groups, 3, 2]; conv1d: x [N, 4, 9], weight [4, 4/groups, 3].
    for dims, n, stride, padding, dilation, groups in itertools.product(
        (1, 2), (1, 3), (1, 2), (0, 1, 2), (1, 2), (1, 2)
    ):
        cin, cout = 4, 4
        spatial = (6, 5) if dims == 2 else (9,)
        kernel = (3, 2) if dims == 2 else (3,)
        x = value((n, cin, *spatial), 1).requires_grad_()
        w = value((cout, cin // groups, *kernel), 2).requires_grad_()
        b = value((cout,), 3).requires_grad_()
        f = F.conv2d if dims == 2 else F.conv1d
        out = f(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        g = value(out.shape, 7)
        (out * g).sum().backward()
        name = f"conv{dims}d_n{n}_s{stride}_p{padding}_d{dilation}_g{groups}"
        tensors[name + ".out"] = out.detach().contiguous()
        tensors[name + ".gx"] = x.grad
        tensors[name + ".gw"] = w.grad
        tensors[name + ".gb"] = b.grad


def pool_cases(tensors):
    # x [N, 3, 7, 6]; kernel (k, k-1 or k) to test non-square windows.
    for kind, n, kernel, stride, padding, ceil in itertools.product(
        ("max", "avg"), (1, 3), (2, 3), (1, 2), (0, 1), (False, True)
    ):
        kh, kw = kernel, 3 if kernel == 3 else 2
        if padding > kw // 2:
            continue
        x = value((n, 3, 7, 6), 1).requires_grad_()
        if kind == "max":
            out = F.max_pool2d(x, (kh, kw), stride=stride, padding=padding, ceil_mode=ceil)
        else:
            out = F.avg_pool2d(x, (kh, kw), stride=stride, padding=padding, ceil_mode=ceil)
        g = value(out.shape, 7)
        (out * g).sum().backward()
        name = f"{kind}pool_n{n}_k{kh}x{kw}_s{stride}_p{padding}_c{int(ceil)}"
        tensors[name + ".out"] = out.detach().contiguous()
        tensors[name + ".gx"] = x.grad


def main():
    torch.set_default_dtype(torch.float64)
    tensors = {}
    conv_cases(tensors)
    pool_cases(tensors)
    save_file(tensors, str(OUT))
    print(f"{len(tensors)} tensors -> {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
