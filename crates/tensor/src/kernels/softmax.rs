//! Softmax, log-softmax and log-sum-exp, along an axis or over one contiguous lane,
//! computed stably and to the last digits a confident prediction needs.

use super::axis_lanes;
use super::sum::{pairwise8, sum_lanes};
use crate::Float;
use crate::View;

/// Softmax along `axis`, computed stably (the maximum is subtracted first); see
/// [`softmax_lane`].
pub fn softmax_axis<T: Float>(x: View<'_, T>, axis: usize, out: &mut [T]) {
    // A closure, not the function item: LLVM called that through a shim it kept out
    // of line, compiled for the baseline instruction set.
    axis_lanes(
        x,
        axis,
        out,
        #[inline(always)]
        |x, out| softmax_lane(x, out),
    );
}

/// Log-softmax along `axis`; see [`log_softmax_lane`].
pub fn log_softmax_axis<T: Float>(x: View<'_, T>, axis: usize, out: &mut [T]) {
    axis_lanes(
        x,
        axis,
        out,
        #[inline(always)]
        |x, out| log_softmax_lane(x, out),
    );
}

/// Softmax of one contiguous lane: `e^(x − m) / Σ e^(x − m)` with `m` the largest
/// element (0 when that is not finite). The sum runs in eight lanes, added pairwise,
/// then the elements past the last full eight in order. Inlined, so that it is
/// compiled for the caller's instruction set inside [`vectorized`](crate::vectorized).
#[inline(always)]
pub fn softmax_lane<T: Float>(x: &[T], out: &mut [T]) {
    let m = finite_or_zero(lane_max(x));
    // Two passes, the exponentials then their sum: as one, LLVM vectorised it four
    // lanes wide at most, with spills.
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m).kernel_exp();
    }
    let total = sum_lanes(
        out,
        #[inline(always)]
        |e| e,
    );
    for o in out.iter_mut() {
        *o /= total;
    }
}

/// Log-softmax of one contiguous lane: `(x − m) − r` with `(m, r)` from
/// [`log_sum_exp_parts`], so that an element near the largest keeps the digits that
/// `x − (m + r)` would round away.
#[inline(always)]
pub fn log_softmax_lane<T: Float>(x: &[T], out: &mut [T]) {
    let (m, r) = log_sum_exp_parts(x);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m) - r;
    }
}

/// `ln Σ eˣ` of one contiguous lane: `m + r` with `(m, r)` from [`log_sum_exp_parts`].
#[inline(always)]
pub fn log_sum_exp<T: Float>(x: &[T]) -> T {
    let (m, r) = log_sum_exp_parts(x);
    m + r
}

/// `ln Σ eˣ` of one contiguous lane in two parts `(m, r)`, `ln Σ eˣ = m + r`: `m` is
/// the largest element and `r = ln(1 + t)`, `t` the sum of `e^(x − m)` over every
/// element but one equal to `m`. The 1 is kept out of the sum, and `ln(1 + t)` is
/// computed as such, so `r` keeps its digits when `t` is small. A confident
/// prediction's cross-entropy, `r − (x[label] − m)` for the largest logit, is then as
/// accurate as `r`: `(m + r) − x[label]` keeps only the digits of `r` above `m`'s last
/// (for logits `[30, 0, 0]` in `f64`, 1.883e-13 for 1.872e-13; in `f32`, 0 for the 6.1e-7
/// of `[20, 5, 5]`). When the largest element is not finite, `m` is 0 and
/// `r = ln Σ eˣ`. The sum runs in eight lanes like [`softmax_lane`]'s.
///
/// ```
/// use descent_tensor::kernels::log_sum_exp_parts;
/// let (m, r) = log_sum_exp_parts(&[30.0f64, 0.0, 0.0]);
/// assert_eq!(m, 30.0);
/// let t = 2.0 * (-30.0f64).exp(); // the other elements' e^(x − m), about 1.9e-13
/// let exact = t - t * t / 2.0; // ln(1 + t), to well below t's last digit
/// assert!((r - exact).abs() <= 1e-15 * exact);
/// // `m + r` would round r to 30's last digit (3.6e-15): 0.6% of r.
/// assert!(((30.0 + r) - 30.0 - exact).abs() > 1e-3 * exact);
/// ```
#[inline(always)]
pub fn log_sum_exp_parts<T: Float>(x: &[T]) -> (T, T) {
    let m = lane_max(x);
    if !m.is_finite() {
        return (T::zero(), exp_sum(x, T::zero(), false).ln());
    }
    // Each element equal to m adds exactly 1: left out of the sum and counted apart
    // (one of them is the 1 of `ln(1 + t)`), so that the small terms keep their digits.
    let rest = exp_sum(x, m, true);
    let ties: u32 = x.iter().map(|&v| u32::from(v == m)).sum();
    (
        m,
        ln_1p(T::from_f64(f64::from(ties.saturating_sub(1))) + rest),
    )
}

