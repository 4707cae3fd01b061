//! The ops of a convolution's and an average pooling's recorded backward
//! (`conv_input_grad`, `conv_weight_grad`, `avg_pool2d_backward`): each one's values
//! against the fast backward it replaces, its own backward rule against central finite
//! differences (f64, `descent::gradcheck`), its error messages, and a backward pass as
//! an insta snapshot.

use descent::backprop::{RenderOptions, render};
use descent::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.random_range(-1.0..1.0))
}

fn check<F>(what: &str, inputs: &[Tensor<f64>], f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report =
        gradcheck(inputs, f, GradCheckOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let total: usize = inputs.iter().map(Tensor::len).sum();
    assert_eq!(report.checked, total, "{what}: {report}");
    assert!(report.passed(), "{what}: {report}");
}

/// Random convolution options and shapes: `(x, w, g)` shapes and the options.
fn conv_case(rng: &mut ChaCha8Rng, case: usize) -> ([usize; 4], [usize; 4], Conv2dOptions) {
    let groups = [1, 2, 3][case % 3];
    let (cin, cout) = (
        groups * rng.random_range(1..3),
        groups * rng.random_range(1..3),
    );
    let (kh, kw) = (rng.random_range(1..4), rng.random_range(1..4));
    let o = Conv2dOptions::new()
        .stride([rng.random_range(1..3), rng.random_range(1..4)])
        .padding([rng.random_range(0..3), rng.random_range(0..2)])
        .dilation([rng.random_range(1..3), rng.random_range(1..3)])
        .groups(groups);
    let (h, w) = (rng.random_range(5..8), rng.random_range(5..8));
    let n = rng.random_range(1..3);
    ([n, cin, h, w], [cout, cin / groups, kh, kw], o)
}

fn out_shape(x: [usize; 4], w: [usize; 4], o: &Conv2dOptions) -> [usize; 4] {
    let size = |i: usize, k: usize, a: usize| {
        (i + 2 * o.padding[a] - o.dilation[a] * (k - 1) - 1) / o.stride[a] + 1
    };
    [x[0], w[0], size(x[2], w[2], 0), size(x[3], w[3], 1)]
}

/// Their values are the fast backward's (the same kernels), bit for bit.
#[test]
fn values_equal_the_fast_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for case in 0..9 {
        let (xs, ws, o) = conv_case(&mut rng, case);
        let gs = out_shape(xs, ws, &o);
        let tape = Tape::<f64>::new();
        let x = tape.var(uniform(&mut rng, &xs));
        let w = tape.var(uniform(&mut rng, &ws));
        let u = tape.constant(uniform(&mut rng, &gs));
        let grads = (x.conv2d(w, None, o) * u).sum().backward();
        assert_eq!(
            u.conv2d_input_grad(w, &xs, o).value(),
            grads.wrt(x).to_tensor(),
            "{o:?}"
        );
        assert_eq!(
            x.conv2d_weight_grad(u, &ws, o).value(),
            grads.wrt(w).to_tensor(),
            "{o:?}"
        );
    }
    let tape = Tape::<f64>::new();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = tape.var(uniform(&mut rng, &[2, 3, 5, 4]));
    let o = Pool2dOptions::new([3, 2])
        .stride([2, 1])
        .padding(1)
        .ceil_mode(true);
    let y = x.avg_pool2d(o);
    let u = tape.constant(uniform(&mut rng, &y.shape()));
    let grads = (y * u).sum().backward();
    assert_eq!(
        u.avg_pool2d_backward(&[2, 3, 5, 4], o).value(),
        grads.wrt(x).to_tensor()
    );
}

#[test]
fn gradcheck_conv_input_grad_and_weight_grad() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for case in 0..9 {
        let (xs, ws, o) = conv_case(&mut rng, case);
        let gs = out_shape(xs, ws, &o);
        let (x, w, g) = (
            uniform(&mut rng, &xs),
            uniform(&mut rng, &ws),
            uniform(&mut rng, &gs),
        );
        let what = format!("x {xs:?} w {ws:?} {o:?}");
        // Squared, so that the check is not of a linear function only.
        check(
            &format!("conv_input_grad {what}"),
            &[g.clone(), w],
            |_, v| {
                let gx = v[0].conv2d_input_grad(v[1], &xs, o);
                gx * gx
            },
        );
        check(&format!("conv_weight_grad {what}"), &[x, g], |_, v| {
            let gw = v[0].conv2d_weight_grad(v[1], &ws, o);
            gw * gw
        });
    }
    // One axis.
    let o = Conv1dOptions::new()
        .stride(2)
        .padding(1)
        .dilation(2)
        .groups(2);
    let (x, w, g) = (
        uniform(&mut rng, &[2, 4, 9]),
        uniform(&mut rng, &[2, 2, 3]),
        uniform(&mut rng, &[2, 2, 4]),
    );
    check("conv1d_input_grad", &[g.clone(), w], |_, v| {
        v[0].conv1d_input_grad(v[1], &[2, 4, 9], o).tanh()
    });
    check("conv1d_weight_grad", &[x, g], |_, v| {
        v[0].conv1d_weight_grad(v[1], &[2, 2, 3], o).tanh()
    });
}

