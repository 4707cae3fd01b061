//! Our own loops compiled for the processor they run on.
//!
//! A release build targets baseline x86-64 (SSE2) unless told otherwise, so a plain
//! loop runs four `f32` lanes at a time even where AVX2 offers eight. [`vectorized`]
//! chooses at run time, through `pulp` (which `gemm` already uses for its kernels).

/// Runs `f` compiled for the widest vector instructions this processor offers (AVX2
/// and FMA on x86-64 where present, checked once and cached), or for the baseline.
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
    pulp::Arch::new().dispatch(f)
}
