//! Parameter groups, `maximize`, RAdam and the schedulers against PyTorch, step by step,
//! in `f64`.
//!
//! The reference values come from `tests/oracle/torch_groups.py` (see the README there),
//! which writes `tests/oracle/torch_groups_values.rs`: 20 steps of each optimiser on
//! `torch_optim.py`'s problem (two parameters, of shapes [3] and [2, 2], the gradient
//! `sin(1.3 p + 0.5 k) + 0.1 p`, the [2, 2] parameter without a gradient every third
//! step); where there are groups, parameter 0 is in group 0 and parameter 1 in group 1.
//! Each scheduler's rates are torch's over 30 steps for two groups of base rates 0.1 and
//! 0.01.
//!
//! Each value must agree to 1e-12 relative; the largest difference per case is printed
//! (`cargo test -p descent-optim --test suite torch_groups -- --nocapture`).

#[path = "oracle/torch_groups_values.rs"]
mod oracle;

use descent_backprop::ParamGrads;
use descent_optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Anneal, Chain, Constant, Cosine, CosineWarmRestarts,
    Exponential, LambdaLr, LinearWarmup, MultiStepLr, NAdam, OneCycle, Optimizer, ParamGroups,
    PlateauMode, RAdam, ReduceLrOnPlateau, RmsProp, Schedule, Scheduled, Sequential, Sgd, StepLr,
    ThresholdMode,
};
use descent_tape::{ParamId, ParamStore};
use descent_tensor::Tensor;

/// Relative tolerance against torch.
const TOLERANCE: f64 = 1e-12;

/// `|a - b| / |b|` (or `|a - b|` where `b` is 0).
fn relative(a: f64, b: f64) -> f64 {
    let d = (a - b).abs();
    if b == 0.0 { d } else { d / b.abs() }
}

fn gradient(k: usize, values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|&p| (oracle::GRAD_A * p + oracle::GRAD_B * k as f64).sin() + oracle::GRAD_C * p)
        .collect()
}

/// Builds the optimiser of a case from the two parameters' ids.
type Build = Box<dyn Fn(ParamId, ParamId) -> Box<dyn Optimizer<f64>>>;

/// Runs the optimiser `build` makes on the oracle's problem; returns the largest
/// relative difference from `expected` and the first miss, if any.
fn run(build: &Build, expected: &[f64]) -> (f64, Option<String>) {
    assert_eq!(expected.len(), oracle::STEPS * 7);
    let mut store = ParamStore::<f64>::new();
    let p0 = store.insert("p0", Tensor::new(&[3], oracle::INIT_0.to_vec()).unwrap());
    let p1 = store.insert("p1", Tensor::new(&[2, 2], oracle::INIT_1.to_vec()).unwrap());
    let mut opt = build(p0, p1);
    let (mut worst, mut miss) = (0.0f64, None);
    for k in 0..oracle::STEPS {
        let mut grads = ParamGrads::new();
        for (i, id) in [p0, p1].into_iter().enumerate() {
            if i == 1 && k % oracle::SKIP_EVERY == oracle::SKIP_EVERY - 1 {
                continue;
            }
            let value = store.get(id).unwrap();
            let g = gradient(k, value.data());
            grads.insert(id, Tensor::new(value.shape(), g).unwrap());
        }
        opt.step(&mut store, &grads).unwrap();
        let got = [store.get(p0).unwrap().data(), store.get(p1).unwrap().data()].concat();
        for (j, (&a, &b)) in got.iter().zip(&expected[k * 7..(k + 1) * 7]).enumerate() {
            let r = relative(a, b);
            worst = worst.max(r);
            if r > TOLERANCE && miss.is_none() {
                miss = Some(format!("step {k}, element {j}: {a:e} vs torch {b:e}"));
            }
        }
    }
    (worst, miss)
}

/// A case whose optimiser ignores the ids (no groups).
fn plain(opt: impl Optimizer<f64> + Clone + 'static) -> Build {
    Box::new(move |_, _| Box::new(opt.clone()))
}

/// Parameter 1 in group 1, made from the default by `configure`.
fn grouped<O: Optimizer<f64> + Clone + 'static>(default: O, configure: fn(O) -> O) -> Build {
    Box::new(move |_, p1| Box::new(ParamGroups::new(default.clone()).group([p1], configure)))
}

