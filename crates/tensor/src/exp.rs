//! A branch-free `f32` exponential that LLVM vectorises, for [`Float::kernel_exp`].
//!
//! Scalar libm `expf` took a quarter to a third of the time of softmax, cross-entropy,
//! sigmoid and `exp` on large tensors, because a call per element keeps the loop
//! scalar. This version is within 1 ulp of the correctly rounded result over all of
//! `f32` (see the tests), subnormal results included:
//!
//! - `eˣ = 2ⁿ · eʳ` with `n = round(x / ln 2)` and `r = x − n·ln 2` by Cody–Waite
//!   reduction (`|r| ≤ ln2/2`), Cephes' `expf` polynomial for `eʳ`;
//! - `2ⁿ` is built from bits as two factors `2^⌊n/2⌋ · 2^(n−⌊n/2⌋)`, each a normal
//!   number, so a result below the smallest normal number is rounded once, by the
//!   last multiplication, and one above the largest overflows to `+∞` there;
//! - every multiply-add is a fused `mul_add`: inside [`crate::vectorized`] it is one
//!   AVX2 FMA instruction (half the instructions of the polynomial), elsewhere libm's
//!   `fmaf`, which rounds the same (once), so every machine computes the same bits;
//! - `x` is clamped to `[−104, 89]` first (`eˣ` rounds to 0 below about −103.97 and
//!   overflows above about 88.72), so `±∞` give `+∞` and `0`, and NaN passes through.
//!
//! [`Float::kernel_exp`]: crate::Float::kernel_exp

use std::f32::consts::LOG2_E;

/// `1.5 · 2^23`: adding it rounds a value in `(−2^22, 2^22)` to an integer, which is
/// then in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// `ln 2` split Cody–Waite style: `LN2_HI` has few bits so `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `eˣ` rounds to 0 in `f32` (from about −103.97).
const LOWEST: f32 = -104.0;
/// Above this `eˣ` overflows (from about 88.72).
const HIGHEST: f32 = 89.0;

/// Cephes `expf` coefficients: `e^r ≈ 1 + r + r²·P(r)`, highest degree first.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `n = round(x / ln 2)` as an integer and a float, and `eʳ` for `r = x − n·ln 2`.
#[inline(always)]
fn reduce(x: f32) -> (i32, f32, f32) {
    let z = x.mul_add(LOG2_E, ROUND_MAGIC);
    let n = z - ROUND_MAGIC;
    // z's low mantissa bits hold n.
    let n_int = z.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = P[0];
    for &c in &P[1..] {
        p = p.mul_add(r, c);
    }
    (n_int, n, 1.0 + (r * r).mul_add(p, r))
}

/// `2^k` for `k` in `[−126, 127]`, from bits.
#[inline(always)]
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// `e^t` for `t` in `[−87, 88]`, where `2ⁿ` is a normal number, within about 1 ulp.
#[inline(always)]
pub(crate) fn exp_bounded(t: f32) -> f32 {
    let (n, _, er) = reduce(t);
    er * pow2(n)
}

/// `eˣ` for every `f32`, branch-free (see the module docs).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let (n, _, er) = reduce(x.clamp(LOWEST, HIGHEST));
    let half = n >> 1;
    let y = er * pow2(half) * pow2(n - half);
    if x.is_nan() { x } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ulp::{assert_within, grid, worst_over_all, worst_ulp};

    /// Max ulp error of `exp_f32` (in a vectorised loop) over `xs` against `exp` in
    /// `f64`, rounded.
    fn max_ulp(xs: &[f32]) -> (u64, f32) {
        let mut out = vec![0.0f32; xs.len()];
        crate::vectorized(
            #[inline(always)]
            || {
                for (o, &x) in out.iter_mut().zip(xs) {
                    *o = exp_f32(x);
                }
            },
        );
        worst_ulp(xs, &out, f64::exp)
    }

    fn check(xs: &[f32], what: &str) {
        assert_within(what, xs.len(), max_ulp(xs), 1);
    }

    #[test]
    fn within_one_ulp_over_the_range() {
        // Every 401st float from 0 to 110 (both signs), and densely where it matters:
        // near 0, the subnormal results, and the approach to overflow.
        check(&grid(0.0, 110.0, 401), "[-110, 110] stride 401");
        check(&grid(0.0, 2f32.powi(-10), 997), "|x| <= 2^-10 stride 997");
        check(&grid(86.0, 90.0, 7), "±[86, 90] stride 7");
        check(&grid(100.0, 106.0, 7), "±[100, 106] stride 7");
    }

    /// All finite floats; too slow for debug builds. Run with
    /// `cargo test --release -p descent-tensor exp -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn within_one_ulp_exhaustive() {
        let worst = worst_over_all(f32::MAX, max_ulp);
        let count = 2 * (f32::MAX.to_bits() as usize + 1);
        assert_within("exhaustive, every finite f32", count, worst, 1);
    }

    /// Outside [`crate::vectorized`] the fused multiply-adds are libm calls (`fmaf`),
    /// compiled for the baseline: the same bits as the AVX2 loop, as on a machine
    /// without it.
    #[test]
    fn the_same_bits_with_and_without_vector_instructions() {
        let xs = grid(0.0, 105.0, 1_009);
        let mut fast = vec![0.0f32; xs.len()];
        let mut fast_tanh = vec![0.0f32; xs.len()];
        crate::vectorized(
            #[inline(always)]
            || {
                for ((o, t), &x) in fast.iter_mut().zip(&mut fast_tanh).zip(&xs) {
                    *o = exp_f32(x);
                    *t = crate::tanh::tanh_f32(x);
                }
            },
        );
        for ((&x, &o), &t) in xs.iter().zip(&fast).zip(&fast_tanh) {
            let (plain, plain_tanh) = std::hint::black_box((exp_f32(x), crate::tanh::tanh_f32(x)));
            assert_eq!(o.to_bits(), plain.to_bits(), "exp({x:e})");
            assert_eq!(t.to_bits(), plain_tanh.to_bits(), "tanh({x:e})");
        }
    }

    #[test]
    fn special_values() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY).to_bits(), 0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert_eq!(exp_f32(1e30), f32::INFINITY);
        assert_eq!(exp_f32(-1e30).to_bits(), 0);
        assert_eq!(exp_f32(-104.0).to_bits(), 0);
        // The largest finite result and the smallest subnormal one.
        assert_eq!(exp_f32(88.72283), f64::from(88.72283f32).exp() as f32);
        assert!(exp_f32(88.72283).is_finite());
        assert_eq!(exp_f32(-103.27893).to_bits(), 1);
    }
}
