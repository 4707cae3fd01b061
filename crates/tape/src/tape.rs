//! The tape: an arena of nodes in creation order.

use crate::Var;
use crate::error::{Error, NodeRef, Result};
use crate::ops::{Op, Operands};
use descent_tensor::{BufferPool, Float, Shape, ShapeDisplay, Tensor, View, numel};
use std::cell::{Cell, Ref, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node's position on its tape. Creation order is a topological order, so a node's
/// parents always have smaller ids than the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) u32);

/// `node 3`, as errors and reports name nodes.
impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.0)
    }
}

impl NodeId {
    /// The id of the node at `index` in creation order.
    ///
    /// # Panics
    /// If `index` does not fit in 32 bits (a tape holds at most 2³² nodes).
    #[inline]
    pub fn from_index(index: usize) -> Self {
        NodeId(u32::try_from(index).expect("a tape holds at most 2^32 nodes"))
    }

    /// The id as an index into the tape's node list.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a node's value lives: inline for a scalar (0-d) value, in the tape's tensor
/// arena otherwise. A scalar node therefore allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<T> {
    /// A 0-d value, stored in the node.
    Scalar(T),
    /// A tensor value: its slot in the tape's tensor arena.
    Tensor(u32),
}

/// One recorded operation: what it was, what it read, and its value if it is a scalar.
///
/// A node is plain `Copy` data of 40 bytes for `f64` (32 for `f32`; `tests/layout.rs`
/// pins both): the op, up to two operand ids inline, the value of a scalar node, and a
/// `u32` [`Meta`] saying where a tensor value lives and whether a gradient flows to the
/// node. Ops with more operands (`concat`, `stack`) keep their operand list on the tape
/// and name it in the op; scopes are kept as runs. `docs/ARCHITECTURE.md` gives the
/// measurements behind this layout.
#[derive(Clone, Copy, Debug)]
pub struct Node<T> {
    pub(crate) op: Op,
    /// The first two operands (unused slots and n-ary ops' slots hold node 0).
    pub(crate) args: [NodeId; 2],
    /// The value of a scalar node; unused (zero) for a tensor node.
    pub(crate) scalar: T,
    /// Where a tensor value lives; whether a gradient flows here.
    pub(crate) meta: Meta,
}

impl<T: Float> Node<T> {
    /// The op that made this node.
    pub fn op(&self) -> &Op {
        &self.op
    }
    /// The first two operand slots (see [`TapeRead::parents`] for the operands of any
    /// node; slots beyond an op's arity hold node 0).
    #[inline]
    pub fn args(&self) -> [NodeId; 2] {
        self.args
    }
    /// Where the node's tensor lives and whether a gradient flows to it.
    #[inline]
    pub fn meta(&self) -> Meta {
        self.meta
    }
    /// The value of a scalar node (zero for a tensor node, whose value is in the arena).
    #[inline]
    pub fn scalar(&self) -> T {
        self.scalar
    }
}

/// The operand slots of a node with fewer than two operands.
pub(crate) const NO_ARGS: [NodeId; 2] = [NodeId(0), NodeId(0)];

/// Per-node bookkeeping packed in a `u32`: bit 31 says whether a gradient flows to the
/// node; the low bits hold its tensor slot plus one, or 0 for a scalar node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta(u32);

impl Meta {
    const GRAD: u32 = 1 << 31;
    const HOOK: u32 = 1 << 30;
    const FLAGS: u32 = Self::GRAD | Self::HOOK;

    #[inline]
    pub(crate) fn new(slot: Option<u32>, requires_grad: bool) -> Self {
        let s = slot.map_or(0, |s| s + 1);
        debug_assert!(s < Self::HOOK, "tensor arena overflow");
        Meta(s | if requires_grad { Self::GRAD } else { 0 })
    }
    /// The bookkeeping of a scalar result of operands with bookkeeping `a` and `b`: it
    /// requires a gradient if either does.
    #[inline]
    pub(crate) fn scalar_of(a: Meta, b: Meta) -> Self {
        Meta((a.0 | b.0) & Self::GRAD)
    }
    /// Whether a gradient flows to the node: it is a variable or depends on one.
    #[inline]
    pub fn requires_grad(self) -> bool {
        self.0 & Self::GRAD != 0
    }
    /// The node's tensor slot, or `None` for a scalar node.
    #[inline]
    pub fn slot(self) -> Option<u32> {
        match self.0 & !Self::FLAGS {
            0 => None,
            s => Some(s - 1),
        }
    }
    /// Whether gradient hooks are registered on the node.
    #[inline]
    pub fn has_hook(self) -> bool {
        self.0 & Self::HOOK != 0
    }
}

