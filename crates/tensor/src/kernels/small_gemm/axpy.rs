//! `g·W`: `b` stored `[k, n]`, each element of `c` one chain of fused multiply-adds in
//! the order of the sum, in a lane of a vector tile (a partial vector at the edge).

use super::{RowsOf, Shape, for_each_tile};
use crate::Float;

/// Rows of `c` in one tile of [`axpy_product`] and [`outer_product`].
pub(super) const AXPY_MR: usize = 4;

/// Terms of the sum a tile of [`axpy_product`] adds before it stores its sums and
/// goes on with the next columns: the strip of `b` it walks stays in the level-1
/// cache for the next row tile (256, with panels of 128 KB, measured a little faster
/// than 128, 64 or 32 on AMD Zen 3, `docs/GEMM.md`).
pub(super) const AXPY_KC: usize = 256;

/// Bytes of `b` [`axpy_product`] copies at a time (a block's terms by some strips'
/// columns): a quarter of a level-2 cache of 512 KB.
const AXPY_PANEL_BYTES: usize = 128 << 10;

/// `c[i, j] = beta c[i, j] + Σ_p a[i, p]·b[p, j]` for columns `j0..j1`, `b` stored
/// `[k, n]`, by tiles of [`AXPY_MR`] rows of `c` and `NV` vectors of `S` along them.
/// Every element is one chain of fused multiply-adds, `beta c + a₀b₀`, then `+ a₁b₁`,
/// and so on in the order of `p`, in one lane of a vector, whichever tile holds it
/// (the edge's lanes past the last column sum zeros and are not stored); the sum is
/// cut into blocks of [`AXPY_KC`] terms, each block adding into `c`, which leaves that
/// chain unchanged. So an element is the same bits on every processor that fuses.
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
    // Every row tile reads the same strip of `b` (a block's terms by a tile's columns).
    // In `b` the strip's rows lie `n` elements apart, a power of two in most layers, so
    // they fall in the same few sets of the caches and evict each other before the next
    // row tile comes; and read a strip at a time, `b` streams from memory in short
    // pieces the processor does not prefetch. So with more than one row tile, a panel
    // (whole strips, as many as fit in AXPY_PANEL_BYTES) is first copied, row by row of
    // `b`, into consecutive strips, in a buffer the thread keeps from call to call.
    let panel = (AXPY_PANEL_BYTES / (AXPY_KC * size_of::<T>())).max(nr) / nr * nr;
    let pack = s.m > AXPY_MR && j1 - j0 >= nr;
    let mut scratch = if pack {
        T::take_scratch(s.k.min(AXPY_KC) * panel.min((j1 - j0) / nr * nr))
    } else {
        Vec::new()
    };
    let packed = &mut scratch[..];
    let mut p0 = 0;
    while p0 < s.k {
        let p1 = (p0 + AXPY_KC).min(s.k);
        let beta = if p0 == 0 { beta } else { T::one() };
        let mut q0 = j0;
        while q0 < j1 {
            let q1 = (q0 + panel).min(j1);
            if pack {
                pack_panel::<S, T, NV>(b, s.n, p0, p1, q0, q1, packed);
            }
            for_each_tile(
                s.m,
                q0,
                q1,
                AXPY_MR,
                nr,
                #[inline(always)]
                |i, j, rows, width| {
                    if width < nr {
                        // The edge, from `b` itself: whole vectors, then one partial.
                        let strip = Strip {
                            b: &b[p0 * s.n + j..],
                            stride: s.n,
                        };
                        if rows {
                            axpy_edge::<S, T, AXPY_MR>(
                                simd, a, strip, s, beta, p0, p1, i, j, j0, width, c,
                            )
                        } else {
                            axpy_edge::<S, T, 1>(
                                simd, a, strip, s, beta, p0, p1, i, j, j0, width, c,
                            )
                        }
                        return;
                    }
                    let strip = if !pack {
                        Strip {
                            b: &b[p0 * s.n + j..],
                            stride: s.n,
                        }
                    } else {
                        let at = (j - q0) / nr * (p1 - p0) * nr;
                        Strip {
                            b: &packed[at..],
                            stride: nr,
                        }
                    };
                    if rows {
                        axpy_tile::<S, T, AXPY_MR, NV>(simd, a, strip, s, beta, p0, p1, i, j, j0, c)
                    } else {
                        axpy_tile::<S, T, 1, NV>(simd, a, strip, s, beta, p0, p1, i, j, j0, c)
                    }
                },
            );
            q0 = q1;
        }
        p0 = p1;
    }
    if pack {
        T::keep_scratch(scratch);
    }
}

