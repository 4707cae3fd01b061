//! A global allocator that counts heap allocations on the current thread.
//!
//! Install it in a binary with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;` and read
//! [`counts`] before and after the code of interest. The counters are thread-local
//! plain cells (no atomic read-modify-write on the allocation path), so counting costs
//! about a nanosecond per allocation and only the calling thread's allocations count.

use descent::LineAligned;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static REALLOCS: Cell<u64> = const { Cell::new(0) };
    static DEALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    // Bytes allocated minus bytes freed on this thread, and the most it reached since
    // `reset_peak_live`. Signed: a block freed here that another thread allocated
    // subtracts what was never added.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static BASE: Cell<i64> = const { Cell::new(0) };
}

fn live_by(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

/// The most bytes the current thread had live (allocated and not yet freed by it)
/// since the last [`reset_peak_live`], counted from the live bytes at that reset: the
/// memory a piece of code needs at its peak. Zero unless [`CountingAlloc`] is the
/// global allocator.
///
/// ```
/// use descent_bench::alloc_count::{peak_live, reset_peak_live};
/// reset_peak_live();
/// let v = vec![0u8; 1 << 20];
/// drop(v);
/// // 1 MiB with the counting allocator installed (the bench binary), 0 without.
/// assert!(peak_live() == 0 || peak_live() >= 1 << 20);
/// ```
pub fn peak_live() -> u64 {
    let base = BASE.with(Cell::get);
    (PEAK.with(Cell::get) - base).max(0) as u64
}

/// Starts a new peak: [`peak_live`] counts from the bytes live now.
pub fn reset_peak_live() {
    let now = LIVE.with(Cell::get);
    BASE.with(|b| b.set(now));
    PEAK.with(|p| p.set(now));
}

fn bump(c: &'static std::thread::LocalKey<Cell<u64>>, by: u64) {
    // `try_with`: during thread teardown the slot may be gone; then we just don't count.
    let _ = c.try_with(|c| c.set(c.get().wrapping_add(by)));
}

/// [`LineAligned`] (the system allocator, large blocks on cache lines, as the project
/// recommends for a binary that trains), counting calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAlloc;

// SAFETY: every method forwards to `LineAligned` with exactly the pointer, layout and
// size it was given, and returns what it returned, so its guarantees (a valid
// block of the requested layout, or null) are ours. The only extra work is bumping
// thread-local `Cell` counters; they are const-initialised and have no destructor,
// so touching them never allocates (no re-entry into the allocator) and never unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCS, 1);
        bump(&BYTES, layout.size() as u64);
        live_by(layout.size() as i64);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on unchanged.
        unsafe { LineAligned.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCS, 1);
        bump(&BYTES, layout.size() as u64);
        live_by(layout.size() as i64);
        // SAFETY: as for `alloc`.
        unsafe { LineAligned.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(&DEALLOCS, 1);
        live_by(-(layout.size() as i64));
        // SAFETY: `ptr` was allocated by `LineAligned` (through us) with `layout`.
        unsafe { LineAligned.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(&REALLOCS, 1);
        bump(&BYTES, new_size.saturating_sub(layout.size()) as u64);
        live_by(new_size as i64 - layout.size() as i64);
        // SAFETY: `ptr` was allocated by `LineAligned` (through us) with `layout`; the
        // caller upholds `realloc`'s contract for `new_size`.
        unsafe { LineAligned.realloc(ptr, layout, new_size) }
    }
}

/// Allocation counters of the current thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `alloc` + `alloc_zeroed` calls.
    pub allocs: u64,
    /// `realloc` calls (a growing `Vec`).
    pub reallocs: u64,
    /// `dealloc` calls.
    pub deallocs: u64,
    /// Bytes requested (allocations plus growth by realloc).
    pub bytes: u64,
}

impl Counts {
    /// Allocations plus reallocations: the calls that may hit the allocator's slow path.
    pub fn calls(&self) -> u64 {
        self.allocs + self.reallocs
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            allocs: self.allocs - o.allocs,
            reallocs: self.reallocs - o.reallocs,
            deallocs: self.deallocs - o.deallocs,
            bytes: self.bytes - o.bytes,
        }
    }
}

/// The current thread's counters (all zero unless [`CountingAlloc`] is the global
/// allocator).
pub fn counts() -> Counts {
    Counts {
        allocs: ALLOCS.with(Cell::get),
        reallocs: REALLOCS.with(Cell::get),
        deallocs: DEALLOCS.with(Cell::get),
        bytes: BYTES.with(Cell::get),
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            allocs: self.allocs + o.allocs,
            reallocs: self.reallocs + o.reallocs,
            deallocs: self.deallocs + o.deallocs,
            bytes: self.bytes + o.bytes,
        }
    }
}

/// The counters of every thread of rayon's current pool plus the calling thread's (once,
/// whether or not it is one of the pool's), for work that runs on the pool (W4's
/// per-sample passes). Reading them runs one job on each pool thread, whose own
/// allocations, if any, are counted too.
///
/// ```
/// use descent_bench::alloc_count::counts_with_pool;
/// let before = counts_with_pool();
/// let after = counts_with_pool();
/// // Zero unless `CountingAlloc` is the global allocator, as in the bench binary.
/// assert!(after.allocs >= before.allocs);
/// ```
pub fn counts_with_pool() -> Counts {
    let pool = rayon::broadcast(|_| counts())
        .into_iter()
        .fold(Counts::default(), |a, b| a + b);
    match rayon::current_thread_index() {
        // The broadcast ran on this thread too.
        Some(_) => pool,
        None => counts() + pool,
    }
}
