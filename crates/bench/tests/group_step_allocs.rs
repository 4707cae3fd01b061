//! Parameter groups, `maximize` and schedules keep the warm training step free of
//! allocations: a grouped step still reads the walk's gradient store in place, finds
//! each parameter's group in O(1), and allocates nothing once every group's state
//! exists (`step_allocs.rs` checks the ungrouped optimisers).

use descent::backprop::backward_into;
use descent::nn::{Activation, Mlp, init};
use descent::optim::{
    Adam, Cosine, OneCycle, Optimizer, ParamGroups, RAdam, ReduceLrOnPlateau, Scheduled, Sgd,
};
use descent::prelude::*;
use descent_bench::alloc_count::{self, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Allocations of the optimiser steps 3 to 6 of an MLP's training (the first step
/// makes the state); `make` builds the optimiser from the store's parameter ids, the
/// biases listed apart.
fn allocations_of_steps<O: Optimizer<f32>>(make: impl FnOnce(&[ParamId], &[ParamId]) -> O) -> u64 {
    let mut store = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut store,
        "mlp",
        &[16, 64, 64, 4],
        Activation::Relu,
        &mut init::rng(3),
    );
    let (mut weights, mut biases) = (Vec::new(), Vec::new());
    for (id, name, _) in store.iter() {
        if name.ends_with("bias") {
            biases.push(id);
        } else {
            weights.push(id);
        }
    }
    let mut opt = make(&weights, &biases);
    let mut plateau = ReduceLrOnPlateau::new().patience(0);
    let x = Tensor::from_fn(&[8, 16], |i| (i % 13) as f32 * 0.1 - 0.6);
    let labels: Vec<usize> = (0..8).map(|i| i % 4).collect();
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty();
    let mut counted = 0;
    for step in 0..6 {
        tape.reset();
        let loss = mlp
            .forward(&tape, &store, tape.constant(&x))
            .cross_entropy(&labels);
        backward_into(loss, &mut grads).expect("a scalar loss");
        let c0 = alloc_count::counts();
        opt.step(&mut store, &grads).expect("finite gradients");
        plateau.step(1.0, &mut opt).expect("valid settings");
        let c1 = alloc_count::counts();
        if step >= 2 {
            counted += (c1 - c0).calls();
        }
    }
    counted
}

#[test]
fn warm_grouped_steps_allocate_nothing() {
    // No weight decay on biases, a smaller rate for the first layer's weight.
    let sgd = |w: &[ParamId], b: &[ParamId]| {
        ParamGroups::new(Sgd::new(0.1).momentum(0.9).weight_decay(1e-4))
            .group(b.to_vec(), |o| o.weight_decay(0.0))
            .group([w[0]], |o| o.with_lr(0.01).maximize(true))
    };
    assert_eq!(allocations_of_steps(sgd), 0);
    assert_eq!(
        allocations_of_steps(|w, b| Scheduled::new(sgd(w, b), Cosine::new(10, 0.0))),
        0
    );
    assert_eq!(
        allocations_of_steps(|_, b| Scheduled::new(
            ParamGroups::new(Adam::new(1e-3)).group(b.to_vec(), |o| o.with_lr(1e-4)),
            OneCycle::new(100)
        )),
        0
    );
    assert_eq!(
        allocations_of_steps(|_, _| RAdam::new(1e-3).weight_decay(0.01).maximize(true)),
        0
    );
}

/// The counter counts: a grouped optimiser's first step makes its state.
#[test]
fn the_first_grouped_step_allocates_its_state() {
    let mut store = ParamStore::<f32>::new();
    let w = store.insert("w", Tensor::from([1.0f32, 2.0]));
    let grads: ParamGrads<f32> = [(w, Tensor::from([0.5f32, 0.5]))].into_iter().collect();
    let mut opt = ParamGroups::new(Adam::new(1e-3)).group([w], |o| o.with_lr(1e-4));
    let c0 = alloc_count::counts();
    opt.step(&mut store, &grads).expect("finite gradients");
    assert!((alloc_count::counts() - c0).calls() > 0);
}
