//! Parameters bound on a tape: which node holds each, found in O(1).

use super::Inner;
use crate::{NodeId, ParamId};
use descent_tensor::Float;

impl<T: Float> Inner<T> {
    /// The node parameter `id` is bound to this generation, if it is bound.
    #[inline]
    pub(crate) fn binding(&self, id: ParamId) -> Option<NodeId> {
        if self.bindings.is_empty() {
            // No hashing for a tape that binds nothing (W1).
            return None;
        }
        self.binding_index.get(&id).copied()
    }

    /// Records that parameter `id` is bound to `node` (not bound before).
    pub(crate) fn bind(&mut self, id: ParamId, node: NodeId) {
        debug_assert!(self.binding(id).is_none(), "a parameter is bound once");
        self.bindings.push((id, node));
        self.binding_index.insert(id, node);
    }

    /// Forgets the bindings after the first `kept`, keeping the memory: the map keeps
    /// its capacity, so a warm loop that binds the same parameters each step allocates
    /// nothing.
    pub(crate) fn forget_bindings_after(&mut self, kept: usize) {
        if self.bindings.len() <= kept {
            return;
        }
        if kept == 0 {
            self.binding_index.clear();
        } else {
            for (id, _) in &self.bindings[kept..] {
                self.binding_index.remove(id);
            }
        }
        self.bindings.truncate(kept);
    }
}
