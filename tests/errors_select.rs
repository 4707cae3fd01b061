//! Error messages of `where_cond`, `masked_fill` and `clamp`, by their text: each names
//! the op, the shapes (or bounds) and the nodes; the fallible form's `Err` and the
//! panicking form's panic carry the same message; a refused op records nothing.

use descent::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The message a closure panics with.
fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(payload) => payload,
    };
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        panic!("the panic payload is not a string")
    }
}

/// Asserts that the fallible form fails, the panicking form panics with the same
/// message, the tape grew by `growth` nodes (none for these ops), and the message
/// contains every one of `needles`.
fn same_error<T, E: std::fmt::Display>(
    tape: &Tape<f64>,
    growth: usize,
    fallible: impl FnOnce() -> Result<T, E>,
    panicking: impl FnOnce() -> T,
    needles: &[&str],
) -> String {
    let before = tape.len();
    let message = match fallible() {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        tape.len(),
        before + growth,
        "a refused op must record nothing"
    );
    let panicked = panic_message(panicking);
    assert_eq!(panicked, message, "both forms must give the same message");
    for needle in needles {
        assert!(
            message.contains(needle),
            "message lacks {needle:?}: {message}"
        );
    }
    message
}

#[test]
fn where_cond_shapes_that_do_not_broadcast() {
    let tape = Tape::<f64>::new();
    let a = tape.var(Tensor::<f64>::zeros(&[2, 3])).named("a");
    let b = tape.var(Tensor::<f64>::zeros(&[3])).named("b");
    let cond = Tensor::<f64>::zeros(&[4]);
    let m = same_error(
        &tape,
        0,
        || a.try_where_cond(&cond, b),
        || a.where_cond(&cond, b),
        &["where_cond", "[4]", "[2, 3]", "[3]", "'a'", "'b'"],
    );
    assert!(m.contains("cannot be broadcast"), "{m}");
}

#[test]
fn where_cond_mask_not_zero_or_one() {
    let tape = Tape::<f64>::new();
    let a = tape.var(Tensor::<f64>::zeros(&[3])).named("a");
    let b = tape.var(Tensor::<f64>::zeros(&[3]));
    let cond = Tensor::from([1.0, 0.5, 0.0]);
    same_error(
        &tape,
        0,
        || a.try_where_cond(&cond, b),
        || a.where_cond(&cond, b),
        &["where_cond", "0.5", "position 1", "[3]", "'a'"],
    );
}

#[test]
fn where_cond_handle_from_another_tape() {
    let tape = Tape::<f64>::new();
    let other = Tape::<f64>::new();
    let a = tape.var(Tensor::<f64>::zeros(&[3]));
    let b = other.var(Tensor::<f64>::zeros(&[3]));
    let cond = Tensor::<f64>::zeros(&[3]);
    same_error(
        &tape,
        0,
        || a.try_where_cond(&cond, b),
        || a.where_cond(&cond, b),
        &["where_cond", "another tape"],
    );
}

#[test]
fn masked_fill_mask_that_does_not_broadcast() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[2, 3])).named("x");
    let m = Tensor::<f64>::zeros(&[2]);
    same_error(
        &tape,
        0,
        || x.try_masked_fill(&m, 1.0),
        || x.masked_fill(&m, 1.0),
        &["masked_fill", "[2]", "[2, 3]", "'x'"],
    );
}

#[test]
fn clamp_bounds_that_are_not_an_interval() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[2, 2])).named("x");
    same_error(
        &tape,
        0,
        || x.try_clamp(1.0, -1.0),
        || x.clamp(1.0, -1.0),
        &["clamp", "[1, -1]", "[2, 2]", "'x'"],
    );
    same_error(
        &tape,
        0,
        || x.try_clamp(f64::NAN, 1.0),
        || x.clamp(f64::NAN, 1.0),
        &["clamp", "NaN", "'x'"],
    );
}
