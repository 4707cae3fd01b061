//! User-facing error messages, by their text.
//!
//! Every op has a fallible `try_` form and a panicking form with the same message; each
//! test checks the `Err` of the first and the panic payload of the second, and that
//! the message names the op, the shapes and the nodes involved.

use descent::backprop;
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

/// Asserts that the fallible form fails, that the panicking form panics with the same
/// message, and that the message contains every one of `needles`. Returns the message.
fn same_error<T, E: std::fmt::Display>(
    fallible: Result<T, E>,
    panicking: impl FnOnce() -> T,
    needles: &[&str],
) -> String {
    let message = match fallible {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(e) => e.to_string(),
    };
    let panicked = panic_message(panicking);
    assert_eq!(
        panicked, message,
        "the panicking form must panic with the fallible form's message"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "message lacks {needle:?}: {message}"
        );
    }
    message
}

fn zeros(shape: &[usize]) -> Tensor<f64> {
    Tensor::zeros(shape)
}

// ---------------------------------------------------------------------------------
// Element-wise broadcasting.

#[test]
fn add_shape_mismatch_names_op_shapes_and_nodes() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    let y = tape.var(zeros(&[4])).named("y");
    let message = same_error(
        x.try_add(y),
        || x + y,
        &["add", "[2, 3]", "[4]", "'x'", "'y'"],
    );
    assert_eq!(
        message,
        "add: shapes [2, 3] and [4] cannot be broadcast together \
         (lhs: node 0 'x' (var, shape [2, 3]); rhs: node 1 'y' (var, shape [4]))"
    );
}

#[test]
fn every_binary_op_names_itself_in_a_shape_mismatch() {
    let tape = Tape::<f64>::new();
    let a = tape.var(zeros(&[3, 2]));
    let b = tape.constant(zeros(&[3]));
    let expected = |op: &str| {
        format!(
            "{op}: shapes [3, 2] and [3] cannot be broadcast together \
             (lhs: node 0 (var, shape [3, 2]); rhs: node 1 (constant, shape [3]))"
        )
    };
    let m = same_error(a.try_sub(b), || a - b, &[]);
    assert_eq!(m, expected("sub"));
    let m = same_error(a.try_mul(b), || a * b, &[]);
    assert_eq!(m, expected("mul"));
    let m = same_error(a.try_div(b), || a / b, &[]);
    assert_eq!(m, expected("div"));
    let m = same_error(a.try_maximum(b), || a.maximum(b), &[]);
    assert_eq!(m, expected("maximum"));
    let m = same_error(a.try_minimum(b), || a.minimum(b), &[]);
    assert_eq!(m, expected("minimum"));
}

#[test]
fn broadcast_to_a_shape_it_does_not_stretch_to() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    same_error(
        x.try_broadcast_to(&[4, 3]),
        || x.broadcast_to(&[4, 3]),
        &["broadcast_to", "[2, 3] does not broadcast to [4, 3]", "'x'"],
    );
}

// ---------------------------------------------------------------------------------
// Matrix multiply.

#[test]
fn matmul_inner_extents_differ() {
    let tape = Tape::<f64>::new();
    let a = tape.var(zeros(&[2, 3])).named("a");
    let b = tape.var(zeros(&[4, 5])).named("b");
    let m = same_error(a.try_matmul(b), || a.matmul(b), &[]);
    assert_eq!(
        m,
        "matmul: cannot multiply [2, 3] by [4, 5]: inner extents 3 and 4 differ \
         (lhs: node 0 'a' (var, shape [2, 3]); rhs: node 1 'b' (var, shape [4, 5]))"
    );
}

#[test]
fn matmul_of_a_vector_is_refused() {
    let tape = Tape::<f64>::new();
    let v = tape.var(zeros(&[3])).named("v");
    let m = tape.var(zeros(&[3, 2])).named("m");
    same_error(
        v.try_matmul(m),
        || v.matmul(m),
        &[
            "matmul: cannot multiply [3] by [3, 2]",
            "both operands need at least 2 axes",
            "reshape a vector to [1, k] or [k, 1]",
            "'v'",
        ],
    );
    same_error(
        m.try_matmul(v),
        || m.matmul(v),
        &["cannot multiply [3, 2] by [3]", "at least 2 axes"],
    );
    let s = tape.var(2.0);
    same_error(
        s.try_matmul(m),
        || s.matmul(m),
        &["cannot multiply [] by [3, 2]"],
    );
}