fn optimizer_cases() -> Vec<(&'static str, Build, &'static [f64])> {
    vec![
        (
            "RADAM_DEFAULT",
            plain(RAdam::default()),
            oracle::RADAM_DEFAULT,
        ),
        (
            "RADAM",
            plain(
                RAdam::new(0.05)
                    .betas(0.8, 0.95)
                    .eps(1e-6)
                    .weight_decay(0.01),
            ),
            oracle::RADAM,
        ),
        (
            "RADAM_DECOUPLED",
            plain(
                RAdam::new(0.05)
                    .betas(0.9, 0.99)
                    .weight_decay(0.1)
                    .decoupled_weight_decay(true),
            ),
            oracle::RADAM_DECOUPLED,
        ),
        (
            "SGD_MAXIMIZE",
            plain(
                Sgd::new(0.05)
                    .momentum(0.9)
                    .nesterov(true)
                    .weight_decay(0.01)
                    .maximize(true),
            ),
            oracle::SGD_MAXIMIZE,
        ),
        (
            "SGD_PLAIN_MAXIMIZE",
            plain(Sgd::new(0.1).weight_decay(0.05).maximize(true)),
            oracle::SGD_PLAIN_MAXIMIZE,
        ),
        (
            "ADAGRAD_MAXIMIZE",
            plain(
                Adagrad::new(0.1)
                    .lr_decay(0.05)
                    .weight_decay(0.05)
                    .maximize(true),
            ),
            oracle::ADAGRAD_MAXIMIZE,
        ),
        (
            "RMSPROP_MAXIMIZE",
            plain(
                RmsProp::new(0.01)
                    .alpha(0.9)
                    .weight_decay(0.01)
                    .momentum(0.5)
                    .centered(true)
                    .maximize(true),
            ),
            oracle::RMSPROP_MAXIMIZE,
        ),
        (
            "ADADELTA_MAXIMIZE",
            plain(
                Adadelta::new(0.5)
                    .rho(0.8)
                    .weight_decay(0.01)
                    .maximize(true),
            ),
            oracle::ADADELTA_MAXIMIZE,
        ),
        (
            "ADAM_MAXIMIZE",
            plain(
                Adam::new(0.05)
                    .betas(0.8, 0.95)
                    .weight_decay(0.01)
                    .amsgrad(true)
                    .maximize(true),
            ),
            oracle::ADAM_MAXIMIZE,
        ),
        (
            "ADAMW_MAXIMIZE",
            plain(AdamW::new(0.05).weight_decay(0.1).maximize(true)),
            oracle::ADAMW_MAXIMIZE,
        ),
        (
            "ADAMAX_MAXIMIZE",
            plain(Adamax::new(0.05).weight_decay(0.01).maximize(true)),
            oracle::ADAMAX_MAXIMIZE,
        ),
        (
            "NADAM_MAXIMIZE",
            plain(
                NAdam::new(0.05)
                    .weight_decay(0.01)
                    .momentum_decay(0.01)
                    .maximize(true),
            ),
            oracle::NADAM_MAXIMIZE,
        ),
        (
            "RADAM_MAXIMIZE",
            plain(
                RAdam::new(0.05)
                    .betas(0.8, 0.95)
                    .weight_decay(0.01)
                    .maximize(true),
            ),
            oracle::RADAM_MAXIMIZE,
        ),
        (
            "GROUPS_SGD_MOMENTUM",
            grouped(Sgd::new(0.05).momentum(0.9), |o| {
                o.with_lr(0.01).weight_decay(0.1).dampening(0.5)
            }),
            oracle::GROUPS_SGD_MOMENTUM,
        ),
        (
            "GROUPS_SGD_NESTEROV",
            grouped(
                Sgd::new(0.05)
                    .momentum(0.9)
                    .nesterov(true)
                    .weight_decay(0.05),
                |o| o.with_lr(0.2).momentum(0.5).weight_decay(0.0),
            ),
            oracle::GROUPS_SGD_NESTEROV,
        ),
        (
            "GROUPS_ADAM",
            grouped(Adam::new(0.05), |o| {
                o.with_lr(0.005).betas(0.5, 0.9).weight_decay(0.1)
            }),
            oracle::GROUPS_ADAM,
        ),
        (
            "GROUPS_ADAMW",
            grouped(AdamW::new(0.05).weight_decay(0.1), |o| {
                o.with_lr(0.01).weight_decay(0.0)
            }),
            oracle::GROUPS_ADAMW,
        ),
        (
            "GROUPS_RADAM",
            grouped(RAdam::new(0.05).betas(0.8, 0.95), |o| {
                o.with_lr(0.01).weight_decay(0.1).maximize(true)
            }),
            oracle::GROUPS_RADAM,
        ),
        (
            "GROUPS_RMSPROP",
            grouped(RmsProp::new(0.01).momentum(0.5), |o| {
                o.with_lr(0.001).alpha(0.5).centered(true)
            }),
            oracle::GROUPS_RMSPROP,
        ),
        (
            "GROUPS_ADAGRAD",
            grouped(Adagrad::new(0.1), |o| o.with_lr(0.01).lr_decay(0.1)),
            oracle::GROUPS_ADAGRAD,
        ),
        (
            "GROUPS_ADADELTA",
            grouped(Adadelta::new(1.0), |o| o.with_lr(0.1).rho(0.5)),
            oracle::GROUPS_ADADELTA,
        ),
        (
            "GROUPS_ADAMAX",
            grouped(Adamax::new(0.05), |o| o.with_lr(0.01).weight_decay(0.1)),
            oracle::GROUPS_ADAMAX,
        ),
        (
            "GROUPS_NADAM",
            grouped(NAdam::new(0.05), |o| o.with_lr(0.01).momentum_decay(0.01)),
            oracle::GROUPS_NADAM,
        ),
        (
            "GROUPS_ADAM_COSINE",
            Box::new(|_, p1| {
                let groups = ParamGroups::new(Adam::new(0.05)).group([p1], |o| o.with_lr(0.005));
                Box::new(Scheduled::new(groups, Cosine::new(10, 0.001)))
            }),
            oracle::GROUPS_ADAM_COSINE,
        ),
        (
            "GROUPS_SGD_ONE_CYCLE",
            Box::new(|_, p1| {
                // The peak of each group is its rate: PyTorch's max_lr=[0.1, 0.02].
                let groups =
                    ParamGroups::new(Sgd::new(0.1).momentum(0.9)).group([p1], |o| o.with_lr(0.02));
                let one_cycle = OneCycle::new(oracle::STEPS).cycle_momentum(false);
                Box::new(Scheduled::new(groups, one_cycle))
            }),
            oracle::GROUPS_SGD_ONE_CYCLE,
        ),
        (
            "GROUPS_SGD_ONE_CYCLE_MOMENTUM",
            Box::new(|_, p1| {
                let groups =
                    ParamGroups::new(Sgd::new(0.1).momentum(0.9)).group([p1], |o| o.with_lr(0.02));
                Box::new(Scheduled::new(groups, OneCycle::new(oracle::STEPS)))
            }),
            oracle::GROUPS_SGD_ONE_CYCLE_MOMENTUM,
        ),
        (
            "ADAM_ONE_CYCLE_THREE_PHASE_MOMENTUM",
            Box::new(|_, _| {
                let one_cycle = OneCycle::new(oracle::STEPS)
                    .three_phase(true)
                    .anneal(Anneal::Linear)
                    .momentum_range(0.8, 0.9);
                Box::new(Scheduled::new(Adam::new(0.05), one_cycle))
            }),
            oracle::ADAM_ONE_CYCLE_THREE_PHASE_MOMENTUM,
        ),
        (
            "RMSPROP_ONE_CYCLE_MOMENTUM",
            Box::new(|_, _| {
                let one_cycle = OneCycle::new(oracle::STEPS).pct_start(0.4);
                Box::new(Scheduled::new(RmsProp::new(0.01), one_cycle))
            }),
            oracle::RMSPROP_ONE_CYCLE_MOMENTUM,
        ),
    ]
}