/// `Σ e^(x − m)`, without the elements equal to `m` when `skip_max`. The
/// exponentials of a block go into a buffer by a plain loop, then into the lanes (the
/// additions `sum_lanes` makes, in its order). With the exponential inside the
/// eight-lane loop, LLVM's vectoriser chose eight lanes in one build and four, with
/// spills, in another: cross-entropy's forward ran 3x slower.
#[inline(always)]
fn exp_sum<T: Float>(x: &[T], m: T, skip_max: bool) -> T {
    const BLOCK: usize = 256;
    let mut lanes = [T::neg_zero(); 8];
    let mut buf = [T::zero(); BLOCK];
    let full = x.len() / 8 * 8;
    let term = |v: T| {
        if skip_max && v == m {
            T::zero()
        } else {
            (v - m).kernel_exp()
        }
    };
    for block in x[..full].chunks(BLOCK) {
        let buf = &mut buf[..block.len()];
        for (e, &v) in buf.iter_mut().zip(block) {
            *e = term(v);
        }
        for c in buf.chunks_exact(8) {
            for k in 0..8 {
                lanes[k] += c[k];
            }
        }
    }
    let mut total = pairwise8(lanes);
    for &v in &x[full..] {
        total += term(v);
    }
    total
}

/// `ln(1 + t)` for `t >= 0` as `ln(u)·t/(u − 1)` with `u = 1 + t` (Goldberg, "What
/// every computer scientist should know about floating-point arithmetic", theorem 4:
/// within a few ulps when `ln` is within half of one). libm's `log1pf` cost a third of
/// a 10-class cross-entropy's forward; this costs one `ln` and a division.
#[inline(always)]
fn ln_1p<T: Float>(t: T) -> T {
    let u = T::one() + t;
    if u == T::one() {
        // `t` is below half an ulp of 1, and `ln(1 + t) = t` to within `t²/2`.
        t
    } else if u.is_infinite() {
        // Not `∞·(∞/∞)`.
        u
    } else {
        u.ln() * (t / (u - T::one()))
    }
}

/// The largest element, NaN skipped; −∞ for a lane with none (empty or all NaN).
#[inline(always)]
pub fn lane_max<T: Float>(x: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); 8];
    let mut xs = x.chunks_exact(8);
    for c in &mut xs {
        for k in 0..8 {
            // A comparison and a select (no NaN test): NaN is never greater.
            lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
        }
    }
    let mut m = lanes.into_iter().fold(T::neg_infinity(), |m, v| m.max(v));
    for &v in xs.remainder() {
        m = m.max(v);
    }
    m
}