#[test]
fn matmul_batch_axes_do_not_broadcast() {
    let tape = Tape::<f64>::new();
    let a = tape.var(zeros(&[2, 3, 4]));
    let b = tape.var(zeros(&[3, 4, 5]));
    let m = same_error(a.try_matmul(b), || a.matmul(b), &[]);
    assert_eq!(
        m,
        "matmul: cannot multiply [2, 3, 4] by [3, 4, 5]: batch axes do not broadcast \
         (lhs: node 0 (var, shape [2, 3, 4]); rhs: node 1 (var, shape [3, 4, 5]))"
    );
}

// ---------------------------------------------------------------------------------
// Joining, reshaping, slicing, gathering.

#[test]
fn concat_shapes_differ_outside_the_axis() {
    let tape = Tape::<f64>::new();
    let a = tape.var(zeros(&[2, 3])).named("a");
    let b = tape.var(zeros(&[3, 4])).named("b");
    let m = same_error(Var::try_concat(&[a, b], 1), || Var::concat(&[a, b], 1), &[]);
    assert_eq!(
        m,
        "concat: shapes [2, 3], [3, 4] differ outside axis 1 \
         (operands: node 0 'a' (var, shape [2, 3]); node 1 'b' (var, shape [3, 4]))"
    );
    // Three parts, the odd one last; a negative axis is reported resolved.
    let c = tape.var(zeros(&[2, 1])).named("c");
    let d = tape.var(zeros(&[2, 5, 1])).named("d");
    same_error(
        Var::try_concat(&[a, c, d], -1),
        || Var::concat(&[a, c, d], -1),
        &[
            "concat: shapes [2, 3], [2, 1], [2, 5, 1] differ outside axis 1",
            "'d'",
        ],
    );
}

#[test]
fn concat_and_stack_of_nothing() {
    let none: [Var<'_, f64>; 0] = [];
    let m = same_error(Var::try_concat(&none, 0), || Var::concat(&none, 0), &[]);
    assert_eq!(m, "concat: needs at least one operand");
    let m = same_error(Var::try_stack(&none, 0), || Var::stack(&none, 0), &[]);
    assert_eq!(m, "stack: needs at least one operand");
}

#[test]
fn concat_axis_out_of_range() {
    let tape = Tape::<f64>::new();
    let a = tape.var(zeros(&[2, 3]));
    same_error(
        Var::try_concat(&[a, a], 2),
        || Var::concat(&[a, a], 2),
        &["concat: axis 2 is out of range for a tensor with 2 axes"],
    );
}

#[test]
fn stack_shapes_differ() {
    let tape = Tape::<f64>::new();
    let a = tape.var(zeros(&[2])).named("a");
    let b = tape.var(zeros(&[3])).named("b");
    let m = same_error(Var::try_stack(&[a, b], 0), || Var::stack(&[a, b], 0), &[]);
    assert_eq!(
        m,
        "stack: all operands must have the same shape, got [2], [3] \
         (operands: node 0 'a' (var, shape [2]); node 1 'b' (var, shape [3]))"
    );
    // A stack has one more axis than its parts: axis 2 of [2]-shaped parts is too far.
    same_error(
        Var::try_stack(&[a, a], 2),
        || Var::stack(&[a, a], 2),
        &["stack: axis 2 is out of range for a tensor with 2 axes"],
    );
}

#[test]
fn reshape_element_count() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    let m = same_error(x.try_reshape(&[4]), || x.reshape(&[4]), &[]);
    assert_eq!(
        m,
        "reshape: cannot reshape [2, 3] (6 elements) to [4] (4 elements) \
         (operand: node 0 'x' (var, shape [2, 3]))"
    );
}

