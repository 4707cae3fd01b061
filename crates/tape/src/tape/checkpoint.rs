//! Forgetting: [`Tape::reset`] empties the whole tape, [`Tape::rewind`] goes back to a
//! [`Checkpoint`]. Both keep the memory for the next recording and make every older
//! handle stale.

use super::{Meta, Tape};
use crate::error::{Error, Result};
use descent_tensor::Float;

/// A mark on a tape made by [`Tape::checkpoint`], to [`Tape::rewind`] to. It remembers
/// the tape and the generation it is valid for; each rewind renews it.
///
/// ```
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(2.0);
/// let mut mark = tape.checkpoint();
/// let _ = x * x;
/// let before = mark;
/// tape.rewind(&mut mark).unwrap();
/// assert_ne!(mark, before); // renewed for the tape's new generation
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    tape: u64,
    generation: u64,
    nodes: usize,
    operand_lists: usize,
    tensors: usize,
    indices: usize,
    scopes: usize,
    current_scope: u32,
    scope_runs: usize,
    bindings: usize,
    param_names: usize,
    renamed: usize,
    hooks: usize,
    custom: usize,
}

impl Checkpoint {
    /// Number of nodes the checkpoint keeps.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let _ = tape.var(1.0) + 2.0; // two nodes: x and add_scalar(2)
    /// assert_eq!(tape.checkpoint().len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// True when the checkpoint keeps no node.
    ///
    /// ```
    /// assert!(descent_tape::Tape::<f64>::new().checkpoint().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }
}

impl<T: Float> super::Inner<T> {
    /// [`Tape::reset`]'s part for what only some tapes use: tensors, index lists,
    /// names, scopes, custom rules.
    fn clear_rarely_used(&mut self) {
        self.param_names.clear();
        for t in self.tensors.drain(..) {
            t.release(&mut self.pool);
        }
        let spare = &mut self.spare_indices;
        spare.extend(self.indices.drain(..).map(|ix| ix.data));
        self.names.clear();
        self.renamed.clear();
        self.scopes.truncate(1);
        self.custom.clear();
    }
}

impl<T: Float> Tape<T> {
    /// Forgets every node, keeping the memory for the next recording. Handles made
    /// before the reset become stale: using one is an error, never a wrong value.
    ///
    /// ```
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(1.0);
    /// tape.reset();
    /// assert!(tape.is_empty());
    /// assert!(x.try_exp().unwrap_err().to_string().contains("before the tape was reset"));
    /// ```
    pub fn reset(&self) {
        let mut inner = self.inner.borrow_mut();
        // Bumped here, not last: last, the compiler merged this increment with the
        // release of `inner`'s borrow (the next field) into one 16-byte load and store,
        // and the load stalled on the borrow's 8-byte store just before it (store
        // forwarding fails across two stores): 4% of W1's time (perf) instead of 1.5%.
        self.generation.set(self.generation.get().wrapping_add(1));
        let inner = &mut *inner;
        inner.nodes.clear();
        inner.operand_lists.clear();
        inner.scope_runs.clear();
        inner.forget_bindings_after(0);
        inner.tensor_nodes.clear();
        // What only some tapes use is cleared only when used: a small scalar graph
        // reset every step (W1) then pays one test of the lengths together.
        let rare = inner.param_names.len()
            | inner.tensors.len()
            | inner.indices.len()
            | inner.names.len()
            | inner.renamed.len()
            | inner.custom.len()
            | (inner.scopes.len() > 1) as usize;
        if rare != 0 {
            inner.clear_rarely_used();
        }
        inner.kept = 0;
        inner.current_scope = 0;
        let mut hooks = self.hooks.borrow_mut();
        if !hooks.is_empty() {
            hooks.clear();
        }
    }

