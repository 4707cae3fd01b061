//! The wrapper around the `gemm` crate: one matrix product `c = op(a) op(b) + beta c`
//! on row-major slices, with unpacked loops for a vector operand, and two products
//! side by side.

use super::gemm_kernels::uses_avx512;
use super::sum::dot;
use crate::Float;
use gemm_common::Parallelism;

/// `c = op(a) op(b) + beta c` for row-major matrices, where `op` optionally transposes.
/// `a` is stored `[m, k]` (or `[k, m]` when `ta`), `b` is `[k, n]` (or `[n, k]`).
///
/// The multiply goes through the `gemm` crate, chosen over `matrixmultiply` by
/// measurement (`docs/GEMM.md`): 1.06–1.28× faster on one core on this project's
/// shapes, and it scales to a second core where `matrixmultiply` does not. Products of
/// a vector (`m`, `k` or `n` equal to 1) take an unpacked path here instead.
///
/// # Panics
/// If a slice is shorter than its matrix (`m·k`, `k·n`, `m·n` elements).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
) {
    gemm_on(a, ta, b, tb, m, k, n, beta, c, None, true);
}

/// [`gemm()`] always through the `gemm` crate (after the unpacked vector paths): the
/// path products with a small side took before `small_gemm`, kept for the benchmark
/// that compares the two (`crates/bench/benches/small_side.rs`).
///
/// ```
/// let (a, b, mut c) = ([1.0f32, 2.0], [3.0f32, 4.0], [0.0f32]);
/// descent_tensor::kernels::gemm_packed(&a, false, &b, false, 1, 2, 1, 0.0, &mut c);
/// assert_eq!(c, [11.0]);
/// ```
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
) {
    gemm_on(a, ta, b, tb, m, k, n, beta, c, None, false);
}

/// [`gemm()`] on at most `threads` of rayon's threads (`None`: all of the current pool).
#[allow(clippy::too_many_arguments)]
fn gemm_on<T: Float>(
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
    small_side: bool,
) {
    // The raw-pointer call below relies on these: checked always, not only in debug.
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm: slices of {}, {} and {} elements for {m}x{k} times {k}x{n}",
        a.len(),
        b.len(),
        c.len()
    );
    if k == 0 {
        // An empty sum: c = beta c (exactly zero for beta = 0, even over NaN).
        for x in &mut c[..m * n] {
            *x = scale_c(*x, beta);
        }
        return;
    }
    if m == 0 || n == 0 {
        return;
    }
    if gemm_thin(a, ta, b, tb, m, k, n, beta, c) {
        return;
    }
    if small_side && super::small_gemm::small_gemm(a, ta, b, tb, m, k, n, beta, c, threads) {
        return;
    }
    // Strides in elements, (row, column), of op(a) as [m, k] and op(b) as [k, n].
    let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
    // Small products never ask rayon for its pool (which would start it).
    let volume = m * n * k;
    let parallelism = if !splits(volume) {
        Parallelism::None
    } else {
        match sharing_threads(volume, threads.unwrap_or_else(rayon::current_num_threads)) {
            1 => Parallelism::None,
            t => Parallelism::Rayon(t),
        }
    };
    // The `gemm` crate enters rayon once per block of the sum and of the columns. From
    // a thread outside the pool each entry hands a job to the pool and puts the caller
    // to sleep until it is done: hundreds of context switches a step for W8, which
    // made two threads slower than one (`docs/PERFORMANCE.md`, "Entering the pool
    // once"). Moved onto a thread of the pool first, the product enters it once.
    if matches!(parallelism, Parallelism::Rayon(_)) && rayon::current_thread_index().is_none() {
        return rayon::scope(|_| gemm_on(a, ta, b, tb, m, k, n, beta, c, threads, small_side));
    }
    if tb && volume >= PARALLEL_GEMM_VOLUME && n >= 2 * COLUMN_BLOCK {
        let threads = match parallelism {
            Parallelism::Rayon(t) => t,
            Parallelism::None => 1,
        };
        return gemm_column_blocks(a, ta, b, m, k, n, beta, c, threads);
    }
    let ops = Operands {
        avx512: uses_avx512::<T>(ta, tb, m, k, n),
        a: a.as_ptr(),
        a_strides: (a_rs, a_cs),
        b: b.as_ptr(),
        b_strides: (b_rs, b_cs),
        c: c.as_mut_ptr(),
        ldc: n,
    };
    // SAFETY: the pointers and strides are those of the whole slices `a`, `b` and `c`,
    // which the assert above checked to hold `m·k`, `k·n` and `m·n` elements; `c` is
    // borrowed mutably, so it aliases neither `a` nor `b`.
    unsafe { ops.multiply(m, k, n, 0, n, beta, parallelism) };
}

