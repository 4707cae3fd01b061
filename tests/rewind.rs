//! `Tape::checkpoint` and `Tape::rewind`: a rewound tape is the tape as it was at the
//! checkpoint (nodes, names, scopes, hooks, bound parameters), whatever was recorded
//! after it; gradients recorded after a rewind equal a fresh tape's bit for bit; stale
//! handles and stale checkpoints are errors that change nothing.

use descent::backprop::{Gradients, backward_into};
use descent::prelude::*;
use descent::tape::{Checkpoint, Error, ParamId, ParamStore};
use std::cell::Cell;
use std::rc::Rc;

/// The tape's nodes as `Display` lists them, without the header (which gives the
/// generation).
fn listing(tape: &Tape<f64>) -> String {
    let text = tape.to_string();
    text.split_once('\n').unwrap().1.to_owned()
}

fn hook_flags(tape: &Tape<f64>) -> Vec<bool> {
    tape.read()
        .nodes()
        .iter()
        .map(|n| n.meta().has_hook())
        .collect()
}

/// A prefix with a bound parameter, a name, a scope, a hook, a gather (indices) and a
/// concatenation (an operand list).
fn record_prefix<'t>(tape: &'t Tape<f64>, store: &ParamStore<f64>) -> Var<'t, f64> {
    let w = tape.param(store, store.ids().next().unwrap());
    let _layer = tape.scope("prefix");
    let x = tape.var(Tensor::from([1.0, -2.0, 3.0])).named("x");
    let picked = x.gather(0, &[2], &[2, 0]).hook(|_| {});
    Var::concat(&[picked, w], 0)
}

#[test]
fn a_rewound_tape_is_the_tape_at_its_checkpoint() {
    let mut store = ParamStore::<f64>::new();
    store.insert("w", Tensor::from([0.5, 0.25]));
    let mut other = ParamStore::<f64>::new();
    let v = other.insert("v", Tensor::from([4.0]));
    let tape = Tape::<f64>::new();
    let joined = record_prefix(&tape, &store);
    let kept = joined.id();
    let mut mark = tape.checkpoint();
    assert_eq!(mark.len(), tape.len());
    let (text, flags, bindings) = (listing(&tape), hook_flags(&tape), tape.bindings());

    for round in 0..3 {
        // Everything a suffix can change: new nodes in a new scope, names and hooks on
        // kept nodes and new ones, another store's parameter, more indices and lists.
        let w = tape
            .param(&store, store.ids().next().unwrap())
            .named("renamed");
        let _s = tape.scope(&format!("suffix{round}"));
        let y = tape.var(Tensor::from([1.0, 2.0])).named("y").hook(|_| {});
        let w = w.hook(|_| {});
        let both = Var::concat(&[w, y, tape.param(&other, v)], 0);
        let _ = both.gather(0, &[1], &[4]).sum().named("loss");
        assert_ne!(listing(&tape), text);

        tape.rewind(&mut mark).unwrap();
        assert_eq!(listing(&tape), text, "round {round}");
        assert_eq!(hook_flags(&tape), flags, "round {round}");
        assert_eq!(tape.bindings(), bindings, "round {round}");
        assert_eq!(tape.read().nodes().len(), mark.len());
    }
    // The kept node is still there under the same id, and new nodes follow it.
    assert_eq!(tape.read().nodes()[kept.index()].op().name(), "concat");
}

