//! Matrix products with a small side: a batch against a wide layer, with loops of our
//! own. A few rows of `x` (or of the output's gradient `g`) against a wide weight, as
//! `x·Wᵀ` (the forward pass of a layer with `W [out, in]`; up to 32 or 64 rows,
//! [`dot_rows`]) and `g·W` (the input's gradient; up to 32 rows against 1024 columns or
//! more, rows of `W` a multiple of 4 KiB long); and the weight gradient `gᵀ·x`, a sum
//! over a batch of up to 32 into a wide `c`. The `gemm`
//! crate packs both operands into blocks on every call; with so few rows to reuse each
//! packed block, packing costs about as much as the product, which is bound by reading
//! the weight (or writing the weight gradient) once from memory (`docs/GEMM.md`, "Small
//! sides"). These loops use fused multiply-adds on `pulp`'s vectors ([`Lanes`]), and
//! run only where the processor fuses them in hardware.
//!
//! Three forms, each computing every element of the result by the same operations
//! wherever it falls in a tile or a thread's block, so the result does not depend on
//! the number of threads:
//! - [`axpy_product`], for `b` stored `[k, n]` (`g·W`): a tile of rows of `c` gathers
//!   `Σ_p a[i, p]·b[p, j..]` over `p` in order, one chain of fused multiply-adds per
//!   element, the same bits on every processor; `b` is copied a panel at a time into
//!   strips the row tiles share;
//! - [`outer_product`], for `a` stored `[k, m]` (`gᵀ·x`): the same tiles and chains,
//!   with `b` copied once and `c` walked row tile by row tile;
//! - [`dot_product`], for `b` stored `[n, k]` (transposed): each element is a dot
//!   product of two contiguous rows, read where they lie, its bits set by the vector
//!   width.
//!
//! Work is split across rayon's threads by blocks of columns of `c` (by blocks of rows
//! for [`outer_product`]), never along the sum.
//!
//! This file chooses the form and splits the work; `axpy.rs` and `dot.rs` hold the
//! forms' tiles, `lanes.rs` the vector operations they share.

mod axpy;
mod dot;
mod lanes;

use crate::Float;
use axpy::{AXPY_MR, OUTER_MAX_K, axpy_product, outer_product};
use dot::dot_product;
pub use lanes::Lanes;

/// Columns of `c` a block of [`axpy_product`] is a multiple of: the widest tile's (four
/// vectors of 16 `f32`).
const AXPY_NR: usize = 64;
/// Rows of `b` (columns of `c`) in one tile of [`dot_product`].
const DOT_NR: usize = 4;

/// Rows of `c` at or below which [`small_gemm`] takes an `x·Wᵀ` with a short sum
/// ([`dot_rows`]); it takes twice as many for `g·W` and for a longer sum (at 48 and 64
/// rows the `gemm` crate measured as fast or faster, `docs/GEMM.md`).
const SMALL_ROWS: usize = 16;
/// Columns of `c` from which [`small_gemm`] takes a `g·W` product (at 512 it measured
/// slower than the `gemm` crate).
const AXPY_MIN_COLS: usize = 1024;
/// Columns of `c` from which [`small_gemm`] takes a `gᵀ·x` product.
const OUTER_MIN_COLS: usize = 256;
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
        // its AVX-512 kernels were up to 1.4x faster; docs/GEMM.md), when b's rows lie a
        // multiple of 4 KiB apart: then they share the sets of the level-1 cache (64 sets
        // of 64 bytes on both vendors), which slows the crate's packing more than these
        // loops' (AMD Zen 3: 0.48-0.87 of its time at 1024 and 2048 columns; 1.03-1.25 at
        // 1100, 1200, 1500, 1536 and 2000, level at 1280).
        (false, false)
            if m <= 2 * SMALL_ROWS
                && n >= AXPY_MIN_COLS
                && (n * size_of::<T>()).is_multiple_of(4096)
                && crate::simd::fused_in_hardware() =>
        {
            Some(Form::Axpy)
        }
        // gᵀ·x: a short sum (the batch) into a large c.
        (true, false)
            if k <= OUTER_MAX_K && n >= OUTER_MIN_COLS && crate::simd::fused_in_hardware() =>
        {
            Some(Form::Outer)
        }
        // x·Wᵀ (W [out, in]): few rows of c, both operands contiguous along the sum.
        (false, true) if m <= dot_rows::<T>(k) && crate::simd::fused_in_hardware() => {
            Some(Form::Dot)
        }
        _ => None,
    }
}