/// The operands of one product as [`Operands::multiply`] reads them: row and column
/// strides in elements of `op(a)` as `[m, k]` and `op(b)` as `[k, n]`, and `c`
/// row-major with rows `ldc` apart.
#[derive(Clone, Copy)]
struct Operands<T> {
    /// Whether the product runs on the AVX-512 kernels (`gemm_kernels::uses_avx512`).
    avx512: bool,
    a: *const T,
    a_strides: (usize, usize),
    b: *const T,
    b_strides: (usize, usize),
    c: *mut T,
    ldc: usize,
}

// SAFETY: `Operands` is a set of addresses handed to the threads of one product: they
// all read `a` and `b` (so `T: Sync`) and each writes only its own columns of `c`
// ([`gemm_column_blocks`]; so `T: Send`), and the borrows the pointers came from
// outlive the scope the threads run in.
unsafe impl<T: Send + Sync> Send for Operands<T> {}
// SAFETY: as for `Send`: shared, it is only read (the addresses), never written.
unsafe impl<T: Send + Sync> Sync for Operands<T> {}

impl<T: Float> Operands<T> {
    /// `c[:, j0..j1] = op(a) op(b)[:, j0..j1] + beta c[:, j0..j1]` through the `gemm`
    /// crate.
    ///
    /// # Safety
    /// `a` must be valid for reads of `op(a)`'s `m·k` elements at offsets
    /// `i·a_rs + p·a_cs`, `b` of `op(b)`'s at `p·b_rs + j·b_cs` (j < n), `c` for reads
    /// and writes of `m` rows of `ldc ≥ n` elements, which nothing else reads or writes
    /// in columns `j0..j1` during the call, and `c` must alias neither `a` nor `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn multiply(
        self,
        m: usize,
        k: usize,
        n: usize,
        j0: usize,
        j1: usize,
        beta: T,
        parallelism: Parallelism,
    ) {
        debug_assert!(j0 <= j1 && j1 <= n && n <= self.ldc);
        let (a_rs, a_cs) = self.a_strides;
        let (b_rs, b_cs) = self.b_strides;
        // SAFETY: columns `j0..j1` of `op(b)` start `j0·b_cs` elements into `b` and of
        // `c` `j0` into `c`; the `gemm` crate then reads `op(a)` at `i·a_rs + p·a_cs`
        // (i < m, p < k), `op(b)` at `p·b_rs + (j0 + j)·b_cs` and writes `c` at
        // `i·ldc + j0 + j` (j < j1 - j0), all within what the caller vouched for; every
        // offset fits `isize` because the memory behind a pointer never spans more than
        // `isize::MAX` bytes. With `read_dst = false` (beta = 0) `c` is only written, so
        // NaN in it does not leak into the result, as for the empty sum above. The call
        // is exercised under Miri (`.ci/miri` runs this module's `gemm` tests).
        unsafe {
            super::gemm_kernels::gemm(
                self.avx512,
                m,
                j1 - j0,
                k,
                self.c.add(j0),
                1,
                self.ldc as isize,
                beta != T::zero(),
                self.a,
                a_cs as isize,
                a_rs as isize,
                self.b.add(j0 * b_cs),
                b_cs as isize,
                b_rs as isize,
                beta,
                T::one(),
                parallelism,
            );
        }
    }
}

/// Columns of `c` in one block of [`gemm_column_blocks`].
const COLUMN_BLOCK: usize = 128;

