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
}
