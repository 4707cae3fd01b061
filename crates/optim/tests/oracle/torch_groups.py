#!/usr/bin/env python3
"""PyTorch oracle for crates/optim/tests/torch_groups.rs: parameter groups, maximize,
RAdam, and the schedulers beyond torch_optim.py's (OneCycleLR also cycling momentum).

The optimiser problem is torch_optim.py's (read its docstring): two float64 parameters
of shapes [3] and [2, 2], STEPS steps, the gradient sin(1.3 p + 0.5 k) + 0.1 p, and no
gradient for the [2, 2] parameter at every step k with k % 3 == 2. Where there are
parameter groups, parameter 0 is in group 0 and parameter 1 in group 1.

The schedules run SGD over two parameter groups of base rates SCHEDULE_LRS for
SCHEDULE_STEPS steps and record each group's rate before each step (row k holds group
0's then group 1's). ReduceLROnPlateau is stepped after each optimiser step with the
metric PLATEAU_METRICS[k].

Everything is written at full precision (repr) as Rust constants to
torch_groups_values.rs next to this script.

Run from the repository root:  /work/peers-env/venv-torch/bin/python crates/optim/tests/oracle/torch_groups.py
"""

import math
import os
import subprocess
import warnings

import torch

torch.set_default_dtype(torch.float64)
warnings.filterwarnings("ignore", category=UserWarning)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_groups_values.rs")

STEPS = 20
INIT = ([0.5, -1.2, 2.0], [[0.3, -0.7], [1.5, -0.1]])
GRAD_A, GRAD_B, GRAD_C = 1.3, 0.5, 0.1
SKIP_EVERY = 3

SCHEDULE_STEPS = 30
SCHEDULE_LRS = [0.1, 0.01]
# A validation loss that falls, stalls, wobbles and falls again.
PLATEAU_METRICS = [1.0, 0.8, 0.7, 0.7, 0.69995, 0.71, 0.7, 0.6, 0.6, 0.6,
                   0.6, 0.6, 0.59, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4,
                   0.45, 0.45, 0.45, 0.45, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]

O = torch.optim
S = torch.optim.lr_scheduler


def gradient(k, values):
    return [math.sin(GRAD_A * p + GRAD_B * k) + GRAD_C * p for p in values]


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def groups(g1):
    """Parameter 0 in group 0 (the defaults), parameter 1 in group 1 with `g1`."""
    return lambda ps: [{"params": [ps[0]]}, {"params": [ps[1]], **g1}]


def single(ps):
    return ps


