//! Error messages of convolution, pooling and padding, by their text: each names the
//! op, the shapes (and options) and the nodes; the fallible form's `Err` and the
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
/// message, the tape did not grow, and the message contains every one of `needles`.
fn same_error<T, E: std::fmt::Display>(
    tape: &Tape<f64>,
    fallible: impl FnOnce() -> Result<T, E>,
    panicking: impl FnOnce() -> T,
    needles: &[&str],
) -> String {
    let before = tape.len();
    let message = match fallible() {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(e) => e.to_string(),
    };
    assert_eq!(tape.len(), before, "a refused op must record nothing");
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

fn zeros(shape: &[usize]) -> Tensor<f64> {
    Tensor::zeros(shape)
}

#[test]
fn conv2d_wrong_channel_count() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3, 5, 5])).named("x");
    let w = tape.var(zeros(&[4, 2, 3, 3])).named("w");
    let o = Conv2dOptions::new();
    let m = same_error(
        &tape,
        || x.try_conv2d(w, None, o),
        || x.conv2d(w, None, o),
        &["conv2d", "[2, 3, 5, 5]", "[4, 2, 3, 3]", "'x'", "'w'"],
    );
    assert_eq!(
        m,
        "conv2d: input [2, 3, 5, 5], weight [4, 2, 3, 3], stride [1, 1], padding [0, 0], \
         dilation [1, 1], groups 1: the input has 3 channels but the weight expects 2 per \
         group × 1 groups = 2 (operands: node 0 'x' (var, shape [2, 3, 5, 5]); \
         node 1 'w' (var, shape [4, 2, 3, 3]))"
    );
}

#[test]
fn conv2d_groups_that_do_not_divide_the_channels() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[1, 4, 5, 5])).named("x");
    let w = tape.var(zeros(&[3, 2, 3, 3])).named("w");
    let o = Conv2dOptions::new().groups(2);
    same_error(
        &tape,
        || x.try_conv2d(w, None, o),
        || x.conv2d(w, None, o),
        &[
            "conv2d",
            "groups = 2 must divide the 3 output channels",
            "'w'",
        ],
    );
}

#[test]
fn conv2d_kernel_larger_than_the_padded_input() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[1, 1, 4, 4])).named("x");
    let w = tape.var(zeros(&[1, 1, 3, 3])).named("w");
    let o = Conv2dOptions::new().dilation([1, 2]);
    same_error(
        &tape,
        || x.try_conv2d(w, None, o),
        || x.conv2d(w, None, o),
        &[
            "conv2d",
            "dilation [1, 2]",
            "the dilated kernel (5) is larger than the padded input (4) along spatial axis 1",
        ],
    );
    // Padding makes room.
    assert!(x.try_conv2d(w, None, o.padding([0, 1])).is_ok());
}

#[test]
fn conv2d_zero_stride_dilation_or_groups() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[1, 2, 4, 4])).named("x");
    let w = tape.var(zeros(&[2, 2, 1, 1])).named("w");
    for (o, what) in [
        (
            Conv2dOptions::new().stride([1, 0]),
            "stride must be at least 1",
        ),
        (
            Conv2dOptions::new().dilation(0),
            "dilation must be at least 1",
        ),
        (Conv2dOptions::new().groups(0), "groups must be at least 1"),
    ] {
        same_error(
            &tape,
            || x.try_conv2d(w, None, o),
            || x.conv2d(w, None, o),
            &["conv2d", what, "[1, 2, 4, 4]"],
        );
    }
}

#[test]
fn conv2d_wrong_ranks_and_bias() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 5, 5])).named("x");
    let w = tape.var(zeros(&[4, 2, 3, 3])).named("w");
    let o = Conv2dOptions::new();
    same_error(
        &tape,
        || x.try_conv2d(w, None, o),
        || x.conv2d(w, None, o),
        &[
            "conv2d",
            "input [2, 5, 5] and weight [4, 2, 3, 3] must both have 4 axes",
        ],
    );
    let x = tape.var(zeros(&[1, 2, 5, 5])).named("x");
    let b = tape.var(zeros(&[3])).named("b");
    same_error(
        &tape,
        || x.try_conv2d(w, Some(b), o),
        || x.conv2d(w, Some(b), o),
        &["conv2d", "the bias [3] must be [4]", "'b'"],
    );
}

#[test]
fn conv1d_errors_speak_of_one_axis() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[1, 2, 3])).named("x");
    let w = tape.var(zeros(&[2, 2, 5])).named("w");
    let o = Conv1dOptions::new();
    same_error(
        &tape,
        || x.try_conv1d(w, None, o),
        || x.conv1d(w, None, o),
        &[
            "conv1d",
            "stride 1, padding 0, dilation 1, groups 1",
            "(5) is larger than the padded input (3)",
        ],
    );
    let w2 = tape.var(zeros(&[2, 2, 1, 1])).named("w2");
    same_error(
        &tape,
        || x.try_conv1d(w2, None, o),
        || x.conv1d(w2, None, o),
        &["conv1d", "must both have 3 axes", "[n, c_in, l]"],
    );
}

#[test]
fn pooling_errors() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[1, 2, 3, 3])).named("x");
    let o = Pool2dOptions::new(4);
    same_error(
        &tape,
        || x.try_max_pool2d(o),
        || x.max_pool2d(o),
        &[
            "max_pool2d",
            "the kernel (4) is larger than the padded input (3)",
            "'x'",
            "[1, 2, 3, 3]",
        ],
    );
    let o = Pool2dOptions::new(2).padding(2);
    same_error(
        &tape,
        || x.try_avg_pool2d(o),
        || x.avg_pool2d(o),
        &[
            "avg_pool2d",
            "padding 2 is more than half the kernel size 2",
        ],
    );
    let o = Pool2dOptions::new(2).stride(0);
    same_error(
        &tape,
        || x.try_max_pool2d(o),
        || x.max_pool2d(o),
        &["max_pool2d", "stride must be at least 1"],
    );
    let flat = tape.var(zeros(&[2, 3])).named("flat");
    same_error(
        &tape,
        || flat.try_avg_pool2d(Pool2dOptions::new(1)),
        || flat.avg_pool2d(Pool2dOptions::new(1)),
        &[
            "avg_pool2d",
            "the input [2, 3] must be [n, c, h, w]",
            "'flat'",
        ],
    );
    same_error(
        &tape,
        || flat.try_global_avg_pool2d(),
        || flat.global_avg_pool2d(),
        &["global_avg_pool2d", "[2, 3] must be [n, c, h, w]", "'flat'"],
    );
}

#[test]
fn pad_errors() {
    let tape = Tape::<f64>::new();
    let x = tape.var(zeros(&[2, 3])).named("x");
    same_error(
        &tape,
        || x.try_pad(&[1, 2, 3]),
        || x.pad(&[1, 2, 3]),
        &[
            "pad",
            "widths [1, 2, 3] must be (before, after) pairs for at most the 2 axes of [2, 3]",
            "'x'",
        ],
    );
    same_error(
        &tape,
        || x.try_pad(&[1, 1, 1, 1, 1, 1]),
        || x.pad(&[1, 1, 1, 1, 1, 1]),
        &["pad", "at most the 2 axes"],
    );
}
