#!/usr/bin/env python3
"""PyTorch oracle for crates/optim/tests/torch_reference.rs.

Runs torch.optim's optimisers (single-tensor code path, foreach=False) for STEPS steps
in float64 on two parameters, of shapes [3] and [2, 2], with gradients given by a fixed
formula of the step index k and the current parameter values,

    g = sin(1.3 p + 0.5 k) + 0.1 p        (element-wise, Python floats: libm's sin)

except that the [2, 2] parameter gets no gradient (torch: grad None, the optimiser skips
it) at every step k with k % 3 == 2, so the two parameters' step counts differ. It also
records the learning rates torch.optim.lr_scheduler gives over SCHEDULE_STEPS steps.
Everything is written, at full precision (repr), as Rust constants to
torch_optim_values.rs next to this script.

The default dtype is set to float64: torch keeps some optimiser state (NAdam's
mu_product, every step count) in the default dtype, and with the float32 default
NAdam's trajectory moves by ~1e-8 relative within 20 steps even on float64
parameters.

Run from the repository root:  /work/venv-torch/bin/python crates/optim/tests/oracle/torch_optim.py
"""

import math
import os
import subprocess
import warnings

import torch

torch.set_default_dtype(torch.float64)
warnings.filterwarnings("ignore", category=UserWarning)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_optim_values.rs")

STEPS = 20
INIT = ([0.5, -1.2, 2.0], [[0.3, -0.7], [1.5, -0.1]])
GRAD_A, GRAD_B, GRAD_C = 1.3, 0.5, 0.1  # g = sin(A p + B k) + C p
SKIP_EVERY = 3  # parameter 1 has no gradient when k % SKIP_EVERY == SKIP_EVERY - 1

SCHEDULE_STEPS = 30
SCHEDULE_BASE_LR = 0.1


def gradient(k, values):
    return [math.sin(GRAD_A * p + GRAD_B * k) + GRAD_C * p for p in values]


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


O = torch.optim
S = torch.optim.lr_scheduler


def warmup(opt, factor, steps, then):
    return S.SequentialLR(opt, [S.LinearLR(opt, start_factor=factor, total_iters=steps), then(opt)], milestones=[steps])