#[test]
fn slice_range_outside_the_axis() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    let m = same_error(x.try_slice(1, 1, 5), || x.slice(1, 1, 5), &[]);
    assert_eq!(
        m,
        "slice: range 1..5 is outside axis 1 of extent 3 \
         (operand: node 0 'x' (var, shape [2, 3]))"
    );
    // A reversed range, and a negative axis reported resolved.
    same_error(
        x.try_slice(-1, 2, 1),
        || x.slice(-1, 2, 1),
        &["slice: range 2..1 is outside axis 1 of extent 3"],
    );
    same_error(
        x.try_slice(2, 0, 1),
        || x.slice(2, 0, 1),
        &["slice: axis 2 is out of range for a tensor with 2 axes"],
    );
}

#[test]
fn gather_index_out_of_range_names_index_and_position() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    let m = same_error(
        x.try_gather(1, &[2, 2], &[0, 1, 2, 3]),
        || x.gather(1, &[2, 2], &[0, 1, 2, 3]),
        &[],
    );
    assert_eq!(
        m,
        "gather: index 3 at position 3 is out of range for an axis of extent 3 \
         (operand: node 0 'x' (var, shape [2, 3]))"
    );
    // The first bad index is the one named.
    same_error(
        x.try_gather(0, &[1, 3], &[1, 7, 2]),
        || x.gather(0, &[1, 3], &[1, 7, 2]),
        &["gather: index 7 at position 1 is out of range for an axis of extent 2"],
    );
}

#[test]
fn gather_malformed_index() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3]));
    same_error(
        x.try_gather(1, &[6], &[0; 6]),
        || x.gather(1, &[6], &[0; 6]),
        &["gather: index of shape [6] must have as many axes as the operand"],
    );
    same_error(
        x.try_gather(1, &[2, 2], &[0, 1, 2]),
        || x.gather(1, &[2, 2], &[0, 1, 2]),
        &["gather: index shape [2, 2] needs 4 indices, 3 were given"],
    );
    same_error(
        x.try_gather(1, &[3, 1], &[0, 1, 2]),
        || x.gather(1, &[3, 1], &[0, 1, 2]),
        &["gather: index shape [3, 1] exceeds the operand along axis 0"],
    );
}

#[test]
fn scatter_add_bad_index_or_source() {
    let tape = Tape::<f64>::new();
    let base = tape.var(zeros(&[2, 3])).named("base");
    let src = tape.var(zeros(&[2, 2])).named("src");
    let m = same_error(
        base.try_scatter_add(1, &[2, 2], &[0, 1, 2, 3], src),
        || base.scatter_add(1, &[2, 2], &[0, 1, 2, 3], src),
        &[],
    );
    assert_eq!(
        m,
        "scatter_add: index 3 at position 3 is out of range for an axis of extent 3 \
         (operand: node 0 'base' (var, shape [2, 3]))"
    );
    same_error(
        base.try_scatter_add(1, &[2, 1], &[0, 1], src),
        || base.scatter_add(1, &[2, 1], &[0, 1], src),
        &[
            "scatter_add: the source's shape [2, 2] must be the index's [2, 1]",
            "'src'",
        ],
    );
    let wide = tape.var(zeros(&[3, 2]));
    same_error(
        base.try_scatter_add(1, &[3, 2], &[0; 6], wide),
        || base.scatter_add(1, &[3, 2], &[0; 6], wide),
        &["scatter_add: index shape [3, 2] exceeds the base along axis 0"],
    );
}

// ---------------------------------------------------------------------------------
// Losses.

#[test]
fn cross_entropy_label_out_of_range() {
    let tape = Tape::<f64>::new();
    let logits = tape.var(zeros(&[2, 3])).named("logits");
    let m = same_error(
        logits.try_cross_entropy(&[0, 5]),
        || logits.cross_entropy(&[0, 5]),
        &[],
    );
    assert_eq!(
        m,
        "cross_entropy: index 5 at position 1 is out of range for an axis of extent 3 \
         (operand: node 0 'logits' (var, shape [2, 3]))"
    );
}

