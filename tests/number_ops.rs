//! Operations with a plain number (`x * 0.5`, `1.0 - x`, `x / 2.0`, ...): one node that
//! holds the number (`add_scalar`, `sub_scalar`, `rsub_scalar`, `mul_scalar`,
//! `div_scalar`, `rdiv_scalar`), on scalar and tensor nodes, `f64` and `f32`.
//!
//! - the values and gradients are those of the two-node form (a constant node and the
//!   binary op), bit for bit, in `f64` and `f32`: the number is stored exactly;
//! - gradient checks against central finite differences (`f64`);
//! - the backward pass as an insta snapshot;
//! - the error messages (stale handle, anomaly) name the op;
//! - renders and `Display` show the number.

use descent::backprop::{RenderOptions, render};
use descent::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};

type NumberFn<T> = for<'t> fn(Var<'t, T>) -> Var<'t, T>;
type BoxedFn = Box<dyn for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>>;

/// Each op written with a number, and the same op with the number as a constant node
/// (the form every one of them recorded before).
macro_rules! forms {
    ($t:ty, $c:expr) => {{
        const C: $t = $c;
        let list: [(&str, NumberFn<$t>, NumberFn<$t>); 6] = [
            (
                "add_scalar",
                |x| x + C,
                |x| x.try_add(x.tape().constant(C)).unwrap(),
            ),
            (
                "sub_scalar",
                |x| x - C,
                |x| x.try_sub(x.tape().constant(C)).unwrap(),
            ),
            (
                "rsub_scalar",
                |x| C - x,
                |x| x.tape().constant(C).try_sub(x).unwrap(),
            ),
            (
                "mul_scalar",
                |x| x * C,
                |x| x.try_mul(x.tape().constant(C)).unwrap(),
            ),
            (
                "div_scalar",
                |x| x / C,
                |x| x.try_div(x.tape().constant(C)).unwrap(),
            ),
            (
                "rdiv_scalar",
                |x| C / x,
                |x| x.tape().constant(C).try_div(x).unwrap(),
            ),
        ];
        list
    }};
}

/// The number, left-side forms included, records exactly one node.
#[test]
fn each_records_one_node_holding_the_number() {
    for (name, f, _) in forms!(f64, 0.3) {
        for value in [Tensor::from(1.5), Tensor::from([1.5, -2.0, 4.0])] {
            let tape = Tape::<f64>::new();
            let x = tape.var(&value);
            let y = f(x);
            assert_eq!(tape.len(), 2, "{name}: x and one node");
            assert_eq!(
                y.to_string().split(" = ").next(),
                Some(&*format!("{name}(0.3)"))
            );
        }
    }
    // The named fallible forms are the same ops.
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let ys = [
        x.try_add_scalar(0.25).unwrap(),
        x.try_sub_scalar(0.25).unwrap(),
        x.try_rsub_scalar(0.25).unwrap(),
        x.try_mul_scalar(0.25).unwrap(),
        x.try_div_scalar(0.25).unwrap(),
        x.try_rdiv_scalar(0.25).unwrap(),
    ];
    let values: Vec<f64> = ys.iter().map(|y| y.item()).collect();
    assert_eq!(values, [2.25, 1.75, -1.75, 0.5, 8.0, 0.125]);
    assert_eq!(tape.len(), 7);
}

/// Values and gradients equal the two-node form's, bit for bit, for a number that is
/// not a short decimal (all 53 or 24 bits used) and on scalar and tensor nodes.
fn same_as_two_nodes<T: Float>(forms: &[(&str, NumberFn<T>, NumberFn<T>)], input: &[f64]) {
    let t = Tensor::<T>::from_fn(&[input.len()], |i| T::from_f64(input[i]));
    let s = Tensor::<T>::from(T::from_f64(input[0]));
    for (name, one, two) in forms {
        for value in [&s, &t] {
            let run = |f: &NumberFn<T>| {
                let tape = Tape::<T>::new();
                let x = tape.var(value);
                let y = f(x);
                // A non-trivial upstream gradient: `Σ y²`.
                let g = (y * y).sum().backward();
                (y.value(), g.wrt(x).to_tensor())
            };
            let (y1, g1) = run(one);
            let (y2, g2) = run(two);
            let bits = |t: &Tensor<T>| {
                t.data()
                    .iter()
                    .map(|v| v.as_f64().to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&y1), bits(&y2), "{name} ({}): values", T::NAME);
            assert_eq!(bits(&g1), bits(&g2), "{name} ({}): gradients", T::NAME);
        }
    }
}

#[test]
fn values_and_gradients_are_the_two_node_forms_bit_for_bit() {
    let input = [0.7, -1.3, 2.9, 1e-3];
    same_as_two_nodes(&forms!(f64, std::f64::consts::PI / 7.0), &input);
    same_as_two_nodes(&forms!(f32, std::f32::consts::PI / 7.0), &input);
    same_as_two_nodes(&forms!(f64, 1e300), &input);
    same_as_two_nodes(&forms!(f32, 3.0e-39), &input); // subnormal in f32
}

