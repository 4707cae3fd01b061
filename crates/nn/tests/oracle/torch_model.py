"""Writes the fixtures of crates/nn/tests/torch_state_dict.rs: a PyTorch model's
state_dict, saved by safetensors as PyTorch users save it, and the model's outputs.

  fixtures/torch_model.safetensors     model.state_dict() (float64; BatchNorm's
                                       num_batches_tracked is int64, as torch keeps it)
  fixtures/torch_model_io.safetensors  "input" [5, 6], "eval_out" (model.eval()(input)),
                                       "train_out" (model.train()(input), dropout p=0 so
                                       deterministic), and the running statistics after
                                       that training-mode call ("after.<name>")

The model is trained a few steps first, so that every parameter and running statistic
is away from its initial value.

Run with: /work/peers-env/venv-torch/bin/python crates/nn/tests/oracle/torch_model.py
"""
import pathlib

import torch
from safetensors.torch import save_file

torch.manual_seed(7)
torch.set_default_dtype(torch.float64)

model = torch.nn.Sequential(
    torch.nn.Linear(6, 8),
    torch.nn.BatchNorm1d(8),
    torch.nn.ReLU(),
    torch.nn.Dropout(0.0),
    torch.nn.Linear(8, 8),
    torch.nn.LayerNorm(8),
    torch.nn.Tanh(),
    torch.nn.Linear(8, 3),
)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(5):
    x = torch.randn(16, 6)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()

here = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, str(here / "torch_model.safetensors"))

x = torch.randn(5, 6)
with torch.no_grad():
    model.eval()
    eval_out = model(x)
    model.train()
    train_out = model(x)
io = {"input": x, "eval_out": eval_out, "train_out": train_out}
for name, b in model.named_buffers():
    io[f"after.{name}"] = b.detach().double().clone()
save_file({k: v.contiguous() for k, v in io.items()}, str(here / "torch_model_io.safetensors"))
print(sorted(state), {k: v.dtype for k, v in state.items() if "num_batches" in k})
