//! Reading a tape: [`TapeRead`], the borrow the reverse walk and the renderers hold.

use super::{Inner, Node, NodeId, Tape, Value};
use crate::error::NodeRef;
use descent_tensor::{Float, ShapeDisplay, Tensor, View};
use std::cell::Ref;

impl<T: Float> Tape<T> {
    /// Borrows the tape's contents for reading (the reverse walk, renderers).
    pub fn read(&self) -> TapeRead<'_, T> {
        TapeRead {
            inner: self.inner.borrow(),
            uid: self.uid,
            generation: self.generation.get(),
        }
    }
}

/// A read-only borrow of a tape's nodes, values, names and scopes.
///
/// Held while the reverse walk or a renderer runs; recording while it is held panics
/// (a `RefCell` rule), so hold it briefly.
pub struct TapeRead<'t, T: Float> {
    inner: Ref<'t, Inner<T>>,
    uid: u64,
    generation: u64,
}

impl<T: Float> TapeRead<'_, T> {
    /// The tape's uid.
    pub fn uid(&self) -> u64 {
        self.uid
    }
    /// The tape's generation when this borrow was taken.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// All nodes, in creation (topological) order.
    pub fn nodes(&self) -> &[Node<T>] {
        &self.inner.nodes
    }
    /// A node's value as a view (0-d for scalar nodes).
    pub fn value(&self, id: NodeId) -> View<'_, T> {
        self.inner.view(id)
    }
    /// A node's shape (`[]` for scalar nodes).
    pub fn shape(&self, id: NodeId) -> &[usize] {
        self.inner.shape(id)
    }
    /// A node's name: given with `named`, or the name of the parameter it binds.
    pub fn name(&self, id: NodeId) -> Option<&str> {
        self.inner.name(id)
    }
    /// All named nodes (by `named`, then bound parameters), in id order within each.
    pub fn names(&self) -> impl Iterator<Item = (NodeId, &str)> {
        let given = self
            .inner
            .names
            .iter()
            .map(|(&i, s)| (NodeId(i), s.as_str()));
        let params = self.inner.param_names.iter().map(|(i, s)| (*i, &**s));
        given.chain(params)
    }
    /// The scope path a node was recorded in (`""` at the top level).
    pub fn scope_of(&self, id: NodeId) -> &str {
        self.inner.scope_of(id)
    }
    // Hidden from the docs: raw arena access for the reverse walk (descent-backprop,
    // another crate, so it must be public); renderers and users read values by node.
    #[doc(hidden)]
    /// Where a node's value lives.
    #[inline]
    pub fn node_value(&self, id: NodeId) -> Value<T> {
        self.inner.value(id)
    }

    // Hidden from the docs: raw arena access for the reverse walk (descent-backprop,
    // another crate, so it must be public); renderers and users read values by node.
    #[doc(hidden)]
    /// The integer data (gather indices, labels) an op keeps, by slot.
    pub fn indices(&self, slot: u32) -> (&[usize], &[usize]) {
        let ix = &self.inner.indices[slot as usize];
        (&ix.shape, &ix.data)
    }
    // Hidden from the docs: raw arena access for the reverse walk (descent-backprop,
    // another crate, so it must be public); renderers and users read values by node.
    #[doc(hidden)]
    /// The node owning each tensor slot, in slot order (which is node order).
    pub fn tensor_nodes(&self) -> &[NodeId] {
        &self.inner.tensor_nodes
    }
    /// The operands of node `id`, in order.
    pub fn parents(&self, id: NodeId) -> &[NodeId] {
        self.inner.parents(id)
    }
    /// The node parameter `id` is bound to this generation (by [`Tape::param`]), or
    /// `None` when it is not bound. O(1): the tape keeps an index by parameter.
    ///
    /// ```
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([1.0, 2.0]));
    /// let b = store.insert("b", Tensor::from([0.5]));
    /// let tape = Tape::<f64>::new();
    /// let wv = tape.param(&store, w);
    /// assert_eq!(tape.read().binding(w), Some(wv.id()));
    /// assert_eq!(tape.read().binding(b), None); // not bound on this tape
    /// tape.reset();
    /// assert_eq!(tape.read().binding(w), None); // bindings last one generation
    /// ```
    #[inline]
    pub fn binding(&self, id: crate::ParamId) -> Option<NodeId> {
        self.inner.binding(id)
    }
    /// Parameters bound with [`Tape::param`] this generation, in binding order.
    pub fn bindings(&self) -> &[(crate::ParamId, NodeId)] {
        &self.inner.bindings
    }
    /// How a node is named in errors.
    pub fn node_ref(&self, id: NodeId) -> NodeRef {
        *self.inner.node_ref(id)
    }
    pub(crate) fn inner_ref(&self) -> &Inner<T> {
        &self.inner
    }
    /// Writes how renders name node `id`: `#4 add(#2, #3) 'h' in layer1 [2, 3]` (id, op
    /// with attributes, operands, name, scope, shape). `Tape`'s `Display` and the
    /// snapshot renderer both start each line with it.
    pub fn write_node_head(&self, id: NodeId, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let op = self.inner.nodes[id.index()].op;
        write!(out, "#{} {op}", id.index())?;
        if let Some(slot) = op.options_slot() {
            op.write_options(&self.inner.indices[slot as usize].data, out)?;
        }
        if let crate::op::Op::Custom { rule, .. } = op {
            write!(
                out,
                "[{}]",
                crate::ops::custom::custom_name(&self.inner, rule)
            )?;
        }
        let parents = self.inner.parents(id);
        if !parents.is_empty() {
            write!(out, "(")?;
            for (k, p) in parents.iter().enumerate() {
                if k > 0 {
                    write!(out, ", ")?;
                }
                write!(out, "#{}", p.index())?;
            }
            write!(out, ")")?;
        }
        if let Some(name) = self.inner.name(id) {
            write!(out, " '{name}'")?;
        }
        let scope = self.inner.scope_of(id);
        if !scope.is_empty() {
            write!(out, " in {scope}")?;
        }
        write!(out, " {}", ShapeDisplay(self.inner.shape(id)))
    }

    // Hidden from the docs: raw arena access for the reverse walk (descent-backprop,
    // another crate, so it must be public); renderers and users read values by node.
    #[doc(hidden)]
    /// The tensor stored in an arena slot.
    pub fn tensor_slot(&self, slot: u32) -> &Tensor<T> {
        &self.inner.tensors[slot as usize]
    }
}
