//! Matrix products of a small batch against a wide layer, without packing: a few rows
//! of `x` (or of the output's gradient `g`) against a wide weight, as `x·Wᵀ` (the
//! forward pass of a layer with `W [out, in]`; up to 32 rows, [`dot_rows`]) and `g·W`
//! (the input's gradient; up to 32 rows against 1024 columns or more). The `gemm`
//! crate packs the weight into blocks on every call; with so few rows to reuse each
//! packed block, packing costs about as much as the product, which is bound by reading
//! the weight once from memory (`docs/GEMM.md`, "Small sides"). These loops read every
//! operand where it lies, in fused multiply-adds on `pulp`'s vectors ([`Lanes`]),
//! and only where the processor fuses them in hardware.
//!
//! Two forms, each computing every element of the result by the same operations
//! wherever it falls in a tile or a thread's block, so the result does not depend on
//! the number of threads:
//! - [`axpy_product`], for `b` stored `[k, n]`: a tile of rows of `c` gathers
//!   `Σ_p a[i, p]·b[p, j..]` over `p` in order, one chain of fused multiply-adds per
//!   element, the same bits on every processor;
//! - [`dot_product`], for `b` stored `[n, k]` (transposed): each element is a dot
//!   product of two contiguous rows, its bits set by the vector width.
//!
//! Work is split across rayon's threads by blocks of columns of `c` only, never along
//! the sum. The weight gradient `gᵀ·x` (a short sum over the batch) stays with the
//! `gemm` crate, which measured faster there.

use crate::Float;

/// Columns of `c` a block of [`axpy_product`] is a multiple of: the widest tile's (four
/// vectors of 16 `f32`).
const AXPY_NR: usize = 64;
/// Rows of `c` in one tile of [`axpy_product`].
const AXPY_MR: usize = 4;
/// Rows of `a` in one tile of [`dot_product`].
const DOT_MR: usize = 2;
/// Rows of `b` (columns of `c`) in one tile of [`dot_product`].
const DOT_NR: usize = 4;

/// Rows of `c` at or below which [`small_gemm`] takes an `x·Wᵀ` with a short sum
/// ([`dot_rows`]); it takes twice as many for `g·W` and for a longer sum (at 48 and 64
/// rows the `gemm` crate measured as fast or faster, `docs/GEMM.md`).
const SMALL_ROWS: usize = 16;
/// Columns of `c` from which [`small_gemm`] takes a `g·W` product (at 512 it measured
/// slower than the `gemm` crate).
const AXPY_MIN_COLS: usize = 1024;
/// Below this many multiply-adds the `gemm` crate keeps the product, whatever its
/// shape: small products are where the existing tests and snapshots live, and there
/// packing is cheap.
const SMALL_GEMM_MIN_VOLUME: usize = 1 << 18;

/// `c = op(a) op(b) + beta c` (the contract of [`gemm()`](super::gemm())) when the
/// product has a small side and a layout these loops cover; returns `false`, having
/// done nothing, otherwise. `threads`: rayon threads to split over (`None`: the pool).
#[allow(clippy::too_many_arguments)]
pub(crate) fn small_gemm<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
    threads: Option<usize>,
) -> bool {
    let Some(form) = choose::<T>(ta, tb, m, k, n) else {
        return false;
    };
    small_gemm_as(form, a, b, m, k, n, beta, c, threads);
    true
}

/// Which loops take `op(a)[m, k] op(b)[k, n]`, if any.
fn choose<T: Float>(ta: bool, tb: bool, m: usize, k: usize, n: usize) -> Option<Form> {
    let volume = m.saturating_mul(k).saturating_mul(n);
    if volume < SMALL_GEMM_MIN_VOLUME {
        return None;
    }
    match (ta, tb) {
        // g·W (and x·W with W [in, out]): few rows of c, a wide b. Up to 32 rows against
        // 1024 columns or more these loops beat the `gemm` crate on both kernel sets
        // (0.39-1.01 of its time from 4 to 32 rows; at 512 columns and 16 rows or more
        // its AVX-512 kernels were up to 1.4x faster; docs/GEMM.md).
        (false, false)
            if m <= 2 * SMALL_ROWS && n >= AXPY_MIN_COLS && crate::simd::fused_in_hardware() =>
        {
            Some(Form::Axpy)
        }
        // x·Wᵀ (W [out, in]): few rows of c, both operands contiguous along the sum.
        (false, true) if m <= dot_rows::<T>(k) && crate::simd::fused_in_hardware() => {
            Some(Form::Dot)
        }
        _ => None,
    }
}