/// `c = op(a) b[n, k]ᵀ + beta c` (`x·Wᵀ`, a layer's forward pass with `W [out, in]`)
/// as products of blocks of [`COLUMN_BLOCK`] columns of `c` (rows of `W`), whatever
/// the number of threads, spread over `threads` threads. Handed the whole product, the
/// `gemm` crate packs the transposed operand on the calling thread before it splits
/// the work: with its AVX-512 kernels two threads then took as long as one (W3's
/// 128x784x512: 726 and 722 µs, `docs/PERFORMANCE.md`, "x·Wᵀ on two threads"). Each
/// block packs its own rows.
///
/// The blocks are the same on any number of threads, and each is one call of the
/// crate on one thread, so the results are the same bits on any number of threads
/// (`split_products_match_one_thread_bit_for_bit`). (Blocks as many as threads would
/// not be: a block of one column takes the crate's matrix-vector path, which sums in
/// another order.)
#[allow(clippy::too_many_arguments)]
fn gemm_column_blocks<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
    threads: usize,
) {
    let ops = Operands {
        avx512: uses_avx512::<T>(ta, true, m, k, n),
        a: a.as_ptr(),
        a_strides: if ta { (1, m) } else { (k, 1) },
        b: b.as_ptr(),
        b_strides: (1, k),
        c: c.as_mut_ptr(),
        ldc: n,
    };
    let blocks = n.div_ceil(COLUMN_BLOCK);
    // Blocks `g·per..(g + 1)·per` for each of at most `threads` groups.
    let per = blocks.div_ceil(threads.clamp(1, blocks));
    let group = move |g: usize| {
        for block in g * per..((g + 1) * per).min(blocks) {
            let (j0, j1) = (block * COLUMN_BLOCK, ((block + 1) * COLUMN_BLOCK).min(n));
            // SAFETY: the pointers are those of the whole slices, which `gemm_on`'s
            // assert checked to hold `m·k`, `n·k` and `m·n` elements (`b` is `[n, k]`);
            // `c` is borrowed mutably for the whole call, so it aliases neither
            // operand, and the blocks `j0..j1` are disjoint, so no other thread
            // touches these columns.
            unsafe { ops.multiply(m, k, n, j0, j1, beta, Parallelism::None) };
        }
    };
    let groups = blocks.div_ceil(per);
    if groups == 1 {
        group(0);
    } else {
        rayon::scope(|scope| {
            for g in 0..groups {
                scope.spawn(move |_| group(g));
            }
        });
    }
}

/// One product `c = op(a) op(b) + beta c` for [`gemm_pair`]; the fields are
/// [`gemm()`]'s arguments.
///
/// ```
/// use descent_tensor::kernels::Product;
/// let (a, b, mut c) = ([1.0, 2.0], [3.0, 4.0], [10.0]);
/// // [1, 2] @ [3, 4]ᵀ added into c (beta 1).
/// Product { a: &a, ta: false, b: &b, tb: false, m: 1, k: 2, n: 1, beta: 1.0, c: &mut c }
///     .compute();
/// assert_eq!(c, [21.0]);
/// ```
#[derive(Debug)]
pub struct Product<'a, T> {
    /// The left operand, `[m, k]` (or `[k, m]` when `ta`).
    pub a: &'a [T],
    /// Whether `a` is stored transposed.
    pub ta: bool,
    /// The right operand, `[k, n]` (or `[n, k]` when `tb`).
    pub b: &'a [T],
    /// Whether `b` is stored transposed.
    pub tb: bool,
    /// Rows of the result.
    pub m: usize,
    /// The summed extent.
    pub k: usize,
    /// Columns of the result.
    pub n: usize,
    /// The factor on the old contents of `c` (zero: overwrite).
    pub beta: T,
    /// The result, `[m, n]`.
    pub c: &'a mut [T],
}

impl<T: Float> Product<'_, T> {
    /// Computes the product, as [`gemm()`] does (see [`Product`] for an example).
    pub fn compute(self) {
        self.run(None);
    }

    fn run(self, threads: Option<usize>) {
        let Product {
            a,
            ta,
            b,
            tb,
            m,
            k,
            n,
            beta,
            c,
        } = self;
        gemm_on(a, ta, b, tb, m, k, n, beta, c, threads, true);
    }

    fn volume(&self) -> usize {
        self.m.saturating_mul(self.k).saturating_mul(self.n)
    }
}