#[test]
fn cross_entropy_wrong_label_count() {
    let tape = Tape::<f64>::new();
    let logits = tape.var(zeros(&[2, 3])).named("logits");
    let m = same_error(
        logits.try_cross_entropy(&[0, 1, 2]),
        || logits.cross_entropy(&[0, 1, 2]),
        &[],
    );
    assert_eq!(
        m,
        "cross_entropy: 3 labels given for 2 rows of logits \
         (operand: node 0 'logits' (var, shape [2, 3]))"
    );
}

#[test]
fn cross_entropy_logits_not_2d() {
    let tape = Tape::<f64>::new();
    let flat = tape.var(zeros(&[6])).named("flat");
    let m = same_error(
        flat.try_cross_entropy(&[0]),
        || flat.cross_entropy(&[0]),
        &[],
    );
    assert_eq!(
        m,
        "cross_entropy: logits must be [N, C], got [6] (operand: node 0 'flat' (var, shape [6]))"
    );
    let cube = tape.var(zeros(&[2, 3, 4]));
    same_error(
        cube.try_cross_entropy(&[0, 0]),
        || cube.cross_entropy(&[0, 0]),
        &["logits must be [N, C], got [2, 3, 4]"],
    );
}

#[test]
fn mse_shape_mismatch() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("pred");
    let t = tape.constant(zeros(&[3, 2])).named("target");
    let m = same_error(x.try_mse(t), || x.mse(t), &[]);
    assert_eq!(
        m,
        "mse: input [2, 3] and target [3, 2] must have the same shape \
         (operands: node 0 'pred' (var, shape [2, 3]); node 1 'target' (constant, shape [3, 2]))"
    );
    // No broadcasting either: [3] against [2, 3] is refused.
    let row = tape.constant(zeros(&[3]));
    same_error(
        x.try_mse(row),
        || x.mse(row),
        &["mse: input [2, 3] and target [3] must have the same shape"],
    );
}

#[test]
fn bce_with_logits_shape_mismatch() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[4]));
    let t = tape.constant(zeros(&[4, 1]));
    same_error(
        x.try_bce_with_logits(t),
        || x.bce_with_logits(t),
        &["bce_with_logits: input [4] and target [4, 1] must have the same shape"],
    );
}

// ---------------------------------------------------------------------------------
// Axes.

#[test]
fn axis_out_of_range() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    let m = same_error(x.try_softmax(5), || x.softmax(5), &[]);
    assert_eq!(
        m,
        "softmax: axis 5 is out of range for a tensor with 2 axes \
         (operand: node 0 'x' (var, shape [2, 3]))"
    );
    same_error(
        x.try_log_softmax(-3),
        || x.log_softmax(-3),
        &["log_softmax: axis -3 is out of range for a tensor with 2 axes"],
    );
    same_error(
        x.try_sum_axis(2, false),
        || x.sum_axis(2, false),
        &["sum_axis: axis 2 is out of range"],
    );
    same_error(
        x.try_mean_axis(-3, true),
        || x.mean_axis(-3, true),
        &["mean_axis: axis -3 is out of range"],
    );
    same_error(
        x.try_max_axis(9, false),
        || x.max_axis(9, false),
        &["max_axis: axis 9 is out of range"],
    );
    same_error(
        x.try_transpose(0, 2),
        || x.transpose(0, 2),
        &["transpose: axis 2 is out of range for a tensor with 2 axes"],
    );
    // t() of a vector: there is no second-to-last axis.
    let v = tape.var(zeros(&[3]));
    let m = panic_message(|| v.t());
    assert!(
        m.contains("transpose: axis -2 is out of range for a tensor with 1 axis"),
        "{m}"
    );
    // A scalar has no axis at all.
    let s = tape.var(1.0);
    same_error(
        s.try_softmax(0),
        || s.softmax(0),
        &["softmax: axis 0 is out of range for a tensor with 0 axes"],
    );
}

// ---------------------------------------------------------------------------------
// Handles from another tape or from before a reset.

