//! Helpers shared by the kernels' unit tests.

use crate::Float;
use crate::shape::split_at_axis;

/// `a @ b` for row-major `[m, k]` and `[k, n]`, by the textbook triple loop.
pub(super) fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                c[i * n + j] += a[i * k + p] * b[p * n + j];
            }
        }
    }
    c
}

/// `n` values of `f` at `0, step, 2·step, …`, rounded to `T`: operands for the
/// matrix products' tests.
pub(super) fn wave<T: Float>(n: usize, step: f64, f: fn(f64) -> f64) -> Vec<T> {
    (0..n).map(|i| T::from_f64(f(i as f64 * step))).collect()
}

/// Shapes for the axis kernels: lanes shorter and longer than eight and than a
/// transpose tile, with the axis first, inside and last.
pub(super) const AXIS_SHAPES: &[&[usize]] = &[
    &[7],
    &[19],
    &[3, 5],
    &[4, 17],
    &[33, 6],
    &[2, 9, 3],
    &[3, 1, 20],
    &[2, 3, 4, 5],
    &[40, 37],
];

/// `n` smooth values, different for each `seed`, between -3 and 3.
pub(super) fn values(n: usize, seed: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 + seed) * 0.73).sin() * 3.0)
        .collect()
}

/// `x[o, j, i]` of a shape split at `axis`, as a closure.
pub(super) fn at<'a>(
    x: &'a [f64],
    shape: &[usize],
    axis: usize,
) -> impl Fn(usize, usize, usize) -> f64 + 'a {
    let (_, n, inner) = split_at_axis(shape, axis);
    move |o, j, i| x[(o * n + j) * inner + i]
}