/// The most rows of `a` [`Form::Dot`] takes for a sum of `k` terms, where it measured
/// faster than the `gemm` crate, one thread and two, against weights of 512 to 2048 rows
/// and 300 to 2048 columns (`docs/GEMM.md`, "Small sides in fused vectors", and "Small
/// sides on AMD Zen 3"):
/// - `f32`: 16 rows; 32 when the sum has 512 terms or more (at 24 and 32 rows with 300
///   terms the crate's AVX-512 kernels were up to 1.2x faster; at 48 and 64 rows they
///   were faster from 300 to 784 terms, level beyond); 64 rows with 512 terms or more
///   where the crate runs AVX2 kernels on x86-64 (on AMD Zen 3 these loops took
///   0.61-1.09 of the crate's time there, 0.61-0.79 at 1024 terms);
/// - `f64`: 8 rows (at 16 the crate's AVX-512 kernels were 1.05-1.34x faster).
fn dot_rows<T>(k: usize) -> usize {
    match (size_of::<T>(), k) {
        (8, _) => 8,
        (_, 512..) if wide_dot_rows() => 4 * SMALL_ROWS,
        (_, 512..) => 2 * SMALL_ROWS,
        _ => SMALL_ROWS,
    }
}

/// Whether [`dot_rows`] takes up to 64 rows of a long sum: on x86-64 when the products
/// run AVX2 kernels, where that was measured.
fn wide_dot_rows() -> bool {
    cfg!(target_arch = "x86_64") && !crate::kernels::loops_use_avx512()
}

/// [`small_gemm`]'s product by the loops of `form` (`b` stored `[k, n]` for
/// [`Form::Axpy`] and [`Form::Outer`], `[n, k]` for [`Form::Dot`]; `a` stored `[k, m]`
/// for [`Form::Outer`], `[m, k]` otherwise).
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
    let threads = if !super::gemm::splits(volume) {
        1
    } else {
        super::gemm::sharing_threads(volume, threads.unwrap_or_else(rayon::current_num_threads))
    };
    let c = &mut c[..m * n];
    if let Form::Outer = form {
        // Blocks of whole rows of c, each streaming through its own part of memory.
        let per = m.div_ceil(threads).next_multiple_of(AXPY_MR);
        if per >= m {
            run_outer(a, b, &s, beta, 0, m, c);
            return;
        }
        rayon::scope(|scope| {
            for (block, c) in c.chunks_mut(per * n).enumerate() {
                let s = &s;
                let i0 = block * per;
                let i1 = i0 + c.len() / n;
                scope.spawn(move |_| run_outer(a, b, s, beta, i0, i1, c));
            }
        });
        return;
    }
    let nr = match form {
        Form::Axpy => AXPY_NR,
        Form::Outer => unreachable!("gᵀ·x is split by rows, above"),
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
#[derive(Clone, Copy, Debug)]
enum Form {
    Axpy,
    Outer,
    Dot,
}

/// The extents of a product: `op(a)` is `[m, k]` (`a` stored `[k, m]` for
/// [`Form::Outer`]); `b` is `[k, n]` for [`Form::Axpy`] and [`Form::Outer`], `[n, k]`
/// for [`Form::Dot`].
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

/// Rows `i0..i1` of a [`Form::Outer`] product (`c` holding just those rows), in vector
/// instructions where the processor has them.
fn run_outer<T: Float>(a: &[T], b: &[T], s: &Shape, beta: T, i0: usize, i1: usize, c: &mut [T]) {
    crate::simd::with_simd(OuterRows {
        a,
        b,
        s,
        beta,
        i0,
        i1,
        c,
    });
}

/// [`run_outer`]'s arguments, run by [`with_simd`](crate::simd::with_simd).
struct OuterRows<'x, T> {
    a: &'x [T],
    b: &'x [T],
    s: &'x Shape,
    beta: T,
    i0: usize,
    i1: usize,
    c: &'x mut [T],
}

impl<T: Float> pulp::WithSimd for OuterRows<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let OuterRows {
            a,
            b,
            s,
            beta,
            i0,
            i1,
            c,
        } = self;
        if size_of::<S::f32s>() >= 64 {
            outer_product::<S, T, 4>(simd, a, b, s, beta, i0, i1, c)
        } else {
            outer_product::<S, T, 2>(simd, a, b, s, beta, i0, i1, c)
        }
    }
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
            Form::Outer => unreachable!("gᵀ·x runs by rows, in run_outer"),
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
/// block of the large operand `b` is read from memory once, then from cache. `tile`
/// gets the tile's first row and column, whether it has all `mr` rows (or one), and
/// its columns: `nr`, or fewer for the last, at the edge.
#[inline(always)]
fn for_each_tile(
    m: usize,
    j0: usize,
    j1: usize,
    mr: usize,
    nr: usize,
    mut tile: impl FnMut(usize, usize, bool, usize),
) {
    let mfull = m / mr * mr;
    let mut j = j0;
    while j < j1 {
        let width = nr.min(j1 - j);
        let mut i = 0;
        while i < mfull {
            tile(i, j, true, width);
            i += mr;
        }
        for i in mfull..m {
            tile(i, j, false, width);
        }
        j += width;
    }
}

// Not under Miri: large products, and these loops hold no `unsafe` code.
#[cfg(all(test, not(miri)))]
mod tests;