    /// Marks the tape's current end, for [`Tape::rewind`]: record a shared beginning
    /// once (say, the parameters), take a checkpoint, then record and rewind many
    /// endings without copying the beginning again.
    ///
    /// ```
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([2.0, 3.0]));
    /// let tape = Tape::<f64>::new();
    /// let _ = tape.param(&store, w);
    /// let mut start = tape.checkpoint();
    /// for x in [1.0, 2.0] {
    ///     tape.rewind(&mut start).unwrap();
    ///     // The parameter's node is kept; `param` hands out a handle to it.
    ///     let loss = (tape.param(&store, w) * x).sum();
    ///     assert_eq!(loss.item(), 5.0 * x);
    ///     assert_eq!(tape.len(), 3); // w, the product (mul_scalar(x)), the sum
    /// }
    /// ```
    pub fn checkpoint(&self) -> Checkpoint {
        let mut inner = self.inner.borrow_mut();
        inner.kept = inner.kept.max(inner.nodes.len());
        Checkpoint {
            tape: self.uid,
            generation: self.generation.get(),
            nodes: inner.nodes.len(),
            operand_lists: inner.operand_lists.len(),
            tensors: inner.tensors.len(),
            indices: inner.indices.len(),
            scopes: inner.scopes.len(),
            current_scope: inner.current_scope,
            scope_runs: inner.scope_runs.len(),
            bindings: inner.bindings.len(),
            param_names: inner.param_names.len(),
            renamed: inner.renamed.len(),
            hooks: self.hooks.borrow().len(),
            custom: inner.custom.len(),
        }
    }

    /// Forgets every node recorded after `checkpoint`, keeping the memory, as
    /// [`Tape::reset`] does for the whole tape: the tape is as it was when the
    /// checkpoint was taken, down to names, scopes and hooks (a hook or name given
    /// since to a node it keeps is undone too). Parameters bound before it stay bound:
    /// [`Tape::param`] returns their nodes. Every handle made before the rewind becomes stale, as after a
    /// reset; `checkpoint` is renewed so that it can be rewound to again.
    ///
    /// # Errors
    /// [`Error::StaleCheckpoint`] when the checkpoint is from another tape, or the tape
    /// was reset or rewound to another checkpoint since it was taken or last rewound to
    /// (the nodes it marks may be gone). The tape is left unchanged.
    ///
    /// ```
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(3.0);
    /// let mut mark = tape.checkpoint();
    /// let _ = x * x;
    /// tape.rewind(&mut mark).unwrap();
    /// assert_eq!(tape.len(), 1);
    /// tape.reset();
    /// assert!(tape.rewind(&mut mark).unwrap_err().to_string().contains("stale"));
    /// ```
    pub fn rewind(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        if checkpoint.tape != self.uid || checkpoint.generation != self.generation.get() {
            return Err(Error::StaleCheckpoint {
                checkpoint_tape: checkpoint.tape,
                checkpoint_generation: checkpoint.generation,
                tape: self.uid,
                tape_generation: self.generation.get(),
            });
        }
        let c = *checkpoint;
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        inner.nodes.truncate(c.nodes);
        inner.operand_lists.truncate(c.operand_lists);
        inner.tensor_nodes.truncate(c.tensors);
        for t in inner.tensors.drain(c.tensors..) {
            t.release(&mut inner.pool);
        }
        if inner.indices.len() > c.indices {
            let spare = &mut inner.spare_indices;
            spare.extend(inner.indices.drain(c.indices..).map(|ix| ix.data));
        }
        if inner
            .names
            .last_key_value()
            .is_some_and(|(&k, _)| k as usize >= c.nodes)
        {
            inner.names.split_off(&(c.nodes as u32));
        }
        // Kept nodes renamed since the checkpoint get their names back, latest first.
        for (node, old) in inner.renamed.drain(c.renamed..).rev() {
            if (node as usize) < c.nodes {
                match old {
                    Some(name) => inner.names.insert(node, name),
                    None => inner.names.remove(&node),
                };
            }
        }
        inner.kept = c.nodes;
        inner.scopes.truncate(c.scopes);
        inner.current_scope = c.current_scope;
        inner.scope_runs.truncate(c.scope_runs);
        inner.forget_bindings_after(c.bindings);
        inner.param_names.truncate(c.param_names);
        inner.custom.truncate(c.custom);
        // Hooks are registered in order: those since the checkpoint go, and a kept node
        // left with none loses its flag.
        let mut hooks = self.hooks.borrow_mut();
        if hooks.len() > c.hooks {
            for (node, _) in hooks.drain(c.hooks..) {
                if node.index() < c.nodes {
                    inner.nodes[node.index()].meta.0 &= !Meta::HOOK;
                }
            }
            for (node, _) in hooks.iter() {
                inner.nodes[node.index()].meta.0 |= Meta::HOOK;
            }
        }
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        checkpoint.generation = generation;
        Ok(())
    }
}