/// The most rows of `a` [`Form::Dot`] takes for a sum of `k` terms, where it measured
/// faster than the `gemm` crate on both kernel sets, one thread and two, against
/// weights of 512 to 2048 rows and 300 to 2048 columns (`docs/GEMM.md`, "Small sides
/// in fused vectors"):
/// - `f32`: 16 rows; 32 when the sum has 512 terms or more (at 24 and 32 rows with
///   300 terms the crate's AVX-512 kernels were up to 1.2x faster; at 48 and 64 rows
///   they were faster from 300 to 784 terms, level beyond);
/// - `f64`: 8 rows (at 16 the crate's AVX-512 kernels were 1.05-1.34x faster).
fn dot_rows<T>(k: usize) -> usize {
    match (size_of::<T>(), k) {
        (8, _) => 8,
        (_, 512..) => 2 * SMALL_ROWS,
        _ => SMALL_ROWS,
    }
}

/// [`small_gemm`]'s product by the loops of `form` (`b` stored `[k, n]` for
/// [`Form::Axpy`], `[n, k]` for [`Form::Dot`]).
#[allow(clippy::too_many_arguments)]
fn small_gemm_as<T: Float>(
    form: Form,
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
    threads: Option<usize>,
) {
    let volume = m.saturating_mul(k).saturating_mul(n);
    let s = Shape { m, k, n };
    let threads = if volume < super::gemm::PARALLEL_GEMM_VOLUME {
        1
    } else {
        threads.unwrap_or_else(rayon::current_num_threads).max(1)
    };
    let c = &mut c[..m * n];
    let nr = match form {
        Form::Axpy => AXPY_NR,
        Form::Dot => DOT_NR,
    };
    // Blocks of whole tiles, as many as threads (fewer when n is narrow: every block
    // starts inside the matrix).
    let tiles = n.div_ceil(nr);
    let tiles_per_block = tiles.div_ceil(threads.min(tiles));
    let blocks = tiles.div_ceil(tiles_per_block);
    if blocks <= 1 {
        run(form, a, b, &s, beta, 0, n, &mut RowsOf::Whole(c, n));
        return;
    }
    let per = tiles_per_block * nr;
    // Each block's columns of every row of c, as disjoint slices.
    let mut parts: Vec<Vec<&mut [T]>> = (0..blocks).map(|_| Vec::with_capacity(m)).collect();
    for row in c.chunks_exact_mut(n) {
        let mut rest = row;
        for part in parts.iter_mut() {
            let (head, tail) = rest.split_at_mut(per.min(rest.len()));
            part.push(head);
            rest = tail;
        }
    }
    rayon::scope(|scope| {
        for (i, part) in parts.into_iter().enumerate() {
            let s = &s;
            let j0 = i * per;
            let j1 = (j0 + per).min(n);
            scope.spawn(move |_| {
                let mut part = part;
                run(form, a, b, s, beta, j0, j1, &mut RowsOf::Parts(&mut part));
            });
        }
    });
}

/// Which loops a product takes.
#[derive(Clone, Copy)]
enum Form {
    Axpy,
    Dot,
}

/// The extents of a product: `a` is `[m, k]`; `b` is `[k, n]` for [`Form::Axpy`],
/// `[n, k]` for [`Form::Dot`].
struct Shape {
    m: usize,
    k: usize,
    n: usize,
}

/// Rows of `c` a block writes: the whole matrix (row length given), or one slice per
/// row holding the block's columns.
enum RowsOf<'a, 'b, T> {
    Whole(&'a mut [T], usize),
    Parts(&'a mut [&'b mut [T]]),
}

impl<T> RowsOf<'_, '_, T> {
    /// Row `i`'s elements of the block, the first being column `j0` of `c`.
    #[inline(always)]
    fn row(&mut self, i: usize, j0: usize) -> &mut [T] {
        match self {
            RowsOf::Whole(c, n) => &mut c[i * *n + j0..(i + 1) * *n],
            RowsOf::Parts(rows) => rows[i],
        }
    }
}

/// Columns `j0..j1` of `c`, in vector instructions where the processor has them.
#[allow(clippy::too_many_arguments)]
fn run<T: Float>(
    form: Form,
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    j0: usize,
    j1: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    crate::simd::with_simd(Block {
        form,
        a,
        b,
        s,
        beta,
        j0,
        j1,
        c,
    });
}

