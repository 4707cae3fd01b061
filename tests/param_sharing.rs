//! Binding a parameter shares its value with the store (`Tape::param` clones an `Arc`,
//! not the elements), and a live tape's values never change: `ParamStore::get_mut`
//! copies a value a tape still holds before handing it out (copy-on-write, counted by
//! `ParamStore::copies`).
//!
//! - a loop that resets the tape before the optimiser step copies nothing, and trains
//!   exactly as copying every parameter each step did (the reference below binds
//!   copies with `tape.var`, what `tape.param` did before);
//! - a loop that resets at the start of a step (the tape alive during the step) copies
//!   each stepped value once a step, and is exact too;
//! - a tape held across the step keeps the values it was recorded with: its values,
//!   and a second backward on it, are those before the step.

use descent::backprop::Gradients;
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use descent::tape::ParamStore;

const SIZES: [usize; 4] = [6, 8, 8, 3];

/// An MLP's parameters, deterministic.
fn store() -> (ParamStore<f64>, Vec<ParamId>) {
    let mut store = ParamStore::new();
    let mut ids = Vec::new();
    for l in 0..3 {
        let (i, o) = (SIZES[l], SIZES[l + 1]);
        let w = Tensor::from_fn(&[o, i], |k| ((k * 7 + l * 3) % 11) as f64 / 11.0 - 0.5);
        ids.push(store.insert(format!("w{l}"), w));
        ids.push(store.insert(format!("b{l}"), Tensor::from_fn(&[o], |k| 0.1 * k as f64)));
    }
    (store, ids)
}

fn batch(step: usize) -> Tensor<f64> {
    Tensor::from_fn(&[4, SIZES[0]], |k| {
        (((k + step) * 5) % 9) as f64 / 9.0 - 0.3
    })
}

/// The loss of one step, the parameters bound by `bind`.
fn loss<'t>(
    tape: &'t Tape<f64>,
    step: usize,
    bind: &dyn Fn(usize) -> Var<'t, f64>,
) -> Var<'t, f64> {
    let mut h = tape.constant(batch(step));
    for l in 0..3 {
        let (w, b) = (bind(2 * l), bind(2 * l + 1));
        h = h.matmul_t(w) + b;
        if l < 2 {
            h = h.tanh();
        }
    }
    (h * h).mean()
}

/// Trains 5 steps. `reset_first`: reset at the start of a step (the tape alive during
/// the optimiser step); else reset right before the step. Returns the values and
/// the store's copies.
fn train(reset_first: bool) -> (Vec<Vec<f64>>, Vec<f64>, descent::tape::Copies) {
    let (mut store, ids) = store();
    let mut sgd = Sgd::new(0.1);
    let tape = Tape::new();
    let mut grads = Gradients::empty();
    let mut losses = Vec::new();
    for step in 0..5 {
        if reset_first {
            tape.reset();
        }
        let l = loss(&tape, step, &|i| tape.param(&store, ids[i]));
        descent::backprop::backward_into(l, &mut grads).unwrap();
        losses.push(l.item());
        if !reset_first {
            tape.reset();
        }
        sgd.step(&mut store, &grads).unwrap();
    }
    let values = ids
        .iter()
        .map(|&id| store.get(id).unwrap().data().to_vec())
        .collect();
    (values, losses, store.copies())
}

/// The same training with every parameter copied onto the tape as a plain variable
/// (what binding did before it shared), the same optimiser stepping from them.
fn train_copying() -> (Vec<Vec<f64>>, Vec<f64>) {
    let (mut store, ids) = store();
    let mut sgd = Sgd::new(0.1);
    let mut losses = Vec::new();
    for step in 0..5 {
        let tape = Tape::new();
        let vars: Vec<Var<'_, f64>> = ids
            .iter()
            .map(|&id| tape.var(store.get(id).unwrap()))
            .collect();
        let l = loss(&tape, step, &|i| vars[i]);
        let g = l.backward();
        losses.push(l.item());
        let pg: descent::backprop::ParamGrads<f64> = ids
            .iter()
            .zip(&vars)
            .map(|(&id, &v)| (id, g.wrt(v).to_tensor()))
            .collect();
        sgd.step(&mut store, &pg).unwrap();
    }
    let values = ids
        .iter()
        .map(|&id| store.get(id).unwrap().data().to_vec())
        .collect();
    (values, losses)
}