/// Two independent products, such as the two gradients of one matrix product in
/// backward. When rayon has at least two threads and both products are large enough
/// (smaller ones than [`gemm()`] splits: 2^19 multiply-adds each on a thread of the
/// pool, 2^21 from outside it), they run at the same time, each on half the threads:
/// two whole products side by side scale better on two cores than one product split in
/// two, because each needs no synchronisation inside (`docs/GEMM.md`). The results are
/// the same bits either way, as [`gemm()`]'s are on any number of threads.
///
/// ```
/// use descent_tensor::kernels::{gemm_pair, Product};
/// let (a, b) = ([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0]);
/// let (mut c, mut d) = ([0.0; 4], [0.0; 4]);
/// gemm_pair(
///     Product { a: &a, ta: false, b: &b, tb: false, m: 2, k: 2, n: 2, beta: 0.0, c: &mut c },
///     Product { a: &a, ta: true, b: &b, tb: false, m: 2, k: 2, n: 2, beta: 0.0, c: &mut d },
/// );
/// assert_eq!(c, [1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(d, [1.0, 3.0, 2.0, 4.0]);
/// ```
///
/// # Panics
/// As [`gemm()`], if a slice is shorter than its matrix.
pub fn gemm_pair<T: Float>(x: Product<'_, T>, y: Product<'_, T>) {
    // Small products never ask rayon for its pool (which would start it).
    let smaller = x.volume().min(y.volume());
    let big = smaller >= PAIR_VOLUME_ON_POOL
        && smaller >= by_caller(PAIR_VOLUME_ON_POOL, PAIR_VOLUME_OUTSIDE);
    let threads = if big { rayon::current_num_threads() } else { 1 };
    if threads >= 2 {
        let half = threads / 2;
        rayon::join(|| x.run(Some(half)), || y.run(Some(threads - half)));
    } else {
        x.compute();
        y.compute();
    }
}

/// From this many multiply-adds each (`m·n·k`), the two products of [`gemm_pair`] called
/// on a thread of rayon's pool run side by side. A `join` there costs a few
/// microseconds: the other thread takes the second product if it is free, and the
/// caller runs it itself if not. Measured as [`SPLIT_VOLUME_ON_POOL`] was, with 30 µs of
/// other work after each pair: 32x64x256 (2^19) took 27 µs a pair on one thread and 17
/// on two, W8's 32x128x512 (2^21) 109 against 61; at 2^18, with no work between pairs,
/// one shape gained and another lost 5%.
const PAIR_VOLUME_ON_POOL: usize = 1 << 19;

/// [`PAIR_VOLUME_ON_POOL`] for a caller outside the pool, which hands the pair over to
/// the pool and sleeps until both are done. In the same measurement, 2^20 gained
/// nothing (52-60 µs a pair on either), 2^21 did (32x128x512: 113-119 against 86-87,
/// 64x128x256: 100-101 against 76-77).
const PAIR_VOLUME_OUTSIDE: usize = 1 << 21;

/// Whether [`gemm()`] splits a product of `volume` multiply-adds (`m·n·k`) across
/// threads, for the calling thread: from [`SPLIT_VOLUME_ON_POOL`] on a thread of rayon's
/// pool, from [`PARALLEL_GEMM_VOLUME`] outside it. Only the split depends on where the
/// caller runs, never which loops take the product: a product's bits are the same
/// either way. Smaller products are told apart without asking where the caller runs.
pub(crate) fn splits(volume: usize) -> bool {
    volume >= SPLIT_VOLUME_ON_POOL
        && volume >= by_caller(SPLIT_VOLUME_ON_POOL, PARALLEL_GEMM_VOLUME)
}

/// How many of rayon's threads share a batch of `count` products of `volume`
/// multiply-adds each, run side by side (1: one after another on the caller). Side by
/// side only when no product of the batch splits by itself and one product of the
/// batch's whole volume would: the same thresholds as [`splits`], and every share at
/// least [`MIN_SHARE_VOLUME`].
pub(crate) fn batch_shares(volume: usize, count: usize) -> usize {
    let total = volume.saturating_mul(count);
    if count < 2 || splits(volume) || !splits(total) {
        return 1;
    }
    sharing_threads(total, rayon::current_num_threads()).min(count)
}

/// `on_pool` when called on a thread of rayon's pool, `outside` elsewhere.
fn by_caller(on_pool: usize, outside: usize) -> usize {
    if rayon::current_thread_index().is_some() {
        on_pool
    } else {
        outside
    }
}

/// [`PARALLEL_GEMM_VOLUME`] for a caller on a thread of the pool, which hands half of a
/// product to the other threads without sleeping itself, and runs it itself if none is
/// free. Measured on two cores (`cargo bench -p descent-bench --bench layer_products`,
/// `docs/PERFORMANCE.md`, "Small products on two threads, on the pool"), with 30 µs of
/// other work after each forward product: 2^21 gained (W8's 32x128x512: 69 µs on one
/// thread, 40-47 on two; 64x128x256: 55 against 43-45). Split from 2^20 (a build for
/// the measurement), 32x128x256 took 35 and 55 µs in two runs against 35 unsplit.
pub(crate) const SPLIT_VOLUME_ON_POOL: usize = 1 << 21;

