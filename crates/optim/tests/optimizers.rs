//! The optimisers' contracts beyond their arithmetic (which `torch_reference.rs`
//! checks): a step with a non-finite gradient changes nothing and names the parameter,
//! bad hyper-parameters are refused, defaults are PyTorch's, state is per parameter.

use descent_backprop::ParamGrads;
use descent_optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Cosine, Error, Exponential, LinearWarmup, NAdam,
    Optimizer, RmsProp, Schedule, Scheduled, Sgd, StepLr,
};
use descent_tape::{ParamId, ParamStore};
use descent_tensor::Tensor;

type Factory = fn() -> Box<dyn Optimizer<f64>>;

/// Every optimiser, with options that give each some state.
fn factories() -> Vec<Factory> {
    vec![
        || Box::new(Sgd::new(0.1).momentum(0.9)),
        || Box::new(Adagrad::new(0.1).lr_decay(0.01)),
        || Box::new(RmsProp::new(0.01).momentum(0.5).centered(true)),
        || Box::new(Adadelta::default()),
        || Box::new(Adam::new(0.01).amsgrad(true)),
        || Box::new(AdamW::new(0.01)),
        || Box::new(Adamax::default()),
        || Box::new(NAdam::default()),
        || {
            Box::new(Scheduled::new(
                Adam::new(0.01),
                LinearWarmup::new(3, Cosine::new(10, 0.0)),
            ))
        },
    ]
}

fn store() -> (ParamStore<f64>, ParamId, ParamId) {
    let mut store = ParamStore::new();
    let a = store.insert("a", Tensor::from([0.5, -1.0, 2.0]));
    let b = store.insert(
        "b",
        Tensor::new(&[2, 2], vec![0.3, -0.7, 1.5, -0.1]).unwrap(),
    );
    (store, a, b)
}

fn grads(a: ParamId, b: ParamId, k: f64) -> ParamGrads<f64> {
    [
        (a, Tensor::from([0.1 * k, -0.4, 1.0 + k])),
        (
            b,
            Tensor::new(&[2, 2], vec![0.3, k, -0.2 * k, 0.05]).unwrap(),
        ),
    ]
    .into_iter()
    .collect()
}

fn values(store: &ParamStore<f64>) -> Vec<f64> {
    store
        .iter()
        .flat_map(|(_, _, v)| v.data().to_vec())
        .collect()
}

#[test]
fn a_non_finite_gradient_skips_the_whole_step_and_names_the_parameter() {
    for factory in factories() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            // Two runs: one meets the bad step, the other never does; after it both must
            // be in the same state, so their next steps agree bit for bit.
            let (mut store, a, b) = store();
            let (mut clean, ca, cb) = self::store();
            let (mut opt, mut twin) = (factory(), factory());
            let name = opt.name();
            opt.step(&mut store, &grads(a, b, 1.0)).unwrap();
            twin.step(&mut clean, &grads(ca, cb, 1.0)).unwrap();
            let before = values(&store);
            let lr_before = opt.learning_rate();

            let mut poisoned = grads(a, b, 2.0);
            poisoned.get_mut(b).unwrap().data_mut()[2] = bad;
            let err = opt.step(&mut store, &poisoned).unwrap_err();
            match &err {
                Error::NonFinite {
                    op,
                    name: param,
                    index,
                    value,
                } => {
                    assert_eq!(*op, name);
                    assert_eq!(param, "b");
                    assert_eq!(*index, 2);
                    assert!(value.is_nan() == bad.is_nan());
                }
                other => panic!("{name}: expected NonFinite, got {other:?}"),
            }
            let message = err.to_string();
            assert!(message.contains("'b'"), "{message}");
            assert!(message.contains("no parameter changed"), "{message}");
            assert_eq!(values(&store), before, "{name}: a parameter moved");
            assert_eq!(opt.learning_rate(), lr_before, "{name}");

            opt.step(&mut store, &grads(a, b, 3.0)).unwrap();
            twin.step(&mut clean, &grads(ca, cb, 3.0)).unwrap();
            assert_eq!(
                values(&store),
                values(&clean),
                "{name}: the failed step left state behind"
            );
        }
    }
}

