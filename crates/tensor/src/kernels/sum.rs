//! Sums and dot products in eight lanes: the one order of additions that every kernel
//! shares, so that a row summed alone, four at a time or in explicit vectors gives
//! the same bits.

use crate::{Float, vectorized};

/// The sum of every element: blocks of 4,096 summed like [`sum_lanes`], the blocks'
/// sums added pairwise (so the rounding error grows with the logarithm of the length,
/// not the length).
pub fn sum_all<T: Float>(x: &[T]) -> T {
    const BLOCK: usize = 4096;
    fn cascade<T: Float>(x: &[T]) -> T {
        if x.len() <= BLOCK {
            return sum_lanes(
                x,
                #[inline(always)]
                |v| v,
            );
        }
        let half = x.len().div_ceil(2 * BLOCK) * BLOCK;
        let (a, b) = x.split_at(half);
        cascade(a) + cascade(b)
    }
    vectorized(
        #[inline(always)]
        || cascade(x),
    )
}

/// `Σ f(x)` in eight lanes (lane `k` takes elements `k`, `k + 8`, …), added pairwise,
/// then the elements past the last full eight in order. The lanes start at −0, the
/// neutral element of addition, so under eight elements the result is the plain
/// sum's, bit for bit (`−0` for none, as Rust's `Sum`).
#[inline(always)]
pub fn sum_lanes<T: Float>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut lanes = [T::neg_zero(); 8];
    let mut xs = x.chunks_exact(8);
    for c in &mut xs {
        for k in 0..8 {
            lanes[k] += f(c[k]);
        }
    }
    let mut total = pairwise8(lanes);
    for &v in xs.remainder() {
        total += f(v);
    }
    total
}

/// [`sum_lanes`] of four rows of one length at once, each summed in the same order
/// (the same bits): four independent chains of additions instead of one.
#[inline(always)]
pub(crate) fn sum4_lanes<T: Float>(rows: [&[T]; 4]) -> [T; 4] {
    let n = rows[0].len();
    let rows = rows.map(|r| &r[..n]);
    let mut lanes = [[T::neg_zero(); 8]; 4];
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        // One row's eight lanes side by side, so that they become one vector.
        for (l, r) in lanes.iter_mut().zip(rows) {
            let c: &[T; 8] = r[i..i + 8].try_into().expect("eight lanes");
            for k in 0..8 {
                l[k] += c[k];
            }
        }
        i += 8;
    }
    finish_sums(lanes, rows, full)
}

/// The end of a [`sum4_lanes`]: each row's eight lanes added pairwise, then the
/// elements from `full` on, in order.
#[inline(always)]
fn finish_sums<T: Float>(lanes: [[T; 8]; 4], rows: [&[T]; 4], full: usize) -> [T; 4] {
    let mut out = [T::zero(); 4];
    for ((o, l), r) in out.iter_mut().zip(lanes).zip(rows) {
        let mut total = pairwise8(l);
        for &v in &r[full..] {
            total += v;
        }
        *o = total;
    }
    out
}

/// [`sum4_lanes`] for `f32` in explicit 256-bit vectors where the processor has AVX2:
/// LLVM vectorised the generic loop across the rows, with shuffles (100 against 50 µs
/// for the rows of [1024, 1024]). Each row's eight lanes are one register, added in
/// the same order: the same bits.
pub(crate) fn sum4_f32(rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || {
                use pulp::{Simd, cast, f32x8};
                let n = rows[0].len();
                let rows = rows.map(|r| &r[..n]);
                let full = n / 8 * 8;
                let mut lanes = [simd.splat_f32s(-0.0); 4];
                let mut i = 0;
                while i < full {
                    for (l, r) in lanes.iter_mut().zip(rows) {
                        let c: [f32; 8] = r[i..i + 8].try_into().expect("eight lanes");
                        *l = simd.add_f32s(*l, cast::<[f32; 8], f32x8>(c));
                    }
                    i += 8;
                }
                finish_sums(lanes.map(cast::<f32x8, [f32; 8]>), rows, full)
            },
        );
    }
    sum4_lanes(rows)
}