/// Recycled buffers, so that a tape reused across steps stops allocating once warm.
#[derive(Debug, Default)]
pub(crate) struct Pool<T> {
    free: BufferPool<T>,
    /// The op being recorded, for the error when memory runs out.
    pub(crate) op: &'static str,
}

impl<T: Float> Pool<T> {
    /// A buffer of `len` elements for an op to overwrite completely, reusing the
    /// smallest free one that fits. Its contents are unspecified (a reused buffer keeps
    /// an earlier step's values; zeroing them would be a wasted pass over memory), so
    /// every forward kernel writes every element of its output.
    pub(crate) fn take(&mut self, len: usize) -> Result<Vec<T>> {
        let mut buf = match self.free.take_at_least(len) {
            Some(buf) => buf,
            None => {
                // A result the machine cannot hold is an error, not an abort.
                let mut buf = Vec::new();
                buf.try_reserve_exact(len).map_err(|_| Error::Allocation {
                    op: self.op,
                    elements: len,
                })?;
                buf
            }
        };
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, T::zero());
        }
        Ok(buf)
    }

    pub(crate) fn give(&mut self, buf: Vec<T>) {
        self.free.give(buf);
    }
}

/// Integer data some ops keep on the tape: gather indices and class labels.
#[derive(Clone, Debug)]
pub(crate) struct Indices {
    pub(crate) shape: Shape,
    pub(crate) data: Vec<usize>,
}

pub(crate) struct Inner<T> {
    pub(crate) nodes: Vec<Node<T>>,
    /// Operand lists of ops with more than two operands.
    pub(crate) operand_lists: Vec<NodeId>,
    pub(crate) tensors: Vec<Tensor<T>>,
    /// The node owning each tensor slot (ascending: slots are handed out in order).
    pub(crate) tensor_nodes: Vec<NodeId>,
    pub(crate) indices: Vec<Indices>,
    /// Buffers of indices forgotten by a reset or rewind, for the next ones.
    pub(crate) spare_indices: Vec<Vec<usize>>,
    pub(crate) pool: Pool<T>,
    pub(crate) names: BTreeMap<u32, String>,
    /// Scope paths; index 0 is the top level (`""`).
    pub(crate) scopes: Vec<String>,
    pub(crate) current_scope: u32,
    /// `(first node, scope)` each time the current scope changed: a node's scope is
    /// that of the last run starting at or before it.
    pub(crate) scope_runs: Vec<(u32, u32)>,
    /// Parameters bound as leaves this generation, in binding order.
    pub(crate) bindings: Vec<(crate::ParamId, NodeId)>,
    /// The names of bound parameters' nodes.
    pub(crate) param_names: Vec<(NodeId, std::sync::Arc<str>)>,
    /// Nodes below this index are kept by some checkpoint of this generation.
    pub(crate) kept: usize,
    /// The names such nodes had before they were renamed, oldest first, so that a
    /// rewind can restore them.
    pub(crate) renamed: Vec<(u32, Option<String>)>,
}

impl<T: Float> Inner<T> {
    #[inline]
    pub(crate) fn value(&self, id: NodeId) -> Value<T> {
        match self.nodes[id.index()].meta.slot() {
            None => Value::Scalar(self.nodes[id.index()].scalar),
            Some(slot) => Value::Tensor(slot),
        }
    }

    #[inline]
    pub(crate) fn requires_grad(&self, id: NodeId) -> bool {
        self.nodes[id.index()].meta.requires_grad()
    }