#[test]
fn gradients_after_a_rewind_equal_a_fresh_tapes() {
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([[0.5, -0.25, 1.0], [2.0, 0.0, -1.5]]));
    let b = store.insert("b", Tensor::from([0.1, -0.2]));
    fn loss<'t>(
        tape: &'t Tape<f64>,
        store: &ParamStore<f64>,
        [w, b]: [ParamId; 2],
        x: [f64; 3],
        label: usize,
    ) -> Var<'t, f64> {
        let x = tape.constant(Tensor::from(x)).reshape(&[3, 1]);
        let h = tape.param(store, w).matmul(x).reshape(&[1, 2]) + tape.param(store, b);
        h.tanh().cross_entropy(&[label])
    }
    let samples = [
        ([1.0, 2.0, 3.0], 0),
        ([-1.0, 0.5, 0.0], 1),
        ([3.0, -2.0, 1.0], 1),
    ];

    let shared = Tape::<f64>::new();
    let _ = (shared.param(&store, w), shared.param(&store, b));
    let mut mark = shared.checkpoint();
    let mut grads = Gradients::empty();
    for (x, label) in samples {
        shared.rewind(&mut mark).unwrap();
        let l = loss(&shared, &store, [w, b], x, label);
        backward_into(l, &mut grads).unwrap();

        let fresh = Tape::<f64>::new();
        let lf = loss(&fresh, &store, [w, b], x, label);
        let gf = lf.backward();
        assert_eq!(l.item().to_bits(), lf.item().to_bits());
        for id in [w, b] {
            let (a, e) = (grads.param(id).unwrap(), gf.param(id).unwrap());
            let bits = |t: &[f64]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a.data()), bits(e.data()), "{x:?}");
            assert!(a.data().iter().any(|&g| g != 0.0));
        }
    }
}

#[test]
fn hooks_recorded_after_the_checkpoint_do_not_run_after_the_rewind() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let ran = Rc::new(Cell::new(0));
    let mut mark = tape.checkpoint();
    let counter = Rc::clone(&ran);
    let _ = (x * x).hook(move |_| counter.set(counter.get() + 1));
    tape.rewind(&mut mark).unwrap();
    assert_eq!(tape.len(), 1);
    // The node taking the forgotten one's index gets a hook of its own: only that
    // one runs.
    let own = Rc::new(Cell::new(0));
    let counter = Rc::clone(&own);
    let y = tape.var(3.0).hook(move |_| counter.set(counter.get() + 1));
    assert_eq!(y.id().index(), 1);
    let g = (y * y).backward();
    assert_eq!(g.wrt(y).item(), 6.0);
    assert_eq!(ran.get(), 0, "a hook of a forgotten node ran");
    assert_eq!(own.get(), 1);
}

#[test]
fn stale_handles_and_checkpoints_are_errors_that_change_nothing() {
    let tape = Tape::<f64>::new();
    let kept = tape.var(1.0);
    let mut first = tape.checkpoint();
    let dropped = kept + 1.0; // one node, `add_scalar(1)`
    let mut second = tape.checkpoint();
    assert_eq!((first.len(), second.len()), (1, 2));

    // Rewinding to the first checkpoint makes every older handle and the later
    // checkpoint stale.
    tape.rewind(&mut first).unwrap();
    for (what, handle) in [("kept", kept), ("dropped", dropped)] {
        let e = handle.try_exp().unwrap_err();
        assert!(matches!(e, Error::StaleHandle { .. }), "{what}: {e}");
        assert!(e.to_string().contains("reset or rewound"), "{e}");
    }
    let before = tape.to_string();
    let e = tape.rewind(&mut second).unwrap_err();
    assert!(matches!(e, Error::StaleCheckpoint { .. }), "{e}");
    assert!(
        e.to_string().starts_with("rewind: the checkpoint is stale"),
        "{e}"
    );
    assert_eq!(tape.to_string(), before);

    // The first one stays good through any number of rewinds, not through a reset.
    for _ in 0..3 {
        let _ = tape.var(5.0) * 2.0;
        tape.rewind(&mut first).unwrap();
        assert_eq!(tape.len(), 1);
    }
    tape.reset();
    assert!(matches!(
        tape.rewind(&mut first),
        Err(Error::StaleCheckpoint { .. })
    ));

    // A checkpoint from another tape is refused, whatever its generation.
    let other = Tape::<f64>::new();
    let mut foreign: Checkpoint = other.checkpoint();
    let _ = tape.var(1.0);
    let e = tape.rewind(&mut foreign).unwrap_err();
    assert!(
        e.to_string().contains(&format!("tape #{}", other.uid())),
        "{e}"
    );
    assert_eq!(tape.len(), 1);
}