#[test]
fn gradcheck_avg_pool2d_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    for (shape, o) in [
        ([2, 2, 5, 5], Pool2dOptions::new(2)),
        (
            [1, 3, 5, 4],
            Pool2dOptions::new([3, 2]).stride(1).padding([1, 0]),
        ),
        (
            [2, 1, 5, 5],
            Pool2dOptions::new(2).padding(1).ceil_mode(true),
        ),
    ] {
        let probe = Tape::<f64>::new();
        let g_shape = probe.var(Tensor::zeros(&shape)).avg_pool2d(o).shape();
        let g = uniform(&mut rng, &g_shape);
        check(
            &format!("avg_pool2d_backward {shape:?} {o:?}"),
            &[g],
            |_, v| v[0].avg_pool2d_backward(&shape, o).tanh(),
        );
    }
}

#[test]
fn errors_name_the_op_the_shapes_and_the_nodes() {
    let tape = Tape::<f64>::new();
    let g = tape.var(Tensor::zeros(&[2, 4, 3, 3])).named("g");
    let w = tape.var(Tensor::zeros(&[4, 3, 3, 3])).named("w");
    let x = tape.var(Tensor::zeros(&[2, 3, 5, 5])).named("x");
    let o = Conv2dOptions::new();
    let before = tape.len();
    // The output gradient is not what the convolution of [2, 3, 6, 6] gives ([2, 4, 4, 4]).
    let e = g
        .try_conv2d_input_grad(w, &[2, 3, 6, 6], o)
        .unwrap_err()
        .to_string();
    for needle in [
        "conv_input_grad",
        "[2, 4, 3, 3]",
        "[2, 4, 4, 4]",
        "'g'",
        "'w'",
    ] {
        assert!(e.contains(needle), "lacks {needle:?}: {e}");
    }
    // The channels do not fit the weight.
    let e = g
        .try_conv2d_input_grad(w, &[2, 5, 5, 5], o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv_input_grad") && e.contains("channels"),
        "{e}"
    );
    // A 3-d input shape to the two-axis form.
    let e = g
        .try_conv2d_input_grad(w, &[2, 3, 5], o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv_input_grad") && e.contains("4 axes"), "{e}");
    let e = x
        .try_conv2d_weight_grad(g, &[4, 3, 2, 2], o)
        .unwrap_err()
        .to_string();
    for needle in [
        "conv_weight_grad",
        "[2, 4, 3, 3]",
        "[2, 4, 4, 4]",
        "'x'",
        "'g'",
    ] {
        assert!(e.contains(needle), "lacks {needle:?}: {e}");
    }
    let e = x
        .try_conv2d_weight_grad(g, &[4, 3, 3, 3], o.stride(0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv_weight_grad") && e.contains("stride"),
        "{e}"
    );
    let e = g
        .try_conv1d_weight_grad(g, &[4, 4, 1], Conv1dOptions::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv_weight_grad") && e.contains("3 axes"),
        "{e}"
    );
    let p = Pool2dOptions::new(2);
    let e = g
        .try_avg_pool2d_backward(&[2, 4, 5, 5], p)
        .unwrap_err()
        .to_string();
    for needle in ["avg_pool2d_backward", "[2, 4, 3, 3]", "[2, 4, 2, 2]", "'g'"] {
        assert!(e.contains(needle), "lacks {needle:?}: {e}");
    }
    let e = g
        .try_avg_pool2d_backward(&[2, 4, 6], p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("avg_pool2d_backward") && e.contains("[n, c, h, w]"),
        "{e}"
    );
    let e = g
        .try_avg_pool2d_backward(&[2, 4, 1, 1], p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("avg_pool2d_backward") && e.contains("kernel"),
        "{e}"
    );
    assert_eq!(tape.len(), before, "a refused op records nothing");
    // The panicking forms panic with the same message.
    let m = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        g.conv2d_input_grad(w, &[2, 3, 6, 6], o)
    }))
    .unwrap_err();
    let m = m.downcast_ref::<String>().unwrap();
    assert_eq!(
        *m,
        g.try_conv2d_input_grad(w, &[2, 3, 6, 6], o)
            .unwrap_err()
            .to_string()
    );
}

/// The three ops and their backward, on small fixed inputs.
#[test]
fn backward_of_the_gradient_ops() {
    let ramp = |shape: &[usize], start: f64, step: f64| {
        Tensor::from_fn(shape, |i| start + step * i as f64)
    };
    let tape = Tape::<f64>::new();
    let x = tape.var(ramp(&[1, 1, 3, 3], -1.0, 0.25)).named("x");
    let w = tape.var(ramp(&[2, 1, 2, 2], 0.5, -0.25)).named("w");
    let g = tape.var(ramp(&[1, 2, 2, 2], 0.25, 0.5)).named("g");
    let q = tape
        .var(Tensor::new(&[1, 1, 2, 2], vec![4.0, -2.0, 1.0, 8.0]).unwrap())
        .named("q");
    let o = Conv2dOptions::new().stride(2).padding(1);
    let gx = g.conv2d_input_grad(w, &[1, 1, 3, 3], o);
    let gw = x.conv2d_weight_grad(g, &[2, 1, 2, 2], o);
    let p = q.avg_pool2d_backward(&[1, 1, 3, 3], Pool2dOptions::new(2).padding(1));
    let loss = (gx * x).sum() + (gw * gw).sum() + (p * x).sum();
    let grads = loss.backward();
    let text = render(&tape, Some(&grads), &RenderOptions::default());
    insta::assert_snapshot!("conv_grad_ops_backward", text);
}
