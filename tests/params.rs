//! Error messages for parameter ids that do not name a parameter of the store they
//! are used with: an id from another `ParamStore`, and the id of a removed parameter.
//! Binding one on a tape (`Tape::try_param`, `Tape::param`) and stepping an optimiser
//! with a gradient keyed by one are errors that say which case it is, and change
//! nothing.

use descent::backprop::ParamGrads;
use descent::optim::{self, Adam, Optimizer, OptimizerState, Sgd};
use descent::prelude::*;
use descent::tape::{self, ParamStore};
use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .expect("a string payload"),
    }
}

/// The two store numbers of a "belongs to another store (store #A, not store #B)"
/// message, which must differ.
fn store_numbers(message: &str) -> (u32, u32) {
    let tail = message
        .split("(store #")
        .nth(1)
        .unwrap_or_else(|| panic!("no store numbers in: {message}"));
    let (a, rest) = tail.split_once(", not store #").expect("two store numbers");
    let b = rest.split(')').next().unwrap();
    let (a, b) = (a.parse().unwrap(), b.parse().unwrap());
    assert_ne!(a, b, "{message}");
    (a, b)
}

/// A store with `w` and `b`, and another store with a parameter of the same name.
fn stores() -> (
    ParamStore<f64>,
    tape::ParamId,
    tape::ParamId,
    ParamStore<f64>,
    tape::ParamId,
) {
    let mut store = ParamStore::new();
    let w = store.insert("w", Tensor::from([1.0, 2.0]));
    let b = store.insert("b", Tensor::from([0.5]));
    let mut other = ParamStore::new();
    let foreign = other.insert("w", Tensor::from([9.0, 9.0]));
    (store, w, b, other, foreign)
}

#[test]
fn binding_a_parameter_of_another_store_is_refused() {
    let (store, _, _, _other, foreign) = stores();
    let tape = Tape::<f64>::new();
    let err = tape.try_param(&store, foreign).unwrap_err();
    assert!(
        matches!(err, tape::Error::ForeignParam { op: "param", .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("param: the parameter id belongs to another store (store #"),
        "{message}"
    );
    store_numbers(&message);
    // Same name, same shape: still refused, never read from the wrong store.
    assert_eq!(panic_message(|| tape.param(&store, foreign)), message);
    assert!(tape.is_empty(), "a refused binding recorded a node");
    assert!(tape.bindings().is_empty());
}

#[test]
fn binding_a_removed_parameter_is_refused_even_after_its_slot_is_reused() {
    let (mut store, w, _, _, _) = stores();
    assert_eq!(store.remove(w).unwrap().data(), &[1.0, 2.0]);
    // The freed slot is reused by the next parameter; the old id must not name it.
    let w2 = store.insert("w", Tensor::from([3.0, 4.0]));
    assert_ne!(w, w2);
    let tape = Tape::<f64>::new();
    let err = tape.try_param(&store, w).unwrap_err();
    assert!(
        matches!(err, tape::Error::RemovedParam { op: "param" }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "param: the parameter was removed from its store"
    );
    assert_eq!(panic_message(|| tape.param(&store, w)), err.to_string());
    assert!(tape.is_empty());
    // The store's own accessors agree.
    assert!(!store.contains(w));
    assert_eq!(store.get(w), None);
    assert_eq!(store.name(w), None);
    assert!(store.get_mut(w).is_none());
    assert_eq!(store.remove(w), None);
    assert_eq!(
        store.check("lookup", w).unwrap_err().to_string(),
        "lookup: the parameter was removed from its store"
    );
    // And the live one binds.
    assert_eq!(tape.param(&store, w2).value().data(), &[3.0, 4.0]);
}

fn grads(id: tape::ParamId, v: &[f64]) -> ParamGrads<f64> {
    [(id, Tensor::from(v.to_vec()))].into_iter().collect()
}

fn values(store: &ParamStore<f64>) -> Vec<Vec<f64>> {
    store.iter().map(|(_, _, v)| v.data().to_vec()).collect()
}

#[test]
fn stepping_with_a_gradient_of_another_store_changes_nothing_and_says_why() {
    let (mut store, w, b, _other, foreign) = stores();
    for opt in [
        &mut Sgd::new(0.1).momentum(0.9) as &mut dyn Optimizer<f64>,
        &mut Adam::new(0.1),
    ] {
        let before = values(&store);
        let mut g = grads(w, &[1.0, 1.0]);
        g.insert(b, Tensor::from([1.0]));
        g.insert(foreign, Tensor::from([1.0, 1.0]));
        let err = opt.step(&mut store, &g).unwrap_err();
        let name = opt.name();
        assert!(matches!(err, optim::Error::UnknownParam { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "{name}: the gradients name a parameter this store does not hold: \
                 {name}: the parameter id belongs to another store (store #"
            )),
            "{message}"
        );
        store_numbers(&message);
        // Checked before any update: w and b, whose gradients were fine, are unchanged,
        // and no state was made for them.
        assert_eq!(values(&store), before);
        assert!(
            opt.state(&store).is_empty(),
            "{name} kept state from a failed step"
        );
    }
}

#[test]
fn stepping_with_a_gradient_of_a_removed_parameter_changes_nothing_and_says_why() {
    let (mut store, w, b, _, _) = stores();
    let mut adam = Adam::new(0.1);
    adam.step(&mut store, &grads(b, &[1.0])).unwrap();
    store.remove(b);
    let before = values(&store);
    let mut g = grads(w, &[1.0, 1.0]);
    g.insert(b, Tensor::from([1.0]));
    let err = adam.step(&mut store, &g).unwrap_err();
    assert_eq!(
        err.to_string(),
        "adam: the gradients name a parameter this store does not hold: \
         adam: the parameter was removed from its store"
    );
    assert_eq!(values(&store), before);
    assert_eq!(adam.step_count(w), 0);
    // State kept for the removed parameter is not exported under any name.
    assert!(adam.state(&store).is_empty());
}

#[test]
fn loading_optimiser_state_keyed_by_a_foreign_or_removed_id_is_refused() {
    let (mut store, w, b, other, foreign) = stores();
    let mut adam = Adam::new(0.1);
    adam.step(&mut store, &grads(w, &[1.0, -1.0])).unwrap();
    let good = adam.state(&store);
    // Re-keyed to the other store's parameter of the same name and shape.
    let mut moved = good.clone();
    for (id, _, _) in &mut moved.buffers {
        *id = foreign;
    }
    for (id, _, _) in &mut moved.scalars {
        *id = foreign;
    }
    let mut fresh = Adam::new(0.1);
    let message = fresh.load_state(&store, moved).unwrap_err().to_string();
    assert!(
        message.starts_with(
            "adam: cannot load the optimiser state: a parameter id of the state belongs \
             to another store (store #"
        ),
        "{message}"
    );
    store_numbers(&message);
    assert!(fresh.state(&store).is_empty());
    assert!(fresh.load_state(&other, good.clone()).is_err());

    store.remove(b);
    let stale = OptimizerState {
        scalars: vec![(b, Cow::Borrowed("step"), 1.0)],
        ..OptimizerState::default()
    };
    let message = fresh.load_state(&store, stale).unwrap_err().to_string();
    assert_eq!(
        message,
        "adam: cannot load the optimiser state: a parameter id of the state names a \
         parameter removed from the store"
    );
    fresh.load_state(&store, good).unwrap();
    assert_eq!(fresh.step_count(w), 1);
}