#[test]
fn a_loop_that_resets_before_the_step_copies_nothing_and_is_exact() {
    let (values, losses, copies) = train(false);
    assert_eq!(copies, descent::tape::Copies::default());
    let (want_values, want_losses) = train_copying();
    assert_eq!(values, want_values);
    assert_eq!(losses, want_losses);
}

#[test]
fn a_loop_that_resets_at_the_start_copies_each_value_once_a_step_and_is_exact() {
    let (values, losses, copies) = train(true);
    let elements: usize = (0..3).map(|l| SIZES[l + 1] * (SIZES[l] + 1)).sum();
    assert_eq!(copies.count, 5 * 6);
    assert_eq!(copies.bytes, (5 * elements * 8) as u64);
    let (want_values, want_losses) = train_copying();
    assert_eq!(values, want_values);
    assert_eq!(losses, want_losses);
}

#[test]
fn a_tape_held_across_the_step_keeps_its_values() {
    let (mut store, ids) = store();
    let tape = Tape::new();
    let s = &store;
    let l = loss(&tape, 0, &|i| tape.param(s, ids[i]));
    let w0 = tape.param(s, ids[0]);
    let before = w0.value();
    let g1 = l.backward();
    let mut sgd = Sgd::new(0.5);
    let mut grads = Gradients::empty();
    descent::backprop::backward_into(l, &mut grads).unwrap();
    sgd.step(&mut store, &grads).unwrap();
    // The store moved on; the tape did not.
    assert_ne!(store.get(ids[0]).unwrap().data(), before.data());
    assert_eq!(w0.value(), before);
    let g2 = l.backward();
    for &id in &ids {
        assert_eq!(
            g1.param(id).unwrap().to_tensor(),
            g2.param(id).unwrap().to_tensor()
        );
    }
    assert_eq!(store.copies().count, 6);
    // A new binding on the same tape returns the node bound before (the old value);
    // after a reset, the new value, shared again.
    assert_eq!(tape.param(&store, ids[0]).value(), before);
    tape.reset();
    let copies = store.copies();
    let w = tape.param(&store, ids[0]);
    assert_eq!(w.value().data(), store.get(ids[0]).unwrap().data());
    tape.reset();
    store.get_mut(ids[0]).unwrap().data_mut()[0] = 1.0;
    assert_eq!(
        store.copies(),
        copies,
        "released by the reset: changed in place"
    );
}

#[test]
fn frozen_and_no_grad_bindings_share_too_and_rewind_releases() {
    let (mut store, ids) = store();
    store.set_requires_grad(ids[1], false);
    let tape = Tape::<f64>::new();
    let mut mark = tape.checkpoint();
    let frozen = tape.param(&store, ids[1]);
    assert!(!frozen.requires_grad());
    let unbound = tape.no_grad(|| tape.param(&store, ids[2]));
    assert!(!unbound.requires_grad());
    assert_eq!(unbound.value().data(), store.get(ids[2]).unwrap().data());
    tape.rewind(&mut mark).unwrap();
    store.get_mut(ids[1]).unwrap().data_mut()[0] = 3.0;
    store.get_mut(ids[2]).unwrap().data_mut()[0] = 3.0;
    assert_eq!(store.copies().count, 0, "a rewind releases the values");
    // A 0-d parameter is stored in its node, not shared.
    let s = store.insert("s", Tensor::from(2.0));
    let v = tape.param(&store, s);
    store.get_mut(s).unwrap().data_mut()[0] = 4.0;
    assert_eq!((v.item(), store.copies().count), (2.0, 0));
    // A removed parameter a tape holds comes back as a copy; the tape keeps its own.
    let w = tape.param(&store, ids[0]);
    let removed = store.remove(ids[0]).unwrap();
    assert_eq!(w.value(), removed);
}