#[test]
fn a_gradient_of_the_wrong_shape_or_parameter_is_refused() {
    for factory in factories() {
        let (mut store, a, b) = store();
        let mut opt = factory();
        let mut g = grads(a, b, 1.0);
        g.insert(b, Tensor::from([1.0, 2.0, 3.0, 4.0]));
        assert!(matches!(
            opt.step(&mut store, &g),
            Err(Error::Shape { ref name, .. }) if name == "b"
        ));
        let removed = store.insert("c", Tensor::from([1.0]));
        store.remove(removed);
        let (_other, foreign, _) = self::store();
        for id in [removed, foreign] {
            let g: ParamGrads<f64> = [(id, Tensor::from([1.0]))].into_iter().collect();
            assert!(matches!(
                opt.step(&mut store, &g),
                Err(Error::UnknownParam { .. })
            ));
        }
    }
}

fn refuses(opt: &dyn Optimizer<f64>, op: &str, reason: &str) {
    match opt.validate() {
        Err(Error::Config { op: o, reason: r }) => {
            assert_eq!(o, op);
            assert!(r.contains(reason), "{op}: '{r}' lacks '{reason}'");
        }
        other => panic!("{op}: expected a Config error containing '{reason}', got {other:?}"),
    }
}

#[test]
fn bad_hyper_parameters_are_refused() {
    refuses(&Adagrad::new(-0.1), "adagrad", "learning rate must be >= 0");
    refuses(&Adagrad::new(0.1).lr_decay(-1.0), "adagrad", "lr_decay");
    refuses(
        &Adagrad::new(0.1).weight_decay(-1.0),
        "adagrad",
        "weight decay",
    );
    refuses(
        &Adagrad::new(0.1).initial_accumulator_value(-1.0),
        "adagrad",
        "initial accumulator value",
    );
    refuses(&Adagrad::new(0.1).eps(-1e-10), "adagrad", "eps");
    refuses(&RmsProp::new(f64::NAN), "rmsprop", "got NaN");
    refuses(
        &RmsProp::new(0.1).alpha(1.5),
        "rmsprop",
        "alpha must be in [0, 1]",
    );
    refuses(&RmsProp::new(0.1).momentum(-0.5), "rmsprop", "momentum");
    refuses(&RmsProp::new(0.1).eps(-1.0), "rmsprop", "eps");
    refuses(
        &Adadelta::new(1.0).rho(1.1),
        "adadelta",
        "rho must be in [0, 1]",
    );
    refuses(
        &Adadelta::new(1.0).weight_decay(-0.1),
        "adadelta",
        "weight decay",
    );
    refuses(
        &Adam::new(0.1).betas(1.0, 0.9),
        "adam",
        "beta1 must be in [0, 1)",
    );
    refuses(
        &Adam::new(0.1).betas(0.9, -0.1),
        "adam",
        "beta2 must be in [0, 1)",
    );
    refuses(&Adam::new(0.1).eps(f64::NAN), "adam", "eps must be >= 0");
    refuses(&Adam::new(-1e-3), "adam", "learning rate");
    refuses(
        &AdamW::new(0.1).weight_decay(-0.01),
        "adamw",
        "weight decay",
    );
    refuses(&AdamW::new(0.1).betas(0.9, 1.0), "adamw", "beta2");
    refuses(&Adamax::new(0.1).betas(0.9, 1.0), "adamax", "beta2");
    refuses(&Adamax::new(0.1).eps(-1.0), "adamax", "eps");
    refuses(
        &NAdam::new(0.1).momentum_decay(-1.0),
        "nadam",
        "momentum decay",
    );
    refuses(&NAdam::new(0.1).betas(-0.1, 0.9), "nadam", "beta1");
    refuses(
        &Scheduled::new(Sgd::new(0.1), StepLr::new(0, 0.5)),
        "step_lr",
        "step size",
    );
    refuses(
        &Scheduled::new(Sgd::new(0.1), Exponential::new(-0.5)),
        "exponential",
        "gamma",
    );
    refuses(
        &Scheduled::new(Sgd::new(0.1), Cosine::new(0, 0.0)),
        "cosine",
        "t_max",
    );
    for f in [0.0, 1.5, f64::NAN] {
        refuses(
            &Scheduled::new(
                Sgd::new(0.1),
                LinearWarmup::new(3, StepLr::new(2, 0.5)).start_factor(f),
            ),
            "linear_warmup",
            "start factor",
        );
    }
    // The schedule after a warm-up is checked too, and so is the wrapped optimiser.
    refuses(
        &Scheduled::new(Sgd::new(0.1), LinearWarmup::new(3, Cosine::new(0, 0.0))),
        "cosine",
        "t_max",
    );
    refuses(
        &Scheduled::new(Adam::new(0.1).betas(1.0, 0.9), Cosine::new(5, 0.0)),
        "adam",
        "beta1",
    );
}

