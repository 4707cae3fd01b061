//! Per-thread bins: values a thread puts aside for its own later use.
//!
//! A training loop drops and rebuilds the same large things every step: the tensor
//! buffers of a gradient store, the vectors of the store itself, a worker's tape.
//! Freeing them and allocating them again costs more than their use (the allocator
//! hands large blocks back to the system, and every page faults in anew), and a loop
//! that calls `backward()` every step would never stop allocating. So the one who
//! drops such a value [`park`]s it, and the next one to need it on the same thread
//! [`take`]s it back (`per_sample_grads`' worker workspaces do this), or keeps it in
//! a slot of the thread updated in place with [`with_slot`] (a dropped `Gradients`
//! leaves its vectors and tensor buffers there for the next store); the pattern is
//! written here once.
//!
//! - **Per thread**: a value parked on one thread is never seen by another, so no
//!   lock is taken and a value need not be `Send`.
//! - **By type**: each bin holds values of one type `V`. Give each use a type of its
//!   own (a private struct), so that two uses never take each other's values.
//! - **Bounded**: a thread keeps at most [`Parkable::PER_THREAD`] values of a type;
//!   one parked beyond that is dropped. What a value holds is bounded by its owner
//!   (the tensor buffers by [`RECYCLE_BYTES`](crate::RECYCLE_BYTES)).
//! - **Safe at thread exit**: while the thread's storage is being torn down,
//!   [`park`] drops its value and [`take`] finds nothing (they use
//!   [`LocalKey::try_with`](std::thread::LocalKey::try_with), never `with`), so a
//!   `Drop` that parks works in every thread state.
//! - **Re-entrant**: a value is dropped only after the bins are released, so a
//!   value whose `Drop` parks something else (a workspace holding a gradient store)
//!   is fine.
//! - **Allocation-free once warm**: a type's bin is made on its first park and
//!   keeps its memory; parking and taking move values in and out of it.
//!
//! ```
//! use descent_tensor::bins::{self, Parkable};
//!
//! /// Scratch rows a routine keeps between calls.
//! struct Scratch(Vec<f64>);
//! impl Parkable for Scratch {
//!     const PER_THREAD: usize = 1;
//! }
//!
//! fn row_sums(rows: &[[f64; 3]]) -> f64 {
//!     let Scratch(mut sums) = bins::take().unwrap_or(Scratch(Vec::new()));
//!     sums.clear();
//!     sums.extend(rows.iter().map(|r| r.iter().sum::<f64>()));
//!     let total = sums.iter().sum();
//!     bins::park(Scratch(sums)); // the next call on this thread reuses the memory
//!     total
//! }
//!
//! assert_eq!(row_sums(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), 21.0);
//! assert_eq!(bins::take::<Scratch>().map(|s| s.0.len()), Some(2));
//! assert!(bins::take::<Scratch>().is_none()); // taking empties the bin
//! // Another thread has bins of its own.
//! bins::park(Scratch(vec![1.0]));
//! assert!(std::thread::spawn(|| bins::take::<Scratch>().is_none()).join().unwrap());
//! ```

use std::any::Any;
use std::cell::RefCell;

/// A type whose values a thread can [`park`] and [`take`] back; see the
/// [module](self) for why and an example.
pub trait Parkable: Sized + 'static {
    /// The most values of this type one thread keeps: one more parked is dropped.
    const PER_THREAD: usize;
}