/// [`run`]'s arguments, run by [`with_simd`](crate::simd::with_simd) in the vector
/// instructions it chooses.
struct Block<'x, 'r, 'c, T> {
    form: Form,
    a: &'x [T],
    b: &'x [T],
    s: &'x Shape,
    beta: T,
    j0: usize,
    j1: usize,
    c: &'x mut RowsOf<'r, 'c, T>,
}

impl<T: Float> pulp::WithSimd for Block<'_, '_, '_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Block {
            form,
            a,
            b,
            s,
            beta,
            j0,
            j1,
            c,
        } = self;
        match form {
            // Four vectors a row with 32 registers of 64 bytes (AVX-512): 16 sums, the
            // four vectors of `b` and a broadcast; two with 16 registers (AVX2).
            Form::Axpy if size_of::<S::f32s>() >= 64 => {
                axpy_product::<S, T, 4>(simd, a, b, s, beta, j0, j1, c)
            }
            Form::Axpy => axpy_product::<S, T, 2>(simd, a, b, s, beta, j0, j1, c),
            Form::Dot => dot_product(simd, a, b, s, beta, j0, j1, c),
        }
    }
}

#[inline(always)]
fn scale<T: Float>(x: T, beta: T) -> T {
    if beta == T::zero() {
        T::zero()
    } else {
        x * beta
    }
}

/// Visits the tiles of rows `0..m` by columns `j0..j1` (`mr × nr` ones, then the
/// narrower ones of the edges), each block of columns for every row tile in turn: the
/// block of the large operand `b` is read from memory once, then from cache.
#[inline(always)]
fn for_each_tile(
    m: usize,
    j0: usize,
    j1: usize,
    mr: usize,
    nr: usize,
    mut tile: impl FnMut(usize, usize, bool, bool),
) {
    let (mfull, jfull) = (m / mr * mr, j0 + (j1 - j0) / nr * nr);
    let mut j = j0;
    while j < j1 {
        let wide = j < jfull;
        let mut i = 0;
        while i < mfull {
            tile(i, j, true, wide);
            i += mr;
        }
        for i in mfull..m {
            tile(i, j, false, wide);
        }
        j += if wide { nr } else { 1 };
    }
}

/// Terms of the sum a tile of [`axpy_product`] adds before it stores its sums and
/// goes on with the next columns: the rows of `b` it walks stay in the TLB and the
/// level-1 cache for the next row tile.
const AXPY_KC: usize = 128;

/// `c[i, j] = beta c[i, j] + Σ_p a[i, p]·b[p, j]` for columns `j0..j1`, `b` stored
/// `[k, n]`, by tiles of [`AXPY_MR`] rows of `c` and `NV` vectors of `S` along them.
/// Every element is one chain of fused multiply-adds, `beta c + a₀b₀`, then `+ a₁b₁`,
/// and so on in the order of `p`, whichever tile holds it (the narrow tiles of the
/// edges run the same chain in scalars); the sum is cut into blocks of [`AXPY_KC`]
/// terms, each block adding into `c`, which leaves that chain unchanged.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn axpy_product<S: pulp::Simd, T: Float, const NV: usize>(
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

