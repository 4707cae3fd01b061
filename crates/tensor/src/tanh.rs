//! A branch-free `f32` tanh that LLVM vectorises, for [`Float::tanh_slice`].
//!
//! Scalar libm `tanhf` dominated tanh-heavy workloads (a tanh RNN spent over a third
//! of its time there). This version is within 1 ulp of the correctly rounded result
//! over all of `f32` (see the tests), computes both of its branches for every element
//! and selects, so a plain loop over a slice becomes SIMD code:
//!
//! - `|x| < 0.875`: `x + x·s·G(s)` with `s = x²`, `G` a degree-7 near-minimax
//!   (Chebyshev) fit of `(tanh(x)/x − 1)/s` on `[0, 0.875²]`, relative error ≈ 2e-10
//!   before rounding.
//! - `|x| ≥ 0.875`: `1 − 2/(e^{2|x|} + 1)`, with `e^t` by Cody–Waite reduction
//!   (`t = n·ln2 + r`, `|r| ≤ ln2/2`), Cephes' `expf` polynomial for `e^r`, and `2^n`
//!   built from bits. `|x|` is clamped to 9.5, beyond which tanh rounds to 1 in `f32`
//!   (from about 9.01), so the exponential never overflows.
//!
//! The sign is restored with `copysign` (so `±0 → ±0`, `±∞ → ±1`), NaN passes through,
//! and tiny inputs come back unchanged (`G(s)·s` rounds away next to 1).
//!
//! [`Float::tanh_slice`]: crate::Float::tanh_slice

use crate::exp::exp_bounded;

/// Below this, the odd polynomial; from here on, the exponential form.
const SMALL: f32 = 0.875;
/// Clamp for `|x|` in the exponential form: tanh rounds to 1 in `f32` from ≈ 9.01.
const BIG: f32 = 9.5;
/// `G(s)` coefficients, highest degree first (`tanh x = x + x·s·G(s)`, `s = x²`).
const G: [f32; 8] = [
    1.929_952_9e-4,
    -1.067_244_9e-3,
    3.368_668_7e-3,
    -8.788_257e-3,
    2.185_545_3e-2,
    -5.396_694_3e-2,
    1.333_332_8e-1,
    -3.333_333_4e-1,
];

/// `tanh x`, branch-free (see the module docs).
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();

    let s = a * a;
    let mut g = G[0];
    for &c in &G[1..] {
        g = g.mul_add(s, c);
    }
    let small = a.mul_add(s * g, a);

    let e = exp_bounded(2.0 * a.min(BIG));
    let large = 1.0 - 2.0 / (e + 1.0);

    let y = if a < SMALL { small } else { large }.copysign(x);
    if x.is_nan() { x } else { y }
}

/// Writes `tanh` of each element of `input` to `out`.
///
/// # Panics
/// If the lengths differ.
pub(crate) fn tanh_f32_slice(input: &[f32], out: &mut [f32]) {
    assert_eq!(input.len(), out.len(), "tanh_slice: length mismatch");
    crate::vectorized(
        #[inline(always)]
        || {
            for (o, &v) in out.iter_mut().zip(input) {
                *o = tanh_f32(v);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ulp::{assert_within, grid, ulp_diff, worst_over_all, worst_ulp};

    /// Max ulp error of `tanh_f32_slice` over `xs` against `tanh` in `f64`, rounded.
    fn max_ulp(xs: &[f32]) -> (u64, f32) {
        let mut out = vec![0.0f32; xs.len()];
        tanh_f32_slice(xs, &mut out);
        worst_ulp(xs, &out, f64::tanh)
    }

    fn check(xs: &[f32], what: &str) {
        assert_within(what, xs.len(), max_ulp(xs), 1);
    }

    #[test]
    fn within_one_ulp_over_minus_20_to_20() {
        // Every 601st float of the range, plus every float (or nearly) where it matters:
        // near 0, the switch between forms at 0.875, and the approach to saturation.
        check(&grid(0.0, 20.0, 601), "[-20, 20] stride 601");
        check(&grid(0.0, 2f32.powi(-10), 997), "|x| <= 2^-10 stride 997");
        check(&grid(0.5, 1.0, 29), "[0.5, 1] stride 29");
        check(&grid(5.0, 7.0, 17), "[5, 7] stride 17");
        check(&grid(8.5, 20.0, 23), "[8.5, 20] stride 23");
    }

    /// All floats in [-20, 20]; too slow for debug builds. Run with
    /// `cargo test --release -p descent-tensor tanh -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn within_one_ulp_exhaustive() {
        let worst = worst_over_all(20.0, max_ulp);
        let count = 2 * (20.0f32.to_bits() as usize + 1);
        assert_within("exhaustive, [-20, 20]", count, worst, 1);
    }

    #[test]
    fn special_values() {
        let xs = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
            -1e30,
        ];
        let mut out = [0.0f32; 7];
        tanh_f32_slice(&xs, &mut out);
        assert_eq!(out[0].to_bits(), 0.0f32.to_bits());
        assert_eq!(out[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(out[2], 1.0);
        assert_eq!(out[3], -1.0);
        assert!(out[4].is_nan());
        assert_eq!(out[5], 1.0);
        assert_eq!(out[6], -1.0);
        // Tiny inputs, subnormals included, come back unchanged.
        let tiny = grid(0.0, 2f32.powi(-12), 65_537);
        let mut out = vec![0.0f32; tiny.len()];
        tanh_f32_slice(&tiny, &mut out);
        for (&x, &y) in tiny.iter().zip(&out) {
            assert_eq!(x.to_bits(), y.to_bits(), "tanh({x:e})");
        }
        // Saturation: exactly ±1 from where f32 tanh rounds to 1.
        for x in [9.02f32, 10.0, 15.0, 88.0, 89.0, 1e10] {
            let mut y = [0.0f32; 2];
            tanh_f32_slice(&[x, -x], &mut y);
            assert_eq!(y, [1.0, -1.0], "tanh(±{x})");
        }
    }

    #[test]
    fn odd_lengths() {
        for n in 0..40 {
            let xs: Vec<f32> = (0..n).map(|i| (i as f32 - 20.0) * 0.37).collect();
            let mut out = vec![f32::NAN; n];
            tanh_f32_slice(&xs, &mut out);
            for (&x, &y) in xs.iter().zip(&out) {
                assert!(ulp_diff(y, (x as f64).tanh() as f32) <= 1);
            }
        }
    }
}
