//! Our own loops compiled for the processor they run on.
//!
//! A release build targets baseline x86-64 (SSE2) unless told otherwise, so a plain
//! loop runs four `f32` lanes at a time even where AVX2 offers eight. [`vectorized`]
//! chooses at run time, through `pulp` (which `gemm` already uses for its kernels).

/// Runs `f` compiled for the vector instructions this processor offers: AVX-512 where
/// the matrix products use it ([`GemmKernels`](crate::GemmKernels)), else AVX2 and FMA
/// on x86-64 where present (checked once and cached), else the baseline.
///
/// Only code inlined into `f` gains: a loop written in the closure, or a function it
/// calls marked `#[inline(always)]`. Floating-point results are the same bit for bit
/// on every path: Rust neither reassociates additions nor fuses a multiply and an add
/// unless asked (`mul_add`), so wider registers run the same operations in the same
/// order.
///
/// ```
/// let x = [1.0f32, 2.0, 3.0];
/// let mut y = [0.5f32; 3];
/// descent_tensor::vectorized(|| {
///     for (y, &x) in y.iter_mut().zip(&x) {
///         *y += 2.0 * x;
///     }
/// });
/// assert_eq!(y, [2.5, 4.5, 6.5]);
/// ```
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    with_simd(f)
}

/// Runs `op` with the vector instructions [`vectorized`] would choose, handing it
/// `pulp`'s token for them, for loops written in explicit vectors.
#[inline(always)]
pub(crate) fn with_simd<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    {
        // AVX-512 where the matrix products run it too (`GemmKernels`): W5 measured
        // 10-15% faster with these loops on AVX-512 on an Intel Xeon, and on AMD Zen 4
        // AVX-512 measured no faster (docs/ARCHITECTURE.md).
        if crate::kernels::loops_use_avx512()
            && let Some(simd) = pulp::x86::V4::try_new()
        {
            return pulp::Simd::vectorize(simd, op);
        }
        match pulp::x86::V3::try_new() {
            Some(simd) => pulp::Simd::vectorize(simd, op),
            None => pulp::Simd::vectorize(pulp::Scalar::new(), op),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        pulp::Arch::new().dispatch(op)
    }
}

/// Whether [`with_simd`] runs fused multiply-adds in hardware: on x86-64 where the
/// processor has AVX2 and FMA (without them `f32::mul_add` is a call into the C
/// library), and always on aarch64.
pub(crate) fn fused_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        pulp::x86::V3::try_new().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        cfg!(target_arch = "aarch64")
    }
}

/// Elements from which [`for_each_block`] splits its work across rayon's pool when called
/// from outside it: 2^17 (512 KiB of `f32`). Below it a thread's share would take tens
/// of microseconds or less, too little to pay for handing work to the pool and waking
/// the caller again (measured at 10-20 µs on a shared two-core machine). On a thread of
/// the pool the threshold is [`PARALLEL_MIN_ON_POOL`].
pub const PARALLEL_MIN: usize = 1 << 17;

/// Work, in elements times their cost ([`for_each_block_at_cost`]), from which an
/// element-wise loop called on a thread of rayon's pool splits across it: 2^16, half of
/// [`PARALLEL_MIN`]. There a split is a `join` the caller works inside, without sleeping,
/// and runs itself when no other thread is free. Measured on two cores
/// (`cargo bench -p descent-bench --bench small_elementwise`, `docs/PERFORMANCE.md`,
/// "Element-wise loops on two threads, on the pool"), with 30 µs of other work after each
/// call (subtracted here): a sum of 2^16 elements took 11.6 µs on one thread and 9.1 on
/// two, `tanh` of 2^14 elements 18.6 against 10.5; split in two, a sum of 2^15 took as
/// long as whole.
pub const PARALLEL_MIN_ON_POOL: usize = 1 << 16;

/// What an element of `exp`, `ln`, `tanh`, the sigmoid and the like costs, in elements
/// of a sum, for [`for_each_block_at_cost`]: 4. Measured in f32 on `[128, 512]`
/// (`cargo bench -p descent-bench --bench kernels`, `elementwise/*`): a sum takes
/// about 0.14 ns an element, `exp` 0.59 and `tanh` 1.07; libm's `sin` and `cos` more.
pub const TRANSCENDENTAL_COST: usize = 4;

/// Work a parallel block holds: a block holds this many elements divided by their cost
/// (rounded down to a multiple of the row length, at least one row).
const PARALLEL_BLOCK: usize = 1 << 15;

/// Runs `f(offset, block)` over consecutive blocks of `out`, each compiled as
/// [`vectorized`] compiles its closure: in blocks of about 2^15 elements on rayon's
/// current pool when the pool has more than one thread and `out` holds at least
/// [`PARALLEL_MIN`] elements (at least [`PARALLEL_MIN_ON_POOL`] when called on a thread
/// of the pool), else once, on the calling thread, with the whole of `out`. `offset` is
/// the block's first index in `out`; blocks hold whole rows of `row` elements (give 1
/// when there are no rows).
///
/// Each element is computed by the same operations whichever block holds it, so the
/// result does not depend on the number of threads. Mark `f` `#[inline(always)]`:
/// only code inlined into it is compiled for the wider instructions.
///
/// ```
/// let x: Vec<f32> = (0..300_000).map(|i| i as f32).collect();
/// let mut y = vec![0.0f32; x.len()];
/// descent_tensor::for_each_block(&mut y, 1, #[inline(always)] |offset, block| {
///     for (y, &x) in block.iter_mut().zip(&x[offset..]) {
///         *y = 2.0 * x;
///     }
/// });
/// assert_eq!(y[299_999], 599_998.0);
/// ```
#[inline(always)]
pub fn for_each_block<T: Send>(out: &mut [T], row: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    blocks(out, row, 1, 1, f);
}