/// Where a tile reads its columns of `b`: term `p0 + t` at `b[t * stride..]`.
#[derive(Clone, Copy)]
struct Strip<'b, T> {
    b: &'b [T],
    stride: usize,
}

/// Copies rows `p0..p1` of `b` (row length `n`), columns `q0..q1`, into `packed` as
/// consecutive strips as wide as `NV` vectors, each `p1 - p0` rows of that width; the
/// columns after the last whole strip are left out ([`axpy_edge`] reads them from
/// `b`).
#[inline(always)]
fn pack_panel<S: pulp::Simd, T: Float, const NV: usize>(
    b: &[T],
    n: usize,
    p0: usize,
    p1: usize,
    q0: usize,
    q1: usize,
    packed: &mut [T],
) {
    let width = NV * T::lanes::<S>();
    let strip_len = (p1 - p0) * width;
    let strips = (q1 - q0) / width;
    for p in p0..p1 {
        let row = &b[p * n + q0..p * n + q0 + strips * width];
        for (t, from) in row.chunks_exact(width).enumerate() {
            let at = t * strip_len + (p - p0) * width;
            let (from, _) = T::vectors::<S>(from);
            let (to, _) = T::vectors_mut::<S>(&mut packed[at..at + width]);
            for (to, &from) in to.iter_mut().zip(from) {
                *to = from;
            }
        }
    }
}

/// One `MR`-row, `NV`-vector tile of [`axpy_product`] at row `i`, column `j` of `c`,
/// terms `p0..p1` of the sum, reading `b` from `strip`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn axpy_tile<S: pulp::Simd, T: Float, const MR: usize, const NV: usize>(
    simd: S,
    a: &[T],
    strip: Strip<'_, T>,
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
        let row = p * strip.stride;
        let (bv, _) = T::vectors::<S>(&strip.b[row..row + width]);
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

/// The last `width` columns (fewer than a whole tile's) of `MR` rows of
/// [`axpy_product`] at row `i`, column `j` of `c`, terms `p0..p1`: one-vector tiles,
/// then the last columns in a partial vector.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn axpy_edge<S: pulp::Simd, T: Float, const MR: usize>(
    simd: S,
    a: &[T],
    strip: Strip<'_, T>,
    s: &Shape,
    beta: T,
    p0: usize,
    p1: usize,
    i: usize,
    j: usize,
    j0: usize,
    width: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    let lanes = T::lanes::<S>();
    let whole = width / lanes * lanes;
    for v in (0..whole).step_by(lanes) {
        let strip = Strip {
            b: &strip.b[v..],
            stride: strip.stride,
        };
        axpy_tile::<S, T, MR, 1>(simd, a, strip, s, beta, p0, p1, i, j + v, j0, c);
    }
    if whole == width {
        return;
    }
    let (j, width) = (j + whole, width - whole);
    let strip = Strip {
        b: &strip.b[whole..],
        stride: strip.stride,
    };
    // Lanes past `width` sum zeros and are never stored.
    let mut acc = [T::splat(simd, T::zero()); MR];
    if beta != T::zero() {
        let beta = T::splat(simd, beta);
        for (r, acc) in acc.iter_mut().enumerate() {
            let cv = T::partial_load(simd, &c.row(i + r, j0)[j - j0..j - j0 + width]);
            *acc = T::mul_lanes(simd, cv, beta);
        }
    }
    let mut ar: [&[T]; MR] = [&[]; MR];
    for (r, ar) in ar.iter_mut().enumerate() {
        *ar = &a[(i + r) * s.k + p0..(i + r) * s.k + p1];
    }
    for p in 0..p1 - p0 {
        let row = p * strip.stride;
        let y = T::partial_load(simd, &strip.b[row..row + width]);
        for (acc, ar) in acc.iter_mut().zip(&ar) {
            *acc = T::fused_mul_add(simd, T::splat(simd, ar[p]), y, *acc);
        }
    }
    for (r, &acc) in acc.iter().enumerate() {
        T::partial_store(simd, &mut c.row(i + r, j0)[j - j0..j - j0 + width], acc);
    }
}