# (constant name, doc, optimiser class, params layout, keyword arguments, scheduler)
OPTIMIZERS = [
    # RAdam
    ("RADAM_DEFAULT", "RAdam()", O.RAdam, single, {}, None),
    ("RADAM", "RAdam(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01)", O.RAdam, single,
     dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01), None),
    ("RADAM_DECOUPLED", "RAdam(lr=0.05, betas=(0.9, 0.99), weight_decay=0.1, decoupled_weight_decay=True)",
     O.RAdam, single, dict(lr=0.05, betas=(0.9, 0.99), weight_decay=0.1, decoupled_weight_decay=True), None),
    # maximize, every optimiser
    ("SGD_MAXIMIZE", "SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)", O.SGD,
     single, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True), None),
    ("SGD_PLAIN_MAXIMIZE", "SGD(lr=0.1, weight_decay=0.05, maximize=True)", O.SGD, single,
     dict(lr=0.1, weight_decay=0.05, maximize=True), None),
    ("ADAGRAD_MAXIMIZE", "Adagrad(lr=0.1, lr_decay=0.05, weight_decay=0.05, maximize=True)", O.Adagrad, single,
     dict(lr=0.1, lr_decay=0.05, weight_decay=0.05, maximize=True), None),
    ("RMSPROP_MAXIMIZE", "RMSprop(lr=0.01, alpha=0.9, weight_decay=0.01, momentum=0.5, centered=True, maximize=True)",
     O.RMSprop, single, dict(lr=0.01, alpha=0.9, weight_decay=0.01, momentum=0.5, centered=True, maximize=True),
     None),
    ("ADADELTA_MAXIMIZE", "Adadelta(lr=0.5, rho=0.8, weight_decay=0.01, maximize=True)", O.Adadelta, single,
     dict(lr=0.5, rho=0.8, weight_decay=0.01, maximize=True), None),
    ("ADAM_MAXIMIZE", "Adam(lr=0.05, betas=(0.8, 0.95), weight_decay=0.01, amsgrad=True, maximize=True)", O.Adam,
     single, dict(lr=0.05, betas=(0.8, 0.95), weight_decay=0.01, amsgrad=True, maximize=True), None),
    ("ADAMW_MAXIMIZE", "AdamW(lr=0.05, weight_decay=0.1, maximize=True)", O.AdamW, single,
     dict(lr=0.05, weight_decay=0.1, maximize=True), None),
    ("ADAMAX_MAXIMIZE", "Adamax(lr=0.05, weight_decay=0.01, maximize=True)", O.Adamax, single,
     dict(lr=0.05, weight_decay=0.01, maximize=True), None),
    ("NADAM_MAXIMIZE", "NAdam(lr=0.05, weight_decay=0.01, momentum_decay=0.01, maximize=True)", O.NAdam, single,
     dict(lr=0.05, weight_decay=0.01, momentum_decay=0.01, maximize=True), None),
    ("RADAM_MAXIMIZE", "RAdam(lr=0.05, betas=(0.8, 0.95), weight_decay=0.01, maximize=True)", O.RAdam, single,
     dict(lr=0.05, betas=(0.8, 0.95), weight_decay=0.01, maximize=True), None),
    # parameter groups: group 1 (parameter 1) overrides some of the defaults
    ("GROUPS_SGD_MOMENTUM", "SGD([{p0}, {p1, lr=0.01, weight_decay=0.1, dampening=0.5}], lr=0.05, momentum=0.9)",
     O.SGD, groups(dict(lr=0.01, weight_decay=0.1, dampening=0.5)), dict(lr=0.05, momentum=0.9), None),
    ("GROUPS_SGD_NESTEROV",
     "SGD([{p0}, {p1, lr=0.2, momentum=0.5, weight_decay=0.0}], lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05)",
     O.SGD, groups(dict(lr=0.2, momentum=0.5, weight_decay=0.0)),
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05), None),
    ("GROUPS_ADAM", "Adam([{p0}, {p1, lr=0.005, betas=(0.5, 0.9), weight_decay=0.1}], lr=0.05)", O.Adam,
     groups(dict(lr=0.005, betas=(0.5, 0.9), weight_decay=0.1)), dict(lr=0.05), None),
    ("GROUPS_ADAMW", "AdamW([{p0}, {p1, lr=0.01, weight_decay=0.0}], lr=0.05, weight_decay=0.1)", O.AdamW,
     groups(dict(lr=0.01, weight_decay=0.0)), dict(lr=0.05, weight_decay=0.1), None),
    ("GROUPS_RADAM", "RAdam([{p0}, {p1, lr=0.01, weight_decay=0.1, maximize=True}], lr=0.05, betas=(0.8, 0.95))",
     O.RAdam, groups(dict(lr=0.01, weight_decay=0.1, maximize=True)), dict(lr=0.05, betas=(0.8, 0.95)), None),
    ("GROUPS_RMSPROP", "RMSprop([{p0}, {p1, lr=0.001, alpha=0.5, centered=True}], lr=0.01, momentum=0.5)",
     O.RMSprop, groups(dict(lr=0.001, alpha=0.5, centered=True)), dict(lr=0.01, momentum=0.5), None),
    ("GROUPS_ADAGRAD", "Adagrad([{p0}, {p1, lr=0.01, lr_decay=0.1}], lr=0.1)", O.Adagrad,
     groups(dict(lr=0.01, lr_decay=0.1)), dict(lr=0.1), None),
    ("GROUPS_ADADELTA", "Adadelta([{p0}, {p1, lr=0.1, rho=0.5}], lr=1.0)", O.Adadelta,
     groups(dict(lr=0.1, rho=0.5)), dict(lr=1.0), None),
    ("GROUPS_ADAMAX", "Adamax([{p0}, {p1, lr=0.01, weight_decay=0.1}], lr=0.05)", O.Adamax,
     groups(dict(lr=0.01, weight_decay=0.1)), dict(lr=0.05), None),
    ("GROUPS_NADAM", "NAdam([{p0}, {p1, lr=0.01, momentum_decay=0.01}], lr=0.05)", O.NAdam,
     groups(dict(lr=0.01, momentum_decay=0.01)), dict(lr=0.05), None),
    # groups under schedulers: each group's rate scheduled from its own base
    ("GROUPS_ADAM_COSINE", "Adam([{p0}, {p1, lr=0.005}], lr=0.05) under CosineAnnealingLR(T_max=10, eta_min=0.001)",
     O.Adam, groups(dict(lr=0.005)), dict(lr=0.05), lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    ("GROUPS_SGD_ONE_CYCLE",
     "SGD([{p0}, {p1}], momentum=0.9) under OneCycleLR(max_lr=[0.1, 0.02], total_steps=20, cycle_momentum=False)",
     O.SGD, groups({}), dict(lr=0.1, momentum=0.9),
     lambda o: S.OneCycleLR(o, max_lr=[0.1, 0.02], total_steps=STEPS, cycle_momentum=False)),
    # OneCycleLR cycling momentum (its default) and beta1
    ("GROUPS_SGD_ONE_CYCLE_MOMENTUM",
     "SGD([{p0}, {p1}], momentum=0.9) under OneCycleLR(max_lr=[0.1, 0.02], total_steps=20)",
     O.SGD, groups({}), dict(lr=0.1, momentum=0.9),
     lambda o: S.OneCycleLR(o, max_lr=[0.1, 0.02], total_steps=STEPS)),
    ("ADAM_ONE_CYCLE_THREE_PHASE_MOMENTUM",
     "Adam(lr=0.05) under OneCycleLR(max_lr=0.05, total_steps=20, three_phase=True, anneal_strategy='linear', "
     "base_momentum=0.8, max_momentum=0.9)",
     O.Adam, single, dict(lr=0.05),
     lambda o: S.OneCycleLR(o, max_lr=0.05, total_steps=STEPS, three_phase=True, anneal_strategy="linear",
                            base_momentum=0.8, max_momentum=0.9)),
    ("RMSPROP_ONE_CYCLE_MOMENTUM", "RMSprop(lr=0.01) under OneCycleLR(max_lr=0.01, total_steps=20, pct_start=0.4)",
     O.RMSprop, single, dict(lr=0.01),
     lambda o: S.OneCycleLR(o, max_lr=0.01, total_steps=STEPS, pct_start=0.4)),
]