#[test]
fn a_refused_configuration_changes_nothing() {
    let bad: Vec<Box<dyn Optimizer<f64>>> = vec![
        Box::new(Adam::new(0.1).betas(1.0, 0.9)),
        Box::new(RmsProp::new(-0.1)),
        Box::new(Scheduled::new(Adam::new(0.1), Cosine::new(0, 0.0))),
    ];
    for mut opt in bad {
        let (mut store, a, b) = store();
        let before = values(&store);
        assert!(matches!(
            opt.step(&mut store, &grads(a, b, 1.0)),
            Err(Error::Config { .. })
        ));
        assert_eq!(values(&store), before);
    }
}

#[test]
fn defaults_are_pytorchs() {
    let lr = |o: &dyn Optimizer<f64>| o.learning_rate();
    assert_eq!(lr(&Adagrad::default()), 1e-2);
    assert_eq!(lr(&RmsProp::default()), 1e-2);
    assert_eq!(lr(&Adadelta::default()), 1.0);
    assert_eq!(lr(&Adam::default()), 1e-3);
    assert_eq!(lr(&AdamW::default()), 1e-3);
    assert_eq!(lr(&Adamax::default()), 2e-3);
    assert_eq!(lr(&NAdam::default()), 2e-3);
    for o in [
        &Adagrad::default() as &dyn Optimizer<f64>,
        &RmsProp::default(),
        &Adadelta::default(),
        &Adam::default(),
        &AdamW::default(),
        &Adamax::default(),
        &NAdam::default(),
    ] {
        o.validate().unwrap();
    }
    // The other defaults are checked against torch by torch_reference.rs's *_DEFAULT
    // cases, which build each optimiser with `default()`.
}

#[test]
fn step_counts_are_per_parameter() {
    let (mut store, a, b) = store();
    let mut adam = Adam::new(0.01);
    let mut nadam = NAdam::new(0.01);
    let mut adagrad = Adagrad::new(0.01);
    let only_a: ParamGrads<f64> = [(a, Tensor::from([1.0, 1.0, 1.0]))].into_iter().collect();
    for k in 0..5 {
        let g = if k % 2 == 0 {
            grads(a, b, k as f64)
        } else {
            only_a.clone()
        };
        adam.step(&mut store, &g).unwrap();
        nadam.step(&mut store, &g).unwrap();
        adagrad.step(&mut store, &g).unwrap();
    }
    assert_eq!((adam.step_count(a), adam.step_count(b)), (5, 3));
    assert_eq!((nadam.step_count(a), nadam.step_count(b)), (5, 3));
    assert_eq!((adagrad.step_count(a), adagrad.step_count(b)), (5, 3));
    assert_eq!(AdamW::<f64>::default().step_count(a), 0);
}

#[test]
fn a_removed_parameter_does_not_lend_its_state_to_a_new_one() {
    let mut store = ParamStore::<f64>::new();
    let old = store.insert("old", Tensor::from([1.0]));
    let mut adam = Adam::new(0.1);
    let g: ParamGrads<f64> = [(old, Tensor::from([1.0]))].into_iter().collect();
    for _ in 0..3 {
        adam.step(&mut store, &g).unwrap();
    }
    store.remove(old);
    let new = store.insert("new", Tensor::from([1.0]));
    let g: ParamGrads<f64> = [(new, Tensor::from([1.0]))].into_iter().collect();
    adam.step(&mut store, &g).unwrap();
    assert_eq!(adam.step_count(new), 1);
    // A fresh Adam's first step is η·sign(g).
    assert!((store.get(new).unwrap().item() - 0.9).abs() < 1e-8);
}