/// [`sum4_f32`] for `f64`: each row's eight lanes in two 256-bit registers.
pub(crate) fn sum4_f64(rows: [&[f64]; 4]) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || {
                use pulp::{Simd, cast, f64x4};
                let n = rows[0].len();
                let rows = rows.map(|r| &r[..n]);
                let full = n / 8 * 8;
                let load = |s: &[f64], i: usize| -> f64x4 {
                    cast::<[f64; 4], f64x4>(s[i..i + 4].try_into().expect("four lanes"))
                };
                // Lanes 0-3 and 4-7 of each row.
                let mut lanes = [[simd.splat_f64s(-0.0); 2]; 4];
                let mut i = 0;
                while i < full {
                    for ([l0, l1], r) in lanes.iter_mut().zip(rows) {
                        *l0 = simd.add_f64s(*l0, load(r, i));
                        *l1 = simd.add_f64s(*l1, load(r, i + 4));
                    }
                    i += 8;
                }
                finish_sums(lanes.map(cast::<[f64x4; 2], [f64; 8]>), rows, full)
            },
        );
    }
    sum4_lanes(rows)
}

/// `Σ a·b` summed like [`sum_lanes`].
#[inline(always)]
pub fn dot_lanes<T: Float>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::neg_zero(); 8];
    let (mut ac, mut bc) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ac).zip(&mut bc) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut total = pairwise8(lanes);
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        total += x * y;
    }
    total
}

/// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
#[inline(always)]
pub(super) fn pairwise8<T: Float>(l: [T; 8]) -> T {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

#[inline(always)]
pub(super) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += *x * *y;
    }
    s
}

/// [`dot`] of four rows with one vector, each summed exactly as `dot` sums it.
#[inline(always)]
pub(crate) fn dot4<T: Float>(rows: [&[T]; 4], v: &[T]) -> [T; 4] {
    let n = v.len();
    let [r0, r1, r2, r3] = rows.map(|r| &r[..n]);
    let mut l0 = [T::zero(); 8];
    let mut l1 = [T::zero(); 8];
    let mut l2 = [T::zero(); 8];
    let mut l3 = [T::zero(); 8];
    let eight = |s: &[T], i: usize| -> [T; 8] { s[i..i + 8].try_into().expect("eight") };
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        let x = eight(v, i);
        let (a0, a1, a2, a3) = (eight(r0, i), eight(r1, i), eight(r2, i), eight(r3, i));
        // One row's eight lanes side by side, so that they become one vector (with the
        // rows interleaved, LLVM packed one lane of four rows instead, with shuffles).
        for (l, a) in [(&mut l0, a0), (&mut l1, a1), (&mut l2, a2), (&mut l3, a3)] {
            for k in 0..8 {
                l[k] += a[k] * x[k];
            }
        }
        i += 8;
    }
    finish_rows([l0, l1, l2, l3], [r0, r1, r2, r3], v, full)
}

/// The end of a [`dot4`]: each row's eight lanes added pairwise, then the elements
/// from `full` on, in order.
#[inline(always)]
fn finish_rows<T: Float>(lanes: [[T; 8]; 4], rows: [&[T]; 4], v: &[T], full: usize) -> [T; 4] {
    let mut out = [T::zero(); 4];
    for ((o, l), r) in out.iter_mut().zip(lanes).zip(rows) {
        let mut s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        for (x, y) in r[full..].iter().zip(&v[full..]) {
            s += *x * *y;
        }
        *o = s;
    }
    out
}

