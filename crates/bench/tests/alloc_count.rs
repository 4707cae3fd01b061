//! The counting allocator the bench installs (`descent_bench::alloc_count`): each kind
//! of call is counted on the calling thread, and memory passes through it intact.
//! Small enough to run under Miri, which checks its `unsafe impl GlobalAlloc`
//! (`.ci/run`'s Miri step).

use descent_bench::alloc_count::{self, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn counts_each_kind_of_call_and_keeps_the_data() {
    let before = alloc_count::counts();
    let mut v: Vec<u64> = Vec::with_capacity(4);
    v.extend(0..4);
    let after_alloc = alloc_count::counts() - before;
    assert_eq!(after_alloc.allocs, 1);
    assert_eq!(after_alloc.bytes, 32);

    v.reserve_exact(60);
    v.extend(4..64);
    let after_grow = alloc_count::counts() - before;
    assert_eq!(after_grow.reallocs, 1);
    assert_eq!(after_grow.bytes, 64 * 8);
    assert!(v.iter().copied().eq(0..64), "realloc moved the data intact");

    let zeros = vec![0u32; 100];
    assert!(zeros.iter().all(|&z| z == 0));
    drop(zeros);
    drop(v);
    let total = alloc_count::counts() - before;
    assert_eq!(total.allocs, 2, "with_capacity and the zeroed vec");
    assert_eq!(total.deallocs, 2);
    assert_eq!(total.calls(), 3);
}

#[test]
fn counts_only_the_calling_thread() {
    let theirs = std::thread::spawn(|| {
        let start = alloc_count::counts();
        let v: Vec<u8> = Vec::with_capacity(1000);
        drop(v);
        alloc_count::counts() - start
    })
    .join()
    .expect("the thread runs");
    assert_eq!(theirs.allocs, 1);
    assert_eq!(theirs.deallocs, 1);
    assert_eq!(theirs.bytes, 1000);
    // Reading the counters allocates nothing.
    let a = alloc_count::counts();
    let b = alloc_count::counts();
    assert_eq!(b - a, alloc_count::Counts::default());
}

/// The peak of live bytes: what was allocated and not yet freed, at its most, since
/// the reset; frees before the peak do not count against a later allocation.
#[test]
fn peak_live_bytes() {
    alloc_count::reset_peak_live();
    let a: Vec<u8> = Vec::with_capacity(3000);
    let b: Vec<u8> = Vec::with_capacity(2000);
    drop(a);
    let c: Vec<u8> = Vec::with_capacity(1000);
    drop((b, c));
    assert_eq!(alloc_count::peak_live(), 5000);
    // Growth by realloc counts the new size.
    alloc_count::reset_peak_live();
    let mut v: Vec<u8> = Vec::with_capacity(100);
    v.reserve_exact(1000);
    assert_eq!(v.capacity(), 1000);
    drop(v);
    assert_eq!(alloc_count::peak_live(), 1000);
}

// Not under Miri: a rayon pool's idle workers trip Stacked Borrows inside
// crossbeam-epoch (`Local::element_of`; crossbeam-epoch is known not to fit Stacked
// Borrows: crossbeam-rs/crossbeam#996, rayon-rs/rayon#1185), not in this crate. The
// allocator's `unsafe` is covered under Miri by the tests above.
#[test]
#[cfg_attr(miri, ignore)]
fn counts_with_pool_counts_a_pool_thread_caller_once() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a pool of two threads");
    // Two readings with one allocation between them, against two with none: the
    // difference is that allocation, whether the caller is on the pool or not.
    let extra = |one: bool| {
        let start = alloc_count::counts_with_pool();
        if one {
            std::hint::black_box(Vec::<u8>::with_capacity(10));
        }
        (alloc_count::counts_with_pool() - start).allocs
    };
    let outside = |one| extra(one);
    let inside = |one| pool.install(|| extra(one));
    for f in [&outside as &dyn Fn(bool) -> u64, &inside] {
        f(false);
        assert_eq!(f(true), f(false) + 1);
    }
}
