"""Writes crates/nn/tests/fixtures/torch_layers.safetensors: torch.nn's forward values
and gradients (input and parameters) for every layer of descent-nn over a grid of
settings, in float64, for crates/nn/tests/torch_layers.rs.

Each case is a JSON object in the file's metadata ("cases", a list); its tensors are
named "<case>.<what>":
  input, cotangent         the input and the cotangent c (the loss is sum(out * c))
  param.<name>             the layer's parameters and buffers before the call
  out, grad_input          the output and dL/dinput
  grad.<name>              dL/dparameter for every parameter
  after.<name>             every buffer after the call (batch norm's running stats)
Embedding takes integer indices: its "input" holds them as float64.

Run with: /work/peers-env/venv-torch/bin/python crates/nn/tests/oracle/torch_layers.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

torch.manual_seed(19)
torch.set_default_dtype(torch.float64)

cases = []
tensors = {}


def add(spec, module, x, integer_input=False):
    name = f"c{len(cases)}"
    spec = dict(spec, id=name)
    module = module.double()
    if spec.get("train", True):
        module.train()
    else:
        module.eval()
    # Parameters not at their initial values, so the affine part is exercised.
    with torch.no_grad():
        for pname, p in module.named_parameters():
            if spec["layer"] in ("LayerNorm", "BatchNorm1d", "BatchNorm2d"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if pname == "weight" else 0.0))
        for bname, b in module.named_buffers():
            if bname == "running_mean":
                b.copy_(torch.randn_like(b) * 0.3)
            elif bname == "running_var":
                b.copy_(torch.rand_like(b) + 0.5)
            elif bname == "num_batches_tracked":
                b.fill_(3)
    for pname, t in module.state_dict().items():
        tensors[f"{name}.param.{pname}"] = t.detach().clone().double().contiguous()
    if integer_input:
        out = module(x)
        xin = x.double()
    else:
        x = x.clone().requires_grad_(True)
        out = module(x)
        xin = x
    c = torch.randn_like(out)
    (out * c).sum().backward()
    tensors[f"{name}.input"] = xin.detach().clone().contiguous()
    tensors[f"{name}.cotangent"] = c.contiguous()
    tensors[f"{name}.out"] = out.detach().contiguous()
    if not integer_input:
        tensors[f"{name}.grad_input"] = x.grad.contiguous()
    for pname, p in module.named_parameters():
        tensors[f"{name}.grad.{pname}"] = p.grad.contiguous()
    for bname, b in module.named_buffers():
        tensors[f"{name}.after.{bname}"] = b.detach().clone().double().contiguous()
    cases.append(spec)


# Linear: with and without bias, 2-d and 3-d inputs.
for bias in (True, False):
    for shape in ((1, 4), (5, 4), (2, 3, 4)):
        add({"layer": "Linear", "in": 4, "out": 3, "bias": bias}, torch.nn.Linear(4, 3, bias=bias), torch.randn(*shape))

# Activations and shape layers, on several shapes.
acts = [
    ({"layer": "ReLU"}, torch.nn.ReLU()),
    ({"layer": "Tanh"}, torch.nn.Tanh()),
    ({"layer": "Sigmoid"}, torch.nn.Sigmoid()),
    ({"layer": "GELU"}, torch.nn.GELU(approximate="tanh")),
    ({"layer": "Softplus"}, torch.nn.Softplus()),
    ({"layer": "SiLU"}, torch.nn.SiLU()),
    ({"layer": "LeakyReLU", "slope": 0.01}, torch.nn.LeakyReLU(0.01)),
    ({"layer": "LeakyReLU", "slope": 0.2}, torch.nn.LeakyReLU(0.2)),
    ({"layer": "Softmax", "dim": -1}, torch.nn.Softmax(dim=-1)),
    ({"layer": "Softmax", "dim": 0}, torch.nn.Softmax(dim=0)),
    ({"layer": "LogSoftmax", "dim": 1}, torch.nn.LogSoftmax(dim=1)),
    ({"layer": "Identity"}, torch.nn.Identity()),
    ({"layer": "Flatten", "start": 1, "end": -1}, torch.nn.Flatten()),
    ({"layer": "Flatten", "start": 0, "end": 1}, torch.nn.Flatten(0, 1)),
]
for spec, m in acts:
    for shape in ((3, 4), (2, 3, 4)):
        add(spec, m, torch.randn(*shape) * 2.0)

# Dropout in evaluation mode is the identity in both.
add({"layer": "Dropout", "p": 0.3, "train": False}, torch.nn.Dropout(0.3), torch.randn(3, 4))

# LayerNorm: one and two normalised axes, affine or not, two eps.
for ns, shape in (((4,), (2, 4)), ((4,), (2, 3, 4)), ((3, 4), (5, 3, 4)), ((3, 4), (3, 4))):
    for affine in (True, False):
        for eps in (1e-5, 1e-2):
            add({"layer": "LayerNorm", "shape": list(ns), "eps": eps, "affine": affine},
                torch.nn.LayerNorm(ns, eps=eps, elementwise_affine=affine), torch.randn(*shape) * 1.5 + 0.3)

# Batch norm: train and eval, momentum 0.1 and None (cumulative), affine or not.
for layer, shapes in (("BatchNorm1d", ((4, 3), (2, 3, 5))), ("BatchNorm2d", ((2, 3, 4, 5), (1, 3, 2, 2)))):
    cls = getattr(torch.nn, layer)
    for shape in shapes:
        for train in (True, False):
            for momentum in (0.1, None):
                for affine in (True, False):
                    add({"layer": layer, "features": 3, "eps": 1e-5, "momentum": momentum,
                         "affine": affine, "train": train},
                        cls(3, eps=1e-5, momentum=momentum, affine=affine), torch.randn(*shape) * 2.0 + 0.5)

# Embedding: 1-d and 2-d indices with repeats.
for ishape in ((5,), (2, 3), (4, 1)):
    idx = torch.randint(0, 7, ishape)
    idx.view(-1)[0] = idx.view(-1)[-1]  # at least one repeat
    add({"layer": "Embedding", "num": 7, "dim": 3}, torch.nn.Embedding(7, 3), idx, integer_input=True)

out = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "torch_layers.safetensors"
save_file(tensors, str(out), metadata={"cases": json.dumps(cases), "torch": torch.__version__})
print(f"{len(cases)} cases, {len(tensors)} tensors -> {out}")
