//! Parameter groups, `maximize` and the plateau scheduler: what torch's trajectories do
//! not show (errors, state round trips, failed steps). Allocations are counted in
//! `crates/bench/tests/group_step_allocs.rs`, which has the counting allocator.

use descent_backprop::ParamGrads;
use descent_optim::{
    Adam, Cosine, Error, Optimizer, OptimizerState, ParamGroups, RAdam, ReduceLrOnPlateau,
    Scheduled, Sgd,
};
use descent_tape::{ParamId, ParamStore};
use descent_tensor::Tensor;

/// A store of a body (weight, bias) and a head (weight, bias), and gradients for all.
fn model() -> (ParamStore<f64>, [ParamId; 4], ParamGrads<f64>) {
    let mut store = ParamStore::<f64>::new();
    let ids = [
        store.insert("body.weight", Tensor::from_fn(&[8, 4], |i| i as f64 * 0.01)),
        store.insert("body.bias", Tensor::from([0.1, 0.2, 0.3, 0.4])),
        store.insert(
            "head.weight",
            Tensor::from_fn(&[4, 2], |i| 0.5 - i as f64 * 0.1),
        ),
        store.insert("head.bias", Tensor::from([0.0, 0.0])),
    ];
    let grads = ids
        .iter()
        .map(|&id| {
            let v = store.get(id).unwrap();
            (id, Tensor::from_fn(v.shape(), |i| (i as f64 * 0.7).sin()))
        })
        .collect();
    (store, ids, grads)
}

#[test]
fn each_group_steps_with_its_own_hyper_parameters() {
    let (mut store, [bw, bb, hw, hb], grads) = model();
    let mut opt = ParamGroups::new(Sgd::new(0.1))
        .group([bw], |o| o.with_lr(0.01))
        .group([bb, hb], |o| o.with_lr(0.0));
    assert_eq!(opt.group_count(), 3);
    assert_eq!([bw, bb, hw, hb].map(|id| opt.group_of(id)), [1, 2, 0, 2]);
    let before: Vec<Tensor<f64>> = [bw, bb, hw, hb]
        .iter()
        .map(|&id| store.get(id).unwrap().clone())
        .collect();
    opt.step(&mut store, &grads).unwrap();
    for (i, (&id, lr)) in [bw, bb, hw, hb]
        .iter()
        .zip([0.01, 0.0, 0.1, 0.0])
        .enumerate()
    {
        let g = grads.get(id).unwrap();
        for ((&now, &was), &g) in store
            .get(id)
            .unwrap()
            .data()
            .iter()
            .zip(before[i].data())
            .zip(g.data())
        {
            assert!((now - (was - lr * g)).abs() < 1e-15, "parameter {i}");
        }
    }
    // Rates per group, for schedules and by hand.
    opt.set_group_learning_rate(2, 0.5);
    assert_eq!(opt.groups()[2].learning_rate(), 0.5);
    assert_eq!(opt.learning_rate(), 0.1);
}

#[test]
fn a_parameter_in_two_groups_is_refused_and_nothing_moves() {
    let (mut store, [bw, bb, ..], grads) = model();
    let mut opt = ParamGroups::new(Sgd::new(0.1))
        .group([bw, bb], |o| o)
        .group([bb], |o| o);
    let before = store.get(bb).unwrap().clone();
    let err = opt.step(&mut store, &grads).unwrap_err();
    assert!(matches!(err, Error::Config { op: "sgd", .. }), "{err}");
    assert!(err.to_string().contains("groups 1 and 2"), "{err}");
    assert_eq!(store.get(bb).unwrap(), &before);
}

#[test]
fn a_bad_group_setting_refuses_the_whole_step() {
    let (mut store, [bw, ..], grads) = model();
    let mut opt = ParamGroups::new(Adam::new(1e-3)).group([bw], |o| o.betas(1.5, 0.9));
    let before = store.get(bw).unwrap().clone();
    let err = opt.step(&mut store, &grads).unwrap_err();
    assert!(err.to_string().contains("beta1"), "{err}");
    assert_eq!(store.get(bw).unwrap(), &before);
}

