//! Free buffers kept for reuse, found by size.

use crate::bins::{self, Parkable};
use std::collections::BTreeMap;

/// Buffers given back for reuse, by capacity: the tape's value buffers and the
/// gradient buffers of a reused `Gradients` both live in one, so that a training loop
/// stops allocating once warm.
///
/// Finding the smallest buffer that fits is a range lookup in a map keyed by capacity,
/// not a scan of every free buffer (a 200-step RNN keeps about 1,600). A capacity's
/// list stays in the map when it empties, so a steady loop, which gives and takes the
/// same sizes every step, never adds or removes a map node, which would allocate.
///
/// ```
/// use descent_tensor::BufferPool;
/// let mut pool = BufferPool::<f32>::default();
/// pool.give(Vec::with_capacity(100));
/// pool.give(Vec::with_capacity(10));
/// assert_eq!(pool.take_at_least(8).map(|b| b.capacity()), Some(10));
/// assert_eq!(pool.take_at_least(50).map(|b| b.capacity()), Some(100));
/// assert!(pool.take_at_least(1).is_none());
/// ```
#[derive(Clone, Debug)]
pub struct BufferPool<T> {
    free: BTreeMap<usize, Vec<Vec<T>>>,
}

impl<T> Default for BufferPool<T> {
    fn default() -> Self {
        Self {
            free: BTreeMap::new(),
        }
    }
}

impl<T> BufferPool<T> {
    /// The free buffer with the smallest capacity of at least `len` elements, if any.
    /// Its length and contents are whatever it last held; see [`BufferPool`] for an
    /// example.
    pub fn take_at_least(&mut self, len: usize) -> Option<Vec<T>> {
        self.free.range_mut(len..).find_map(|(_, bufs)| bufs.pop())
    }

    /// Keeps `buf` for reuse (a buffer with no capacity is dropped); see [`BufferPool`]
    /// for an example.
    pub fn give(&mut self, buf: Vec<T>) {
        if buf.capacity() > 0 {
            self.free.entry(buf.capacity()).or_default().push(buf);
        }
    }

    /// Number of free buffers.
    ///
    /// ```
    /// let mut pool = descent_tensor::BufferPool::<f64>::default();
    /// pool.give(vec![0.0; 4]);
    /// pool.give(vec![0.0; 4]);
    /// assert_eq!(pool.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.free.values().map(Vec::len).sum()
    }

    /// True when no buffer is free.
    ///
    /// ```
    /// let mut pool = descent_tensor::BufferPool::<f64>::default();
    /// pool.give(Vec::new()); // no capacity: dropped
    /// assert!(pool.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.free.values().all(Vec::is_empty)
    }
}

/// The most a thread's recycling bin keeps, in bytes, per element type: what a
/// dropped pool holds beyond it is freed.
pub const RECYCLE_BYTES: usize = 256 << 20;

/// A thread's recycling bin for one element type: the buffers and their bytes.
struct Recycled<T> {
    pool: BufferPool<T>,
    bytes: usize,
}

/// One bin per element type; [`RECYCLE_BYTES`] bounds what it holds.
impl<T: 'static> Parkable for Recycled<T> {
    const PER_THREAD: usize = 1;
}

impl<T: 'static> BufferPool<T> {
    /// Moves every buffer of this pool into the calling thread's recycling bin, up to
    /// [`RECYCLE_BYTES`] in all (the rest is freed), for [`BufferPool::take_recycled`].
    ///
    /// Freed and allocated again, large buffers cost more than their use: the
    /// allocator hands the memory back to the system, and every page faults in anew
    /// (a `backward` of 1024 × 1024 tensors spent half its time there). A
    /// gradient store puts its buffers here when dropped, so the next one on the
    /// thread starts with them. The bin is one of the thread's [`bins`](crate::bins).
    ///
    /// ```
    /// use descent_tensor::BufferPool;
    /// let mut pool = BufferPool::<f32>::default();
    /// pool.give(Vec::with_capacity(1000));
    /// pool.recycle();
    /// assert!(pool.is_empty());
    /// let mut again = BufferPool::<f32>::take_recycled();
    /// assert!(again.take_at_least(1000).is_some());
    /// ```
    pub fn recycle(&mut self) {
        if self.free.is_empty() {
            return;
        }
        let free = std::mem::take(&mut self.free);
        // During thread exit the bin may be gone already; the buffers are then freed.
        let mut bin = bins::take::<Recycled<T>>().unwrap_or(Recycled {
            pool: BufferPool::default(),
            bytes: 0,
        });
        // The largest first: they are what costs most to fault in again.
        for buf in free.into_values().rev().flatten() {
            let size = buf.capacity() * size_of::<T>();
            if bin.bytes + size <= RECYCLE_BYTES {
                bin.bytes += size;
                bin.pool.give(buf);
            }
        }
        bins::park(bin);
    }

    /// Takes everything in the calling thread's recycling bin for `T` (see
    /// [`BufferPool::recycle`]); an empty pool when there is nothing.
    pub fn take_recycled() -> Self {
        bins::take::<Recycled<T>>().map_or_else(Self::default, |bin| bin.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_is_the_smallest_capacity_that_holds_the_length() {
        let mut pool = BufferPool::<u8>::default();
        for cap in [64, 8, 32, 8, 128] {
            pool.give(Vec::with_capacity(cap));
        }
        pool.give(Vec::new());
        assert_eq!(pool.len(), 5);
        let mut caps = Vec::new();
        for len in [9, 1, 1, 1, 100, 200] {
            caps.push(pool.take_at_least(len).map(|b| b.capacity()));
        }
        // 9 -> 32; 1 -> 8, 8, then 64 (the 8s are gone); 100 -> 128; 200 -> none.
        let caps: Vec<Option<usize>> = caps
            .into_iter()
            .map(|c| c.map(|c| [8, 32, 64, 128].into_iter().find(|&k| k >= c).unwrap()))
            .collect();
        assert_eq!(
            caps,
            [Some(32), Some(8), Some(8), Some(64), Some(128), None]
        );
        assert!(pool.is_empty());
    }

    #[test]
    fn the_recycling_bin_is_per_thread_and_capped() {
        let mut pool = BufferPool::<f64>::default();
        let big = RECYCLE_BYTES / 8 - 10;
        pool.give(Vec::with_capacity(10));
        pool.give(Vec::with_capacity(big));
        pool.give(Vec::with_capacity(20));
        pool.recycle();
        assert!(pool.is_empty());
        // Another thread sees none of it.
        let other = std::thread::spawn(|| BufferPool::<f64>::take_recycled().len());
        assert_eq!(other.join().unwrap(), 0);
        // Nor does another element type.
        assert!(BufferPool::<f32>::take_recycled().is_empty());
        // The largest first, then what still fits: the 10 but not the 20.
        let back = BufferPool::<f64>::take_recycled();
        let caps: Vec<usize> = back.free.keys().copied().collect();
        assert_eq!(caps.len(), 2);
        assert!(caps[0] >= 10 && caps[0] < 20 && caps[1] >= big, "{caps:?}");
        // Taking empties the bin.
        assert!(BufferPool::<f64>::take_recycled().is_empty());
    }
}