#[test]
fn handle_from_another_tape() {
    let tape = Tape::<f64>::new();
    let other = Tape::<f64>::new();
    let x = tape.var(zeros(&[2]));
    let y = other.var(zeros(&[2]));
    let m = same_error(
        x.try_add(y),
        || x + y,
        &["add", "another tape", "handles cannot move between tapes"],
    );
    assert_eq!(
        m,
        format!(
            "add: node 0 belongs to another tape (tape #{}, not tape #{}); \
             handles cannot move between tapes",
            other.uid(),
            tape.uid()
        )
    );
    // In any operand position, and for ops of every family.
    same_error(y.try_mul(x), || y * x, &["mul", "another tape"]);
    same_error(x.try_matmul(y), || x.matmul(y), &["matmul", "another tape"]);
    same_error(
        Var::try_concat(&[x, y], 0),
        || Var::concat(&[x, y], 0),
        &["concat", "another tape"],
    );
    same_error(
        Var::try_stack(&[x, y], 0),
        || Var::stack(&[x, y], 0),
        &["stack", "another tape"],
    );
    same_error(x.try_mse(y), || x.mse(y), &["mse", "another tape"]);
}

#[test]
fn handle_used_after_reset() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    let s = tape.var(2.0);
    tape.reset();
    let m = same_error(
        x.try_exp(),
        || x.exp(),
        &["exp", "before the tape was reset", "record it again"],
    );
    assert_eq!(
        m,
        "exp: node 0 was recorded before the tape was reset or rewound \
         (handle generation 0, tape generation 1); record it again \
         (a kept parameter: take a new handle with param())"
    );
    // A scalar node (the fast path) is checked too, and so are binary ops, where the
    // stale operand may be either one.
    same_error(
        s.try_tanh(),
        || s.tanh(),
        &["tanh", "before the tape was reset"],
    );
    let fresh = tape.var(zeros(&[2, 3]));
    same_error(
        fresh.try_add(x),
        || fresh + x,
        &["add: node 0 was recorded before the tape was reset"],
    );
    same_error(
        x.try_add(fresh),
        || x + fresh,
        &["add: node 0 was recorded before the tape was reset"],
    );
    same_error(
        x.try_softmax(0),
        || x.softmax(0),
        &["softmax", "before the tape was reset"],
    );
    same_error(
        x.try_reshape(&[6]),
        || x.reshape(&[6]),
        &["reshape", "before the tape was reset"],
    );
    // Reading a stale handle panics with the same kind of message.
    let m = panic_message(|| x.value());
    assert!(
        m.starts_with("value: node 0 was recorded before the tape was reset"),
        "{m}"
    );
    assert_eq!(
        x.validate("check").unwrap_err().to_string(),
        "check: node 0 was recorded before the tape was reset or rewound \
         (handle generation 0, tape generation 1); record it again \
         (a kept parameter: take a new handle with param())"
    );
}

// ---------------------------------------------------------------------------------
// Backward and gradient lookups.

#[test]
fn backward_of_a_non_scalar_output() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3]));
    let y = x.tanh();
    let m = same_error(y.try_backward(), || y.backward(), &[]);
    assert_eq!(
        m,
        "backward: the output (node 1) has shape [2, 3], not a scalar; \
         use backward_with and a cotangent of that shape"
    );
    assert!(matches!(
        backprop::backward(y),
        Err(backprop::Error::NotScalar { .. })
    ));
}

#[test]
fn backward_with_cotangent_of_the_wrong_shape() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3]));
    let y = x.tanh();
    let cot = Tensor::from([1.0, 2.0, 3.0]);
    let m = same_error(backward_with(y, &cot), || y.backward_with(&cot), &[]);
    assert_eq!(
        m,
        "backward_with: the cotangent has shape [3], but the output (node 1) has shape [2, 3]"
    );
    assert!(matches!(
        backward_with(y, &cot),
        Err(backprop::Error::CotangentShape { .. })
    ));
}

#[test]
fn backward_of_a_stale_output() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let y = x * x;
    tape.reset();
    let m = same_error(y.try_backward(), || y.backward(), &[]);
    assert!(
        m.starts_with("backward: node 1 was recorded before the tape was reset"),
        "{m}"
    );
    let m = same_error(
        backward_with(y, &Tensor::scalar(1.0)),
        || y.backward_with(&Tensor::scalar(1.0)),
        &[],
    );
    assert!(
        m.starts_with("backward_with: node 1 was recorded before the tape was reset"),
        "{m}"
    );
}