/// Below this many multiply-adds (`m·n·k`) a product called from outside rayon's pool
/// runs on one thread (on a thread of the pool, from 2^21): splitting a
/// smaller one costs more in rayon's overhead than it saves. Measured on two cores
/// (`docs/PERFORMANCE.md`, "Entering the pool once"): W8's 32x128x512 products (2^21)
/// took 64 µs on one thread and 69-87 µs split in two, and W8 on two threads took
/// 36-38 ms a step against 25 on one while they were split.
///
/// ```
/// assert_eq!(descent_tensor::kernels::PARALLEL_GEMM_VOLUME, 1 << 22);
/// ```
pub const PARALLEL_GEMM_VOLUME: usize = 1 << 22;

/// Multiply-adds a thread's share of a split product holds at least: 2^20, the smallest
/// share measured to pay (a 2^21 product split in two on a thread of the pool; split
/// in two, a 2^20 product gained nothing, `SPLIT_VOLUME_ON_POOL`). Without this floor
/// a product just past a threshold would be cut into as many shares as the pool has
/// threads, 2^18 each on eight. Measured on two threads only, where the floor changes
/// no split: on more, it keeps every share at a size that paid.
const MIN_SHARE_VOLUME: usize = 1 << 20;

/// How many of `available` threads share a split product of `volume` multiply-adds:
/// at most one per [`MIN_SHARE_VOLUME`], at least one. The bits do not depend on it.
pub(crate) fn sharing_threads(volume: usize, available: usize) -> usize {
    available.min(volume / MIN_SHARE_VOLUME).max(1)
}

#[inline(always)]
fn scale_c<T: Float>(x: T, beta: T) -> T {
    if beta == T::zero() {
        T::zero()
    } else {
        x * beta
    }
}

/// Matrix-vector and outer products without packing (matrixmultiply packs both
/// operands on every call, which dominates for a vector operand).
#[allow(clippy::too_many_arguments)]
fn gemm_thin<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
) -> bool {
    if n != 1 && k != 1 && m != 1 {
        return false;
    }
    crate::vectorized(
        #[inline(always)]
        || thin_products(a, ta, b, tb, m, k, n, beta, c),
    );
    true
}

