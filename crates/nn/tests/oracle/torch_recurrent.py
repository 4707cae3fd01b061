"""Writes the PyTorch reference values of crates/nn/tests/torch_recurrent.rs.

For each case: a torch.nn.RNN / GRU / LSTM (batch_first=True) or RNNCell / GRUCell /
LSTMCell in float64 with torch's own initialisation (seeded), an input, an optional
initial state, the outputs, and the gradients of
    L = sum(out * r_out) + sum(h_n * r_h) [+ sum(c_n * r_c)]
with respect to the input, the initial state and every parameter. One safetensors file
per case in ../fixtures/recurrent/: the module's parameters under their state_dict
names prefixed "net.", the rest under plain names, gradients under "grad.<name>".

Run from the repository root with torch 2.x and safetensors:
    python crates/nn/tests/oracle/torch_recurrent.py
"""
import os

import torch
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "recurrent")
B, T, I, H = 3, 50, 4, 5


def layer_case(name, kind, layers, init_state, bias=True, nonlinearity="tanh", seed=0):
    torch.manual_seed(seed)
    if kind == "rnn":
        net = torch.nn.RNN(I, H, layers, nonlinearity=nonlinearity, bias=bias, batch_first=True)
    elif kind == "gru":
        net = torch.nn.GRU(I, H, layers, bias=bias, batch_first=True)
    else:
        net = torch.nn.LSTM(I, H, layers, bias=bias, batch_first=True)
    x = torch.randn(B, T, I, requires_grad=True)
    tensors = {}
    h0 = c0 = None
    if init_state:
        h0 = (0.5 * torch.randn(layers, B, H)).requires_grad_()
        if kind == "lstm":
            c0 = (0.5 * torch.randn(layers, B, H)).requires_grad_()
    if kind == "lstm":
        out, (hn, cn) = net(x, None if h0 is None else (h0, c0))
    else:
        out, hn = net(x, h0)
        cn = None
    r_out, r_h = torch.randn_like(out), torch.randn_like(hn)
    loss = (out * r_out).sum() + (hn * r_h).sum()
    if cn is not None:
        r_c = torch.randn_like(cn)
        loss = loss + (cn * r_c).sum()
        tensors.update(c_n=cn, r_c=r_c)
    loss.backward()
    tensors.update(x=x, out=out, h_n=hn, r_out=r_out, r_h=r_h)
    tensors["grad.x"] = x.grad
    if h0 is not None:
        tensors.update(h0=h0)
        tensors["grad.h0"] = h0.grad
    if c0 is not None:
        tensors.update(c0=c0)
        tensors["grad.c0"] = c0.grad
    for pname, p in net.named_parameters():
        tensors["net." + pname] = p
        tensors["grad.net." + pname] = p.grad
    save(name, tensors)


def cell_case(name, kind, bias=True, seed=0):
    torch.manual_seed(seed)
    cls = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}[kind]
    net = cls(I, H, bias=bias)
    x = torch.randn(B, I, requires_grad=True)
    h0 = (0.5 * torch.randn(B, H)).requires_grad_()
    tensors = {}
    if kind == "lstm":
        c0 = (0.5 * torch.randn(B, H)).requires_grad_()
        h, c = net(x, (h0, c0))
        r_c = torch.randn_like(c)
        tensors.update(c0=c0, c_n=c, r_c=r_c)
    else:
        h = net(x, h0)
    r_h = torch.randn_like(h)
    loss = (h * r_h).sum()
    if kind == "lstm":
        loss = loss + (c * r_c).sum()
    loss.backward()
    tensors.update(x=x, h0=h0, h_n=h, r_h=r_h)
    tensors["grad.x"] = x.grad
    tensors["grad.h0"] = h0.grad
    if kind == "lstm":
        tensors["grad.c0"] = c0.grad
    for pname, p in net.named_parameters():
        tensors["net." + pname] = p
        tensors["grad.net." + pname] = p.grad
    save(name, tensors)


def save(name, tensors):
    os.makedirs(OUT, exist_ok=True)
    plain = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(plain, os.path.join(OUT, name + ".safetensors"), metadata={"torch": torch.__version__})


layer_case("rnn_tanh_l1", "rnn", 1, False)
layer_case("rnn_tanh_l2_init", "rnn", 2, True, seed=1)
layer_case("rnn_relu_l2_init", "rnn", 2, True, nonlinearity="relu", seed=2)
layer_case("gru_l1", "gru", 1, False, seed=3)
layer_case("gru_l3_init", "gru", 3, True, seed=4)
layer_case("lstm_l1", "lstm", 1, False, seed=5)
layer_case("lstm_l2_init", "lstm", 2, True, seed=6)
layer_case("lstm_l2_nobias", "lstm", 2, True, bias=False, seed=7)
layer_case("gru_l2_nobias", "gru", 2, False, bias=False, seed=8)
cell_case("cell_rnn", "rnn", seed=9)
cell_case("cell_gru", "gru", seed=10)
cell_case("cell_lstm", "lstm", seed=11)
cell_case("cell_lstm_nobias", "lstm", bias=False, seed=12)
