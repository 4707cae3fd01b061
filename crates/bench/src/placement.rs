//! What the benches that compare a caller outside rayon's pool with one on it
//! (`layer_products`, `small_elementwise`) share: where the timed loop runs, and the
//! one-thread work between two timed calls.

use std::time::{Duration, Instant};

/// Spins for `us` microseconds on this thread: the other ops a training step runs
/// between two timed calls, during which an idle thread of the pool goes to sleep.
///
/// ```
/// let start = std::time::Instant::now();
/// descent_bench::placement::busy(50);
/// assert!(start.elapsed() >= std::time::Duration::from_micros(50));
/// ```
pub fn busy(us: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
}

/// Runs `f` on a thread of rayon's pool (inside `rayon::scope`) when `on_pool`, else on
/// the calling thread, and returns what it returns.
///
/// ```
/// use descent_bench::placement::placed;
/// assert!(placed(true, || rayon::current_thread_index()).is_some());
/// assert!(placed(false, || rayon::current_thread_index()).is_none());
/// ```
pub fn placed<R: Send>(on_pool: bool, f: impl FnOnce() -> R + Send) -> R {
    if on_pool { rayon::scope(|_| f()) } else { f() }
}