/// [`gemm_thin`]'s loops, inlined into its vectorised closure; `m`, `k` or `n` is 1.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn thin_products<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
) {
    if n == 1 {
        let bv = &b[..k];
        if !ta {
            // Four rows at a time share each load of the vector and keep four times
            // as many independent sums in flight; each row's sum is `dot`'s, bit for
            // bit.
            let mut rows = a[..m * k].chunks_exact(4 * k);
            let mut out = c[..m].chunks_exact_mut(4);
            for (block, ci) in (&mut rows).zip(&mut out) {
                let (r01, r23) = block.split_at(2 * k);
                let (r0, r1) = r01.split_at(k);
                let (r2, r3) = r23.split_at(k);
                let d = T::dot4([r0, r1, r2, r3], bv);
                for (x, d) in ci.iter_mut().zip(d) {
                    *x = scale_c(*x, beta) + d;
                }
            }
            let done = m / 4 * 4;
            for i in done..m {
                let d = dot(&a[i * k..(i + 1) * k], bv);
                c[i] = scale_c(c[i], beta) + d;
            }
        } else {
            for x in &mut c[..m] {
                *x = scale_c(*x, beta);
            }
            for (p, &bp) in bv.iter().enumerate() {
                for (x, &y) in c[..m].iter_mut().zip(&a[p * m..(p + 1) * m]) {
                    *x += y * bp;
                }
            }
        }
    } else if k == 1 {
        let bv = &b[..n];
        for (i, &ai) in a[..m].iter().enumerate() {
            for (x, &y) in c[i * n..(i + 1) * n].iter_mut().zip(bv) {
                *x = scale_c(*x, beta) + ai * y;
            }
        }
    } else {
        let av = &a[..k];
        if !tb {
            for x in &mut c[..n] {
                *x = scale_c(*x, beta);
            }
            for (p, &ap) in av.iter().enumerate() {
                for (x, &y) in c[..n].iter_mut().zip(&b[p * n..(p + 1) * n]) {
                    *x += ap * y;
                }
            }
        } else {
            for j in 0..n {
                let d = dot(&b[j * k..(j + 1) * k], av);
                c[j] = scale_c(c[j], beta) + d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::View;
    use crate::kernels::swap_axes;
    use crate::kernels::testing::{naive, wave};

    #[test]
    fn gemm_matches_naive_with_transposes() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.7).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![f64::NAN; m * n];
        gemm(&a, false, &b, false, m, k, n, 0.0, &mut c);
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // aᵀ stored as [k, m]; bᵀ stored as [n, k].
        let mut at = vec![0.0; m * k];
        swap_axes::<f64, false>(View::new(&[m, k], &a), 0, 1, &mut at);
        let mut bt = vec![0.0; k * n];
        swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
        let mut c2 = vec![1.0; m * n];
        gemm(&at, true, &bt, true, m, k, n, 1.0, &mut c2);
        for (x, y) in c2.iter().zip(&want) {
            assert!((x - (y + 1.0)).abs() < 1e-12);
        }
    }

    /// Every layout the backward rules use (either operand transposed, overwrite and
    /// accumulate) on shapes that are not multiples of any tile, in both element
    /// types, against the naive product; slices longer than the matrices are fine.
    /// Small enough to run under Miri, which checks the raw-pointer call in `gemm`.
    #[test]
    fn gemm_layouts_match_naive() {
        fn check<T: Float>(m: usize, k: usize, n: usize) {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
            let want = naive(&a, &b, m, k, n);
            let mut at = vec![0.0; m * k];
            swap_axes::<f64, false>(View::new(&[m, k], &a), 0, 1, &mut at);
            let mut bt = vec![0.0; k * n];
            swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
            let cast = |v: &[f64]| -> Vec<T> {
                let mut out: Vec<T> = v.iter().map(|&x| T::from_f64(x)).collect();
                out.push(T::from_f64(99.0));
                out
            };
            let tol = if T::NAME == "f32" { 1e-4 } else { 1e-12 };
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let ad = cast(if ta { &at } else { &a });
                let bd = cast(if tb { &bt } else { &b });
                let mut c = vec![T::nan(); m * n + 1];
                gemm(&ad, ta, &bd, tb, m, k, n, T::zero(), &mut c);
                let mut acc = vec![T::from_f64(0.5); m * n];
                gemm(&ad, ta, &bd, tb, m, k, n, T::one(), &mut acc);
                for i in 0..m * n {
                    let (x, y) = (c[i].as_f64(), acc[i].as_f64());
                    assert!((x - want[i]).abs() < tol, "{m}x{k}x{n} ta={ta} tb={tb}");
                    assert!((y - want[i] - 0.5).abs() < tol, "{m}x{k}x{n} accumulate");
                }
                assert!(c[m * n].is_nan(), "{m}x{k}x{n}: wrote past the matrix");
            }
        }
        for &(m, k, n) in &[(2, 2, 2), (5, 7, 3), (3, 17, 9), (17, 9, 33), (9, 33, 2)] {
            check::<f32>(m, k, n);
            check::<f64>(m, k, n);
        }
    }

    #[test]
    fn matrix_vector_rows_in_blocks_of_four_sum_as_one_row_does() {
        // Every row of a matrix-vector product must be `dot`'s sum bit for bit, in a
        // block of four rows or in the tail, whatever the length (tails of 8 too).
        for m in 1..=9 {
            for k in [1, 7, 8, 13, 64, 67] {
                let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
                let v: Vec<f32> = (0..k).map(|i| (i as f32 * 0.71).cos()).collect();
                for beta in [0.0, 1.0, 0.5] {
                    let old: Vec<f32> = (0..m).map(|i| i as f32 - 2.5).collect();
                    let mut c = old.clone();
                    gemm(&a, false, &v, false, m, k, 1, beta, &mut c);
                    for i in 0..m {
                        let want = scale_c(old[i], beta) + dot(&a[i * k..(i + 1) * k], &v);
                        assert_eq!(c[i].to_bits(), want.to_bits(), "m {m} k {k} row {i}");
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "gemm: slices of 5, 6 and 4 elements for 2x3 times 3x2")]
    fn gemm_refuses_short_slices() {
        let mut c = [0.0f32; 4];
        gemm(&[1.0; 5], false, &[1.0; 6], false, 2, 3, 2, 0.0, &mut c);
    }

    /// The unpacked paths for a vector operand (m, k or n equal to 1), with every
    /// transpose and both betas, against the naive product.
    #[test]
    fn thin_products_match_naive() {
        for &(m, k, n) in &[
            (1, 5, 3),
            (4, 5, 1),
            (4, 1, 3),
            (1, 1, 3),
            (1, 9, 1),
            (3, 1, 1),
            (1, 17, 2),
            (19, 1, 2),
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
            let want = naive(&a, &b, m, k, n);
            let mut at = vec![0.0; m * k];
            swap_axes::<f64, false>(View::new(&[m, k], &a), 0, 1, &mut at);
            let mut bt = vec![0.0; k * n];
            swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let ad = if ta { &at } else { &a };
                let bd = if tb { &bt } else { &b };
                let mut c = vec![f64::NAN; m * n];
                gemm(ad, ta, bd, tb, m, k, n, 0.0, &mut c);
                let mut acc = vec![1.0; m * n];
                gemm(ad, ta, bd, tb, m, k, n, 1.0, &mut acc);
                for i in 0..m * n {
                    assert!(
                        (c[i] - want[i]).abs() < 1e-12,
                        "{m}x{k}x{n} ta={ta} tb={tb}"
                    );
                    assert!(
                        (acc[i] - want[i] - 1.0).abs() < 1e-12,
                        "{m}x{k}x{n} accumulate"
                    );
                }
            }
        }
    }

    #[test]
    fn a_split_product_gives_each_thread_at_least_min_share_volume() {
        // Two threads share a product from 2^21 on the pool, as they did before the
        // floor; eight share it only from 2^23.
        assert_eq!(sharing_threads(1 << 21, 2), 2);
        assert_eq!(sharing_threads(1 << 21, 8), 2);
        assert_eq!(sharing_threads((1 << 22) - 1, 8), 3);
        assert_eq!(sharing_threads(1 << 23, 8), 8);
        assert_eq!(sharing_threads(1 << 30, 8), 8);
        // Never fewer than one, whatever it is given.
        assert_eq!(sharing_threads(1 << 19, 8), 1);
        assert_eq!(sharing_threads(1 << 21, 0), 1);
        for volume in [SPLIT_VOLUME_ON_POOL, PARALLEL_GEMM_VOLUME] {
            assert!(volume / sharing_threads(volume, 64) >= MIN_SHARE_VOLUME);
        }
    }

    /// A product run on several threads gives the same bits as on one (`gemm` splits
    /// the output, never the sum over `k`), with and without transposed operands.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "too large for Miri; gemm_layouts_match_naive covers the call"
    )]
    fn split_products_match_one_thread_bit_for_bit() {
        fn check<T: Float>(m: usize, k: usize, n: usize) {
            assert!(
                m * k * n >= SPLIT_VOLUME_ON_POOL,
                "{m}x{k}x{n} would not be split"
            );
            let (a, b) = (
                wave::<T>(m * k, 0.37, f64::sin),
                wave::<T>(k * n, 0.71, f64::cos),
            );
            let layouts = [(false, false), (true, false), (false, true), (true, true)];
            for (ta, tb) in layouts {
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut c = vec![T::from_f64(0.5); m * n];
                    pool.install(|| gemm(&a, ta, &b, tb, m, k, n, T::one(), &mut c));
                    c
                };
                let one = run(1);
                for threads in [2, 3, 4, 8] {
                    let many = run(threads);
                    assert!(
                        one.iter()
                            .zip(&many)
                            .all(|(x, y)| x.as_f64().to_bits() == y.as_f64().to_bits()),
                        "{} {m}x{k}x{n} ta={ta} tb={tb} on {threads} threads",
                        T::NAME
                    );
                }
            }
        }
        // The first nine above PARALLEL_GEMM_VOLUME (2^22), with edges that are not
        // whole tiles; with `tb`, those of 256 columns or more go by column blocks
        // (`gemm_column_blocks`), also where `k` spans several of the crate's blocks
        // of the sum (1100) and where the last block is one column wide (257). A pool
        // larger than `volume / MIN_SHARE_VOLUME` runs that many shares (2 to 8 here).
        for &(m, k, n) in &[
            (256, 96, 192),
            (40, 384, 300),
            (130, 256, 129),
            (512, 160, 64),
            (128, 784, 512),
            (784, 128, 512),
            (64, 784, 512),
            (33, 1100, 700),
            (70, 300, 257),
            // Split only on the pool (2^21 to 2^22), where `pool.install` runs them.
            (32, 128, 512),
            (64, 128, 256),
            (48, 200, 300),
        ] {
            check::<f32>(m, k, n);
        }
        for &(m, k, n) in &[(128, 784, 512), (33, 1100, 700), (130, 256, 257)] {
            check::<f64>(m, k, n);
        }
    }

    /// The column blocks of `x·Wᵀ` on their own, small enough for Miri (which checks
    /// their raw pointers): against the naive product, overwriting and accumulating,
    /// with a last block narrower than the others.
    #[test]
    fn gemm_column_blocks_match_naive() {
        let (m, k, n) = (3, 5, 2 * COLUMN_BLOCK + 5);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut bt = vec![0.0; k * n];
        swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
        let mut at = vec![0.0; m * k];
        swap_axes::<f64, false>(View::new(&[m, k], &a), 0, 1, &mut at);
        for (ta, ad) in [(false, &a), (true, &at)] {
            for threads in [1, 2, 3] {
                let mut c = vec![f64::NAN; m * n];
                gemm_column_blocks(ad, ta, &bt, m, k, n, 0.0, &mut c, threads);
                let mut acc = vec![0.5; m * n];
                gemm_column_blocks(ad, ta, &bt, m, k, n, 1.0, &mut acc, threads);
                for i in 0..m * n {
                    assert!((c[i] - want[i]).abs() < 1e-12, "ta={ta}, {threads} threads");
                    assert!((acc[i] - want[i] - 0.5).abs() < 1e-12, "accumulate");
                }
            }
        }
    }

    /// The two gradients of a layer's product give the same bits whether `gemm_pair`
    /// runs them one after the other or side by side: called from outside the pool and
    /// from a thread of it, on one to four threads, for volumes on both sides of the
    /// pair's thresholds (2^19 on the pool, 2^21 outside) and of `gemm`'s own (2^22).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "too large for Miri; gemm_layouts_match_naive covers the call"
    )]
    fn pairs_give_the_same_bits_on_any_number_of_threads() {
        fn check<T: Float>(batch: usize, inp: usize, out: usize) {
            let x = wave::<T>(batch * inp, 0.37, f64::sin);
            let w = wave::<T>(out * inp, 0.71, f64::cos);
            let g = wave::<T>(batch * out, 0.53, f64::sin);
            // g·W overwrites the input's gradient; gᵀ·x adds into the weight's. `None`:
            // from this thread, outside every pool (rayon's global pool does the work).
            let run = |threads: Option<usize>| {
                let mut gx = vec![T::nan(); batch * inp];
                let mut gw = vec![T::from_f64(0.25); out * inp];
                let mut pair = || {
                    gemm_pair(
                        Product {
                            a: &g,
                            ta: false,
                            b: &w,
                            tb: false,
                            m: batch,
                            k: out,
                            n: inp,
                            beta: T::zero(),
                            c: &mut gx,
                        },
                        Product {
                            a: &g,
                            ta: true,
                            b: &x,
                            tb: false,
                            m: out,
                            k: batch,
                            n: inp,
                            beta: T::one(),
                            c: &mut gw,
                        },
                    )
                };
                match threads {
                    None => pair(),
                    Some(t) => rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .unwrap()
                        .install(pair),
                }
                (gx, gw)
            };
            let bits = |v: &[T]| v.iter().map(|x| x.as_f64().to_bits()).collect::<Vec<_>>();
            let (gx1, gw1) = {
                let mut gx = vec![T::nan(); batch * inp];
                let mut gw = vec![T::from_f64(0.25); out * inp];
                gemm(&g, false, &w, false, batch, out, inp, T::zero(), &mut gx);
                gemm(&g, true, &x, false, out, batch, inp, T::one(), &mut gw);
                (bits(&gx), bits(&gw))
            };
            for threads in [None, Some(1), Some(2), Some(4)] {
                let (gx, gw) = run(threads);
                assert!(
                    bits(&gx) == gx1 && bits(&gw) == gw1,
                    "{} {batch}x{inp}x{out} on a pool of {threads:?} threads (None: outside)",
                    T::NAME
                );
            }
        }
        for &(batch, inp, out) in &[
            (32, 64, 128),
            (32, 64, 256),
            (32, 128, 512),
            (16, 1024, 256),
            (32, 256, 512),
        ] {
            check::<f32>(batch, inp, out);
        }
        check::<f64>(32, 128, 512);
    }
}
