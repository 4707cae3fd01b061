//! A gradient check of convolution, pooling and padding: each backward rule against
//! central finite differences (`descent::gradcheck`, f64, mixed error within `1e-6`),
//! on seeded random shapes and options, input, weight and bias all checked.
//!
//! Max pooling has a kink wherever two elements of a window are equal: its inputs are
//! a shuffled grid `0.1·k` with jitter below `0.01`, so no two are closer than `0.08`,
//! far more than the finite-difference step (`1e-6`) needs.

use descent::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.random_range(-1.0..1.0))
}

/// Distinct values at least `0.08` apart, in random order.
fn spread(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n)
        .map(|k| 0.1 * k as f64 - 0.05 * n as f64 + rng.random_range(0.0..0.01))
        .collect();
    v.shuffle(rng);
    Tensor::from_fn(shape, |i| v[i])
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

#[test]
fn conv2d_input_weight_and_bias() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    for case in 0..12 {
        let groups = [1, 2, 3][case % 3];
        let (cin, cout) = (
            groups * rng.random_range(1..3),
            groups * rng.random_range(1..3),
        );
        let (kh, kw) = (rng.random_range(1..4), rng.random_range(1..4));
        let o = Conv2dOptions::new()
            .stride([rng.random_range(1..3), rng.random_range(1..3)])
            .padding([rng.random_range(0..3), rng.random_range(0..2)])
            .dilation([rng.random_range(1..3), rng.random_range(1..3)])
            .groups(groups);
        let (h, w) = (rng.random_range(5..8), rng.random_range(5..8));
        let n = rng.random_range(1..3);
        let x = uniform(&mut rng, &[n, cin, h, w]);
        let wt = uniform(&mut rng, &[cout, cin / groups, kh, kw]);
        let b = uniform(&mut rng, &[cout]);
        let what = format!("conv2d x {:?} w {:?} {o:?}", x.shape(), wt.shape());
        check(&what, &[x.clone(), wt.clone(), b], |_, v| {
            v[0].conv2d(v[1], Some(v[2]), o)
        });
        // Without a bias, and with the input also feeding another path (fan-out).
        check(&what, &[x, wt], |_, v| {
            (v[0].conv2d(v[1], None, o).sum()) * v[0].sum()
        });
    }
}

#[test]
fn conv1d_input_weight_and_bias() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for case in 0..8 {
        let groups = [1, 2][case % 2];
        let (cin, cout) = (
            groups * rng.random_range(1..3),
            groups * rng.random_range(1..3),
        );
        let k = rng.random_range(1..4);
        let o = Conv1dOptions::new()
            .stride(rng.random_range(1..3))
            .padding(rng.random_range(0..3))
            .dilation(rng.random_range(1..3))
            .groups(groups);
        let n = rng.random_range(1..4);
        let x = uniform(&mut rng, &[n, cin, 8]);
        let wt = uniform(&mut rng, &[cout, cin / groups, k]);
        let b = uniform(&mut rng, &[cout]);
        let what = format!("conv1d x {:?} w {:?} {o:?}", x.shape(), wt.shape());
        check(&what, &[x, wt, b], |_, v| v[0].conv1d(v[1], Some(v[2]), o));
    }
}

#[test]
fn pooling() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in 0..8 {
        let k = [rng.random_range(1..4), rng.random_range(2..4)];
        let o = Pool2dOptions::new(k)
            .stride([rng.random_range(1..3), rng.random_range(1..3)])
            .padding([
                rng.random_range(0..=k[0] / 2),
                rng.random_range(0..=k[1] / 2),
            ])
            .ceil_mode(case % 2 == 1);
        let x = spread(&mut rng, &[2, 2, 6, 5]);
        check(
            &format!("max_pool2d {o:?}"),
            std::slice::from_ref(&x),
            |_, v| v[0].max_pool2d(o),
        );
        check(&format!("avg_pool2d {o:?}"), &[x], |_, v| {
            v[0].avg_pool2d(o)
        });
    }
    let x = uniform(&mut rng, &[2, 3, 4, 5]);
    check("global_avg_pool2d", &[x], |_, v| v[0].global_avg_pool2d());
}

#[test]
fn padding() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for widths in [&[1, 2][..], &[0, 1, 2, 0], &[1, 1, 1, 1, 1, 1], &[]] {
        let x = uniform(&mut rng, &[2, 3, 4]);
        check(&format!("pad {widths:?}"), &[x], |_, v| v[0].pad(widths));
    }
}

#[test]
fn a_small_cnn() {
    // conv → tanh → max pool → conv → global average: the rules chained.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = uniform(&mut rng, &[2, 1, 6, 6]);
    let w1 = uniform(&mut rng, &[2, 1, 3, 3]);
    let w2 = uniform(&mut rng, &[3, 2, 2, 2]);
    // Max pooling's ties are at measure-zero inputs; with this seed no window holds
    // two values within the finite-difference step (the check would fail if one did).
    check("small cnn", &[x, w1, w2], |_, v| {
        let h = v[0]
            .conv2d(v[1], None, Conv2dOptions::new().padding(1))
            .tanh();
        let h = h.max_pool2d(Pool2dOptions::new(2));
        h.conv2d(v[2], None, Conv2dOptions::new())
            .global_avg_pool2d()
    });
}