def run_optimizer(cls, layout, kwargs, scheduler):
    ps = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in INIT]
    opt = cls(layout(ps), foreach=False, **kwargs)
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


def plateau(**kw):
    return lambda o: S.ReduceLROnPlateau(o, **kw)


# (constant name, doc, scheduler factory); every one over the two groups.
SCHEDULES = [
    ("MULTI_STEP", "MultiStepLR(milestones=[3, 10], gamma=0.1)",
     lambda o: S.MultiStepLR(o, milestones=[3, 10], gamma=0.1)),
    ("MULTI_STEP_REPEATED", "MultiStepLR(milestones=[5, 12, 12, 20], gamma=0.5)",
     lambda o: S.MultiStepLR(o, milestones=[5, 12, 12, 20], gamma=0.5)),
    ("LAMBDA", "LambdaLR(lambda k: 0.95 ** k)", lambda o: S.LambdaLR(o, lambda k: 0.95 ** k)),
    ("LAMBDA_PER_GROUP", "LambdaLR([lambda k: 1 / (1 + k), lambda k: 0.9 ** (k // 3)])",
     lambda o: S.LambdaLR(o, [lambda k: 1 / (1 + k), lambda k: 0.9 ** (k // 3)])),
    ("ONE_CYCLE", "OneCycleLR(max_lr=[0.1, 0.01], total_steps=30, cycle_momentum=False)",
     lambda o: S.OneCycleLR(o, max_lr=SCHEDULE_LRS, total_steps=SCHEDULE_STEPS, cycle_momentum=False)),
    ("ONE_CYCLE_LINEAR", "OneCycleLR(max_lr=[0.1, 0.01], total_steps=30, pct_start=0.25, anneal_strategy='linear', "
     "cycle_momentum=False)",
     lambda o: S.OneCycleLR(o, max_lr=SCHEDULE_LRS, total_steps=SCHEDULE_STEPS, pct_start=0.25,
                            anneal_strategy="linear", cycle_momentum=False)),
    ("ONE_CYCLE_THREE_PHASE", "OneCycleLR(max_lr=[0.1, 0.01], total_steps=30, three_phase=True, cycle_momentum=False)",
     lambda o: S.OneCycleLR(o, max_lr=SCHEDULE_LRS, total_steps=SCHEDULE_STEPS, three_phase=True,
                            cycle_momentum=False)),
    ("ONE_CYCLE_THREE_PHASE_LINEAR",
     "OneCycleLR(max_lr=[0.1, 0.01], total_steps=30, pct_start=0.2, anneal_strategy='linear', three_phase=True, "
     "div_factor=10, final_div_factor=100, cycle_momentum=False)",
     lambda o: S.OneCycleLR(o, max_lr=SCHEDULE_LRS, total_steps=SCHEDULE_STEPS, pct_start=0.2,
                            anneal_strategy="linear", three_phase=True, div_factor=10, final_div_factor=100,
                            cycle_momentum=False)),
    ("WARM_RESTARTS", "CosineAnnealingWarmRestarts(T_0=5)", lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5)),
    ("WARM_RESTARTS_MULT", "CosineAnnealingWarmRestarts(T_0=3, T_mult=2, eta_min=0.001)",
     lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001)),
    ("WARM_RESTARTS_MULT3", "CosineAnnealingWarmRestarts(T_0=4, T_mult=3, eta_min=1e-4)",
     lambda o: S.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=3, eta_min=1e-4)),
    ("CHAINED_EXP_MULTI_STEP", "ChainedScheduler([ExponentialLR(gamma=0.9), MultiStepLR(milestones=[4, 9], gamma=0.5)])",
     lambda o: S.ChainedScheduler([S.ExponentialLR(o, gamma=0.9), S.MultiStepLR(o, milestones=[4, 9], gamma=0.5)])),
    ("CHAINED_WARMUP_COSINE",
     "ChainedScheduler([LinearLR(start_factor=0.1, total_iters=5), CosineAnnealingLR(T_max=30)])",
     lambda o: S.ChainedScheduler([S.LinearLR(o, start_factor=0.1, total_iters=5),
                                   S.CosineAnnealingLR(o, T_max=SCHEDULE_STEPS)])),
    ("SEQUENTIAL_THREE",
     "SequentialLR([ExponentialLR(gamma=0.8), StepLR(step_size=3, gamma=0.5), "
     "CosineAnnealingLR(T_max=10, eta_min=0.001)], milestones=[5, 12])",
     lambda o: S.SequentialLR(o, [S.ExponentialLR(o, gamma=0.8), S.StepLR(o, step_size=3, gamma=0.5),
                                  S.CosineAnnealingLR(o, T_max=10, eta_min=0.001)], milestones=[5, 12])),
    ("SEQUENTIAL_MULTI_STEP_RESTARTS",
     "SequentialLR([MultiStepLR(milestones=[2, 4], gamma=0.5), CosineAnnealingWarmRestarts(T_0=4, T_mult=2)], "
     "milestones=[6])",
     lambda o: S.SequentialLR(o, [S.MultiStepLR(o, milestones=[2, 4], gamma=0.5),
                                  S.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2)], milestones=[6])),
    ("PLATEAU_DEFAULT_PATIENCE_2", "ReduceLROnPlateau(patience=2)", plateau(patience=2)),
    ("PLATEAU_MIN_ABS_COOLDOWN",
     "ReduceLROnPlateau(mode='min', factor=0.5, patience=1, threshold=0.05, threshold_mode='abs', cooldown=2, "
     "min_lr=[0.02, 0.001])",
     plateau(mode="min", factor=0.5, patience=1, threshold=0.05, threshold_mode="abs", cooldown=2,
             min_lr=[0.02, 0.001])),
    ("PLATEAU_MAX_REL", "ReduceLROnPlateau(mode='max', factor=0.3, patience=0, threshold=0.01) on -metric",
     plateau(mode="max", factor=0.3, patience=0, threshold=0.01)),
    ("PLATEAU_MAX_ABS", "ReduceLROnPlateau(mode='max', factor=0.5, patience=1, threshold=0.02, "
     "threshold_mode='abs', cooldown=1, min_lr=0.004) on -metric",
     plateau(mode="max", factor=0.5, patience=1, threshold=0.02, threshold_mode="abs", cooldown=1, min_lr=0.004)),
]