    pub(crate) fn view(&self, id: NodeId) -> View<'_, T> {
        match self.nodes[id.index()].meta.slot() {
            None => View::scalar(&self.nodes[id.index()].scalar),
            Some(slot) => self.tensors[slot as usize].view(),
        }
    }

    pub(crate) fn shape(&self, id: NodeId) -> &[usize] {
        match self.nodes[id.index()].meta.slot() {
            None => &[],
            Some(slot) => self.tensors[slot as usize].shape(),
        }
    }

    /// A node's name: given with `named`, or the name of the parameter it binds.
    pub(crate) fn name(&self, id: NodeId) -> Option<&str> {
        if let Some(n) = self.names.get(&id.0) {
            return Some(n);
        }
        self.param_names
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, s)| &**s)
    }

    pub(crate) fn scope_of(&self, id: NodeId) -> &str {
        let run = self.scope_runs.partition_point(|&(start, _)| start <= id.0);
        let scope = if run == 0 {
            0
        } else {
            self.scope_runs[run - 1].1
        };
        &self.scopes[scope as usize]
    }

    pub(crate) fn set_scope(&mut self, scope: u32) {
        self.current_scope = scope;
        let start = self.nodes.len() as u32;
        match self.scope_runs.last_mut() {
            Some(last) if last.0 == start => last.1 = scope,
            _ => self.scope_runs.push((start, scope)),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, op: Op, args: [NodeId; 2], scalar: T, meta: Meta) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node {
            op,
            args,
            scalar,
            meta,
        });
        id
    }

    /// The operands of node `id`, in order.
    #[inline]
    pub(crate) fn parents(&self, id: NodeId) -> &[NodeId] {
        let node = &self.nodes[id.index()];
        match node.op.operands() {
            Operands::Inline(n) => &node.args[..n],
            Operands::List { first, count } => &self.operand_lists[first..first + count],
        }
    }

    /// A node as anomaly reports describe an operand: its reference and a summary of
    /// its values.
    pub(crate) fn summary(&self, id: NodeId) -> crate::error::Operand {
        crate::error::Operand {
            node: self.node_ref(id),
            values: crate::error::summarize(self.view(id).data().iter().map(|v| v.as_f64())),
        }
    }

    pub(crate) fn node_ref(&self, id: NodeId) -> Box<NodeRef> {
        Box::new(NodeRef {
            id,
            op: self.nodes[id.index()].op.name(),
            name: self.name(id).map(str::to_owned),
            scope: self.scope_of(id).to_owned(),
            shape: self.shape(id).into(),
        })
    }
}

/// The value an op's forward computation produced.
pub(crate) enum Output<T> {
    Scalar(T),
    Tensor(Tensor<T>),
}

/// A Wengert list: every op recorded in the order the program ran it.
///
/// A tape belongs to one thread. [`Var`] handles borrow it, so ops can be written as
/// plain expressions. `reset` empties it for the next step and keeps its memory.
///
/// ```
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(3.0);
/// let y = x * x + 2.0 * x;
/// assert_eq!(y.item(), 15.0);
/// assert_eq!(tape.len(), 5); // x, x*x, the constant 2, 2*x, the sum
/// ```
pub struct Tape<T: Float = f64> {
    uid: u64,
    generation: Cell<u64>,
    pub(crate) anomaly: Cell<bool>,
    pub(crate) inner: RefCell<Inner<T>>,
    pub(crate) hooks: RefCell<Vec<(NodeId, GradHook<T>)>>,
}

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
}

impl Checkpoint {
    /// Number of nodes the checkpoint keeps.
    ///
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let _ = tape.var(1.0) + 2.0;
    /// assert_eq!(tape.checkpoint().len(), 3);
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

static NEXT_TAPE_UID: AtomicU64 = AtomicU64::new(1);

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> std::fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("uid", &self.uid)
            .field("generation", &self.generation.get())
            .field("nodes", &self.len())
            .finish()
    }
}