/// [`for_each_block`] for element-wise work whose every element costs about `cost`
/// elements of a sum ([`TRANSCENDENTAL_COST`] for `exp`, `tanh` and the like). On a
/// thread of rayon's pool the threshold [`PARALLEL_MIN_ON_POOL`] counts
/// `out.len() × cost`, so a dear loop splits from fewer elements; outside the pool,
/// where a split costs the caller a sleep, the threshold counts elements, as
/// [`for_each_block`]'s. A block holds about 2^15 / `cost` elements.
///
/// ```
/// use descent_tensor::{Float, TRANSCENDENTAL_COST, for_each_block_at_cost};
/// let x: Vec<f32> = (0..20_000).map(|i| i as f32 * 1e-4).collect();
/// let mut y = vec![0.0f32; x.len()];
/// // 20,000 · 4 ≥ 2^16: two blocks on a thread of a pool of two; whole here, outside it.
/// for_each_block_at_cost(&mut y, 1, TRANSCENDENTAL_COST, #[inline(always)] |offset, block| {
///     for (y, &x) in block.iter_mut().zip(&x[offset..]) {
///         *y = x.kernel_tanh();
///     }
/// });
/// assert_eq!(y[1], 1e-4f32.kernel_tanh());
/// ```
#[inline(always)]
pub fn for_each_block_at_cost<T: Send>(
    out: &mut [T],
    row: usize,
    cost: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    blocks(out, row, 1, cost, f);
}

/// [`for_each_block`] for outputs whose every element costs about `work` elements'
/// worth (a loss term per row of `work` classes): both thresholds and the block size
/// count `out.len() × work`.
///
/// ```
/// let rows: Vec<f32> = vec![1.0; 1000 * 500];
/// let mut sums = vec![0.0f32; 1000];
/// descent_tensor::for_each_weighted_block(&mut sums, 500, #[inline(always)] |first, block| {
///     for (k, s) in block.iter_mut().enumerate() {
///         let r = first + k;
///         *s = rows[r * 500..(r + 1) * 500].iter().sum();
///     }
/// });
/// assert_eq!(sums[999], 500.0);
/// ```
#[inline(always)]
pub fn for_each_weighted_block<T: Send>(
    out: &mut [T],
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    blocks(out, 1, work, 1, f);
}

/// `work` counts towards both thresholds, `cost` only towards the one on the pool; both
/// divide the block size.
#[inline(always)]
fn blocks<T: Send>(
    out: &mut [T],
    row: usize,
    work: usize,
    cost: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    use rayon::prelude::*;
    let (row, work, cost) = (row.max(1), work.max(1), cost.max(1));
    let total = out.len().saturating_mul(work);
    if out.len() > row && splits(total, total.saturating_mul(cost)) {
        let block = (PARALLEL_BLOCK / work / cost / row).max(1) * row;
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(i, chunk)| {
                vectorized(
                    #[inline(always)]
                    || f(i * block, chunk),
                )
            });
    } else {
        vectorized(
            #[inline(always)]
            || f(0, out),
        );
    }
}

/// Whether a loop of `total` elements' work, `costed` with their cost, splits across
/// the pool ([`PARALLEL_MIN`] outside it, [`PARALLEL_MIN_ON_POOL`] on it). The pool is
/// asked for its size only past a threshold: asking starts it. Asking which thread this
/// is does not.
#[inline(always)]
fn splits(total: usize, costed: usize) -> bool {
    let past = total >= PARALLEL_MIN
        || (costed >= PARALLEL_MIN_ON_POOL && rayon::current_thread_index().is_some());
    past && rayon::current_num_threads() > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The offsets of the blocks `for_each_block_at_cost` hands out for `len` elements
    /// of `cost`, called on a thread of a pool of `threads` (or outside any pool).
    fn offsets(len: usize, cost: usize, threads: Option<usize>) -> Vec<usize> {
        let seen = Mutex::new(Vec::new());
        let mut out = vec![0u8; len];
        let seen_ref = &seen;
        let mut call = move || {
            for_each_block_at_cost(&mut out, 1, cost, |offset, block| {
                assert!(!block.is_empty());
                seen_ref.lock().unwrap().push(offset);
            })
        };
        match threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(call),
            None => call(),
        }
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        seen
    }

    #[test]
    fn a_thread_of_the_pool_splits_from_the_lower_threshold_counting_cost() {
        let dear = PARALLEL_MIN_ON_POOL / TRANSCENDENTAL_COST;
        // On a pool of two: the plain loop from PARALLEL_MIN_ON_POOL elements, the dear
        // one from a quarter of that, each in blocks of about 2^15 / cost elements.
        assert_eq!(
            offsets(PARALLEL_MIN_ON_POOL, 1, Some(2)),
            [0, PARALLEL_BLOCK]
        );
        assert_eq!(offsets(PARALLEL_MIN_ON_POOL - 1, 1, Some(2)), [0]);
        assert_eq!(
            offsets(dear, TRANSCENDENTAL_COST, Some(2)),
            [0, PARALLEL_BLOCK / TRANSCENDENTAL_COST]
        );
        assert_eq!(offsets(dear - 1, TRANSCENDENTAL_COST, Some(2)), [0]);
        // A pool of one thread never splits; outside a pool, only from PARALLEL_MIN
        // elements whatever their cost.
        assert_eq!(offsets(PARALLEL_MIN_ON_POOL, 1, Some(1)), [0]);
        assert_eq!(offsets(PARALLEL_MIN - 1, TRANSCENDENTAL_COST, None), [0]);
    }
}
