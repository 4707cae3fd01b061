//! Free buffers kept for reuse, found by size.

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

/// The most a thread keeps of dropped gradient stores' tensor buffers, in bytes, per
/// element type (see [`BufferPool::absorb`]): what they hold beyond it is freed.
pub const RECYCLE_BYTES: usize = 256 << 20;

impl<T> BufferPool<T> {
    /// Moves `other`'s buffers into this pool, the largest first, while the bytes
    /// moved stay within `budget` (the rest are freed), and returns the bytes moved.
    /// `other` is left empty.
    ///
    /// Freed and allocated again, large buffers cost more than their use: the
    /// allocator hands the memory back to the system, and every page faults in anew
    /// (a `backward` of 1024 × 1024 tensors spent half its time there). A dropped
    /// gradient store's buffers are kept this way for the next store on its thread,
    /// up to [`RECYCLE_BYTES`].
    ///
    /// ```
    /// use descent_tensor::BufferPool;
    /// let mut kept = BufferPool::<f32>::default();
    /// let mut dropped = BufferPool::<f32>::default();
    /// dropped.give(Vec::with_capacity(1000));
    /// dropped.give(Vec::with_capacity(10));
    /// // Room for the large one only.
    /// assert_eq!(kept.absorb(&mut dropped, 4000), 4000);
    /// assert!(dropped.is_empty());
    /// assert_eq!(kept.len(), 1);
    /// assert!(kept.take_at_least(1000).is_some());
    /// ```
    pub fn absorb(&mut self, other: &mut BufferPool<T>, budget: usize) -> usize {
        // A steady loop gives back what it took: when all of it fits and nothing is
        // here, the two maps trade places, and no buffer or map node moves (W1's
        // fresh store took and gave a map of emptied lists each step).
        // (The pool keeps no running total: a gradient store is moved by value, and
        // eight more bytes made W1's moves of it `memcpy` calls.)
        let bytes = other
            .free
            .iter()
            .map(|(cap, bufs)| cap * bufs.len())
            .sum::<usize>()
            * size_of::<T>();
        if bytes <= budget && self.is_empty() {
            std::mem::swap(self, other);
            return bytes;
        }
        if bytes == 0 {
            return 0;
        }
        let mut moved = 0;
        for buf in std::mem::take(&mut other.free)
            .into_values()
            .rev()
            .flatten()
        {
            let size = buf.capacity() * size_of::<T>();
            if moved + size <= budget {
                moved += size;
                self.give(buf);
            }
        }
        moved
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
    fn absorbing_keeps_the_largest_buffers_that_fit_the_budget() {
        let mut kept = BufferPool::<f64>::default();
        kept.give(Vec::with_capacity(5));
        let mut dropped = BufferPool::<f64>::default();
        let big = 1000;
        dropped.give(Vec::with_capacity(10));
        dropped.give(Vec::with_capacity(big));
        dropped.give(Vec::with_capacity(20));
        let budget = (big + 15) * 8;
        // The largest first, then what still fits: the 10 but not the 20.
        let moved = kept.absorb(&mut dropped, budget);
        assert!(dropped.is_empty());
        let caps: Vec<usize> = kept.free.keys().copied().collect();
        assert_eq!(caps.len(), 3, "{caps:?}");
        assert!(
            caps[0] >= 5 && caps[1] >= 10 && caps[1] < 20 && caps[2] >= big,
            "{caps:?}"
        );
        assert_eq!(moved, (caps[1] + caps[2]) * 8);
        assert!(moved <= budget);
        assert_eq!(kept.absorb(&mut dropped, budget), 0, "nothing left to move");
    }
}