#[test]
fn f32_parameters_follow_the_f64_trajectory() {
    fn run<T: descent_tensor::Float>(mut opt: impl Optimizer<T>) -> Vec<f64> {
        let mut store = ParamStore::<T>::new();
        let w = store.insert(
            "w",
            Tensor::new(
                &[3],
                vec![T::from_f64(0.5), T::from_f64(-1.0), T::from_f64(2.0)],
            )
            .unwrap(),
        );
        for k in 0..20 {
            let g: Vec<T> = store
                .get(w)
                .unwrap()
                .data()
                .iter()
                .map(|&p| T::from_f64((1.3 * p.as_f64() + 0.5 * k as f64).sin()))
                .collect();
            let grads: ParamGrads<T> = [(w, Tensor::new(&[3], g).unwrap())].into_iter().collect();
            opt.step(&mut store, &grads).unwrap();
        }
        store
            .get(w)
            .unwrap()
            .data()
            .iter()
            .map(|x| x.as_f64())
            .collect()
    }
    let pairs = [
        (run::<f32>(Adam::new(0.05)), run::<f64>(Adam::new(0.05))),
        (run::<f32>(NAdam::new(0.05)), run::<f64>(NAdam::new(0.05))),
        (
            run::<f32>(RmsProp::new(0.01).centered(true)),
            run::<f64>(RmsProp::new(0.01).centered(true)),
        ),
        (
            run::<f32>(Adadelta::default()),
            run::<f64>(Adadelta::default()),
        ),
        (run::<f32>(Adagrad::new(0.1)), run::<f64>(Adagrad::new(0.1))),
        (run::<f32>(Adamax::new(0.05)), run::<f64>(Adamax::new(0.05))),
    ];
    for (single, double) in pairs {
        for (s, d) in single.iter().zip(&double) {
            assert!((s - d).abs() < 1e-5 * d.abs().max(1.0), "{s} vs {d}");
        }
    }
}

#[test]
fn schedules_compose_with_boxes_and_references() {
    let boxed: Box<dyn Schedule> = Box::new(LinearWarmup::new(2, Exponential::new(0.5)));
    let by_ref = &boxed;
    assert_eq!(by_ref.lr(3, 1.0), 0.5);
    assert!((boxed.lr(0, 3.0) - 1.0).abs() < 1e-15);
    let nested = Scheduled::new(
        Scheduled::new(Sgd::new(1.0), Exponential::new(0.5)),
        StepLr::new(2, 0.1),
    );
    // The outer schedule sets the inner one's base: 1.0 · 0.1^⌊k/2⌋ · 0.5^k.
    let mut nested = nested;
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([0.0]));
    let g: ParamGrads<f64> = [(w, Tensor::from([-1.0]))].into_iter().collect();
    let mut expected = 0.0;
    for k in 0..5 {
        expected += 0.1f64.powi(k / 2) * 0.5f64.powi(k);
        nested.step(&mut store, &g).unwrap();
        assert!((store.get(w).unwrap().item() - expected).abs() < 1e-15);
    }
}