#[test]
fn gradient_lookup_with_a_handle_from_another_tape() {
    let tape = Tape::<f64>::new();
    let other = Tape::<f64>::new();
    let x = tape.var(3.0);
    let grads = (x * x).backward();
    let stranger = other.var(3.0);
    let m = same_error(grads.try_wrt(stranger), || grads.wrt(stranger), &[]);
    assert_eq!(
        m,
        format!(
            "gradient lookup: node 0 belongs to tape #{}, but these gradients are of tape #{}",
            other.uid(),
            tape.uid()
        )
    );
    assert!(matches!(
        grads.try_wrt(stranger),
        Err(backprop::Error::ForeignHandle { .. })
    ));
    // `get` and indexing refuse it with the same message.
    assert_eq!(panic_message(|| grads.get(stranger)), m);
    assert_eq!(panic_message(|| grads[stranger].to_vec()), m);
    // The handle that belongs is fine.
    assert_eq!(grads.wrt(x).item(), 6.0);
}

#[test]
fn gradient_lookup_across_a_reset() {
    let tape = Tape::<f64>::new();
    // Gradients of generation 0, looked up with a handle of generation 1.
    let x = tape.var(3.0);
    let grads = (x * x).backward();
    tape.reset();
    let x1 = tape.var(3.0);
    let m = same_error(grads.try_wrt(x1), || grads.wrt(x1), &[]);
    assert_eq!(
        m,
        "gradient lookup: node 0 is from tape generation 1, but these gradients are of \
         generation 0 (the tape was reset in between)"
    );
    assert!(matches!(
        grads.try_wrt(x1),
        Err(backprop::Error::StaleHandle { .. })
    ));
    assert_eq!(panic_message(|| grads.get(x1)), m);
    // Gradients of generation 1, looked up with the handle of generation 0.
    let grads1 = (x1 * x1).backward();
    let m = same_error(grads1.try_wrt(x), || grads1.wrt(x), &[]);
    assert_eq!(
        m,
        "gradient lookup: node 0 is from tape generation 0, but these gradients are of \
         generation 1 (the tape was reset in between)"
    );
    // Gradients computed before the reset stay readable with their own handles.
    assert_eq!(grads.wrt(x).item(), 6.0);
}

#[test]
fn gradient_lookup_of_a_node_recorded_after_the_walk() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([1.0, 2.0]));
    let loss = (x * x).sum();
    // Recorded after the output but before the walk: zeros of its own shape.
    let before = tape.var(Tensor::<f64>::zeros(&[3]));
    let grads = loss.backward();
    assert_eq!(grads.wrt(before).shape(), [3]);
    assert_eq!(grads.wrt(before).data(), [0.0; 3]);
    // Recorded after the walk: its shape is unknown to the gradients, so an error, not
    // a 0-d zero that would pass for a gradient.
    let after = tape.var(Tensor::<f64>::zeros(&[3]));
    let scalar_after = tape.var(1.5);
    let m = same_error(grads.try_wrt(after), || grads.wrt(after), &[]);
    assert_eq!(
        m,
        "gradient lookup: node 4 was recorded after these gradients were computed (the \
         tape had 4 nodes then); run backward again to include it"
    );
    assert!(matches!(
        grads.try_wrt(scalar_after),
        Err(backprop::Error::RecordedAfter { known: 4, .. })
    ));
    assert_eq!(panic_message(|| grads[after].to_vec()), m);
    assert!(grads.get(after).is_none());
    // A walk after it knows it.
    let again = loss.backward();
    assert_eq!(again.wrt(after).data(), [0.0; 3]);
    assert_eq!(again.wrt(x).data(), [2.0, 4.0]);
}

// ---------------------------------------------------------------------------------
// Names and scopes in messages.