/// [`dot4`] for `f32` in explicit 256-bit vectors where the processor has AVX2. LLVM
/// vectorises the generic loop across rows (lane `k` of the four rows in one register,
/// with shuffles) instead of along them; written out, each row's eight lanes are one
/// register, multiplied and added in the same order as [`dot4`]: the same bits.
pub(crate) fn dot4_f32(rows: [&[f32]; 4], v: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || dot4_f32_v3(simd, rows, v),
        );
    }
    dot4(rows, v)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot4_f32_v3(simd: pulp::x86::V3, rows: [&[f32]; 4], v: &[f32]) -> [f32; 4] {
    use pulp::{Simd, cast, f32x8};
    let n = v.len();
    let rows = rows.map(|r| &r[..n]);
    let load = |s: &[f32], i: usize| -> f32x8 {
        cast::<[f32; 8], f32x8>(s[i..i + 8].try_into().expect("eight lanes"))
    };
    let full = n / 8 * 8;
    let mut lanes = [simd.splat_f32s(0.0); 4];
    let mut i = 0;
    while i < full {
        let x = load(v, i);
        for (l, r) in lanes.iter_mut().zip(rows) {
            *l = simd.add_f32s(*l, simd.mul_f32s(load(r, i), x));
        }
        i += 8;
    }
    finish_rows(lanes.map(cast::<f32x8, [f32; 8]>), rows, v, full)
}