/// A one-line summary, then the nodes: `tape #3 (f64, generation 0): 2 nodes`.
///
/// ```
/// let tape = descent_tape::Tape::<f64>::new();
/// let x = tape.var(0.5).named("x");
/// let _ = x.tanh();
/// let text = tape.to_string();
/// assert!(text.ends_with("(f64, generation 0): 2 nodes\n#0 var 'x' []\n#1 tanh(#0) []\n"), "{text}");
/// ```
impl<T: Float> std::fmt::Display for Tape<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let read = self.read();
        writeln!(
            f,
            "tape #{} ({}, generation {}): {} nodes",
            self.uid,
            T::NAME,
            self.generation.get(),
            read.nodes().len()
        )?;
        for i in 0..read.nodes().len() {
            let id = NodeId::from_index(i);
            read.write_node_head(id, f)?;
            writeln!(f)?;
        }
        Ok(())
    }
}

impl<T: Float> Tape<T> {
    /// An empty tape.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty tape with room for `nodes` nodes before it reallocates.
    pub fn with_capacity(nodes: usize) -> Self {
        Self {
            // The uid only tells tapes apart in error messages and handle checks; it
            // never affects a value, an id or an order.
            uid: NEXT_TAPE_UID.fetch_add(1, Ordering::Relaxed),
            generation: Cell::new(0),
            anomaly: Cell::new(false),
            hooks: RefCell::new(Vec::new()),
            inner: RefCell::new(Inner {
                nodes: Vec::with_capacity(nodes),
                operand_lists: Vec::new(),
                tensors: Vec::new(),
                tensor_nodes: Vec::new(),
                indices: Vec::new(),
                spare_indices: Vec::new(),
                pool: Pool {
                    free: BufferPool::default(),
                    op: "",
                },
                names: BTreeMap::new(),
                scopes: vec![String::new()],
                current_scope: 0,
                scope_runs: Vec::new(),
                bindings: Vec::new(),
                param_names: Vec::new(),
                kept: 0,
                renamed: Vec::new(),
            }),
        }
    }

    /// This tape's identity, unique in the process.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// How many times the tape has been reset. Handles remember the generation they
    /// were made in, so a handle from before a reset is caught, never misread.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Number of nodes recorded.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// True when nothing has been recorded since creation or the last reset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

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
        let inner = &mut *inner;
        inner.nodes.clear();
        inner.operand_lists.clear();
        inner.scope_runs.clear();
        inner.bindings.clear();
        inner.tensor_nodes.clear();
        // What only some tapes use is cleared only when used: a small scalar graph
        // reset every step (W1) then pays a few length tests.
        if !inner.param_names.is_empty() {
            inner.param_names.clear();
        }
        if !inner.tensors.is_empty() {
            for t in inner.tensors.drain(..) {
                inner.pool.give(t.into_data());
            }
        }
        if !inner.indices.is_empty() {
            let spare = &mut inner.spare_indices;
            spare.extend(inner.indices.drain(..).map(|ix| ix.data));
        }
        if !inner.names.is_empty() {
            inner.names.clear();
        }
        inner.kept = 0;
        if !inner.renamed.is_empty() {
            inner.renamed.clear();
        }
        if inner.scopes.len() > 1 {
            inner.scopes.truncate(1);
        }
        inner.current_scope = 0;
        let mut hooks = self.hooks.borrow_mut();
        if !hooks.is_empty() {
            hooks.clear();
        }
        self.generation.set(self.generation.get().wrapping_add(1));
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
    ///     assert_eq!(tape.len(), 4); // w, the constant, the product, the sum
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
            inner.pool.give(t.into_data());
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
        inner.bindings.truncate(c.bindings);
        inner.param_names.truncate(c.param_names);
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

    /// Turns anomaly detection on or off. While on, every op checks its result and
    /// refuses to record a NaN or an infinity, returning (or, in its panicking form,
    /// panicking with) an [`Error::NonFinite`] that names the op, the node it would have
    /// been, its scope, and a summary of each operand's values; the reverse walk
    /// likewise checks every gradient it computes. Off by default; it costs a scan of
    /// every value.
    ///
    /// ```
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// tape.set_anomaly_detection(true);
    /// let x = tape.var(0.0).named("x");
    /// let err = x.try_ln().unwrap_err().to_string();
    /// assert!(err.starts_with("ln: produced -inf at node 1"), "{err}");
    /// assert!(err.contains("node 0 'x'"), "{err}");
    /// ```
    pub fn set_anomaly_detection(&self, on: bool) {
        self.anomaly.set(on);
    }

