//! `g·W`: `b` stored `[k, n]`, each element of `c` one chain of fused multiply-adds in
//! the order of the sum, in vector tiles and, at the edges, in scalars.

use super::{RowsOf, Shape, for_each_tile, scale};
use crate::Float;

/// Rows of `c` in one tile of [`axpy_product`].
const AXPY_MR: usize = 4;

/// Terms of the sum a tile of [`axpy_product`] adds before it stores its sums and
/// goes on with the next columns: the rows of `b` it walks stay in the TLB and the
/// level-1 cache for the next row tile.
pub(super) const AXPY_KC: usize = 128;

/// `c[i, j] = beta c[i, j] + Σ_p a[i, p]·b[p, j]` for columns `j0..j1`, `b` stored
/// `[k, n]`, by tiles of [`AXPY_MR`] rows of `c` and `NV` vectors of `S` along them.
/// Every element is one chain of fused multiply-adds, `beta c + a₀b₀`, then `+ a₁b₁`,
/// and so on in the order of `p`, whichever tile holds it (the narrow tiles of the
/// edges run the same chain in scalars); the sum is cut into blocks of [`AXPY_KC`]
/// terms, each block adding into `c`, which leaves that chain unchanged.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn axpy_product<S: pulp::Simd, T: Float, const NV: usize>(
    simd: S,
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    j0: usize,
    j1: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    let nr = NV * T::lanes::<S>();
    let mut p0 = 0;
    while p0 < s.k {
        let p1 = (p0 + AXPY_KC).min(s.k);
        let beta = if p0 == 0 { beta } else { T::one() };
        for_each_tile(
            s.m,
            j0,
            j1,
            AXPY_MR,
            nr,
            #[inline(always)]
            |i, j, rows, cols| match (rows, cols) {
                (true, true) => {
                    axpy_tile::<S, T, AXPY_MR, NV>(simd, a, b, s, beta, p0, p1, i, j, j0, c)
                }
                (false, true) => axpy_tile::<S, T, 1, NV>(simd, a, b, s, beta, p0, p1, i, j, j0, c),
                (rows, false) => {
                    let rows = if rows { AXPY_MR } else { 1 };
                    for r in i..i + rows {
                        axpy_column(a, b, s, beta, p0, p1, r, j, j0, c);
                    }
                }
            },
        );
        p0 = p1;
    }
}

/// One `MR`-row, `NV`-vector tile of [`axpy_product`] at row `i`, column `j` of `c`,
/// terms `p0..p1` of the sum.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn axpy_tile<S: pulp::Simd, T: Float, const MR: usize, const NV: usize>(
    simd: S,
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    p0: usize,
    p1: usize,
    i: usize,
    j: usize,
    j0: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    let width = NV * T::lanes::<S>();
    let zero = T::splat(simd, T::zero());
    let mut acc = [[zero; NV]; MR];
    if beta != T::zero() {
        let beta = T::splat(simd, beta);
        for (r, acc) in acc.iter_mut().enumerate() {
            let (cv, _) = T::vectors::<S>(&c.row(i + r, j0)[j - j0..j - j0 + width]);
            for (acc, &cv) in acc.iter_mut().zip(cv) {
                *acc = T::mul_lanes(simd, cv, beta);
            }
        }
    }
    let mut ar: [&[T]; MR] = [&[]; MR];
    for (r, ar) in ar.iter_mut().enumerate() {
        *ar = &a[(i + r) * s.k + p0..(i + r) * s.k + p1];
    }
    for p in 0..p1 - p0 {
        let row = (p0 + p) * s.n + j;
        let (bv, _) = T::vectors::<S>(&b[row..row + width]);
        let mut y = [zero; NV];
        for (y, &bv) in y.iter_mut().zip(bv) {
            *y = bv;
        }
        for (acc, ar) in acc.iter_mut().zip(&ar) {
            let x = T::splat(simd, ar[p]);
            for (acc, &y) in acc.iter_mut().zip(&y) {
                *acc = T::fused_mul_add(simd, x, y, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let (cv, _) = T::vectors_mut::<S>(&mut c.row(i + r, j0)[j - j0..j - j0 + width]);
        for (cv, &acc) in cv.iter_mut().zip(acc) {
            *cv = acc;
        }
    }
}

/// Column `j` of row `r` of [`axpy_product`], terms `p0..p1`: the chain of a vector
/// lane in scalars.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn axpy_column<T: Float>(
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    p0: usize,
    p1: usize,
    r: usize,
    j: usize,
    j0: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    let x = &mut c.row(r, j0)[j - j0];
    let mut acc = scale(*x, beta);
    for p in p0..p1 {
        acc = a[r * s.k + p].mul_add(b[p * s.n + j], acc);
    }
    *x = acc;
}
