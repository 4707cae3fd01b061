"""Writes the PyTorch reference values of crates/nn/tests/torch_attention.rs.

Each case: torch.nn.MultiheadAttention(batch_first=True, dropout=0) in float64 with
torch's initialisation (seeded; the biases, zero at initialisation, are redrawn so that
they matter), inputs, an optional causal and/or key-padding mask, the output, the
head-averaged attention weights, and the gradients of L = sum(out * r) + sum(w * s)
with respect to the query, key, value and every parameter. One safetensors file per
case in ../fixtures/attention/ (parameters as "net.<state_dict name>", gradients as
"grad.<name>", the key-padding mask as 0/1 floats).

Run from the repository root: python crates/nn/tests/oracle/torch_attention.py
"""
import os

import torch
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "attention")


def case(name, embed, heads, batch, nq, nk, self_attn, causal=False, padding=False, bias=True, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.MultiheadAttention(embed, heads, bias=bias, batch_first=True)
    with torch.no_grad():
        for pname, p in net.named_parameters():
            if "bias" in pname:
                p.copy_(0.1 * torch.randn_like(p))
    q = torch.randn(batch, nq, embed, requires_grad=True)
    if self_attn:
        k = v = q
    else:
        k = torch.randn(batch, nk, embed, requires_grad=True)
        v = torch.randn(batch, nk, embed, requires_grad=True)
    kwargs = {}
    tensors = {}
    if causal:
        kwargs["attn_mask"] = torch.triu(torch.ones(nq, nk, dtype=torch.bool), diagonal=1)
    if padding:
        pad = torch.zeros(batch, nk, dtype=torch.bool)
        for b in range(batch):
            pad[b, nk - 1 - b % 2 :] = True  # the last one or two keys of each sample
        kwargs["key_padding_mask"] = pad
        tensors["key_padding"] = pad.double()
    out, w = net(q, k, v, need_weights=True, average_attn_weights=True, **kwargs)
    r, s = torch.randn_like(out), torch.randn_like(w)
    ((out * r).sum() + (w * s).sum()).backward()
    tensors.update(query=q, out=out, weights=w, r=r, s=s)
    tensors["grad.query"] = q.grad
    if not self_attn:
        tensors.update(key=k, value=v)
        tensors["grad.key"] = k.grad
        tensors["grad.value"] = v.grad
    for pname, p in net.named_parameters():
        tensors["net." + pname] = p
        tensors["grad.net." + pname] = p.grad
    os.makedirs(OUT, exist_ok=True)
    plain = {k: t.detach().contiguous() for k, t in tensors.items()}
    save_file(plain, os.path.join(OUT, name + ".safetensors"), metadata={"torch": torch.__version__})


case("self_4heads", 8, 4, 3, 6, 6, True, seed=1)
case("self_causal", 8, 2, 2, 7, 7, True, causal=True, seed=2)
case("self_causal_padding", 12, 3, 3, 5, 5, True, causal=True, padding=True, seed=3)
case("cross_padding", 8, 2, 2, 4, 6, False, padding=True, seed=4)
case("cross_one_head_nobias", 6, 1, 2, 3, 5, False, bias=False, seed=5)