#[test]
fn grouped_state_round_trips_and_resumes_exactly() {
    let (mut store, [bw, bb, ..], grads) = model();
    let make = || {
        Scheduled::new(
            ParamGroups::new(Adam::new(1e-2)).group([bw, bb], |o| o.with_lr(1e-3)),
            Cosine::new(10, 0.0),
        )
    };
    let mut opt = make();
    for _ in 0..3 {
        opt.step(&mut store, &grads).unwrap();
    }
    let state = opt.state(&store);
    assert_eq!(state.counters[0].0, "schedule_steps");
    assert_eq!(state.buffers.len(), 8); // exp_avg and exp_avg_sq of four parameters
    let mut resumed = make();
    resumed.load_state(&store, state.clone()).unwrap();
    assert_eq!(resumed.state(&store), state);
    let saved: Vec<(ParamId, Tensor<f64>)> =
        store.iter().map(|(id, _, v)| (id, v.clone())).collect();
    opt.step(&mut store, &grads).unwrap();
    let after_opt: Vec<Tensor<f64>> = saved
        .iter()
        .map(|(id, _)| store.get(*id).unwrap().clone())
        .collect();
    for (id, v) in &saved {
        *store.get_mut(*id).unwrap() = v.clone();
    }
    resumed.step(&mut store, &grads).unwrap();
    for ((id, _), expected) in saved.iter().zip(&after_opt) {
        assert_eq!(store.get(*id).unwrap(), expected);
    }
    let twin = &store;
    // A state that does not fit changes nothing.
    let mut bad = state;
    bad.buffers[0].2 = Tensor::from([1.0]);
    let kept = resumed.state(twin);
    assert!(resumed.load_state(twin, bad).is_err());
    assert_eq!(resumed.state(twin), kept);
}

#[test]
fn a_failed_scheduled_step_restores_every_groups_rate() {
    let (mut store, [bw, ..], mut grads) = model();
    let mut opt = Scheduled::new(
        ParamGroups::new(Sgd::new(0.1)).group([bw], |o| o.with_lr(0.01)),
        Cosine::new(4, 0.0),
    );
    opt.step(&mut store, &grads).unwrap();
    let inner = [0, 1].map(|g| opt.inner().group_learning_rate(g));
    grads.get_mut(bw).unwrap().data_mut()[0] = f64::NAN;
    assert!(opt.step(&mut store, &grads).is_err());
    assert_eq!([0, 1].map(|g| opt.inner().group_learning_rate(g)), inner);
    assert_eq!(opt.steps(), 1);
}

#[test]
fn maximize_ascends_where_minimize_descends() {
    for maximize in [false, true] {
        let mut store = ParamStore::<f64>::new();
        let w = store.insert("w", Tensor::from([1.0]));
        let grads: ParamGrads<f64> = [(w, Tensor::from([2.0]))].into_iter().collect();
        for mut opt in [
            Box::new(Sgd::new(0.1).momentum(0.5).maximize(maximize)) as Box<dyn Optimizer<f64>>,
            Box::new(RAdam::new(0.1).maximize(maximize)),
        ] {
            let before = store.get(w).unwrap().item();
            opt.step(&mut store, &grads).unwrap();
            let moved = store.get(w).unwrap().item() - before;
            assert_eq!(moved > 0.0, maximize, "{} moved {moved}", opt.name());
        }
    }
}

#[test]
fn plateau_refuses_bad_settings_and_respects_min_lr() {
    let mut opt = Sgd::<f64>::new(0.1);
    let err = ReduceLrOnPlateau::new()
        .factor(1.0)
        .step(1.0, &mut opt)
        .unwrap_err();
    assert!(err.to_string().contains("factor"), "{err}");
    let mut p = ReduceLrOnPlateau::new()
        .patience(0)
        .factor(0.5)
        .min_lr(0.04);
    for _ in 0..5 {
        p.step(1.0, &mut opt).unwrap();
    }
    assert_eq!(opt.learning_rate(), 0.04);
    // Empty state imports into groups without groups' counters.
    let store = ParamStore::<f64>::new();
    let mut g = ParamGroups::new(Sgd::<f64>::new(0.1));
    g.load_state(&store, OptimizerState::default()).unwrap();
}

#[test]
fn one_cycle_cycles_momentum_and_refuses_an_optimiser_without_one() {
    use descent_optim::{Adagrad, OneCycle};
    let (mut store, _, grads) = model();
    let mut opt = Scheduled::new(Adagrad::new(0.1), OneCycle::new(10));
    let before = store.get(store.ids().next().unwrap()).unwrap().clone();
    let err = opt.step(&mut store, &grads).unwrap_err();
    assert!(err.to_string().contains("cycles momentum"), "{err}");
    assert_eq!(store.get(store.ids().next().unwrap()).unwrap(), &before);
    let mut opt = Scheduled::new(Adagrad::new(0.1), OneCycle::new(10).cycle_momentum(false));
    opt.step(&mut store, &grads).unwrap();
    // SGD's momentum follows the cycle: 0.95 at the start, 0.85 at the peak.
    let mut opt = Scheduled::new(
        Sgd::new(0.1).momentum(0.5),
        OneCycle::new(10).pct_start(0.5),
    );
    opt.step(&mut store, &grads).unwrap();
    assert!((opt.inner().group_momentum(0).unwrap() - 0.95).abs() < 1e-15);
    for _ in 0..4 {
        opt.step(&mut store, &grads).unwrap();
    }
    assert!((opt.inner().group_momentum(0).unwrap() - 0.85).abs() < 1e-15);
}