/// [`dot4_f32`] for `f64`: each row's eight lanes in two 256-bit registers.
pub(crate) fn dot4_f64(rows: [&[f64]; 4], v: &[f64]) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || dot4_f64_v3(simd, rows, v),
        );
    }
    dot4(rows, v)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot4_f64_v3(simd: pulp::x86::V3, rows: [&[f64]; 4], v: &[f64]) -> [f64; 4] {
    use pulp::{Simd, cast, f64x4};
    let n = v.len();
    let rows = rows.map(|r| &r[..n]);
    let load = |s: &[f64], i: usize| -> f64x4 {
        cast::<[f64; 4], f64x4>(s[i..i + 4].try_into().expect("four lanes"))
    };
    let full = n / 8 * 8;
    // Lanes 0-3 and 4-7 of each row.
    let mut lanes = [[simd.splat_f64s(0.0); 2]; 4];
    let mut i = 0;
    while i < full {
        let (x0, x1) = (load(v, i), load(v, i + 4));
        for ([l0, l1], r) in lanes.iter_mut().zip(rows) {
            *l0 = simd.add_f64s(*l0, simd.mul_f64s(load(r, i), x0));
            *l1 = simd.add_f64s(*l1, simd.mul_f64s(load(r, i + 4), x1));
        }
        i += 8;
    }
    finish_rows(lanes.map(cast::<[f64x4; 2], [f64; 8]>), rows, v, full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::View;
    use crate::kernels::sum_axis;

    /// `fast` (a `dot4` in explicit vectors) against the generic loop and `dot`, bit for
    /// bit, with magnitudes spread over many binades so that any change in the order of
    /// the additions changes bits. On a processor with AVX2 this runs the explicit
    /// vectors; elsewhere both sides are the generic loop.
    fn explicit_dot4_is_the_generic_sum<T: Float>(fast: fn([&[T]; 4], &[T]) -> [T; 4]) {
        let value =
            |i: usize| T::from_f64(((i as f64 * 0.37).sin() * 1e3).powi((i % 5) as i32 - 2));
        for n in [0, 1, 7, 8, 9, 16, 31, 64, 100, 129] {
            let rows: Vec<Vec<T>> = (0..4)
                .map(|r| (0..n + r).map(|i| value(i * 4 + r)).collect())
                .collect();
            let v: Vec<T> = (0..n).map(|i| value(i + 1000)).collect();
            let rows = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
            let got = fast(rows, &v);
            let generic = dot4::<T>(rows, &v);
            for r in 0..4 {
                assert_eq!(
                    got[r].as_f64().to_bits(),
                    generic[r].as_f64().to_bits(),
                    "n {n}"
                );
                let one = dot(&rows[r][..n], &v);
                assert_eq!(got[r].as_f64().to_bits(), one.as_f64().to_bits(), "n {n}");
            }
        }
        let (inf, zero, one) = ([T::infinity(); 8], [T::zero(); 8], [T::one(); 8]);
        let v = [1.0, -1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0].map(T::from_f64);
        let out = fast([&inf, &zero, &inf, &one], &v);
        assert!(out[0].is_nan() && out[1] == T::zero() && out[2].is_nan());
        assert_eq!(out[3], T::from_f64(5.0));
    }

    #[test]
    fn f32_dot4_in_vectors_is_the_generic_sum() {
        explicit_dot4_is_the_generic_sum::<f32>(dot4_f32);
    }

    #[test]
    fn f64_dot4_in_vectors_is_the_generic_sum() {
        explicit_dot4_is_the_generic_sum::<f64>(dot4_f64);
    }

    /// Four rows summed side by side give each row's `sum_lanes` bit for bit, in the
    /// explicit vectors and the generic loop; and `sum_axis` over the last axis with
    /// a row count that is not a multiple of four.
    #[test]
    fn sum4_is_sum_lanes_bit_for_bit() {
        fn check<T: Float>() {
            for n in [0, 1, 7, 8, 9, 16, 31, 100] {
                // Magnitudes far apart, so that any change of order changes the bits.
                let rows: Vec<Vec<T>> = (0..4)
                    .map(|r| {
                        (0..n)
                            .map(|i| {
                                let e = ((i * 7 + r * 3) % 11) as i32 - 5;
                                T::from_f64((1.0 + 0.1 * i as f64) * 10f64.powi(e))
                            })
                            .collect()
                    })
                    .collect();
                let four = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
                let bits = |v: T| v.as_f64().to_bits();
                let want = four.map(|r| bits(sum_lanes(r, |v| v)));
                assert_eq!(T::sum4(four).map(bits), want, "{} n = {n}", T::NAME);
                assert_eq!(sum4_lanes(four).map(bits), want, "{} n = {n}", T::NAME);
                if n == 0 {
                    // `sum_axis` gives an empty sum +0 before any loop runs.
                    continue;
                }
                // Seven rows: one group of four, then three alone.
                let x: Vec<T> = [rows.concat(), rows[..3].concat()].concat();
                let mut out = vec![T::nan(); 7];
                sum_axis(View::new(&[7, n], &x), 1, &mut out);
                let got: Vec<u64> = out.iter().map(|&v| bits(v)).collect();
                assert_eq!(got, [&want[..], &want[..3]].concat(), "{} n = {n}", T::NAME);
            }
            // A row of −0 sums to −0, as `sum_lanes` has it.
            let z = [T::neg_zero(); 9];
            assert!(
                T::sum4([&z, &z, &z, &z])
                    .iter()
                    .all(|v| v.is_sign_negative())
            );
        }
        check::<f32>();
        check::<f64>();
    }

    #[test]
    fn sums_in_lanes_keep_the_plain_sum_below_eight_and_are_accurate_above() {
        for n in 0..8 {
            let x: Vec<f32> = (0..n).map(|i| 0.1 + i as f32 * 0.37).collect();
            let plain: f32 = x.iter().copied().sum();
            assert_eq!(sum_lanes(&x, |v| v).to_bits(), plain.to_bits(), "n = {n}");
            assert_eq!(sum_all(&x).to_bits(), plain.to_bits(), "n = {n}");
        }
        assert!(sum_all::<f32>(&[-0.0, -0.0]).is_sign_negative());
        // A million values near 1: the plain f32 sum drifts, the cascade does not.
        let x: Vec<f32> = (0..1_000_003).map(|i| 1.0 + (i % 7) as f32 * 0.1).collect();
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let got = f64::from(sum_all(&x));
        assert!((got - exact).abs() / exact < 1e-6, "{got} vs {exact}");
        let mut lanes_dot = dot_lanes(&x[..100], &x[..100]);
        lanes_dot -= x[..100].iter().map(|v| v * v).sum::<f32>();
        assert!(lanes_dot.abs() < 1e-3);
    }
}