#[test]
fn groups_maximize_and_radam_follow_torch_step_by_step() {
    let mut failures = Vec::new();
    println!("{:<28} {:>12}", "case", "max rel diff");
    for (name, build, expected) in optimizer_cases() {
        let (worst, miss) = run(&build, expected);
        println!("{name:<28} {worst:>12.3e}");
        if let Some(m) = miss {
            failures.push(format!("{name}: {m}"));
        }
    }
    assert!(
        failures.is_empty(),
        "differ from torch:\n{}",
        failures.join("\n")
    );
}

fn schedule_cases() -> Vec<(&'static str, Box<dyn Schedule>, &'static [f64])> {
    let n = oracle::SCHEDULE_STEPS;
    vec![
        (
            "MULTI_STEP",
            Box::new(MultiStepLr::new([3, 10], 0.1)),
            oracle::LR_MULTI_STEP,
        ),
        (
            "MULTI_STEP_REPEATED",
            Box::new(MultiStepLr::new([5, 12, 12, 20], 0.5)),
            oracle::LR_MULTI_STEP_REPEATED,
        ),
        (
            "LAMBDA",
            Box::new(LambdaLr::new(|k| 0.95f64.powf(k as f64))),
            oracle::LR_LAMBDA,
        ),
        (
            "LAMBDA_PER_GROUP",
            Box::new(LambdaLr::per_group(vec![
                Box::new(|k| 1.0 / (1.0 + k as f64)),
                Box::new(|k| 0.9f64.powf((k / 3) as f64)),
            ])),
            oracle::LR_LAMBDA_PER_GROUP,
        ),
        (
            "ONE_CYCLE",
            Box::new(OneCycle::new(n)),
            oracle::LR_ONE_CYCLE,
        ),
        (
            "ONE_CYCLE_LINEAR",
            Box::new(
                OneCycle::new(n)
                    .pct_start(0.25)
                    .anneal(Anneal::Linear)
                    .cycle_momentum(false),
            ),
            oracle::LR_ONE_CYCLE_LINEAR,
        ),
        (
            "ONE_CYCLE_THREE_PHASE",
            Box::new(OneCycle::new(n).three_phase(true).cycle_momentum(false)),
            oracle::LR_ONE_CYCLE_THREE_PHASE,
        ),
        (
            "ONE_CYCLE_THREE_PHASE_LINEAR",
            Box::new(
                OneCycle::new(n)
                    .pct_start(0.2)
                    .anneal(Anneal::Linear)
                    .three_phase(true)
                    .div_factor(10.0)
                    .final_div_factor(100.0)
                    .cycle_momentum(false),
            ),
            oracle::LR_ONE_CYCLE_THREE_PHASE_LINEAR,
        ),
        (
            "WARM_RESTARTS",
            Box::new(CosineWarmRestarts::new(5)),
            oracle::LR_WARM_RESTARTS,
        ),
        (
            "WARM_RESTARTS_MULT",
            Box::new(CosineWarmRestarts::new(3).t_mult(2).eta_min(0.001)),
            oracle::LR_WARM_RESTARTS_MULT,
        ),
        (
            "WARM_RESTARTS_MULT3",
            Box::new(CosineWarmRestarts::new(4).t_mult(3).eta_min(1e-4)),
            oracle::LR_WARM_RESTARTS_MULT3,
        ),
        (
            "CHAINED_EXP_MULTI_STEP",
            Box::new(Chain::new(Exponential::new(0.9)).and(MultiStepLr::new([4, 9], 0.5))),
            oracle::LR_CHAINED_EXP_MULTI_STEP,
        ),
        (
            "CHAINED_WARMUP_COSINE",
            Box::new(
                Chain::new(LinearWarmup::new(5, Constant).start_factor(0.1))
                    .and(Cosine::new(n, 0.0)),
            ),
            oracle::LR_CHAINED_WARMUP_COSINE,
        ),
        (
            "SEQUENTIAL_THREE",
            Box::new(
                Sequential::new(Exponential::new(0.8))
                    .then(5, StepLr::new(3, 0.5))
                    .then(12, Cosine::new(10, 0.001)),
            ),
            oracle::LR_SEQUENTIAL_THREE,
        ),
        (
            "SEQUENTIAL_MULTI_STEP_RESTARTS",
            Box::new(
                Sequential::new(MultiStepLr::new([2, 4], 0.5))
                    .then(6, CosineWarmRestarts::new(4).t_mult(2)),
            ),
            oracle::LR_SEQUENTIAL_MULTI_STEP_RESTARTS,
        ),
    ]
}