/// A parameter large enough to be updated in parallel pieces ends each step with the
/// same bits on 1, 2 and 3 threads, and the same bits as the identical values held as
/// small parameters (updated on the calling thread): the pieces line up.
/// The bits of a stored parameter's elements.
fn bits_of(store: &ParamStore<f32>, id: ParamId) -> Vec<u32> {
    store
        .get(id)
        .unwrap()
        .data()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn large_parameters_update_the_same_on_any_number_of_threads() {
    const N: usize = 300_007;
    const SMALL: usize = 1_000;
    // Large enough to be split, whatever the threshold is raised to.
    const { assert!(N >= descent_optim::PARALLEL_UPDATE_LEN) };
    let configs: Vec<fn() -> Sgd<f32>> = vec![
        || Sgd::new(0.1),
        || Sgd::new(0.1).weight_decay(0.01),
        || Sgd::new(0.1).momentum(0.9),
        || {
            Sgd::new(0.1)
                .momentum(0.9)
                .dampening(0.2)
                .weight_decay(0.01)
        },
        || {
            Sgd::new(0.1)
                .momentum(0.9)
                .nesterov(true)
                .weight_decay(0.01)
        },
    ];
    let init = |i: usize| ((i as f32) * 0.37).sin();
    let grad = |i: usize, k: usize| ((i * (k + 3)) as f32 * 0.11).cos();
    for (c, make) in configs.iter().enumerate() {
        let run_large = |threads: usize| {
            let mut store = ParamStore::new();
            let id = store.insert("w", Tensor::new(&[N], (0..N).map(init).collect()).unwrap());
            let mut opt = make();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for k in 0..3 {
                let g: ParamGrads<f32> = [(
                    id,
                    Tensor::new(&[N], (0..N).map(|i| grad(i, k)).collect()).unwrap(),
                )]
                .into_iter()
                .collect();
                pool.install(|| opt.step(&mut store, &g)).unwrap();
            }
            bits_of(&store, id)
        };
        let one = run_large(1);
        assert_eq!(one, run_large(2), "config {c}: 2 threads");
        assert_eq!(one, run_large(3), "config {c}: 3 threads");

        let mut store = ParamStore::new();
        let ids: Vec<(ParamId, usize)> = (0..N)
            .step_by(SMALL)
            .map(|start| {
                let len = SMALL.min(N - start);
                let v = (start..start + len).map(init).collect();
                (
                    store.insert(format!("w{start}"), Tensor::new(&[len], v).unwrap()),
                    start,
                )
            })
            .collect();
        let mut opt = make();
        for k in 0..3 {
            let g: ParamGrads<f32> = ids
                .iter()
                .map(|&(id, start)| {
                    let len = SMALL.min(N - start);
                    let v = (start..start + len).map(|i| grad(i, k)).collect();
                    (id, Tensor::new(&[len], v).unwrap())
                })
                .collect();
            opt.step(&mut store, &g).unwrap();
        }
        let small: Vec<u32> = ids
            .iter()
            .flat_map(|&(id, _)| bits_of(&store, id))
            .collect();
        assert_eq!(one, small, "config {c}: pieces against small parameters");
    }
}

#[test]
fn of_several_bad_gradients_the_first_in_order_is_reported() {
    let (mut store, a, b) = store();
    let mut sgd = Sgd::new(0.1);
    // a: NaN; b: wrong shape. The check reads the last entry first, yet names `a`.
    let g: ParamGrads<f64> = [
        (a, Tensor::from([0.1, f64::NAN, 0.3])),
        (b, Tensor::from([1.0, 2.0])),
    ]
    .into_iter()
    .collect();
    let err = sgd.step(&mut store, &g).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { ref name, index: 1, .. } if name == "a"),
        "{err}"
    );
    // a: wrong shape; b: infinite: the shape error of `a`.
    let g: ParamGrads<f64> = [
        (a, Tensor::from([1.0])),
        (
            b,
            Tensor::new(&[2, 2], vec![0.0, 0.0, f64::INFINITY, 0.0]).unwrap(),
        ),
    ]
    .into_iter()
    .collect();
    let err = sgd.step(&mut store, &g).unwrap_err();
    assert!(
        matches!(err, Error::Shape { ref name, .. } if name == "a"),
        "{err}"
    );
    // Only `b` bad: `b`.
    let mut g = grads(a, b, 1.0);
    g.insert(
        b,
        Tensor::new(&[2, 2], vec![0.0, f64::NAN, 0.0, 0.0]).unwrap(),
    );
    let err = sgd.step(&mut store, &g).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { ref name, index: 1, .. } if name == "b"),
        "{err}"
    );
    assert_eq!(
        values(&store),
        values(&self::store().0),
        "nothing was updated"
    );
}
