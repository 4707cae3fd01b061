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
//!
//! A large block is carved from a plain `malloc` (or `calloc`) block of [`LINE`] bytes
//! more, with its offset in the byte before it, rather than asked of `posix_memalign`:
//! glibc's aligned allocation splits and frees the head of every block it serves, and
//! made W7 (a CNN whose steps allocate 160 blocks) 7% slower, where this way it is 3%
//! faster than with no alignment at all.

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

/// Whether a request is served on a line: large, and not already aligned to one. A pure
/// function of the layout, so `dealloc` and `realloc` find the same answer `alloc` did.
fn on_a_line(layout: Layout) -> bool {
    layout.size() >= LINE_ALIGNED_FROM && layout.align() < LINE
}

/// The system block under a block of `size` bytes served on a line: [`LINE`] bytes more,
/// at the system's own alignment. `None` when that size overflows.
fn system_block(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(LINE)?, 16).ok()
}

/// The start of the line-aligned block inside a system block starting at `base`, and
/// its offset from `base`: `1..=LINE` bytes, so that the byte before the block (which
/// holds the offset) lies inside the system block.
fn place(base: *mut u8) -> (*mut u8, usize) {
    let offset = LINE - base as usize % LINE;
    // In bounds for a system block from `system_block`, which holds `LINE` bytes more
    // than the block served from it; `wrapping_add` keeps this function safe to call.
    (base.wrapping_add(offset), offset)
}

/// Serves a large block from the system block `base` (null passes through): writes the
/// offset in the byte before the line-aligned start and returns that start. This is
/// the layout `std`'s own `System` allocator gives over-aligned blocks on Windows (a
/// header before the block). Miri checks it under Tree Borrows (`.ci/miri`): Stacked
/// Borrows cannot express a header before a `Box`'s bytes (rust-lang/miri#2104).
///
/// # Safety
/// `base` is null or the start of a live system block of `size + LINE` bytes.
unsafe fn serve(base: *mut u8) -> *mut u8 {
    if base.is_null() {
        return base;
    }
    let (block, offset) = place(base);
    // SAFETY: `block - 1` is at `base + offset - 1 >= base`, inside the system block.
    unsafe { block.sub(1).write(offset as u8) };
    block
}

/// The system block under a large block served by [`serve`].
///
/// # Safety
/// `block` was returned by [`serve`] and is still live.
unsafe fn base_of(block: *mut u8) -> *mut u8 {
    // SAFETY: `serve` wrote the offset in the byte before `block`, inside the system
    // block; `block - offset` is that block's start.
    unsafe {
        let offset = block.sub(1).read() as usize;
        block.sub(offset)
    }
}

/// `System`'s block for `layout` from `get` (its `alloc` or `alloc_zeroed`; a zeroed
/// large block keeps the system's zero pages), or a large one carved on a line.
///
/// # Safety
/// `GlobalAlloc::alloc`'s contract: `layout` has a non-zero size.
unsafe fn obtain(layout: Layout, get: unsafe fn(&System, Layout) -> *mut u8) -> *mut u8 {
    if !on_a_line(layout) {
        // SAFETY: the caller's contract, passed on.
        return unsafe { get(&System, layout) };
    }
    match system_block(layout.size()) {
        // SAFETY: a non-zero layout; `serve` gets a fresh block of the size it needs
        // and writes outside the caller's bytes.
        Some(l) => unsafe { serve(get(&System, l)) },
        None => std::ptr::null_mut(),
    }
}

// SAFETY: a small block (or one asking for a line or more of alignment) is `System`'s,
// with the caller's layout, unchanged. A large block is carved from a `System` block of
// `LINE` more bytes at alignment 16 (`system_block`): it starts at the first line
// boundary past that block's start (1 to `LINE` bytes in), so it is aligned to `LINE`,
// which is more than the caller asked (`on_a_line` takes alignments below `LINE`
// only), and it ends inside the system block. The offset is kept in the byte before the
// block, which lies in the system block and outside the caller's bytes, so a zeroed
// block stays zeroed. `on_a_line` is a pure function of the layout, which `dealloc`
// and `realloc` receive as `alloc` did, so each finds the block's kind and gives
// `System` back its own pointer and layout. Nothing here unwinds or allocates.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { obtain(layout, <System as GlobalAlloc>::alloc) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { obtain(layout, <System as GlobalAlloc>::alloc_zeroed) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !on_a_line(layout) {
            // SAFETY: a small block is `System`'s, with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // A large block's system block was allocated, so its layout exists.
        if let Some(l) = system_block(layout.size()) {
            // SAFETY: `ptr` was served from the system block `base_of` finds, of layout `l`.
            unsafe { System.dealloc(base_of(ptr), l) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(asked) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (on_a_line(layout), on_a_line(asked)) {
            // SAFETY: a small block is `System`'s, and stays small.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                let (Some(old), Some(new)) = (system_block(layout.size()), system_block(new_size))
                else {
                    return std::ptr::null_mut();
                };
                // SAFETY: `ptr` is a live large block, whose system block `base_of`
                // finds with layout `old`; `new.size()` is non-zero.
                let (offset, base) = unsafe {
                    let base = base_of(ptr);
                    (
                        ptr.addr() - base.addr(),
                        System.realloc(base, old, new.size()),
                    )
                };
                if base.is_null() {
                    return base;
                }
                // The system may have moved the block to a start with another offset to
                // a line: move the bytes to the new line boundary (overlapping copy).
                let (block, new_offset) = place(base);
                if new_offset != offset {
                    // SAFETY: both ranges lie in the new system block, which holds the
                    // old bytes at `offset`; `copy` allows overlap.
                    unsafe {
                        std::ptr::copy(base.add(offset), block, layout.size().min(new_size));
                    }
                }
                // SAFETY: `base` starts a live system block of `new_size + LINE` bytes.
                unsafe { serve(base) }
            }
            // Across the threshold: a block of the other kind, the shared bytes copied.
            _ => {
                // SAFETY: `asked` is non-zero (the caller's contract on `new_size`).
                let moved = unsafe { self.alloc(asked) };
                if !moved.is_null() {
                    // SAFETY: both blocks are live and distinct and hold at least the
                    // smaller size; the old one is then freed with its own layout.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
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
        assert!(!on_a_line(small));
        let wide = Layout::from_size_align(4096, 128).unwrap();
        assert!(
            !on_a_line(wide),
            "a larger alignment is the system's to serve"
        );
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
        let sizes = [
            100, 2000, 5000, 3000, 900, 64, 1024, 1023, 40_000, 80_000, 10,
        ];
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
        assert_eq!(system_block(huge.size()), None);
        // SAFETY: a non-zero layout; a null result allocates nothing.
        assert!(unsafe { a.alloc(huge) }.is_null());
    }
}