#[inline(always)]
fn finite_or_zero<T: Float>(m: T) -> T {
    if m.is_finite() { m } else { T::zero() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{AXIS_SHAPES, values};
    use crate::shape::{numel, split_at_axis};

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        let x = [1000.0, 1001.0, 1002.0];
        let mut out = [0.0; 3];
        softmax_axis(View::new(&[3], &x), 0, &mut out);
        let total: f64 = out.iter().sum();
        assert!((total - 1.0).abs() < 1e-15);
        assert!(out[2] > out[1] && out[1] > out[0]);
    }

    #[test]
    fn softmax_lanes_match_f64_along_every_axis() {
        for &shape in AXIS_SHAPES {
            let x = values(numel(shape), 2.0);
            let xf: Vec<f32> = x.iter().map(|&v| v as f32 * 10.0).collect();
            for axis in 0..shape.len() {
                let (outer, n, inner) = split_at_axis(shape, axis);
                let mut sm = vec![0.0f32; x.len()];
                let mut lsm = vec![0.0f32; x.len()];
                softmax_axis(View::new(shape, &xf), axis, &mut sm);
                log_softmax_axis(View::new(shape, &xf), axis, &mut lsm);
                for o in 0..outer {
                    for i in 0..inner {
                        let k = |j: usize| (o * n + j) * inner + i;
                        let lse = (0..n).map(|j| f64::from(xf[k(j)]).exp()).sum::<f64>().ln();
                        for j in 0..n {
                            let want = f64::from(xf[k(j)]) - lse;
                            let (s, l) = (f64::from(sm[k(j)]), f64::from(lsm[k(j)]));
                            assert!(
                                (s - want.exp()).abs() <= 1e-5 * want.exp() + 1e-40,
                                "{shape:?} {s} vs {}",
                                want.exp()
                            );
                            assert!((l - want).abs() <= 1e-5 * want.abs().max(1.0), "{shape:?}");
                        }
                    }
                }
            }
        }
    }

    /// `ln(1 + Σ e^(x − m))`, the sum over every element but the first largest, in
    /// `f64`, for `f32` rows: the `r` of `log_sum_exp_parts`.
    fn rest_f64(x: &[f32]) -> f64 {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let j = x.iter().position(|&v| v == m).unwrap();
        let t: f64 = (x.iter().enumerate())
            .filter(|&(i, _)| i != j)
            .map(|(_, &v)| (f64::from(v) - f64::from(m)).exp())
            .sum();
        t.ln_1p()
    }

    #[test]
    fn ln_1p_is_within_a_few_ulps_of_libm() {
        // t from 1e-30 to 1e30, denser near the range where 1 + t rounds.
        let ts = (0..4000).map(|i| 10f64.powf(-30.0 + i as f64 * 0.015));
        for t in ts.chain([0.0, 1e-300, f64::MIN_POSITIVE]) {
            let (got, want) = (ln_1p(t), t.ln_1p());
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want,
                "f64 {t}: {got} vs {want}"
            );
            let t32 = t as f32;
            let (got, want) = (f64::from(ln_1p(t32)), f64::from(t32).ln_1p());
            let tol = 4.0 * f64::from(f32::EPSILON) * want + 1e-45;
            assert!((got - want).abs() <= tol, "f32 {t32}: {got} vs {want}");
        }
        assert_eq!(ln_1p(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln_1p(f32::MAX), f32::MAX.ln_1p());
        assert!(ln_1p(f64::NAN).is_nan());
    }

    #[test]
    fn log_sum_exp_keeps_the_digits_of_a_dominant_element() {
        // A dominant element at every kind of position: the first, inside the first
        // eight, in the tail past the last full eight, in the second block of 256, and
        // twice (the second copy counts, so r is near ln 2).
        for n in [1, 3, 8, 9, 17, 300, 513] {
            for j in [0, n / 2, n - 1] {
                for repeat in [false, true] {
                    let mut x: Vec<f32> = (0..n)
                        .map(|i| (i as f32 * 0.37).sin() * 3.0 - 12.0)
                        .collect();
                    x[j] = 9.0;
                    if repeat && n > 1 {
                        x[(j + 1) % n] = 9.0;
                    }
                    let (m, r) = log_sum_exp_parts(&x);
                    assert_eq!(m, 9.0);
                    let want = rest_f64(&x);
                    assert!(
                        (f64::from(r) - want).abs() <= 2e-6 * want + 1e-45,
                        "n {n} j {j} repeat {repeat}: {r} vs {want}"
                    );
                    // The log-softmax of the largest element is −r, to the same digits.
                    let mut out = vec![0.0f32; n];
                    log_softmax_lane(&x, &mut out);
                    assert_eq!(out[j], -r);
                }
            }
        }
        // The rows of the report that found the loss: an f32 loss of 6.1e-7 came out 0.
        for (x, want) in [
            ([20.0f32, 5.0, 5.0], 6.118e-7),
            ([200.0, 180.0, 185.0], 3.080e-7),
        ] {
            let (m, r) = log_sum_exp_parts(&x);
            assert_eq!(m, x[0]);
            assert!((f64::from(r) - want).abs() < 1e-3 * want, "{x:?}: {r}");
            assert!(
                (f64::from(r) - rest_f64(&x)).abs() < 1e-6 * want,
                "{x:?}: {r}"
            );
        }
        // Not finite: m is 0 and r the whole log-sum; a NaN makes r NaN.
        assert_eq!(
            log_sum_exp_parts(&[f32::INFINITY, 0.0]),
            (0.0, f32::INFINITY)
        );
        assert_eq!(
            log_sum_exp_parts::<f32>(&[f32::NEG_INFINITY; 3]).1,
            f32::NEG_INFINITY
        );
        assert!(log_sum_exp_parts(&[1.0f32, f32::NAN]).1.is_nan());
        assert_eq!(log_sum_exp_parts(&[4.0f64, f64::NEG_INFINITY]), (4.0, 0.0));
    }
}
