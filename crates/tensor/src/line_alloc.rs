//! A global allocator that starts every large block on a 64-byte cache line.
//!
//! A tensor's buffer is a `Vec`, which the system allocator (glibc's `malloc` on Linux)
//! aligns to 16 bytes only: where a buffer starts within its cache line then depends
//! on every allocation made before it. Loops that stream over buffers in wide vectors
//! (a per-sample gradient's accumulation, a matrix-vector product) split a load across
//! two lines whenever the buffer starts off a line, so one build of a program can run
//! several percent slower than another for no reason in its code. PyTorch avoids this
//! by aligning every CPU tensor to 64 bytes in its own allocator; a `Vec` cannot carry
//! an alignment larger than its element's, so descent offers the same as a global
//! allocator a binary opts into. `docs/PERFORMANCE.md` ("Buffers on cache lines") has
//! the measurement: W4 went from 1.56-1.68 ms a batch, depending on the layout, to
//! 1.52-1.58.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes start on a cache line. Smaller ones (nodes,
/// shapes, short vectors) keep the system's alignment, so that they waste no space.
pub const LINE_ALIGNED_FROM: usize = 1024;

/// The alignment given to large blocks: one cache line on the x86-64 and AArch64
/// processors descent is measured on, and the width of an AVX-512 vector.
pub const LINE: usize = 64;

/// The system allocator, with every block of [`LINE_ALIGNED_FROM`] bytes or more
/// aligned to [`LINE`] bytes. Install it in a binary (a library cannot choose the
/// program's allocator):
///
/// ```
/// use descent_tensor::LineAligned;
///
/// #[global_allocator]
/// static ALLOC: LineAligned = LineAligned;
///
/// let buffer = vec![0f32; 4096];
/// assert_eq!(buffer.as_ptr() as usize % 64, 0);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LineAligned;

/// The layout a request is served with: `layout` itself, or for a large block the
/// same size at an alignment of at least [`LINE`]. `None` when the larger alignment
/// makes the size overflow (the request then fails, as an impossible layout does).
fn served(layout: Layout) -> Option<Layout> {
    if layout.size() < LINE_ALIGNED_FROM || layout.align() >= LINE {
        Some(layout)
    } else {
        Layout::from_size_align(layout.size(), LINE).ok()
    }
}

// SAFETY: every block is obtained from `System` with `served(layout)`, a layout of the
// same size as the request and an alignment at least the request's, so the block is
// valid for the requested layout. `served` is a pure function of the layout, and
// `GlobalAlloc` hands `dealloc` and `realloc` the layout the block was allocated with,
// so each block is given back to `System` with exactly the layout `System` allocated
// it with. `realloc` either forwards to `System.realloc` with that layout (when the
// new size is served at the same alignment, which `System.realloc` keeps) or moves the
// block itself: allocate the new layout, copy the bytes both blocks hold, free the old
// one. Nothing here unwinds or allocates.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match served(layout) {
            // SAFETY: `served` keeps the size, which the caller made non-zero.
            Some(l) => unsafe { System.alloc(l) },
            None => std::ptr::null_mut(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match served(layout) {
            // SAFETY: as for `alloc`.
            Some(l) => unsafe { System.alloc_zeroed(l) },
            None => std::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The block was allocated, so its served layout exists.
        if let Some(l) = served(layout) {
            // SAFETY: `ptr` came from `System` with `l` (see the impl's argument).
            unsafe { System.dealloc(ptr, l) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (Some(old), Ok(asked)) = (
            served(layout),
            Layout::from_size_align(new_size, layout.align()),
        ) else {
            return std::ptr::null_mut();
        };
        let Some(new) = served(asked) else {
            return std::ptr::null_mut();
        };
        if new.align() == old.align() {
            // SAFETY: `ptr` came from `System` with `old`; `new_size` is non-zero (the
            // caller's contract) and `new` proves it fits `old`'s alignment.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // SAFETY: `new` has a non-zero size (the caller's contract on `new_size`).
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct, and hold at least the smaller
            // of the two sizes; then the old block is freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_line(p: *mut u8) -> bool {
        (p as usize).is_multiple_of(LINE)
    }

    #[test]
    fn large_blocks_start_on_a_line_small_ones_keep_their_alignment() {
        let a = LineAligned;
        for size in [LINE_ALIGNED_FROM, 4096, 32 * 1024, 1 << 20] {
            for align in [1, 4, 8, 16] {
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero layout; the block is freed with it below.
                let p = unsafe { a.alloc(l) };
                assert!(!p.is_null() && on_line(p), "{size} bytes at {align}");
                // SAFETY: allocated just above with `l`.
                unsafe { a.dealloc(p, l) };
            }
        }
        let small = Layout::from_size_align(LINE_ALIGNED_FROM - 1, 8).unwrap();
        assert_eq!(served(small), Some(small));
        let wide = Layout::from_size_align(4096, 128).unwrap();
        assert_eq!(served(wide), Some(wide), "a larger alignment is kept");
        // SAFETY: as above.
        let p = unsafe { a.alloc(wide) };
        assert!((p as usize).is_multiple_of(128));
        // SAFETY: allocated just above with `wide`.
        unsafe { a.dealloc(p, wide) };
    }

    #[test]
    fn zeroed_blocks_are_zero() {
        let a = LineAligned;
        let l = Layout::from_size_align(3000, 4).unwrap();
        // SAFETY: a non-zero layout; freed below.
        let p = unsafe { a.alloc_zeroed(l) };
        assert!(on_line(p));
        // SAFETY: `p` holds `l.size()` initialised (zero) bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, l.size()) };
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: allocated above with `l`.
        unsafe { a.dealloc(p, l) };
    }

    /// Growing and shrinking across the threshold, both ways, keeps the bytes the two
    /// sizes share and lands large blocks on a line.
    #[test]
    fn realloc_keeps_the_bytes_across_the_threshold() {
        let a = LineAligned;
        let sizes = [100, 2000, 5000, 900, 64, 1024, 1023, 40_000, 10];
        let mut layout = Layout::from_size_align(sizes[0], 4).unwrap();
        // SAFETY: a non-zero layout; every later call passes the current layout.
        let mut p = unsafe { a.alloc(layout) };
        // SAFETY: `p` holds `layout.size()` bytes.
        unsafe { std::slice::from_raw_parts_mut(p, layout.size()) }
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let mut filled = layout.size();
        for &size in &sizes[1..] {
            // SAFETY: `p` is live with `layout`; `size` is non-zero.
            p = unsafe { a.realloc(p, layout, size) };
            assert!(!p.is_null());
            layout = Layout::from_size_align(size, 4).unwrap();
            if size >= LINE_ALIGNED_FROM {
                assert!(on_line(p), "{size} bytes");
            }
            let kept = filled.min(size);
            // SAFETY: `p` holds `size` bytes, the first `kept` of them written.
            let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
            assert!(
                bytes[..kept].iter().enumerate().all(|(i, &b)| b == i as u8),
                "{size} bytes"
            );
            bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
            filled = size;
        }
        // SAFETY: live with `layout`.
        unsafe { a.dealloc(p, layout) };
    }

    #[test]
    fn an_impossible_layout_fails_instead_of_overflowing() {
        let a = LineAligned;
        let huge = Layout::from_size_align(isize::MAX as usize - 15, 16).unwrap();
        assert_eq!(served(huge), None);
        // SAFETY: a non-zero layout; a null result allocates nothing.
        assert!(unsafe { a.alloc(huge) }.is_null());
    }
}
