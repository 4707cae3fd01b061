//! `x·Wᵀ`: `b` stored `[n, k]`, each element of `c` the dot product of two contiguous
//! rows, summed in the lanes of a vector.

use super::{DOT_NR, RowsOf, Shape, for_each_tile, scale};
use crate::Float;

/// Rows of `a` in one tile of [`dot_product`].
const DOT_MR: usize = 2;

/// `c[i, j] = beta c[i, j] + Σ_p a[i, p]·b[j, p]` for columns `j0..j1`, `a` stored
/// `[m, k]` and `b` `[n, k]`, by tiles of [`DOT_MR`] rows of `a` and [`DOT_NR`] of `b`
/// (eight sums in registers, six operands loaded for eight multiply-adds), and the
/// narrower tiles of the edges. Each element is a dot product in `simd`'s vectors, the
/// same whichever tile holds it ([`dot_tile`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn dot_product<S: pulp::Simd, T: Float>(
    simd: S,
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    j0: usize,
    j1: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    for_each_tile(
        s.m,
        j0,
        j1,
        DOT_MR,
        DOT_NR,
        #[inline(always)]
        |i, j, rows, width| match (rows, width == DOT_NR) {
            (true, true) => dot_tile::<S, T, DOT_MR, DOT_NR>(simd, a, b, s, beta, i, j, j0, c),
            (false, true) => dot_tile::<S, T, 1, DOT_NR>(simd, a, b, s, beta, i, j, j0, c),
            (true, false) => {
                for j in j..j + width {
                    dot_tile::<S, T, DOT_MR, 1>(simd, a, b, s, beta, i, j, j0, c);
                }
            }
            (false, false) => {
                for j in j..j + width {
                    dot_tile::<S, T, 1, 1>(simd, a, b, s, beta, i, j, j0, c);
                }
            }
        },
    );
}

/// One `MR × NR` tile of [`dot_product`] at row `i`, column `j` of `c`: lane `l` of
/// a vector of `S` holds the chain of fused multiply-adds of the terms
/// `a[i + r, p]·b[j + q, p]` with `p ≡ l` modulo the lanes, in order (the last,
/// partial vector padded with zeros, which add nothing to a lane: it holds +0 or a sum
/// that is not −0); then `pulp` adds the lanes (by halves on x86-64), and the sum is
/// added to `beta c`. The result depends on the vector width of `S`, never on the
/// tile: the same for an element in any tile, block or thread.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dot_tile<S: pulp::Simd, T: Float, const MR: usize, const NR: usize>(
    simd: S,
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    i: usize,
    j: usize,
    j0: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    // Loops rather than `array::map`: a closure `map` does not inline runs without the
    // caller's vector instructions, each `pulp` operation then a call.
    let k = s.k;
    let mut av: [&[T::Vector<S>]; MR] = [&[]; MR];
    let mut at: [&[T]; MR] = [&[]; MR];
    for (r, (av, at)) in av.iter_mut().zip(&mut at).enumerate() {
        (*av, *at) = T::vectors::<S>(&a[(i + r) * k..(i + r + 1) * k]);
    }
    let mut bv: [&[T::Vector<S>]; NR] = [&[]; NR];
    let mut bt: [&[T]; NR] = [&[]; NR];
    for (q, (bv, bt)) in bv.iter_mut().zip(&mut bt).enumerate() {
        (*bv, *bt) = T::vectors::<S>(&b[(j + q) * k..(j + q + 1) * k]);
    }
    // Every row is as long, so every row has as many whole vectors.
    let vectors = av.first().map_or(0, |r| r.len());
    let zero = T::splat(simd, T::zero());
    let mut acc = [[zero; NR]; MR];
    for v in 0..vectors {
        let mut y = [zero; NR];
        for (y, bv) in y.iter_mut().zip(&bv) {
            *y = bv[v];
        }
        for (acc, av) in acc.iter_mut().zip(&av) {
            let x = av[v];
            for (acc, &y) in acc.iter_mut().zip(&y) {
                *acc = T::fused_mul_add(simd, x, y, *acc);
            }
        }
    }
    if at.first().is_some_and(|r| !r.is_empty()) {
        let mut y = [zero; NR];
        for (y, bt) in y.iter_mut().zip(&bt) {
            *y = T::partial_load(simd, bt);
        }
        for (acc, at) in acc.iter_mut().zip(&at) {
            let x = T::partial_load(simd, at);
            for (acc, &y) in acc.iter_mut().zip(&y) {
                *acc = T::fused_mul_add(simd, x, y, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = &mut c.row(i + r, j0)[j - j0..j - j0 + NR];
        for (x, &acc) in row.iter_mut().zip(acc) {
            *x = scale(*x, beta) + T::reduce_sum(simd, acc);
        }
    }
}