/// Most terms of the sum [`outer_product`] takes: the batch of a weight gradient.
pub(super) const OUTER_MAX_K: usize = 32;

/// `c[i, j] = beta c[i, j] + Σ_p a[p, i]·b[p, j]` for rows `i0..i1` of `c` (`c` holds
/// just those rows), with `a` stored `[k, m]` (the output's gradient, for the weight
/// gradient `gᵀ·x`), `b` `[k, n]` and a short sum (`k ≤ OUTER_MAX_K`), by the tiles of
/// [`axpy_product`], so each element is the same one fused chain. With a short sum and
/// a large `c` the order is turned round: `b` is copied once into strips, then each row
/// tile of `c` walks along its rows, and `c` streams through the cache once.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn outer_product<S: pulp::Simd, T: Float, const NV: usize>(
    simd: S,
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    i0: usize,
    i1: usize,
    c: &mut [T],
) {
    let (nr, k, n) = (NV * T::lanes::<S>(), s.k, s.n);
    let edge = n / nr * nr;
    let mut scratch = T::take_scratch(k * edge + AXPY_MR * k);
    let (packed, rows) = scratch.split_at_mut(k * edge);
    pack_panel::<S, T, NV>(b, n, 0, k, 0, edge, packed);
    let mut i = i0;
    while i < i1 {
        let mr = if i + AXPY_MR <= i1 { AXPY_MR } else { 1 };
        // Rows i.. of aᵀ, gathered from their columns of `a` once for all their tiles.
        for p in 0..k {
            for r in 0..mr {
                rows[r * k + p] = a[p * s.m + i + r];
            }
        }
        let tile = Shape { m: mr, k, n };
        let c = &mut RowsOf::Whole(&mut c[(i - i0) * n..(i - i0 + mr) * n], n);
        if mr == AXPY_MR {
            outer_rows::<S, T, AXPY_MR, NV>(simd, rows, packed, b, &tile, beta, c);
        } else {
            outer_rows::<S, T, 1, NV>(simd, rows, packed, b, &tile, beta, c);
        }
        i += mr;
    }
    T::keep_scratch(scratch);
}

/// One row tile of [`outer_product`]: `MR` rows of `c` (`tile.m`), their terms in
/// `rows` (`tile.k` a row), across the strips in `packed`, then the edge from `b`.
#[inline(always)]
fn outer_rows<S: pulp::Simd, T: Float, const MR: usize, const NV: usize>(
    simd: S,
    rows: &[T],
    packed: &[T],
    b: &[T],
    tile: &Shape,
    beta: T,
    c: &mut RowsOf<'_, '_, T>,
) {
    let (nr, k, n) = (NV * T::lanes::<S>(), tile.k, tile.n);
    let mut j = 0;
    for strip in packed.chunks_exact(k * nr) {
        let strip = Strip {
            b: strip,
            stride: nr,
        };
        axpy_tile::<S, T, MR, NV>(simd, rows, strip, tile, beta, 0, k, 0, j, 0, c);
        j += nr;
    }
    if j < n {
        let strip = Strip {
            b: &b[j..],
            stride: n,
        };
        axpy_edge::<S, T, MR>(simd, rows, strip, tile, beta, 0, k, 0, j, 0, n - j, c);
    }
}