/// Two groups of SGD at the oracle's base rates.
fn two_groups() -> (ParamStore<f64>, ParamGroups<Sgd<f64>>, ParamGrads<f64>) {
    let mut store = ParamStore::<f64>::new();
    let a = store.insert("a", Tensor::from([0.0]));
    let b = store.insert("b", Tensor::from([0.0]));
    let [lr0, lr1] = [oracle::SCHEDULE_LRS[0], oracle::SCHEDULE_LRS[1]];
    let opt = ParamGroups::new(Sgd::new(lr0)).group([b], move |o| o.with_lr(lr1));
    let grads = [(a, Tensor::from([0.0])), (b, Tensor::from([0.0]))]
        .into_iter()
        .collect();
    (store, opt, grads)
}

/// Compares the rates of each group, step by step; pushes a failure per miss.
fn compare(name: &str, rates: &[f64], expected: &[f64], failures: &mut Vec<String>) {
    assert_eq!(expected.len(), oracle::SCHEDULE_STEPS * 2, "{name}");
    assert_eq!(rates.len(), expected.len(), "{name}");
    let mut worst = 0.0f64;
    for (i, (&a, &b)) in rates.iter().zip(expected).enumerate() {
        let r = relative(a, b);
        worst = worst.max(r);
        if r > TOLERANCE {
            failures.push(format!(
                "{name}: step {}, group {}: {a:e} vs torch {b:e}",
                i / 2,
                i % 2
            ));
        }
    }
    println!("{name:<32} {worst:>12.3e}");
}