# (constant name, the torch constructor as written in the doc comment, factory, scheduler)
OPTIMIZERS = [
    ("SGD", "SGD(lr=0.1)", lambda ps: O.SGD(ps, lr=0.1, foreach=False), None),
    ("SGD_MOMENTUM", "SGD(lr=0.05, momentum=0.9, dampening=0.1)",
     lambda ps: O.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, foreach=False), None),
    ("SGD_NESTEROV", "SGD(lr=0.05, momentum=0.9, nesterov=True)",
     lambda ps: O.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, foreach=False), None),
    ("SGD_WEIGHT_DECAY", "SGD(lr=0.1, weight_decay=0.05)",
     lambda ps: O.SGD(ps, lr=0.1, weight_decay=0.05, foreach=False), None),
    ("ADAGRAD_DEFAULT", "Adagrad()", lambda ps: O.Adagrad(ps, foreach=False), None),
    ("ADAGRAD", "Adagrad(lr=0.1, lr_decay=0.05, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-8)",
     lambda ps: O.Adagrad(ps, lr=0.1, lr_decay=0.05, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-8,
                          foreach=False), None),
    ("RMSPROP_DEFAULT", "RMSprop()", lambda ps: O.RMSprop(ps, foreach=False), None),
    ("RMSPROP_CENTERED_MOMENTUM",
     "RMSprop(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.5, centered=True)",
     lambda ps: O.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.5, centered=True,
                          foreach=False), None),
    ("ADADELTA_DEFAULT", "Adadelta()", lambda ps: O.Adadelta(ps, foreach=False), None),
    ("ADADELTA", "Adadelta(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01)",
     lambda ps: O.Adadelta(ps, lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, foreach=False), None),
    ("ADAM_DEFAULT", "Adam()", lambda ps: O.Adam(ps, foreach=False), None),
    ("ADAM", "Adam(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01)",
     lambda ps: O.Adam(ps, lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01, foreach=False), None),
    ("ADAM_AMSGRAD", "Adam(lr=0.05, betas=(0.4, 0.9), amsgrad=True)",
     lambda ps: O.Adam(ps, lr=0.05, betas=(0.4, 0.9), amsgrad=True, foreach=False), None),
    ("ADAM_DECOUPLED", "Adam(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)",
     lambda ps: O.Adam(ps, lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, foreach=False), None),
    ("ADAMW_DEFAULT", "AdamW()", lambda ps: O.AdamW(ps, foreach=False), None),
    ("ADAMW", "AdamW(lr=0.05, betas=(0.8, 0.95), weight_decay=0.1, amsgrad=True)",
     lambda ps: O.AdamW(ps, lr=0.05, betas=(0.8, 0.95), weight_decay=0.1, amsgrad=True, foreach=False), None),
    ("ADAMAX_DEFAULT", "Adamax()", lambda ps: O.Adamax(ps, foreach=False), None),
    ("ADAMAX", "Adamax(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01)",
     lambda ps: O.Adamax(ps, lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01, foreach=False), None),
    ("NADAM_DEFAULT", "NAdam()", lambda ps: O.NAdam(ps, foreach=False), None),
    ("NADAM", "NAdam(lr=0.05, betas=(0.8, 0.95), weight_decay=0.01, momentum_decay=0.01)",
     lambda ps: O.NAdam(ps, lr=0.05, betas=(0.8, 0.95), weight_decay=0.01, momentum_decay=0.01, foreach=False),
     None),
    ("NADAM_DECOUPLED", "NAdam(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)",
     lambda ps: O.NAdam(ps, lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, foreach=False), None),
    ("ADAM_WARMUP_COSINE",
     "Adam(lr=0.05) under SequentialLR([LinearLR(start_factor=0.1, total_iters=5), "
     "CosineAnnealingLR(T_max=15, eta_min=0.001)], milestones=[5])",
     lambda ps: O.Adam(ps, lr=0.05, foreach=False),
     lambda opt: warmup(opt, 0.1, 5, lambda o: S.CosineAnnealingLR(o, T_max=15, eta_min=0.001))),
]

SCHEDULES = [
    ("CONSTANT", "no scheduler", None),
    ("STEP_LR", "StepLR(step_size=7, gamma=0.5)", lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
    ("EXPONENTIAL", "ExponentialLR(gamma=0.9)", lambda o: S.ExponentialLR(o, gamma=0.9)),
    ("COSINE", "CosineAnnealingLR(T_max=12, eta_min=0.001)",
     lambda o: S.CosineAnnealingLR(o, T_max=12, eta_min=0.001)),
    ("COSINE_TO_ZERO", "CosineAnnealingLR(T_max=30)", lambda o: S.CosineAnnealingLR(o, T_max=30)),
    ("WARMUP_COSINE",
     "SequentialLR([LinearLR(start_factor=0.1, total_iters=5), CosineAnnealingLR(T_max=25, eta_min=1e-4)], "
     "milestones=[5])",
     lambda o: warmup(o, 0.1, 5, lambda o: S.CosineAnnealingLR(o, T_max=25, eta_min=1e-4))),
    ("WARMUP_STEP_LR",
     "SequentialLR([LinearLR(start_factor=0.25, total_iters=4), StepLR(step_size=5, gamma=0.3)], milestones=[4])",
     lambda o: warmup(o, 0.25, 4, lambda o: S.StepLR(o, step_size=5, gamma=0.3))),
    ("WARMUP_EXPONENTIAL",
     "SequentialLR([LinearLR(total_iters=6), ExponentialLR(gamma=0.95)], milestones=[6])  (start_factor 1/3)",
     lambda o: S.SequentialLR(o, [S.LinearLR(o, total_iters=6), S.ExponentialLR(o, gamma=0.95)],
                              milestones=[6])),
]


def run_optimizer(factory, scheduler):
    ps = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in INIT]
    opt = factory(ps)
    sched = scheduler(opt) if scheduler else None
    rows = []
    for k in range(STEPS):
        for i, p in enumerate(ps):
            if i == 1 and k % SKIP_EVERY == SKIP_EVERY - 1:
                p.grad = None
            else:
                p.grad = torch.tensor(gradient(k, flat(p)), dtype=torch.float64).reshape(p.shape)
        opt.step()
        if sched:
            sched.step()
        rows.append(flat(ps[0]) + flat(ps[1]))
    return rows


