//! The one L2-norm routine of the project: gradient clipping, per-sample clipping,
//! gradient-flow reports and summaries all measure with it, so a norm printed in a
//! report is the norm a clip acted on.

use descent_tensor::{Float, vectorized};

/// Lanes of `T` in which [`sum_of_squares`] sums its runs.
const SQUARE_LANES: usize = 32;

/// Below this sum of squares (in `f64`), `f32` squares may have underflowed in the fast
/// sum, and [`l2_norm`] measures again with scaling.
const SMALLEST_FAST_SQUARE_SUM: f64 = 1e-30;

/// Σ x² of `x`, in `f64`: runs of eight squares per lane are summed in `T` first, in 32
/// lanes (four independent chains of additions rather than one), then added into eight
/// `f64` lanes combined in a fixed order. Converting every element to `f64` cost more
/// than the rest. The order of additions depends only on `x.len()`, so the result is
/// the same bit for bit on every thread count and processor path.
///
/// For `f32` the relative error stays below 10⁻⁶ while the sum is finite and at least
/// 10⁻³⁰; [`l2_norm`] handles the rest. NaN if any element is NaN, +∞ if any is
/// infinite (or the squares overflow).
///
/// ```
/// assert_eq!(descent_tape::norm::sum_of_squares(&[3.0f32, 4.0]), 25.0);
/// ```
pub fn sum_of_squares<T: Float>(x: &[T]) -> f64 {
    let mut lanes = [0.0f64; 8];
    vectorized(
        #[inline(always)]
        || {
            let mut runs = x.chunks_exact(8 * SQUARE_LANES);
            for run in &mut runs {
                let mut part = [T::zero(); SQUARE_LANES];
                for c in run.chunks_exact(SQUARE_LANES) {
                    for k in 0..SQUARE_LANES {
                        part[k] += c[k] * c[k];
                    }
                }
                for k in 0..SQUARE_LANES {
                    lanes[k % 8] += part[k].as_f64();
                }
            }
            for (k, &v) in runs.remainder().iter().enumerate() {
                let v = v.as_f64();
                lanes[k % 8] += v * v;
            }
        },
    );
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// The L2 norm √(Σ x²) of `x`, in `f64`. Where the fast [`sum_of_squares`] may have
/// overflowed or underflowed for finite elements (an `f64` element above 10¹⁵⁴, or a
/// sum below 10⁻³⁰), it measures again dividing by the largest magnitude before
/// squaring, so every finite input gets a finite, accurate norm. NaN if any element is
/// NaN, +∞ if any is infinite.
///
/// ```
/// use descent_tape::norm::l2_norm;
/// assert_eq!(l2_norm(&[3.0f64, 4.0]), 5.0);
/// assert!((l2_norm(&[3e200f64, 4e200]) / 5e200 - 1.0).abs() < 1e-15); // no overflow
/// assert!(l2_norm(&[1.0f32, f32::NAN]).is_nan());
/// ```
pub fn l2_norm<T: Float>(x: &[T]) -> f64 {
    let sum = sum_of_squares(x);
    // A sum of 0 may be squares that all underflowed: measured again, scaled.
    if sum.is_finite() && sum >= SMALLEST_FAST_SQUARE_SUM || sum.is_nan() {
        return sum.sqrt();
    }
    scaled_norm(x)
}

/// The norm of `x` with every element divided by the largest magnitude before
/// squaring, so that no square overflows or underflows for finite elements.
fn scaled_norm<T: Float>(x: &[T]) -> f64 {
    let mut largest = 0.0f64;
    for v in x {
        let a = v.as_f64().abs();
        if a.is_nan() {
            return f64::NAN;
        }
        largest = largest.max(a);
    }
    if largest == 0.0 || largest.is_infinite() {
        return largest;
    }
    let sum: f64 = x
        .iter()
        .map(|v| {
            let r = v.as_f64() / largest;
            r * r
        })
        .sum();
    largest * sum.sqrt()
}

/// The L2 norm of several tensors taken together, as the norm of their norms,
/// √(Σᵢ ‖xᵢ‖²), in the order given: the form of PyTorch's `clip_grad_norm_`
/// (`vector_norm` of the stacked per-tensor norms). The per-tensor norms come from
/// [`l2_norm`], and their norm is taken the same way, so very large or small
/// gradients give a finite, accurate result. NaN if any element is NaN, +∞ if any is
/// infinite.
///
/// ```
/// use descent_tape::norm::global_norm;
/// let (a, b) = ([3.0f64], [4.0f64]);
/// assert_eq!(global_norm([&a[..], &b[..]]), 5.0);
/// assert_eq!(global_norm(Vec::<&[f32]>::new()), 0.0);
/// ```
pub fn global_norm<'a, T: Float>(parts: impl IntoIterator<Item = &'a [T]>) -> f64 {
    norm_of_norms(parts.into_iter().map(l2_norm))
}

/// √(Σ nᵢ²) of norms already measured, in order, without overflow: the second half of
/// [`global_norm`], for callers that keep the per-tensor norms (reports print both).
///
/// ```
/// assert_eq!(descent_tape::norm::norm_of_norms([3.0, 4.0]), 5.0);
/// ```
pub fn norm_of_norms(norms: impl IntoIterator<Item = f64>) -> f64 {
    // One pass, scaled as it goes (LAPACK's `dnrm2` form): no buffer, so a step over
    // any number of parameters allocates nothing, and no square overflows.
    let (mut scale, mut ssq) = (0.0f64, 1.0f64);
    for v in norms {
        let a = v.abs();
        if a.is_nan() {
            return f64::NAN;
        }
        if a == 0.0 {
            continue;
        }
        if scale < a {
            let r = scale / a;
            ssq = 1.0 + ssq * r * r;
            scale = a;
        } else {
            let r = a / scale;
            ssq += r * r;
        }
    }
    scale * ssq.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_a_plain_f64_sum() {
        let x: Vec<f64> = (0..1000)
            .map(|i| ((i * 37) % 101) as f64 / 7.0 - 5.0)
            .collect();
        let plain = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((l2_norm(&x) - plain).abs() <= 1e-14 * plain);
        let y: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let plain32 = y
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
        assert!((l2_norm(&y) - plain32).abs() <= 1e-6 * plain32);
    }

    #[test]
    fn tiny_and_huge_values_keep_their_norm() {
        assert_eq!(l2_norm(&[3e-200f64, 4e-200]), 5e-200);
        let tiny = l2_norm(&[3e-30f32, 4e-30]);
        assert!((tiny - 5e-30).abs() < 1e-36, "{tiny}");
        assert_eq!(l2_norm(&[f64::MAX, 0.0]), f64::MAX);
        assert_eq!(l2_norm(&[1.0f64, f64::INFINITY]), f64::INFINITY);
        assert!(l2_norm(&[f64::INFINITY, f64::NAN]).is_nan());
        assert_eq!(l2_norm::<f32>(&[]), 0.0);
    }

    #[test]
    fn norm_of_norms_is_scaled() {
        assert_eq!(norm_of_norms(vec![1.0; 100]), 10.0);
        assert_eq!(norm_of_norms([3e300, 4e300]), 5e300);
        assert_eq!(norm_of_norms([]), 0.0);
        assert_eq!(norm_of_norms([1.0, f64::INFINITY, 2.0]), f64::INFINITY);
        assert!(norm_of_norms([f64::INFINITY, f64::NAN]).is_nan());
    }
}