/// Each schedule drives both groups of an optimiser through `Scheduled`, from each
/// group's own base rate, as torch's schedulers drive `param_groups`.
#[test]
fn every_new_schedule_follows_torch_per_group() {
    let mut failures = Vec::new();
    println!("{:<32} {:>12}", "schedule", "max rel diff");
    for (name, schedule, expected) in schedule_cases() {
        schedule.validate().unwrap();
        let (mut store, groups, grads) = two_groups();
        let mut opt = Scheduled::new(groups, schedule);
        let mut rates = Vec::new();
        for _ in 0..oracle::SCHEDULE_STEPS {
            rates.extend((0..2).map(|g| opt.group_learning_rate(g)));
            opt.step(&mut store, &grads).unwrap();
            // What the inner groups stepped with is what was announced.
            let n = rates.len();
            assert_eq!(opt.inner().group_learning_rate(0), rates[n - 2]);
            assert_eq!(opt.inner().group_learning_rate(1), rates[n - 1]);
        }
        compare(name, &rates, expected, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "differ from torch:\n{}",
        failures.join("\n")
    );
}

#[test]
fn reduce_lr_on_plateau_follows_torch() {
    let cases: Vec<(&str, ReduceLrOnPlateau, f64, &[f64])> = vec![
        (
            "PLATEAU_DEFAULT_PATIENCE_2",
            ReduceLrOnPlateau::new().patience(2),
            1.0,
            oracle::LR_PLATEAU_DEFAULT_PATIENCE_2,
        ),
        (
            "PLATEAU_MIN_ABS_COOLDOWN",
            ReduceLrOnPlateau::new()
                .mode(PlateauMode::Min)
                .factor(0.5)
                .patience(1)
                .threshold(0.05, ThresholdMode::Abs)
                .cooldown(2)
                .min_lrs([0.02, 0.001]),
            1.0,
            oracle::LR_PLATEAU_MIN_ABS_COOLDOWN,
        ),
        (
            "PLATEAU_MAX_REL",
            ReduceLrOnPlateau::new()
                .mode(PlateauMode::Max)
                .factor(0.3)
                .patience(0)
                .threshold(0.01, ThresholdMode::Rel),
            -1.0,
            oracle::LR_PLATEAU_MAX_REL,
        ),
        (
            "PLATEAU_MAX_ABS",
            ReduceLrOnPlateau::new()
                .mode(PlateauMode::Max)
                .factor(0.5)
                .patience(1)
                .threshold(0.02, ThresholdMode::Abs)
                .cooldown(1)
                .min_lr(0.004),
            -1.0,
            oracle::LR_PLATEAU_MAX_ABS,
        ),
    ];
    let mut failures = Vec::new();
    for (name, mut plateau, sign, expected) in cases {
        let (mut store, mut opt, grads) = two_groups();
        let mut rates = Vec::new();
        for &metric in oracle::PLATEAU_METRICS {
            rates.extend((0..2).map(|g| opt.group_learning_rate(g)));
            opt.step(&mut store, &grads).unwrap();
            plateau.step(sign * metric, &mut opt).unwrap();
        }
        compare(name, &rates, expected, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "differ from torch:\n{}",
        failures.join("\n")
    );
}