def run_schedule(make):
    p = torch.zeros(1, requires_grad=True)
    opt = O.SGD([p], lr=SCHEDULE_BASE_LR)
    sched = make(opt) if make else None
    lrs = []
    for _ in range(SCHEDULE_STEPS):
        lrs.append(float(opt.param_groups[0]["lr"]))
        p.grad = torch.zeros(1)
        opt.step()
        if sched:
            sched.step()
    return lrs


def rust_array(name, values, doc):
    body = ", ".join(repr(float(v)) for v in values)
    return f"/// {doc}\npub const {name}: &[f64] = &[{body}];\n"


def machine():
    """The processor the fixtures were made on: PyTorch's kernels (and so the last
    bits of some results) differ between processors and builds."""
    model, flags = "unknown processor", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown processor":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [x for x in ("avx512f", "avx2", "fma") if x in flags]
    return f"{model} ({', '.join(simd) or 'no AVX2'})"


def main():
    out = [
        "// @generated by crates/optim/tests/oracle/torch_optim.py: do not edit, rerun the script (README.md).",
        f"// torch {torch.__version__}, float64, CPU, single-tensor code paths (foreach=False).",
        f"// Made on: {machine()}.",
        "//",
        "// Each optimiser's array holds STEPS rows of 7 values: the parameters after each step,",
        "// parameter 0 ([3]) then parameter 1 ([2, 2], row-major). Each schedule's array holds",
        "// the learning rate of each of SCHEDULE_STEPS steps (torch's recursive values).",
        "",
        f"pub const STEPS: usize = {STEPS};",
        f"pub const SKIP_EVERY: usize = {SKIP_EVERY};",
        f"pub const GRAD_A: f64 = {GRAD_A!r};",
        f"pub const GRAD_B: f64 = {GRAD_B!r};",
        f"pub const GRAD_C: f64 = {GRAD_C!r};",
        rust_array("INIT_0", INIT[0], "Parameter 0, shape [3]."),
        rust_array("INIT_1", [x for row in INIT[1] for x in row], "Parameter 1, shape [2, 2], row-major."),
        f"pub const SCHEDULE_STEPS: usize = {SCHEDULE_STEPS};",
        f"pub const SCHEDULE_BASE_LR: f64 = {SCHEDULE_BASE_LR!r};",
        "",
    ]
    for name, doc, factory, scheduler in OPTIMIZERS:
        rows = run_optimizer(factory, scheduler)
        out.append(rust_array(name, [x for row in rows for x in row], f"`torch.optim.{doc}`"))
    for name, doc, make in SCHEDULES:
        out.append(rust_array(f"LR_{name}", run_schedule(make), f"`{doc}`, base rate {SCHEDULE_BASE_LR}"))
    with open(OUT, "w") as f:
        f.write("\n".join(out))
    subprocess.run(["rustfmt", "--edition", "2024", OUT], check=True)
    print(f"wrote {OUT}")

    # Not written: how far NAdam moves when torch keeps mu_product in float32.
    torch.set_default_dtype(torch.float32)
    f32 = run_optimizer(OPTIMIZERS[[n for n, *_ in OPTIMIZERS].index("NADAM")][2], None)
    torch.set_default_dtype(torch.float64)
    f64 = run_optimizer(OPTIMIZERS[[n for n, *_ in OPTIMIZERS].index("NADAM")][2], None)
    worst = max(abs(a - b) / abs(b) for ra, rb in zip(f32, f64) for a, b in zip(ra, rb))
    print(f"NAdam on float64 parameters, float32 vs float64 default dtype: max relative difference {worst:.3g}")


if __name__ == "__main__":
    main()
