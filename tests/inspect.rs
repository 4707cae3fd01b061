//! Seeing inside the backward pass: gradient hooks and anomaly detection.

use descent::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

#[test]
fn a_hook_that_doubles_a_gradient_doubles_every_upstream_gradient() {
    fn build(tape: &Tape<f64>, hooked: bool) -> (Var<'_>, Var<'_>, Var<'_>, Var<'_>) {
        let w = tape.var(Tensor::from([[0.5, -0.3], [0.2, 0.8]]));
        let b = tape.var(Tensor::from([0.1, -0.2]));
        let x = tape.constant(Tensor::from([[1.0, 2.0]]));
        let mut h = (x.matmul(w) + b).tanh();
        if hooked {
            h = h.hook(|g| g.grad.iter_mut().for_each(|v| *v *= 2.0));
        }
        let loss = (h * h).sum();
        (w, b, h, loss)
    }
    let plain = Tape::<f64>::new();
    let (w0, b0, h0, l0) = build(&plain, false);
    let g0 = l0.backward();
    let hooked = Tape::<f64>::new();
    let (w1, b1, h1, l1) = build(&hooked, true);
    let g1 = l1.backward();
    for (a, b) in g0.wrt(w0).data().iter().zip(g1.wrt(w1).data()) {
        assert_eq!(2.0 * a, *b);
    }
    for (a, b) in g0.wrt(b0).data().iter().zip(g1.wrt(b1).data()) {
        assert_eq!(2.0 * a, *b);
    }
    // The hooked node reports the gradient the hook left.
    for (a, b) in g0.wrt(h0).data().iter().zip(g1.wrt(h1).data()) {
        assert_eq!(2.0 * a, *b);
    }
}

#[test]
fn a_recording_hook_sees_exactly_what_the_store_reports() {
    let tape = Tape::<f64>::new();
    type Seen = Vec<(NodeId, Vec<usize>, Vec<f64>)>;
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let log = Rc::clone(&seen);
    let x = tape.var(Tensor::from([0.3, -1.2, 2.0]));
    // Used twice: the hook must see the sum of both contributions.
    let h = x.sin().hook(move |g| {
        log.borrow_mut()
            .push((g.node, g.shape.to_vec(), g.grad.to_vec()))
    });
    let loss = (h * h).sum() + h.sum();
    let grads = loss.backward();
    let seen = seen.borrow();
    assert_eq!(
        seen.len(),
        1,
        "a hook runs once, when the gradient is complete"
    );
    assert_eq!(seen[0].0, h.id());
    assert_eq!(seen[0].1, vec![3]);
    assert_eq!(seen[0].2.as_slice(), grads.wrt(h).data());
}

#[test]
fn hooks_are_cleared_by_reset() {
    let tape = Tape::<f64>::new();
    let calls = Rc::new(RefCell::new(0));
    let c = Rc::clone(&calls);
    let x = tape.var(1.0);
    let _ = (x * 2.0).hook(move |_| *c.borrow_mut() += 1).backward();
    assert_eq!(*calls.borrow(), 1);
    tape.reset();
    let x = tape.var(1.0);
    let _ = (x * 2.0).backward();
    assert_eq!(*calls.borrow(), 1);
}

fn anomaly_tape() -> Tape<f64> {
    let tape = Tape::new();
    tape.set_anomaly_detection(true);
    tape
}

#[test]
fn anomaly_detection_names_log_of_zero() {
    let tape = anomaly_tape();
    let p = tape.var(Tensor::from([0.5, 0.0])).named("p");
    let err = {
        let _s = tape.scope("layer2");
        let _l = tape.scope("loss");
        p.try_ln().unwrap_err().to_string()
    };
    assert_eq!(
        err,
        "ln: produced -inf at node 1 (in layer2/loss, shape [2]); \
         operands: node 0 'p' (var, shape [2]) = [0.5, 0]"
    );
    assert_eq!(tape.len(), 1, "the failed op is not recorded");
}

#[test]
fn anomaly_detection_names_division_by_zero() {
    let tape = anomaly_tape();
    let a = tape.var(1.0).named("a");
    let b = tape.var(0.0).named("b");
    let err = a.try_div(b).unwrap_err().to_string();
    assert!(err.starts_with("div: produced inf at node 2"), "{err}");
    assert!(err.contains("node 1 'b' (var, shape []) = [0]"), "{err}");
}

#[test]
fn anomaly_detection_names_overflow_in_exp() {
    let tape = anomaly_tape();
    let x = tape.var(Tensor::from_fn(&[10], |i| 100.0 * i as f64));
    let err = x.try_exp().unwrap_err().to_string();
    assert!(err.starts_with("exp: produced inf"), "{err}");
    assert!(err.contains("10 values in [0, 900], mean 450"), "{err}");
}

#[test]
fn anomaly_detection_names_sqrt_of_a_negative() {
    let tape = anomaly_tape();
    let x = tape.var(-4.0);
    let err = x.try_sqrt().unwrap_err().to_string();
    assert!(err.starts_with("sqrt: produced NaN"), "{err}");
}

#[test]
fn the_panicking_form_panics_with_the_same_report() {
    let tape = anomaly_tape();
    let x = tape.var(0.0);
    let expected = x.try_ln().unwrap_err().to_string();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| x.ln())).unwrap_err();
    let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(message, expected);
}

#[test]
fn anomaly_detection_names_zero_times_infinity_in_backward() {
    // sqrt(x)·0 at x = 0: the forward values are all finite (0), but the backward
    // rule of sqrt multiplies the incoming 0 by 1/(2√0) = ∞, which is NaN.
    let tape = anomaly_tape();
    let x = tape.var(0.0).named("x");
    let r = {
        let _s = tape.scope("layer1");
        x.sqrt().named("r")
    };
    let loss = r * 0.0;
    let err = descent::backward(loss).unwrap_err().to_string();
    assert_eq!(
        err,
        "backward: the rule of node 1 'r' (sqrt in layer1, shape []) gave node 0 'x' (var, \
         shape []) a non-finite gradient (NaN) from incoming gradient [0]; operands of the \
         rule: node 0 'x' (var, shape []) = [0]"
    );
}

#[test]
fn without_anomaly_detection_non_finite_values_pass_through() {
    let tape = Tape::<f64>::new();
    let x = tape.var(0.0);
    assert_eq!(x.ln().item(), f64::NEG_INFINITY);
    let loss = x.sqrt() * 0.0;
    assert!(loss.backward().wrt(x).item().is_nan());
}
