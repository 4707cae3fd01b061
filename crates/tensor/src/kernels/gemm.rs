//! The wrapper around the `gemm` crate: one matrix product `c = op(a) op(b) + beta c`
//! on row-major slices, with unpacked loops for a vector operand, and two products
//! side by side.

use super::sum::dot;
use crate::Float;

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
    let parallelism = if volume < PARALLEL_GEMM_VOLUME {
        ::gemm::Parallelism::None
    } else {
        match threads.unwrap_or_else(rayon::current_num_threads) {
            0 | 1 => ::gemm::Parallelism::None,
            t => ::gemm::Parallelism::Rayon(t),
        }
    };
    // The `gemm` crate enters rayon once per block of the sum and of the columns. From
    // a thread outside the pool each entry hands a job to the pool and puts the caller
    // to sleep until it is done: hundreds of context switches a step for W8, which
    // made two threads slower than one (`docs/PERFORMANCE.md`, "Entering the pool
    // once"). Moved onto a thread of the pool first, the product enters it once.
    if matches!(parallelism, ::gemm::Parallelism::Rayon(_))
        && rayon::current_thread_index().is_none()
    {
        return rayon::scope(|_| gemm_on(a, ta, b, tb, m, k, n, beta, c, threads, small_side));
    }
    // SAFETY: `gemm::gemm` reads `m·k` elements of `a` at offsets `i·a_rs + p·a_cs`
    // (i < m, p < k), `k·n` of `b` at `p·b_rs + j·b_cs`, and writes `m·n` of `c` at
    // `i·n + j`. The largest offsets are `m·k - 1`, `k·n - 1` and `m·n - 1`, within the
    // slices by the assert above; every offset fits `isize` because a slice never holds
    // more than `isize::MAX` bytes. `c` is borrowed mutably, so it aliases neither
    // `a` nor `b`. With `read_dst = false` (beta = 0) `c` is only written, so NaN in
    // it does not leak into the result, as for the empty sum above. The call is
    // exercised under Miri (`.ci/run`'s Miri step runs this module's `gemm` tests).
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != T::zero(),
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            beta,
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
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
/// backward. When both are large enough to be split and rayon has at least two
/// threads, they run at the same time, each on half the threads: two whole products
/// side by side scale better on two cores than one product split in two, because
/// each needs no synchronisation inside (`docs/GEMM.md`). The results are the same
/// bits either way, as [`gemm()`]'s are on any number of threads.
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
    let big = x.volume() >= PARALLEL_GEMM_VOLUME && y.volume() >= PARALLEL_GEMM_VOLUME;
    let threads = if big { rayon::current_num_threads() } else { 1 };
    if threads >= 2 {
        let half = threads / 2;
        rayon::join(|| x.run(Some(half)), || y.run(Some(threads - half)));
    } else {
        x.compute();
        y.compute();
    }
}

/// Below this many multiply-adds (`m·n·k`) a product runs on one thread: splitting a
/// smaller one costs more in rayon's overhead than it saves. Measured on two cores
/// (`docs/PERFORMANCE.md`, "Entering the pool once"): W8's 32x128x512 products (2^21)
/// took 64 µs on one thread and 69-87 µs split in two, and W8 on two threads took
/// 36-38 ms a step against 25 on one while they were split.
///
/// ```
/// assert_eq!(descent_tensor::kernels::PARALLEL_GEMM_VOLUME, 1 << 22);
/// ```
pub const PARALLEL_GEMM_VOLUME: usize = 1 << 22;

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
    use crate::kernels::testing::naive;

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

    /// A product run on several threads gives the same bits as on one (`gemm` splits
    /// the output, never the sum over `k`), with and without transposed operands.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "too large for Miri; gemm_layouts_match_naive covers the call"
    )]
    fn split_products_match_one_thread_bit_for_bit() {
        for &(m, k, n) in &[
            // All above PARALLEL_GEMM_VOLUME (2^22), with edges that are not whole tiles.
            (256, 96, 192),
            (40, 384, 300),
            (130, 256, 129),
            (512, 160, 64),
            (128, 784, 512),
            (784, 128, 512),
        ] {
            assert!(
                m * k * n >= PARALLEL_GEMM_VOLUME,
                "{m}x{k}x{n} would not be split"
            );
            let a: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i as f32) * 0.71).cos()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut c = vec![0.5f32; m * n];
                    pool.install(|| gemm(&a, ta, &b, tb, m, k, n, 1.0, &mut c));
                    c
                };
                let one = run(1);
                for threads in [2, 3, 4, 8] {
                    let many = run(threads);
                    assert!(
                        one.iter()
                            .zip(&many)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m}x{k}x{n} ta={ta} tb={tb} on {threads} threads"
                    );
                }
            }
        }
    }
}