    /// Whether anomaly detection is on.
    #[inline]
    pub fn anomaly_detection(&self) -> bool {
        self.anomaly.get()
    }

    /// Runs the hooks registered on `id` on its gradient (called by the reverse walk).
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

    /// A leaf that gradients flow to: a scalar (`tape.var(2.0)`) or a tensor.
    ///
    /// ```
    /// use descent_tape::Tape;
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f32>::new();
    /// let w = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    /// assert_eq!(w.shape().as_slice(), &[2, 2]);
    /// ```
    #[inline]
    pub fn var<'a>(&self, value: impl IntoLeaf<'a, T>) -> Var<'_, T> {
        match value.into_leaf() {
            LeafValue::Scalar(v) => self.push_scalar_leaf(v, Op::Var),
            value => self.leaf(value, Op::Var),
        }
    }

    /// A leaf that no gradient flows to (input data, targets, fixed numbers).
    ///
    /// ```
    /// use descent_tape::Tape;
    /// use descent_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let data = Tensor::from([[1.0, 2.0]]);
    /// let x = tape.constant(&data); // borrowed: the tape copies it into its own buffer
    /// assert!(!x.requires_grad());
    /// ```
    #[inline]
    pub fn constant<'a>(&self, value: impl IntoLeaf<'a, T>) -> Var<'_, T> {
        match value.into_leaf() {
            LeafValue::Scalar(v) => self.push_scalar_leaf(v, Op::Constant),
            value => self.leaf(value, Op::Constant),
        }
    }

    /// A scalar leaf, recorded without going through a tensor.
    #[inline]
    pub fn scalar(&self, value: T) -> Var<'_, T> {
        self.push_scalar_leaf(value, Op::Var)
    }

    #[inline]
    pub(crate) fn scalar_constant(&self, value: T) -> Var<'_, T> {
        self.push_scalar_leaf(value, Op::Constant)
    }

    #[inline]
    fn push_scalar_leaf(&self, value: T, op: Op) -> Var<'_, T> {
        let requires_grad = matches!(op, Op::Var);
        let id = self
            .inner
            .borrow_mut()
            .push(op, NO_ARGS, value, Meta::new(None, requires_grad));
        self.handle(id)
    }

    fn leaf(&self, value: LeafValue<'_, T>, op: Op) -> Var<'_, T> {
        let view = match &value {
            LeafValue::Scalar(v) => return self.push_scalar_leaf(*v, op),
            LeafValue::View(v) => *v,
            LeafValue::Owned(t) => t.view(),
        };
        if view.ndim() == 0 {
            return self.push_scalar_leaf(view.item(), op);
        }
        let requires_grad = matches!(op, Op::Var);
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        // The value is copied into one of the tape's buffers, so a steady loop reuses
        // them instead of growing the pool by a buffer a step.
        // Copying a value that already exists in memory; running out here is as fatal
        // as it would be anywhere else in the program.
        let mut buf = inner.pool.take(view.len()).expect("memory for a leaf");
        buf.copy_from_slice(view.data());
        let value = view;
        let t = Tensor::new(value.shape(), buf).expect("same length as the value");
        let id = push_node(inner, op, NO_ARGS, Output::Tensor(t), requires_grad);
        self.handle(id)
    }

    #[inline]
    pub(crate) fn handle(&self, id: NodeId) -> Var<'_, T> {
        Var {
            id,
            generation: self.generation.get(),
            tape: self,
        }
    }

    /// Checks that `v` is a live handle of this tape.
    #[inline]
    pub(crate) fn check(&self, op: &'static str, v: &Var<'_, T>) -> Result<()> {
        if std::ptr::eq(v.tape, self) && v.generation == self.generation.get() {
            Ok(())
        } else {
            Err(self.handle_error(op, v))
        }
    }

    /// Why `v` is not a live handle of this tape (out of line: ops inline `check`).
    #[cold]
    #[inline(never)]
    fn handle_error(&self, op: &'static str, v: &Var<'_, T>) -> Error {
        if !std::ptr::eq(v.tape, self) {
            return Error::ForeignHandle {
                op,
                id: v.id,
                handle_tape: v.tape.uid,
                tape: self.uid,
            };
        }
        Error::StaleHandle {
            op,
            id: v.id,
            handle_generation: v.generation,
            tape_generation: self.generation.get(),
        }
    }

    /// Records an op: checks its operands, computes its value with `forward` (which
    /// reads the operands through the tape and takes buffers from its pool), and pushes
    /// the node. A 0-d result is stored inline as a scalar.
    pub(crate) fn record<'t>(
        &'t self,
        op: Op,
        operands: &[Var<'t, T>],
        forward: impl FnOnce(&Inner<T>, &mut Pool<T>) -> Result<Output<T>>,
    ) -> Result<Var<'t, T>> {
        let name = op.name();
        for v in operands {
            self.check(name, v)?;
        }
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let mut pool = std::mem::take(&mut inner.pool);
        pool.op = name;
        let result = forward(inner, &mut pool);
        inner.pool = pool;
        let value = result?;
        if self.anomaly.get() {
            let bad = match &value {
                Output::Scalar(v) => (!v.is_finite()).then_some(*v),
                Output::Tensor(t) => t.data().iter().copied().find(|v| !v.is_finite()),
            };
            if let Some(bad) = bad {
                let shape: descent_tensor::Shape = match &value {
                    Output::Scalar(_) => descent_tensor::Shape::new(),
                    Output::Tensor(t) => t.shape().into(),
                };
                if let Output::Tensor(t) = value {
                    inner.pool.give(t.into_data());
                }
                return Err(Error::NonFinite {
                    op: name,
                    value: bad.as_f64(),
                    node: NodeId(inner.nodes.len() as u32),
                    scope: inner.scopes[inner.current_scope as usize].clone(),
                    shape,
                    operands: operands.iter().map(|v| inner.summary(v.id)).collect(),
                });
            }
        }
        let requires_grad = operands.iter().any(|v| inner.requires_grad(v.id));
        // Ops with more than two operands keep them in `operand_lists` (see `join`).
        let mut args = NO_ARGS;
        for (slot, v) in args.iter_mut().zip(operands) {
            *slot = v.id;
        }
        let id = push_node(inner, op, args, value, requires_grad);
        Ok(self.handle(id))
    }

    /// Borrows the tape's contents for reading (the reverse walk, renderers).
    pub fn read(&self) -> TapeRead<'_, T> {
        TapeRead {
            inner: self.inner.borrow(),
            uid: self.uid,
            generation: self.generation.get(),
        }
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

    /// Stores integer data (indices, labels) and returns its slot.
    /// The data is copied into a buffer kept from an earlier recording when there is
    /// one, so a steady loop (W4's labels, one per sample) allocates none.
    pub(crate) fn push_indices(inner: &mut Inner<T>, shape: &[usize], data: &[usize]) -> u32 {
        debug_assert_eq!(numel(shape), data.len());
        let mut buf = inner.spare_indices.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        inner.indices.push(Indices {
            shape: shape.into(),
            data: buf,
        });
        (inner.indices.len() - 1) as u32
    }
}