/// Central finite differences (f64): scalars, vectors and a matrix, the number on
/// either side; `rdiv_scalar` away from its pole at 0.
#[test]
fn gradcheck_each_op() {
    let inputs = [
        Tensor::from(0.8),
        Tensor::from([1.5, -0.7, 2.2]),
        Tensor::from([[0.3, -1.1], [2.5, 0.9]]),
    ];
    for c in [0.3, -2.5] {
        for x in &inputs {
            let ops: [(&str, BoxedFn); 6] = [
                ("add_scalar", Box::new(move |x| (x + c) * x)),
                ("sub_scalar", Box::new(move |x| (x - c) * x)),
                ("rsub_scalar", Box::new(move |x| (c - x) * x)),
                ("mul_scalar", Box::new(move |x| (c * x) * x)),
                ("div_scalar", Box::new(move |x| (x / c).sin())),
                ("rdiv_scalar", Box::new(move |x| c / x)),
            ];
            for (name, f) in &ops {
                let report = gradcheck(
                    std::slice::from_ref(x),
                    |_, v| f(v[0]).sum(),
                    GradCheckOptions::default(),
                )
                .unwrap();
                assert_eq!(report.checked, x.len(), "{name}");
                assert!(
                    report.passed(),
                    "{name}, c = {c}, x {:?}: {report}",
                    x.shape()
                );
            }
        }
    }
}

/// The backward pass of each op on a leaf of its own, weighted so that every element's
/// gradient differs; the numbers are in the render: for `y = op(x)` and loss
/// `Σ wᵢ yᵢ`, x's gradient is `w · dy/dx` (`w` = 0.5, 0.75).
#[test]
fn backward_snapshot() {
    let tape = Tape::<f64>::new();
    let mut total = tape.constant(0.0);
    for (name, f, _) in forms!(f64, 0.5) {
        let x = tape
            .var(Tensor::from([0.25, 2.0]))
            .named(&format!("x for {name}"));
        let w = tape.constant(Tensor::from([0.5, 0.75]));
        total = total + (f(x) * w).sum();
    }
    let grads = total.backward();
    let text = render(&tape, Some(&grads), &RenderOptions::default());
    insta::assert_snapshot!("number_ops_backward", text);
}

fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    let Err(payload) = catch_unwind(AssertUnwindSafe(f)) else {
        panic!("expected a panic")
    };
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => (*p.downcast::<&str>().expect("a string payload")).to_owned(),
    }
}

#[test]
fn errors_name_the_op() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([1.0, 0.0]));
    let s = tape.var(0.0);
    tape.reset();
    // A stale handle: the fallible form's error, and the operator's panic, name the op.
    let e = x.try_mul_scalar(2.0).unwrap_err().to_string();
    assert!(
        e.starts_with("mul_scalar: node 0 was recorded before the tape was reset"),
        "{e}"
    );
    assert_eq!(panic_message(|| x * 2.0), e);
    let e = s.try_rdiv_scalar(1.0).unwrap_err().to_string();
    assert!(
        e.starts_with("rdiv_scalar: node 1 was recorded before the tape was reset"),
        "{e}"
    );
    assert_eq!(panic_message(|| 1.0 / s), e);
    // Anomaly detection: 1/0 on a tensor and on the scalar fast path.
    let x = tape.var(Tensor::from([1.0, 0.0]));
    let s = tape.var(0.0);
    tape.set_anomaly_detection(true);
    let e = x.try_rdiv_scalar(1.0).unwrap_err().to_string();
    assert!(e.contains("rdiv_scalar") && e.contains("inf"), "{e}");
    assert_eq!(panic_message(|| 1.0 / x), e);
    let e = s.try_div_scalar(0.0).unwrap_err().to_string();
    assert!(e.contains("div_scalar") && e.contains("NaN"), "{e}");
    let e = panic_message(|| s - f64::INFINITY);
    assert!(e.contains("sub_scalar"), "{e}");
}

#[test]
fn renders_show_the_number() {
    let tape = Tape::<f32>::new();
    let x = tape.var(Tensor::from([1.0f32, 2.0])).named("x");
    let _ = (0.5 * x - 1.0) / 4.0;
    let text = tape.to_string();
    for line in [
        "#1 mul_scalar(0.5)(#0)",
        "#2 sub_scalar(1)(#1)",
        "#3 div_scalar(4)(#2)",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

mod torch {
    include!("fixtures/torch_number_ops.rs");
}

/// Values and gradients against PyTorch's (f64, `tests/fixtures/make_torch_number_ops.py`),
/// to 1e-10 relative: `y = op(x, c)` and `d Σ w·y / dx`.
#[test]
fn agrees_with_pytorch() {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * b.abs().max(1e-300);
    for (name, c, want_y, want_g) in torch::CASES {
        let tape = Tape::<f64>::new();
        let x = tape.var(Tensor::from(torch::X));
        let y = match name {
            "add_scalar" => x + c,
            "sub_scalar" => x - c,
            "rsub_scalar" => c - x,
            "mul_scalar" => x * c,
            "div_scalar" => x / c,
            "rdiv_scalar" => c / x,
            other => panic!("no op {other} in the fixture's list"),
        };
        assert_eq!(tape.len(), 2, "{name}: one node");
        let g = (y * tape.constant(Tensor::from(torch::W))).sum().backward();
        let (yv, gv) = (y.value(), g.wrt(x).to_tensor());
        for i in 0..torch::X.len() {
            assert!(
                close(yv.data()[i], want_y[i]),
                "{name}({c}) value {i}: {} vs {}",
                yv.data()[i],
                want_y[i]
            );
            assert!(
                close(gv.data()[i], want_g[i]),
                "{name}({c}) grad {i}: {} vs {}",
                gv.data()[i],
                want_g[i]
            );
        }
    }
}
