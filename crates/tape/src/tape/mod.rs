//! The tape: an arena of nodes in creation order, and the recording of ops onto it.
//!
//! The rest of the tape's ideas have a file each: `leaf.rs` (values a program puts on
//! the tape), `checkpoint.rs` (reset and rewind), `hooks.rs` (gradient hooks, names and
//! scopes) and `read.rs` (the read-only borrow the walk and renderers hold). The arena
//! knows ops only as data (`crate::op`), never the ops' code (`crate::ops`).

mod bindings;
mod checkpoint;
mod grad_mode;
mod hooks;
mod leaf;
mod slots;
pub(crate) use slots::Stored;
mod read;

pub use checkpoint::Checkpoint;
pub use grad_mode::NoGradGuard;
pub use hooks::{GradHook, HookGrad, ScopeGuard};
pub use leaf::{IntoLeaf, LeafValue};
pub use read::TapeRead;

use crate::Var;
use crate::error::{Error, NodeRef, Result};
use crate::op::{Op, Operands};
use descent_tensor::{BufferPool, Float, Shape, Tensor, View, numel};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
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
    /// Tensor values: the tape's own, or parameters' shared with their store.
    pub(crate) tensors: Vec<Stored<T>>,
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
    /// The same bindings by parameter, so that binding and lookup are O(1) (see
    /// `bindings.rs`). A hash map rather than a `slotmap::SecondaryMap` keyed by
    /// `ParamKey`: two stores hand out the same keys, and where their versions differ
    /// a secondary map keeps the newer entry and silently ignores the older one.
    pub(crate) binding_index: HashMap<crate::ParamId, NodeId>,
    /// The names of bound parameters' nodes.
    pub(crate) param_names: Vec<(NodeId, std::sync::Arc<str>)>,
    /// Nodes below this index are kept by some checkpoint of this generation.
    pub(crate) kept: usize,
    /// The names such nodes had before they were renamed, oldest first, so that a
    /// rewind can restore them.
    pub(crate) renamed: Vec<(u32, Option<String>)>,
    /// The rules of custom nodes (`ops/custom.rs`), named by slot in `Op::Custom`.
    pub(crate) custom: Vec<std::rc::Rc<dyn crate::ops::custom::CustomOp<T>>>,
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

    #[inline]
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

/// Bit of [`Tape`]'s modes: anomaly detection is on.
pub(crate) const MODE_ANOMALY: u8 = 1;
/// Bit of [`Tape`]'s modes: ops are recorded without gradients (`grad_mode.rs`).
pub(crate) const MODE_NO_GRAD: u8 = 2;

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
/// assert_eq!(tape.len(), 4); // x, x*x, 2*x (one node: the number is in it), the sum
/// ```
pub struct Tape<T: Float = f64> {
    uid: u64,
    generation: Cell<u64>,
    /// [`MODE_ANOMALY`] and [`MODE_NO_GRAD`], in one cell so that the scalar fast
    /// paths test both with one load, before the op (W6: 86 → 80 instructions an op
    /// recorded, callgrind).
    pub(crate) modes: Cell<u8>,
    pub(crate) inner: RefCell<Inner<T>>,
    pub(crate) hooks: RefCell<Vec<(NodeId, GradHook<T>)>>,
}

/// The uid the next tape gets: a process-wide counter, so that every tape has its own
/// (the first is 1). A uid only tells tapes apart: `Var::validate` and friends refuse a
/// handle whose tape is another one, and errors name tapes by it (`tape #3`). It never
/// affects a value, an id or an order, so two runs that create their tapes in a
/// different order (threads) compute the same numbers.
///
/// `Relaxed` is enough: the only promise needed is that no two `fetch_add`s return the
/// same number, which atomicity alone gives; no other memory is published through the
/// counter, so no ordering with other reads or writes is needed. 2⁶⁴ tapes cannot be
/// created, so it never wraps.
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
            // See `NEXT_TAPE_UID`: identity only, never a value.
            uid: NEXT_TAPE_UID.fetch_add(1, Ordering::Relaxed),
            generation: Cell::new(0),
            modes: Cell::new(0),
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
                binding_index: HashMap::new(),
                param_names: Vec::new(),
                kept: 0,
                renamed: Vec::new(),
                custom: Vec::new(),
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
        self.set_mode(MODE_ANOMALY, on);
    }

    /// Whether anomaly detection is on.
    #[inline]
    pub fn anomaly_detection(&self) -> bool {
        self.modes.get() & MODE_ANOMALY != 0
    }

    /// Whether ops are recorded without gradients now ([`Tape::no_grad`]).
    #[inline]
    pub(crate) fn grad_off(&self) -> bool {
        self.modes.get() & MODE_NO_GRAD != 0
    }

    /// Sets or clears one mode bit; returns whether it was set.
    pub(crate) fn set_mode(&self, mode: u8, on: bool) -> bool {
        let was = self.modes.get();
        self.modes.set(if on { was | mode } else { was & !mode });
        was & mode != 0
    }

    /// No mode is on: the scalar fast paths may record (anomaly detection and
    /// `no_grad` both send an op to the general path, which handles them).
    #[inline(always)]
    pub(crate) fn plain_mode(&self) -> bool {
        self.modes.get() == 0
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
        if self.anomaly_detection() {
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
        let requires_grad = !self.grad_off() && operands.iter().any(|v| inner.requires_grad(v.id));
        // Ops with more than two operands keep them in `operand_lists` (see `join`).
        let mut args = NO_ARGS;
        for (slot, v) in args.iter_mut().zip(operands) {
            *slot = v.id;
        }
        let id = push_node(inner, op, args, value, requires_grad);
        Ok(self.handle(id))
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
            inner.tensors.push(Stored::Own(t));
            inner.tensor_nodes.push(NodeId(inner.nodes.len() as u32));
            (T::zero(), Some((inner.tensors.len() - 1) as u32))
        }
    };
    inner.push(op, args, scalar, Meta::new(slot, requires_grad))
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