fn push_node<T: Float>(
    inner: &mut Inner<T>,
    op: Op,
    args: [NodeId; 2],
    value: Output<T>,
    requires_grad: bool,
) -> NodeId {
    let (scalar, slot) = match value {
        Output::Scalar(v) => (v, None),
        Output::Tensor(t) if t.ndim() == 0 => {
            let v = t.item();
            inner.pool.give(t.into_data());
            (v, None)
        }
        Output::Tensor(t) => {
            inner.tensors.push(t);
            inner.tensor_nodes.push(NodeId(inner.nodes.len() as u32));
            (T::zero(), Some((inner.tensors.len() - 1) as u32))
        }
    };
    inner.push(op, args, scalar, Meta::new(slot, requires_grad))
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
    /// Where a node's value lives.
    #[inline]
    pub fn node_value(&self, id: NodeId) -> Value<T> {
        self.inner.value(id)
    }

    /// The integer data (gather indices, labels) an op keeps, by slot.
    pub fn indices(&self, slot: u32) -> (&[usize], &[usize]) {
        let ix = &self.inner.indices[slot as usize];
        (&ix.shape, &ix.data)
    }
    /// The node owning each tensor slot, in slot order (which is node order).
    pub fn tensor_nodes(&self) -> &[NodeId] {
        &self.inner.tensor_nodes
    }
    /// The operands of node `id`, in order.
    pub fn parents(&self, id: NodeId) -> &[NodeId] {
        self.inner.parents(id)
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
        write!(out, "#{} {}", id.index(), self.inner.nodes[id.index()].op)?;
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

    /// The tensor stored in an arena slot.
    pub fn tensor_slot(&self, slot: u32) -> &Tensor<T> {
        &self.inner.tensors[slot as usize]
    }
}

/// A leaf's value as the tape receives it.
#[derive(Debug)]
pub enum LeafValue<'a, T: Float> {
    /// A number: stored inline, no allocation.
    Scalar(T),
    /// Borrowed elements, copied into a tape buffer.
    View(View<'a, T>),
    /// An owned tensor, copied into a tape buffer.
    Owned(Tensor<T>),
}

/// What [`Tape::var`] and [`Tape::constant`] accept: a number (`2.0`), a tensor or a
/// reference to one, a `Vec`, a slice, or (nested) arrays.
pub trait IntoLeaf<'a, T: Float> {
    /// The value, ready for the tape.
    fn into_leaf(self) -> LeafValue<'a, T>;
}