#[test]
fn names_and_scopes_appear_in_messages() {
    let tape = Tape::<f64>::new();
    let x = tape.constant(zeros(&[2, 3])).named("input");
    let w = tape.var(zeros(&[4, 5])).named("w");
    let h = {
        let _s = tape.scope("layer1");
        x.tanh().named("h")
    };
    let m = same_error(
        h.try_matmul(w),
        || h.matmul(w),
        &["in layer1", "'h'", "'w'"],
    );
    assert_eq!(
        m,
        "matmul: cannot multiply [2, 3] by [4, 5]: inner extents 3 and 4 differ \
         (lhs: node 2 'h' (tanh in layer1, shape [2, 3]); rhs: node 1 'w' (var, shape [4, 5]))"
    );
    // Nested scopes, and an op failing inside the scope on an operand made there.
    let _outer = tape.scope("layer1");
    let _inner = tape.scope("act");
    let a = x.sigmoid();
    let m = same_error(a.try_reshape(&[7]), || a.reshape(&[7]), &["in layer1/act"]);
    assert_eq!(
        m,
        "reshape: cannot reshape [2, 3] (6 elements) to [7] (7 elements) \
         (operand: node 3 (sigmoid in layer1/act, shape [2, 3]))"
    );
}

#[test]
fn a_scope_closes_when_its_guard_drops() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2]));
    {
        let _s = tape.scope("inside");
        let _ = x.exp();
    }
    let y = x.exp();
    let m = same_error(y.try_matmul(y), || y.matmul(y), &[]);
    assert!(!m.contains(" in "), "{m}");
    assert!(m.contains("node 2 (exp, shape [2])"), "{m}");
}

#[test]
fn gradient_lookup_of_a_node_recorded_after_the_output() {
    // Not an error: zeros, shaped like the node (its gradient is defined, and zero).
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3]));
    let y = x.sum();
    let later = x.exp();
    let later_scalar = y * 2.0;
    let grads = y.backward();
    assert_eq!(grads.wrt(later).shape(), &[2, 3]);
    assert_eq!(grads.wrt(later).data(), &[0.0; 6]);
    assert_eq!(grads.wrt(later_scalar).shape(), &[] as &[usize]);
    assert!(grads.get(later).is_none());
    assert_eq!(grads.wrt(x).data(), &[1.0; 6]);
}

#[test]
fn matmul_t_inner_extents_differ() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[2, 3]));
    let w = tape.var(Tensor::<f64>::zeros(&[4, 5]));
    let err = x.try_matmul_t(w).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "matmul_t: cannot multiply [2, 3] by [4, 5]: inner extents 3 and 5 differ (the right operand is [out, in])"
        ),
        "{err}"
    );
    let v = tape.var(Tensor::<f64>::zeros(&[2, 4, 3]));
    let err = x.try_matmul_t(v).unwrap_err().to_string();
    assert!(err.contains("the right exactly 2"), "{err}");
}

/// Found by fuzzing: an empty tensor broadcast to `[2^63, 2^63, 0]` was accepted, and
/// summing away its zero axis then asked for 2^126 elements and panicked.
#[test]
fn shapes_too_large_to_address_are_refused_even_when_empty() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[0]));
    let huge = [1usize << 63, 1 << 63, 0];
    let err = x.try_broadcast_to(&huge).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "broadcast_to: shape [9223372036854775808, 9223372036854775808, 0] is too large"
        ),
        "{err}"
    );
    let err = x.try_reshape(&huge).unwrap_err().to_string();
    assert!(err.starts_with("reshape: shape"), "{err}");
    assert!(Tensor::<f64>::new(&huge, vec![]).is_err());
    // A large but addressable empty shape is fine.
    assert!(x.try_reshape(&[1 << 20, 0]).is_ok());
}

/// Found by fuzzing: a reduction over the empty axis of a zero-element tensor with a
/// huge other extent asks for terabytes; that is an error naming the op, not an abort.
#[test]
fn a_result_too_large_for_memory_is_an_error() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::<f64>::zeros(&[0]));
    let wide = x.try_broadcast_to(&[1 << 40, 0]).unwrap();
    // (A sum: the mean over an axis of extent 0 is refused before anything is sized.)
    let err = wide.try_sum_axis(1, false).unwrap_err().to_string();
    assert_eq!(
        err,
        "sum_axis: its result of 1099511627776 elements does not fit in memory"
    );
}

// ---------------------------------------------------------------------------------
// Sharp edges a new user meets: `item` of a tensor, means of nothing.