thread_local! {
    /// The calling thread's bins: one `Vec<V>` per parked type `V`, found by
    /// downcasting (a thread parks a handful of types, so a scan beats a map).
    static BINS: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `value` for a later [`take`] on this thread, unless [`Parkable::PER_THREAD`]
/// values of its type are kept already or the thread is ending: it is dropped then.
/// Returns whether it was kept.
#[inline]
pub fn park<V: Parkable>(value: V) -> bool {
    // The value moves into the bin once: wrapping it in an `Option` to take it back
    // out cost W1's `loss.backward()` two `memcpy`s of a gradient store's vectors a
    // step (callgrind).
    let rejected = BINS.try_with(move |bins| {
        let mut bins = bins.borrow_mut();
        let bin = match bins.iter_mut().position(|b| b.is::<Vec<V>>()) {
            Some(i) => &mut bins[i],
            None => {
                bins.push(Box::new(Vec::<V>::with_capacity(V::PER_THREAD)));
                bins.last_mut().expect("just pushed")
            }
        };
        let bin = bin.downcast_mut::<Vec<V>>().expect("checked type");
        if bin.len() < V::PER_THREAD {
            bin.push(value);
            None
        } else {
            Some(value)
        }
    });
    // A value not kept is dropped here, after the bins are released: its `Drop` may
    // park something else. While the thread is ending, `try_with` drops it unborrowed.
    matches!(rejected, Ok(None))
}

/// The value of type `V` parked last on this thread, if any (none while the thread
/// is ending).
#[inline]
pub fn take<V: Parkable>() -> Option<V> {
    BINS.try_with(|bins| {
        let mut bins = bins.borrow_mut();
        bins.iter_mut()
            .find_map(|b| b.downcast_mut::<Vec<V>>())
            .and_then(Vec::pop)
    })
    .ok()
    .flatten()
}

/// Runs `f` on the calling thread's slot of type `S`, made with `S::default()` on first
/// use, and returns its result; `None` (without running `f`) while the thread is
/// ending or while the bins are in use further up the stack.
///
/// For a value updated in place rather than moved in and out: a dropped gradient store
/// swaps its vectors into the slot and merges its buffers with those kept there, and
/// the next store swaps them back, so no value larger than a pointer is moved (moving
/// them through [`park`] and [`take`] cost W1's `loss.backward()` two `memcpy`s and
/// two bin lookups a step, callgrind). `f` must not reach the bins itself: such a
/// call gets `None`. What a slot holds is bounded by its user, and kept until the
/// thread ends.
///
/// ```
/// use descent_tensor::bins;
///
/// /// How many times this thread has called `count_calls`.
/// #[derive(Default)]
/// struct Calls(u32);
///
/// fn count_calls() -> u32 {
///     bins::with_slot(|c: &mut Calls| {
///         c.0 += 1;
///         c.0
///     })
///     .unwrap_or(0)
/// }
///
/// assert_eq!(count_calls(), 1);
/// assert_eq!(count_calls(), 2);
/// assert_eq!(std::thread::spawn(count_calls).join().unwrap(), 1);
/// ```
#[inline]
pub fn with_slot<S: Default + 'static, R>(f: impl FnOnce(&mut S) -> R) -> Option<R> {
    BINS.try_with(|bins| {
        let mut bins = bins.try_borrow_mut().ok()?;
        let i = match bins.iter().position(|b| b.is::<S>()) {
            Some(i) => i,
            None => {
                bins.push(Box::new(S::default()));
                bins.len() - 1
            }
        };
        let slot = bins[i].downcast_mut::<S>()?;
        Some(f(slot))
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    struct Two(u32);
    impl Parkable for Two {
        const PER_THREAD: usize = 2;
    }

    #[test]
    fn a_bin_keeps_its_bound_and_gives_back_the_last_parked_first() {
        assert!(park(Two(1)));
        assert!(park(Two(2)));
        assert!(
            !park(Two(3)),
            "a third value past the bound of two is dropped"
        );
        assert_eq!(take::<Two>().map(|t| t.0), Some(2));
        assert_eq!(take::<Two>().map(|t| t.0), Some(1));
        assert!(take::<Two>().is_none());
    }

    /// A value whose `Drop` parks another: dropping it inside the bins' borrow would
    /// panic with "already borrowed".
    struct ParksOnDrop(Rc<Cell<u32>>);
    impl Parkable for ParksOnDrop {
        const PER_THREAD: usize = 1;
    }
    impl Drop for ParksOnDrop {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
            park(Two(7));
        }
    }

    #[test]
    fn a_value_dropped_for_want_of_room_may_park_in_its_drop() {
        let drops = Rc::new(Cell::new(0));
        assert!(park(ParksOnDrop(drops.clone())));
        assert!(!park(ParksOnDrop(drops.clone())));
        assert_eq!(drops.get(), 1);
        assert_eq!(take::<Two>().map(|t| t.0), Some(7));
        drop(take::<ParksOnDrop>());
        assert_eq!(drops.get(), 2);
        while take::<Two>().is_some() {}
    }

    /// Parks from a thread-local's destructor, after the bins may be gone: no panic.
    #[test]
    fn a_slot_is_per_thread_and_per_type_and_refuses_a_nested_call() {
        #[derive(Default)]
        struct Hits(u32);
        #[derive(Default)]
        struct Misses(u32);
        assert_eq!(
            with_slot(|h: &mut Hits| {
                h.0 += 2;
                h.0
            }),
            Some(2)
        );
        assert_eq!(with_slot(|m: &mut Misses| m.0), Some(0));
        assert_eq!(
            with_slot(|_: &mut Hits| with_slot(|m: &mut Misses| m.0)),
            Some(None),
            "the bins are borrowed by the outer call"
        );
        assert_eq!(with_slot(|h: &mut Hits| h.0), Some(2));
        let other = std::thread::spawn(|| with_slot(|h: &mut Hits| h.0));
        assert_eq!(other.join().unwrap(), Some(0));
    }

    #[test]
    fn parking_while_the_thread_ends_drops_the_value() {
        struct Late;
        impl Drop for Late {
            fn drop(&mut self) {
                park(Two(9));
                assert!(take::<Two>().is_none_or(|t| t.0 == 9));
            }
        }
        thread_local! {
            static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
        }
        std::thread::spawn(|| {
            // Thread-locals are torn down in the reverse order of their first use:
            // `LATE` first used, then the bins, so the bins are gone when `Late` drops.
            LATE.with(|l| *l.borrow_mut() = Some(Late));
            park(Two(1));
        })
        .join()
        .expect("no panic at thread exit");
    }
}