impl<'a> IntoLeaf<'a, f64> for f64 {
    #[inline]
    fn into_leaf(self) -> LeafValue<'a, f64> {
        LeafValue::Scalar(self)
    }
}

impl<'a> IntoLeaf<'a, f32> for f32 {
    #[inline]
    fn into_leaf(self) -> LeafValue<'a, f32> {
        LeafValue::Scalar(self)
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for Tensor<T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(self)
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for &'a Tensor<T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::View(self.view())
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for View<'a, T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::View(self)
    }
}

impl<'a, T: Float> IntoLeaf<'a, T> for Vec<T> {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}

impl<'a, T: Float, const N: usize> IntoLeaf<'a, T> for [T; N] {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}

impl<'a, T: Float, const R: usize, const C: usize> IntoLeaf<'a, T> for [[T; C]; R] {
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}

impl<'a, T: Float, const D: usize, const R: usize, const C: usize> IntoLeaf<'a, T>
    for [[[T; C]; R]; D]
{
    /// ```
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let x = tape.var([[[1.0, 2.0]], [[3.0, 4.0]]]);
    /// assert_eq!(x.shape().as_slice(), &[2, 1, 2]);
    /// ```
    fn into_leaf(self) -> LeafValue<'a, T> {
        LeafValue::Owned(Tensor::from(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle stays stale however many resets pass: with a 32-bit count, the one
    /// from generation 0 read the new node 0 after 2^32 resets. (2^32 resets take half
    /// a minute in release; the count is set just below instead.)
    #[test]
    fn a_handle_is_stale_after_2_to_the_32_resets() {
        let tape = Tape::<f64>::new();
        let old = tape.var(Tensor::from([1.0, 2.0]));
        let mut mark = tape.checkpoint();
        tape.generation.set(u64::from(u32::MAX));
        tape.reset();
        assert_eq!(tape.generation(), 1 << 32);
        let new = tape.var(Tensor::from([10.0, 20.0, 30.0]));
        assert_eq!(old.id(), new.id());
        assert!(matches!(
            old.try_sigmoid(),
            Err(Error::StaleHandle { handle_generation: 0, tape_generation, .. })
                if tape_generation == 1 << 32
        ));
        assert!(matches!(
            tape.rewind(&mut mark),
            Err(Error::StaleCheckpoint { .. })
        ));
        assert_eq!(new.try_sigmoid().map(|v| v.shape().to_vec()), Ok(vec![3]));
    }
}