#[test]
fn item_of_a_tensor_with_more_than_one_element_names_op_shape_and_node() {
    let tape = Tape::<f64>::new();
    let m = tape.var(zeros(&[2, 3])).named("m");
    let msg = same_error(m.try_item(), || m.item(), &[]);
    assert_eq!(
        msg,
        "item: the value has 6 elements, not one (operand: node 0 'm' (var, shape [2, 3]))"
    );
    let empty = tape.var(zeros(&[0]));
    same_error(
        empty.try_item(),
        || empty.item(),
        &["item: the value has 0 elements", "node 1", "shape [0]"],
    );
    // One element in any shape is fine, and a scalar node is.
    assert_eq!(tape.var(Tensor::from([[4.0]])).try_item(), Ok(4.0));
    assert_eq!(m.sum().try_item(), Ok(0.0));
}

#[test]
fn item_of_a_stale_handle_is_the_stale_handle_error() {
    let tape = Tape::<f64>::new();
    let x = tape.var(1.0);
    tape.reset();
    same_error(
        x.try_item(),
        || x.item(),
        &["item: node 0 was recorded before the tape was reset"],
    );
}

#[test]
fn mean_of_an_empty_tensor_is_an_error_not_nan() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[3, 0])).named("x");
    let msg = same_error(x.try_mean(), || x.mean(), &[]);
    assert_eq!(
        msg,
        "mean: the operand has no elements, so its mean is undefined \
         (operand: node 0 'x' (var, shape [3, 0]))"
    );
    // Nothing was recorded.
    assert_eq!(tape.len(), 1);
}

#[test]
fn mean_axis_over_an_axis_of_extent_0_is_an_error() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[3, 0])).named("x");
    let msg = same_error(x.try_mean_axis(1, false), || x.mean_axis(1, false), &[]);
    assert_eq!(
        msg,
        "mean_axis: axis 1 has extent 0, so it has no mean \
         (operand: node 0 'x' (var, shape [3, 0]))"
    );
    same_error(
        x.try_mean_axis(-1, true),
        || x.mean_axis(-1, true),
        &["mean_axis: axis 1 has extent 0"],
    );
    // Over axis 0 (extent 3) each mean would be of 3 elements, and there are none of
    // them: an empty result, well defined.
    assert_eq!(x.mean_axis(0, false).shape().as_slice(), &[0]);
    // The max over it was already refused; the sum is 0, as in PyTorch.
    same_error(
        x.try_max_axis(1, false),
        || x.max_axis(1, false),
        &["max_axis: axis 1 has extent 0, so it has no maximum"],
    );
    assert_eq!(x.sum_axis(1, false).value().data(), &[0.0, 0.0, 0.0]);
}

#[test]
fn mse_and_bce_of_empty_tensors_are_errors_not_nan() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[0, 4])).named("pred");
    let t = tape.constant(zeros(&[0, 4])).named("target");
    let msg = same_error(x.try_mse(t), || x.mse(t), &[]);
    assert_eq!(
        msg,
        "mse: input and target of shape [0, 4] have no elements, so the mean is undefined \
         (operands: node 0 'pred' (var, shape [0, 4]); node 1 'target' (constant, shape [0, 4]))"
    );
    same_error(
        x.try_bce_with_logits(t),
        || x.bce_with_logits(t),
        &[
            "bce_with_logits: input and target of shape [0, 4] have no elements",
            "'pred'",
            "'target'",
        ],
    );
    assert_eq!(tape.len(), 2);
}

/// Found by fuzzing: `matmul_t` computed its result's size as rows × out without an
/// overflow check.
#[test]
fn matmul_t_with_an_unaddressable_result_is_an_error() {
    let tape = Tape::<f64>::new();
    let a = tape
        .var(Tensor::<f64>::zeros(&[0]))
        .try_broadcast_to(&[1 << 61, 4, 0])
        .unwrap();
    let w = tape.var(Tensor::<f64>::zeros(&[8, 0]));
    let err = a.try_matmul_t(w).unwrap_err().to_string();
    assert!(err.contains("too large to address"), "{err}");
}
