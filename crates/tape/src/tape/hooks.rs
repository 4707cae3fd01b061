//! What is attached to nodes besides their values: gradient hooks, names and scopes.

use super::{Meta, Tape};
use crate::NodeId;
use descent_tensor::Float;

/// A closure that sees, and may change, a node's gradient during backward.
pub type GradHook<T> = Box<dyn FnMut(HookGrad<'_, T>)>;

/// What a gradient hook receives: the node, and its gradient (complete: every
/// contribution has arrived) as a mutable, row-major slice with its shape. What the
/// hook leaves in `grad` is what flows on to the node's operands and what the
/// gradient store reports for the node.
pub struct HookGrad<'a, T> {
    /// The node the hook is registered on.
    pub node: NodeId,
    /// The gradient's shape (the node's shape).
    pub shape: &'a [usize],
    /// The gradient's elements.
    pub grad: &'a mut [T],
}

impl<T: Float> Tape<T> {
    /// Runs the hooks registered on `id` on its gradient (called by the reverse walk).
    // Hidden from the docs: public only for the reverse walk, in another crate; a user
    // registers hooks with `Var::hook` and never runs them.
    #[doc(hidden)]
    /// Hooks must not record on the tape: the walk holds it for reading.
    pub fn run_hooks(&self, id: NodeId, shape: &[usize], grad: &mut [T]) {
        let mut hooks = self.hooks.borrow_mut();
        for (node, hook) in hooks.iter_mut() {
            if *node == id {
                hook(HookGrad {
                    node: id,
                    shape,
                    grad: &mut *grad,
                });
            }
        }
    }

    pub(crate) fn add_hook(&self, id: NodeId, hook: GradHook<T>) {
        self.inner.borrow_mut().nodes[id.index()].meta.0 |= Meta::HOOK;
        self.hooks.borrow_mut().push((id, hook));
    }

    /// Gives a node a name; names appear in errors, renders and gradient lookups.
    pub(crate) fn set_name(&self, id: NodeId, name: &str) {
        let mut inner = self.inner.borrow_mut();
        let old = inner.names.insert(id.0, name.to_owned());
        // A node a checkpoint keeps gets its old name back when the tape is rewound.
        if id.index() < inner.kept {
            inner.renamed.push((id.0, old));
        }
    }

    /// Opens a scope: ops recorded until the guard drops belong to `name`, nested
    /// under any scope already open (`layer1/act`).
    ///
    /// ```
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(1.0);
    /// let y = {
    ///     let _layer = tape.scope("layer1");
    ///     x.tanh()
    /// };
    /// assert_eq!(tape.read().scope_of(y.id()), "layer1");
    /// ```
    pub fn scope(&self, name: &str) -> ScopeGuard<'_, T> {
        let mut inner = self.inner.borrow_mut();
        let parent = inner.current_scope;
        let path = if parent == 0 {
            name.to_owned()
        } else {
            format!("{}/{}", inner.scopes[parent as usize], name)
        };
        let index = match inner.scopes.iter().position(|s| *s == path) {
            Some(i) => i as u32,
            None => {
                inner.scopes.push(path);
                (inner.scopes.len() - 1) as u32
            }
        };
        inner.set_scope(index);
        ScopeGuard {
            tape: self,
            parent,
            generation: self.generation.get(),
        }
    }
}

/// Closes a scope opened by [`Tape::scope`] when dropped.
#[must_use = "the scope closes when this guard is dropped"]
pub struct ScopeGuard<'t, T: Float> {
    tape: &'t Tape<T>,
    parent: u32,
    generation: u64,
}

impl<T: Float> Drop for ScopeGuard<'_, T> {
    fn drop(&mut self) {
        // A reset inside the scope already returned the tape to the top level.
        if self.tape.generation.get() == self.generation {
            self.tape.inner.borrow_mut().set_scope(self.parent);
        }
    }
}