/// `c[i, j] = beta c[i, j] + Σ_p a[i, p]·b[j, p]` for columns `j0..j1`, `a` stored
/// `[m, k]` and `b` `[n, k]`, by tiles of [`DOT_MR`] rows of `a` and [`DOT_NR`] of `b`
/// (eight sums in registers, six operands loaded for eight multiply-adds), and the
/// narrower tiles of the edges. Each element is a dot product in `simd`'s vectors, the
/// same whichever tile holds it ([`dot_tile`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dot_product<S: pulp::Simd, T: Float>(
    simd: S,
    a: &[T],
    b: &[T],
    s: &Shape,
    beta: T,
    j0: usize,
    j1: usize,
    c: &mut RowsOf<'_, '_, T>,
) {
    const MR: usize = DOT_MR;
    const NR: usize = DOT_NR;
    for_each_tile(
        s.m,
        j0,
        j1,
        MR,
        NR,
        #[inline(always)]
        |i, j, rows, cols| match (rows, cols) {
            (true, true) => dot_tile::<S, T, MR, NR>(simd, a, b, s, beta, i, j, j0, c),
            (true, false) => dot_tile::<S, T, MR, 1>(simd, a, b, s, beta, i, j, j0, c),
            (false, true) => dot_tile::<S, T, 1, NR>(simd, a, b, s, beta, i, j, j0, c),
            (false, false) => dot_tile::<S, T, 1, 1>(simd, a, b, s, beta, i, j, j0, c),
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

/// The vector operations of [`dot_product`] and [`axpy_product`] for `f32` and `f64`,
/// through `pulp` (a supertrait of [`Float`], unnameable outside this module).
pub trait Lanes: Sized + Copy {
    /// A vector of `S` of this type.
    type Vector<S: pulp::Simd>: Copy;
    /// Elements in a [`Lanes::Vector`].
    fn lanes<S: pulp::Simd>() -> usize;
    /// `x` in every lane.
    fn splat<S: pulp::Simd>(simd: S, x: Self) -> Self::Vector<S>;
    /// `a·b + c` lane by lane, rounded once.
    fn fused_mul_add<S: pulp::Simd>(
        simd: S,
        a: Self::Vector<S>,
        b: Self::Vector<S>,
        c: Self::Vector<S>,
    ) -> Self::Vector<S>;
    /// `a·b` lane by lane.
    fn mul_lanes<S: pulp::Simd>(simd: S, a: Self::Vector<S>, b: Self::Vector<S>)
    -> Self::Vector<S>;
    /// `x` as whole vectors and the elements after them.
    fn vectors<S: pulp::Simd>(x: &[Self]) -> (&[Self::Vector<S>], &[Self]);
    /// [`Lanes::vectors`] of a mutable slice.
    fn vectors_mut<S: pulp::Simd>(x: &mut [Self]) -> (&mut [Self::Vector<S>], &mut [Self]);
    /// `x` (shorter than a vector) followed by zeros.
    fn partial_load<S: pulp::Simd>(simd: S, x: &[Self]) -> Self::Vector<S>;
    /// The sum of the lanes, in `pulp`'s order.
    fn reduce_sum<S: pulp::Simd>(simd: S, x: Self::Vector<S>) -> Self;
}

/// [`Lanes`] for one element type, `pulp`'s operations on its vectors by name.
macro_rules! lanes {
    ($t:ty, $vec:ident, $lanes:ident, $splat:ident, $mul_add:ident, $mul:ident, $as_simd:ident,
     $as_mut_simd:ident, $partial_load:ident, $reduce_sum:ident) => {
        impl Lanes for $t {
            type Vector<S: pulp::Simd> = S::$vec;
            #[inline(always)]
            fn lanes<S: pulp::Simd>() -> usize {
                S::$lanes
            }
            #[inline(always)]
            fn splat<S: pulp::Simd>(simd: S, x: $t) -> S::$vec {
                simd.$splat(x)
            }
            #[inline(always)]
            fn fused_mul_add<S: pulp::Simd>(
                simd: S,
                a: S::$vec,
                b: S::$vec,
                c: S::$vec,
            ) -> S::$vec {
                simd.$mul_add(a, b, c)
            }
            #[inline(always)]
            fn mul_lanes<S: pulp::Simd>(simd: S, a: S::$vec, b: S::$vec) -> S::$vec {
                simd.$mul(a, b)
            }
            #[inline(always)]
            fn vectors<S: pulp::Simd>(x: &[$t]) -> (&[S::$vec], &[$t]) {
                S::$as_simd(x)
            }
            #[inline(always)]
            fn vectors_mut<S: pulp::Simd>(x: &mut [$t]) -> (&mut [S::$vec], &mut [$t]) {
                S::$as_mut_simd(x)
            }
            #[inline(always)]
            fn partial_load<S: pulp::Simd>(simd: S, x: &[$t]) -> S::$vec {
                simd.$partial_load(x)
            }
            #[inline(always)]
            fn reduce_sum<S: pulp::Simd>(simd: S, x: S::$vec) -> $t {
                simd.$reduce_sum(x)
            }
        }
    };
}

lanes!(
    f32,
    f32s,
    F32_LANES,
    splat_f32s,
    mul_add_f32s,
    mul_f32s,
    as_simd_f32s,
    as_mut_simd_f32s,
    partial_load_f32s,
    reduce_sum_f32s
);
lanes!(
    f64,
    f64s,
    F64_LANES,
    splat_f64s,
    mul_add_f64s,
    mul_f64s,
    as_simd_f64s,
    as_mut_simd_f64s,
    partial_load_f64s,
    reduce_sum_f64s
);

// Not under Miri: large products, and these loops hold no `unsafe` code.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use crate::View;
    use crate::kernels::swap_axes;
    use crate::kernels::testing::{naive, wave};

    /// The loops for `b` stored `[n, k]` (`tb`) or `[k, n]`: the tests run both forms
    /// whichever [`choose`] would pick on this build and processor.
    fn form_of(tb: bool) -> Form {
        if tb { Form::Dot } else { Form::Axpy }
    }

    /// The two layouts this path takes, on shapes that are multiples of no tile (rows
    /// 1 to 16, sums not a multiple of eight), with NaN in an overwritten `c` and both
    /// betas, in f32 and f64, against the naive product; and the layouts and shapes it
    /// leaves to the `gemm` crate are refused.
    #[test]
    fn small_products_match_naive_in_both_layouts() {
        fn check<T: Float>(m: usize, k: usize, n: usize) {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
            let want = naive(&a, &b, m, k, n);
            let mut bt = vec![0.0; k * n];
            swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
            let cast = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x)).collect() };
            let (a, b, bt) = (cast(&a), cast(&b), cast(&bt));
            let tol = if T::NAME == "f32" { 2e-3 } else { 1e-11 };
            for (tb, bd) in [(false, &b), (true, &bt)] {
                let mut c = vec![T::nan(); m * n];
                small_gemm_as(form_of(tb), &a, bd, m, k, n, T::zero(), &mut c, None);
                let mut acc = vec![T::from_f64(0.5); m * n];
                small_gemm_as(form_of(tb), &a, bd, m, k, n, T::one(), &mut acc, None);
                for i in 0..m * n {
                    let (x, y) = (c[i].as_f64(), acc[i].as_f64());
                    assert!(
                        (x - want[i]).abs() < tol,
                        "{m}x{k}x{n} tb={tb}: {x} {}",
                        want[i]
                    );
                    assert!(
                        (y - want[i] - 0.5).abs() < tol,
                        "{m}x{k}x{n} tb={tb} accumulate"
                    );
                }
            }
        }
        for &(m, k, n) in &[
            (16, 261, 1029),
            (13, 100, 1030),
            (1, 300, 1100),
            (5, 67, 1031),
        ] {
            check::<f32>(m, k, n);
            check::<f64>(m, k, n);
        }
        let (a, b) = (vec![1f32; 64 * 512], vec![1f32; 512 * 2048]);
        let mut c = vec![0f32; 64 * 2048];
        // Taken where the processor fuses multiply-adds: an x·Wᵀ of 16 rows, of 32 rows
        // with a sum of 512 terms (but not 33 rows, nor 17 with 511 terms); in f64 of
        // 8 rows, not 9. A g·W of up to 32 rows against 1024 columns.
        let fused = crate::simd::fused_in_hardware();
        for (rows, k, taken) in [(16, 512, true), (32, 512, true), (33, 512, false)] {
            assert_eq!(
                small_gemm(&a, false, &b, true, rows, k, 1024, 0.0, &mut c, None),
                taken && fused,
                "{rows}x{k}"
            );
        }
        assert!(!small_gemm(
            &a, false, &b, true, 17, 511, 1024, 0.0, &mut c, None
        ));
        let (a64, b64) = (vec![1f64; 16 * 512], vec![1f64; 512 * 1024]);
        let mut c64 = vec![0f64; 16 * 1024];
        for (rows, taken) in [(8, true), (9, false)] {
            assert_eq!(
                small_gemm(
                    &a64, false, &b64, true, rows, 512, 1024, 0.0, &mut c64, None
                ),
                taken && fused,
                "f64 {rows} rows"
            );
        }
        for (rows, taken) in [(16, true), (32, true), (33, false)] {
            assert_eq!(
                small_gemm(&a, false, &b, false, rows, 512, 1024, 0.0, &mut c, None),
                taken && fused,
                "g·W of {rows} rows"
            );
        }
        // A g·W narrower than 1024 columns; a transposed a; a tiny product.
        assert!(!small_gemm(
            &a, false, &b, false, 16, 512, 1000, 0.0, &mut c, None
        ));
        assert!(!small_gemm(
            &a, true, &b, false, 16, 512, 1024, 0.0, &mut c, None
        ));
        assert!(!small_gemm(
            &a, false, &b, true, 16, 8, 1024, 0.0, &mut c, None
        ));
    }

    /// An element of `x·Wᵀ` is the same bits whichever tile computes it: the whole
    /// product (full tiles, and the narrower ones of the edges) against each row of
    /// `a` times each row of `b` alone (a 1 × 1 tile), in f32 and f64, with sums that
    /// end in a partial vector and one that does not.
    #[test]
    fn dot_elements_do_not_depend_on_the_tile() {
        fn check<T: Float>(m: usize, k: usize, n: usize) {
            let (a, b) = (
                wave::<T>(m * k, 0.37, f64::sin),
                wave::<T>(n * k, 0.71, f64::cos),
            );
            let mut whole = vec![T::zero(); m * n];
            small_gemm_as(Form::Dot, &a, &b, m, k, n, T::zero(), &mut whole, Some(1));
            for i in 0..m {
                for j in 0..n {
                    let mut one = [T::zero()];
                    let (a, b) = (&a[i * k..(i + 1) * k], &b[j * k..(j + 1) * k]);
                    small_gemm_as(Form::Dot, a, b, 1, k, 1, T::zero(), &mut one, Some(1));
                    assert_eq!(
                        one[0].as_f64().to_bits(),
                        whole[i * n + j].as_f64().to_bits(),
                        "{} {m}x{k}x{n} at ({i}, {j})",
                        T::NAME
                    );
                }
            }
        }
        for &(m, k, n) in &[(7, 300, 11), (5, 64, 9), (3, 5, 6)] {
            check::<f32>(m, k, n);
            check::<f64>(m, k, n);
        }
    }

    /// An element of `g·W` is the same bits in a vector tile as in the scalar chain of
    /// an edge column: the whole product (tiles of four vectors and the columns after
    /// them) against each row of `a` times each column of `b` alone, in f32 and f64,
    /// with sums over several blocks of [`AXPY_KC`] terms and both betas.
    #[test]
    fn axpy_elements_do_not_depend_on_the_tile() {
        fn check<T: Float>(m: usize, k: usize, n: usize, beta: T) {
            let (a, b) = (
                wave::<T>(m * k, 0.37, f64::sin),
                wave::<T>(k * n, 0.71, f64::cos),
            );
            let c0: Vec<T> = (0..m * n).map(|i| T::from_f64((i as f64).sqrt())).collect();
            let mut whole = c0.clone();
            small_gemm_as(Form::Axpy, &a, &b, m, k, n, beta, &mut whole, Some(1));
            for i in 0..m {
                for j in 0..n {
                    let column: Vec<T> = (0..k).map(|p| b[p * n + j]).collect();
                    let mut one = [c0[i * n + j]];
                    let a = &a[i * k..(i + 1) * k];
                    small_gemm_as(Form::Axpy, a, &column, 1, k, 1, beta, &mut one, Some(1));
                    assert_eq!(
                        one[0].as_f64().to_bits(),
                        whole[i * n + j].as_f64().to_bits(),
                        "{} {m}x{k}x{n} at ({i}, {j})",
                        T::NAME
                    );
                }
            }
        }
        for &(m, k, n) in &[(6, 300, 70), (1, 129, 33)] {
            check::<f32>(m, k, n, 0.0);
            check::<f32>(m, k, n, 1.0);
            check::<f64>(m, k, n, 0.0);
            check::<f64>(m, k, n, 1.0);
        }
    }

    /// Any number of threads gives the bits of one: the blocks split the columns of
    /// `c`, and every element is summed by the same operations in any block.
    #[test]
    fn split_small_products_match_one_thread_bit_for_bit() {
        // All above PARALLEL_GEMM_VOLUME (2^22). The last: five column tiles of `x·Wᵀ`
        // for up to 7 threads.
        for &(m, k, n) in &[(16, 300, 1100), (7, 600, 1031), (16, 26_300, 10)] {
            let volume = m * k * n;
            assert!(
                volume >= super::super::gemm::PARALLEL_GEMM_VOLUME,
                "{volume}"
            );
            let a: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i as f32) * 0.71).cos()).collect();
            for tb in [false, true] {
                if !tb && n < AXPY_MIN_COLS {
                    continue;
                }
                let run = |threads: usize| {
                    let mut c = vec![0.5f32; m * n];
                    small_gemm_as(form_of(tb), &a, &b, m, k, n, 1.0, &mut c, Some(threads));
                    c
                };
                let one = run(1);
                for threads in [2, 3, 4, 7] {
                    let many = run(threads);
                    assert!(
                        one.iter()
                            .zip(&many)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m}x{k}x{n} tb={tb} on {threads} threads"
                    );
                }
            }
        }
    }
}
