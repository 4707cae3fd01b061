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

/// Elements from which [`for_each_block`] splits its work across rayon's pool: 2^17
/// (512 KiB of `f32`). Below it a thread's share would take tens of microseconds or
/// less, too little to pay for waking another thread (measured at 10-20 µs on a
/// shared two-core machine); every workload W1..W6 stays below it.
pub const PARALLEL_MIN: usize = 1 << 17;

/// Elements a parallel block holds (rounded down to a multiple of the row length).
const PARALLEL_BLOCK: usize = 1 << 15;

/// Runs `f(offset, block)` over consecutive blocks of `out`, each compiled as
/// [`vectorized`] compiles its closure: in blocks of about 2^15 elements on rayon's
/// current pool when `out` holds at least [`PARALLEL_MIN`] elements and the pool has
/// more than one thread, else once, on the calling thread, with the whole of `out`.
/// `offset` is the block's first index in `out`; blocks hold whole rows of `row`
/// elements (give 1 when there are no rows).
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
    blocks(out, row, 1, f);
}

/// [`for_each_block`] for outputs whose every element costs about `work` elements'
/// worth (a loss term per row of `work` classes): the threshold and the block size
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
    blocks(out, 1, work, f);
}

#[inline(always)]
fn blocks<T: Send>(out: &mut [T], row: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    use rayon::prelude::*;
    let (row, work) = (row.max(1), work.max(1));
    let total = out.len().saturating_mul(work);
    // The pool is asked for its size only for large outputs: asking starts it.
    if total >= PARALLEL_MIN && out.len() > row && rayon::current_num_threads() > 1 {
        let block = (PARALLEL_BLOCK / work / row).max(1) * row;
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