def run_schedule(make, name):
    ps = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    opt = O.SGD([{"params": [ps[0]], "lr": SCHEDULE_LRS[0]}, {"params": [ps[1]], "lr": SCHEDULE_LRS[1]}])
    sched = make(opt)
    is_plateau = isinstance(sched, S.ReduceLROnPlateau)
    sign = -1.0 if "MAX" in name else 1.0
    lrs = []
    for k in range(SCHEDULE_STEPS):
        lrs.extend(float(g["lr"]) for g in opt.param_groups)
        for p in ps:
            p.grad = torch.zeros(1)
        opt.step()
        if is_plateau:
            sched.step(sign * PLATEAU_METRICS[k])
        else:
            sched.step()
    return lrs


def rust_array(name, values, doc):
    body = ", ".join(repr(float(v)) for v in values)
    return f"/// {doc}\npub const {name}: &[f64] = &[{body}];\n"


def machine():
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
        "// @generated by crates/optim/tests/oracle/torch_groups.py: do not edit, rerun the script (README.md).",
        f"// torch {torch.__version__}, float64, CPU, single-tensor code paths (foreach=False).",
        f"// Made on: {machine()}.",
        "//",
        "// Each optimiser's array holds STEPS rows of 7 values: the parameters after each step,",
        "// parameter 0 ([3]) then parameter 1 ([2, 2], row-major). Each schedule's array holds,",
        "// for each of SCHEDULE_STEPS steps, the rate of group 0 then of group 1.",
        "",
        f"pub const STEPS: usize = {STEPS};",
        f"pub const SKIP_EVERY: usize = {SKIP_EVERY};",
        f"pub const GRAD_A: f64 = {GRAD_A!r};",
        f"pub const GRAD_B: f64 = {GRAD_B!r};",
        f"pub const GRAD_C: f64 = {GRAD_C!r};",
        rust_array("INIT_0", INIT[0], "Parameter 0, shape [3]."),
        rust_array("INIT_1", [x for row in INIT[1] for x in row], "Parameter 1, shape [2, 2], row-major."),
        f"pub const SCHEDULE_STEPS: usize = {SCHEDULE_STEPS};",
        rust_array("SCHEDULE_LRS", SCHEDULE_LRS, "The base rates of the two groups."),
        rust_array("PLATEAU_METRICS", PLATEAU_METRICS,
                   "The metric ReduceLROnPlateau is stepped with after step k (negated for mode max)."),
        "",
    ]
    for name, doc, cls, layout, kwargs, scheduler in OPTIMIZERS:
        rows = run_optimizer(cls, layout, kwargs, scheduler)
        out.append(rust_array(name, [x for row in rows for x in row], f"`torch.optim.{doc}`"))
    for name, doc, make in SCHEDULES:
        out.append(rust_array(f"LR_{name}", run_schedule(make, name), f"`{doc}`, base rates {SCHEDULE_LRS}"))
    with open(OUT, "w") as f:
        f.write("\n".join(out))
    subprocess.run(["rustfmt", "--edition", "2024", OUT], check=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
