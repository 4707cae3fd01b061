"""Writes the PyTorch reference values of crates/nn/tests/torch_transformer.rs.

Each case: torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward,
dropout=0.0, activation, batch_first=True, norm_first) in float64 with torch's
initialisation (seeded; every bias and layer-norm parameter is then redrawn so that
they matter), alone or stacked twice in torch.nn.TransformerEncoder(...,
enable_nested_tensor=False); an input, an optional causal src_mask and/or
src_key_padding_mask, the output, and the gradients of L = sum(out * r) with respect
to the input and every parameter. The activation is "relu" or GELU in its tanh form
(a callable F.gelu(x, approximate="tanh"), which is descent's GELU; torch's "gelu" is
the erf form). One safetensors file per case in ../fixtures/transformer/ (parameters
as "net.<state_dict name>", gradients as "grad.<name>", the key-padding mask as 0/1
floats).

Run from the repository root: python crates/nn/tests/oracle/torch_transformer.py
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "transformer")


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def case(name, d_model, nhead, dim_ff, batch, time, gelu=False, norm_first=False,
         causal=False, padding=False, layers=1, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(
        d_model, nhead, dim_ff, dropout=0.0,
        activation=gelu_tanh if gelu else "relu",
        batch_first=True, norm_first=norm_first)
    if layers == 1:
        net = layer
    else:
        net = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    with torch.no_grad():
        for pname, p in net.named_parameters():
            if "bias" in pname:
                p.copy_(0.1 * torch.randn_like(p))
            elif "norm" in pname:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    net.train()
    x = torch.randn(batch, time, d_model, requires_grad=True)
    kwargs = {}
    tensors = {}
    if causal:
        kwargs["mask"] = torch.triu(torch.ones(time, time, dtype=torch.bool), diagonal=1)
    if padding:
        pad = torch.zeros(batch, time, dtype=torch.bool)
        for b in range(batch):
            pad[b, time - 1 - b % 2:] = True  # the last one or two steps of each sample
        kwargs["src_key_padding_mask"] = pad
        tensors["key_padding"] = pad.double()
    if layers == 1 and "mask" in kwargs:
        kwargs["src_mask"] = kwargs.pop("mask")
    out = net(x, **kwargs)
    r = torch.randn_like(out)
    (out * r).sum().backward()
    tensors.update(x=x, out=out, r=r)
    tensors["grad.x"] = x.grad
    for pname, p in net.named_parameters():
        tensors["net." + pname] = p
        tensors["grad.net." + pname] = p.grad
    os.makedirs(OUT, exist_ok=True)
    plain = {k: t.detach().contiguous() for k, t in tensors.items()}
    save_file(plain, os.path.join(OUT, name + ".safetensors"), metadata={"torch": torch.__version__})


case("post_relu", 8, 2, 16, 3, 5, seed=1)
case("pre_relu", 8, 4, 12, 2, 6, norm_first=True, seed=2)
case("post_gelu_causal", 12, 3, 20, 2, 5, gelu=True, causal=True, seed=3)
case("pre_gelu_causal_padding", 8, 2, 16, 3, 6, gelu=True, norm_first=True, causal=True, padding=True, seed=4)
case("post_relu_padding", 6, 1, 10, 2, 4, padding=True, seed=5)
case("stack2_post_relu_causal", 8, 2, 16, 2, 5, causal=True, layers=2, seed=6)
case("stack2_pre_gelu_padding", 8, 4, 16, 3, 5, gelu=True, norm_first=True, padding=True, layers=2, seed=7)
