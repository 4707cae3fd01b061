//! The gradient store a reverse walk produces.

use crate::Error;
use descent_tape::{Meta, NodeId, ParamGradients, ParamId, ParamIndex, TapeRead, Var};
use descent_tensor::bins;
use descent_tensor::{BufferPool, Float, Shape, View};
use std::sync::OnceLock;

/// Which nodes' gradients a walk into a [`Gradients`] keeps for lookup afterwards.
///
/// ```
/// use descent_backprop::{Error, Gradients, Keep, backward_into};
/// use descent_tape::Tape;
/// use descent_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let w = tape.var(Tensor::from([1.0, 2.0]));
/// let h = w * w;
/// let loss = h.sum();
/// let mut grads = Gradients::empty().keeping(Keep::Leaves);
/// backward_into(loss, &mut grads).unwrap();
/// assert_eq!(grads.wrt(w).data(), &[2.0, 4.0]);
/// assert!(matches!(grads.try_wrt(h), Err(Error::NotKept { .. })));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// Every node's gradient, each layer's δ included: what inspection reads. The
    /// default.
    #[default]
    All,
    /// Only the leaves' (variables and parameters; constants read as zeros): what a
    /// training step needs. The walk gives an intermediate tensor node's buffer back as
    /// soon as its rule has run, so the next rule writes into memory still in cache
    /// instead of a fresh buffer per node (a recurrent network's backward pass over 200
    /// steps wrote 8 MB of gradients no one read). The arithmetic, and so every bit of
    /// the leaves' gradients, is the same as with [`Keep::All`]. Looking up an
    /// intermediate node is [`Error::NotKept`].
    Leaves,
}

/// The gradient of one output with respect to every node on a path to it (each
/// node's δ), looked up by handle: `grads.wrt(x)` or `grads[x]`. A store made with
/// [`Keep::Leaves`] keeps the leaves' only.
///
/// Scalar gradients sit in one flat vector indexed by node id; tensor gradients in a
/// vector indexed by the tensor's arena slot. Nodes no gradient reached have none
/// stored: [`Gradients::wrt`] reports them as zeros, [`Gradients::get`] as `None`.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(3.0);
/// let y = x * x;
/// let grads = y.backward();
/// assert_eq!(grads.wrt(x).item(), 6.0);
/// assert_eq!(grads[x], [6.0]);
/// ```
pub struct Gradients<T: Float> {
    pub(crate) tape_uid: u64,
    pub(crate) generation: u64,
    /// Gradient of each scalar node, by node id, meaningful where `reached` says so:
    /// the rest holds what an earlier walk left, and the vector may run past the output.
    pub(crate) scalar: Vec<T>,
    /// The index of the walk's output, the last node covered; no node is covered while
    /// `reached` is empty (no walk yet). A `u32` (node ids are): the store stays within 256
    /// bytes, which LLVM moves without a `memcpy` call (four a step in W1 when it grew).
    pub(crate) output: u32,
    /// One bit a node: did a gradient reach it.
    pub(crate) reached: Vec<u64>,
    /// Gradient buffer of each tensor slot, `None` where unreached.
    pub(crate) tensor: Vec<Option<Vec<T>>>,
    /// Shape of each tensor slot.
    pub(crate) shapes: Vec<Shape>,
    /// The node owning each tensor slot, ascending (slots are handed out in node order).
    pub(crate) slot_nodes: Vec<u32>,
    /// What an unreached tensor node's lookup reads, made on the first such lookup
    /// (most stores never need it: making it on every walk cost a pass over the
    /// largest unreached node, often a constant input), `zeros_len` elements long.
    pub(crate) zeros: OnceLock<Vec<T>>,
    pub(crate) zeros_len: usize,
    /// Parameters bound on the tape, with their nodes, in binding order.
    pub(crate) bindings: Vec<(ParamId, NodeId)>,
    /// Positions in `bindings` by parameter, made on the first lookup by id (a step
    /// reads the bindings in order and never needs it) and kept up to date from then.
    pub(crate) binding_index: OnceLock<Box<ParamIndex>>,
    /// Nodes on the tape when the walk ran: a later node's shape is unknown here.
    pub(crate) known: usize,
    /// Tensor gradient buffers of an earlier walk, reused by the next.
    pub(crate) spare: BufferPool<T>,
    /// Which gradients the walk keeps.
    pub(crate) keep: Keep,
    /// Under [`Keep::Leaves`], one bit a node: is it an intermediate node, whose gradient
    /// is not kept. Empty under [`Keep::All`].
    pub(crate) dropped: Vec<u64>,
}

/// A copy of the gradients, without the spare buffers (which can hold up to
/// [`descent_tensor::RECYCLE_BYTES`] of recycled memory, of no use to the copy).
impl<T: Float> Clone for Gradients<T> {
    fn clone(&self) -> Self {
        Self {
            tape_uid: self.tape_uid,
            generation: self.generation,
            scalar: self.scalar[..self.len()].to_vec(),
            output: self.output,
            reached: self.reached.clone(),
            tensor: self.tensor.clone(),
            shapes: self.shapes.clone(),
            slot_nodes: self.slot_nodes.clone(),
            zeros: OnceLock::new(),
            zeros_len: self.zeros_len,
            bindings: self.bindings.clone(),
            binding_index: OnceLock::new(),
            known: self.known,
            spare: BufferPool::default(),
            keep: self.keep,
            dropped: self.dropped.clone(),
        }
    }
}

/// A dropped store leaves its vectors and tensor buffers on its thread, for the next
/// store there (see `Kept`).
impl<T: Float> Drop for Gradients<T> {
    fn drop(&mut self) {
        if !self.tensor.is_empty() {
            for buf in self.tensor.drain(..).flatten() {
                self.spare.give(buf);
            }
        }
        if let Some(zeros) = self.zeros.take() {
            self.spare.give(zeros);
        }
        // Nothing is kept while the thread ends: the fields are freed as usual.
        let _ = bins::with_slot(|kept: &mut Kept<T>| kept.keep(self));
    }
}

/// What dropped stores leave on a thread for the next [`Gradients::empty`] there, in
/// one of the thread's [`bins`] slots: a loop that calls `backward()` every step then
/// allocates nothing once warm, as one that keeps a store for `backward_into` does.
/// Allocating and freeing a store's vectors cost W1's `loss.backward()` about 230 of
/// its 1,790 instructions a step (callgrind).
#[derive(Default)]
struct Kept<T> {
    /// The vectors of one dropped store (another dropped meanwhile frees its own).
    vectors: Option<Vectors<T>>,
    /// Tensor buffers of every store dropped since the last was made, up to
    /// [`descent_tensor::RECYCLE_BYTES`] in all.
    spare: BufferPool<T>,
    spare_bytes: usize,
}

/// A store's vectors, kept with their memory.
struct Vectors<T> {
    scalar: Vec<T>,
    reached: Vec<u64>,
    tensor: Vec<Option<Vec<T>>>,
    shapes: Vec<Shape>,
    slot_nodes: Vec<u32>,
    bindings: Vec<(ParamId, NodeId)>,
    dropped: Vec<u64>,
}

impl<T: Float> Kept<T> {
    /// Keeps a dropped store's vectors, unless another's are kept already or its
    /// scalar gradients alone take more than [`descent_tensor::RECYCLE_BYTES`], and
    /// its buffers, up to that bound in all.
    fn keep(&mut self, dropped: &mut Gradients<T>) {
        let bytes = dropped.scalar.capacity() * size_of::<T>() + dropped.reached.capacity() * 8;
        if self.vectors.is_none() && bytes <= descent_tensor::RECYCLE_BYTES {
            self.vectors.get_or_insert_with(|| Vectors {
                scalar: std::mem::take(&mut dropped.scalar),
                reached: std::mem::take(&mut dropped.reached),
                tensor: std::mem::take(&mut dropped.tensor),
                shapes: std::mem::take(&mut dropped.shapes),
                slot_nodes: std::mem::take(&mut dropped.slot_nodes),
                bindings: std::mem::take(&mut dropped.bindings),
                dropped: std::mem::take(&mut dropped.dropped),
            }); // (`= Some(..)` would call a drop of the `None`, out of line)
        }
        let room = descent_tensor::RECYCLE_BYTES - self.spare_bytes;
        self.spare_bytes += self.spare.absorb(&mut dropped.spare, room);
    }

    /// A new store with everything kept: the vectors emptied (their memory kept)
    /// and every buffer.
    #[inline]
    fn give(&mut self) -> Gradients<T> {
        self.spare_bytes = 0;
        let mut v = self.vectors.take().unwrap_or_else(Vectors::new);
        // The scalar gradients keep their length: a walk reads only those it marks
        // reached, so they need no zeroing (for W6's million nodes, 8 MB a walk).
        v.reached.clear();
        v.tensor.clear();
        v.shapes.clear();
        v.slot_nodes.clear();
        v.bindings.clear();
        v.dropped.clear();
        Gradients::with(v, std::mem::take(&mut self.spare))
    }
}

impl<T> Vectors<T> {
    fn new() -> Self {
        Self {
            scalar: Vec::new(),
            reached: Vec::new(),
            tensor: Vec::new(),
            shapes: Vec::new(),
            slot_nodes: Vec::new(),
            bindings: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

impl<T: Float> Gradients<T> {
    /// An empty store, to be filled by [`crate::backward_into`]: a loop that keeps
    /// one and refills it every step allocates nothing once warm. It starts with the
    /// memory of stores dropped earlier on this thread (the tensor buffers of all of
    /// them, up to [`descent_tensor::RECYCLE_BYTES`], and the vectors of one), so a
    /// loop that calls [`crate::backward`] every step allocates nothing once warm
    /// either.
    pub fn empty() -> Self {
        bins::with_slot(Kept::give)
            .unwrap_or_else(|| Self::with(Vectors::new(), BufferPool::default()))
    }

    /// An empty store on the memory of `v` and `spare`.
    #[inline]
    fn with(v: Vectors<T>, spare: BufferPool<T>) -> Self {
        Self {
            tape_uid: 0,
            generation: 0,
            scalar: v.scalar,
            output: 0,
            reached: v.reached,
            tensor: v.tensor,
            shapes: v.shapes,
            slot_nodes: v.slot_nodes,
            zeros: OnceLock::new(),
            zeros_len: 0,
            bindings: v.bindings,
            binding_index: OnceLock::new(),
            known: 0,
            spare,
            keep: Keep::All,
            dropped: v.dropped,
        }
    }

    /// This store, set to keep the gradients `keep` says from its next walk on. A store
    /// [`crate::backward`] returns keeps [`Keep::All`]; see [`Keep`] for an example.
    #[must_use]
    pub fn keeping(mut self, keep: Keep) -> Self {
        self.keep = keep;
        self
    }

    /// Which gradients this store's walks keep.
    ///
    /// ```
    /// use descent_backprop::{Gradients, Keep};
    /// assert_eq!(Gradients::<f32>::empty().keeps(), Keep::All);
    /// ```
    pub fn keeps(&self) -> Keep {
        self.keep
    }

    /// Clears the store for a walk over the first `len` nodes of `read`, keeping every
    /// allocation (tensor gradient buffers go to a spare list for reuse).
    ///
    /// Inlined up to the tests for tensor nodes and bindings; what they guard is out
    /// of line, so that a scalar graph walked every step (W1) pays the tests and the
    /// zeroing only, not the saving and restoring of registers the rest needs.
    #[inline]
    pub(crate) fn prepare(&mut self, read: &TapeRead<'_, T>, len: usize) {
        self.tape_uid = read.uid();
        self.generation = read.generation();
        self.known = read.nodes().len();
        // Only the reached bits are cleared: a scalar gradient is written `0 + v` on
        // its first arrival (`accumulate`), so the old values need no zeroing (a pass
        // over 8 bytes a node, which was a `memset` call per walk for W1 and 8 MB for
        // W6's million nodes), and the bits are those of zeroing and adding.
        // The tape's ids are u32, so a walk covers at least one and at most 2^32 nodes.
        self.output = (len - 1) as u32;
        if self.reached.len() == len.div_ceil(64) && self.scalar.len() >= len {
            // One word (a graph of up to 64 nodes) is one store, not a `memset` call.
            match self.reached.as_mut_slice() {
                [word] => *word = 0,
                words => words.fill(0),
            }
        } else {
            self.resize(len);
        }
        if self.keep == Keep::Leaves || !self.dropped.is_empty() {
            self.mark_dropped(read, len);
        }
        if !self.tensor.is_empty()
            || !self.slot_nodes.is_empty()
            || !read.tensor_nodes().is_empty()
            || !self.bindings.is_empty()
            || !read.bindings().is_empty()
        {
            self.prepare_tensors(read);
        }
    }

    /// Under [`Keep::Leaves`], marks the intermediate nodes among the first `len` (whose
    /// gradients the walk will not keep); else clears the marks.
    fn mark_dropped(&mut self, read: &TapeRead<'_, T>, len: usize) {
        self.dropped.clear();
        if self.keep == Keep::Leaves {
            self.dropped.resize(len.div_ceil(64), 0);
            for (i, node) in read.nodes()[..len].iter().enumerate() {
                if !node.op().is_leaf() {
                    self.dropped[i / 64] |= 1 << (i % 64);
                }
            }
        }
    }

    /// [`Error::NotKept`] if this store does not keep node `id`'s gradient.
    #[inline]
    pub(crate) fn check_kept(&self, id: NodeId) -> Result<(), Error> {
        if self.is_dropped(id.index()) {
            return Err(Error::NotKept { id });
        }
        Ok(())
    }

    /// Whether node `i` is an intermediate node whose gradient this store does not keep.
    #[inline]
    pub(crate) fn is_dropped(&self, i: usize) -> bool {
        self.dropped
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn resize(&mut self, len: usize) {
        if self.scalar.len() < len {
            self.scalar.resize(len, T::zero());
        }
        self.reached.clear();
        self.reached.resize(len.div_ceil(64), 0);
    }

    fn prepare_tensors(&mut self, read: &TapeRead<'_, T>) {
        for buf in self.tensor.drain(..).flatten() {
            self.spare.give(buf);
        }
        // Every tensor node's shape, those recorded after the output included, so that a
        // lookup of one of those gives zeros of its own shape (not a 0-d zero).
        let tensor_nodes = read.tensor_nodes();
        self.slot_nodes.clear();
        self.slot_nodes
            .extend(tensor_nodes.iter().map(|n| n.index() as u32));
        self.shapes.clear();
        self.shapes
            .extend(tensor_nodes.iter().map(|&n| Shape::from(read.shape(n))));
        self.tensor.resize(self.shapes.len(), None);
        self.bindings.clear();
        self.bindings.extend_from_slice(read.bindings());
        // An index a lookup made on the last walk is rebuilt in its own memory, so a
        // loop that looks parameters up by id every step does not allocate for it.
        if let Some(index) = self.binding_index.get_mut() {
            index.clear();
            index_bindings(index, &self.bindings);
        }
    }

    #[inline]
    pub(crate) fn mark(&mut self, i: usize) {
        self.reached[i / 64] |= 1 << (i % 64);
    }

    /// Adds `v` to scalar node `i`'s gradient and marks it reached.
    #[inline(always)]
    pub(crate) fn add_scalar(&mut self, i: usize, v: T) {
        accumulate(&mut self.scalar, &mut self.reached, i, v);
    }

    #[inline]
    pub(crate) fn is_reached(&self, i: usize) -> bool {
        self.reached
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// [`Gradients::buffer`] for a rule that can overwrite: on first use the buffer is
    /// not zeroed, its contents are unspecified (an earlier step's values), and the
    /// `true` returned says the rule must write every element. Later uses are as
    /// `buffer` (`false`: add into it).
    pub(crate) fn buffer_for_write(&mut self, i: usize, meta: Meta) -> (&mut [T], bool) {
        let Some(slot) = meta.slot() else {
            return (self.buffer(i, meta), false);
        };
        let s = slot as usize;
        if self.tensor[s].is_some() {
            return (self.buffer(i, meta), false);
        }
        let len = descent_tensor::numel(&self.shapes[s]);
        // The smallest spare buffer that fits (or a new one), so a steady loop reuses each
        // buffer for a gradient of its own size and stops allocating.
        let mut buf = self.spare.take_at_least(len).unwrap_or_default();
        // Only growth is zeroed (`resize` must fill it); the rest keeps stale values
        // that the caller overwrites.
        buf.truncate(len);
        buf.resize(len, T::zero());
        (self.tensor[s].insert(buf), true)
    }

    /// [`Gradients::buffer_for_write`] for two different tensor nodes at once; `None`
    /// for a scalar node or twice the same one.
    pub(crate) fn buffers_for_write_pair(
        &mut self,
        nodes: [usize; 2],
        metas: [Meta; 2],
    ) -> Option<[(&mut [T], bool); 2]> {
        let slots = [metas[0].slot()? as usize, metas[1].slot()? as usize];
        if slots[0] == slots[1] {
            return None;
        }
        let fresh = slots.map(|s| self.tensor[s].is_none());
        for k in 0..2 {
            if fresh[k] {
                self.buffer_for_write(nodes[k], metas[k]);
            }
        }
        let [x, y] = self.tensor.get_disjoint_mut(slots).ok()?;
        Some([(x.as_deref_mut()?, fresh[0]), (y.as_deref_mut()?, fresh[1])])
    }

    /// The buffer a rule adds node `i`'s gradient into, zeroed on first use.
    #[inline]
    pub(crate) fn buffer(&mut self, i: usize, meta: Meta) -> &mut [T] {
        match meta.slot() {
            None => {
                if !self.is_reached(i) {
                    self.scalar[i] = T::zero();
                }
                self.mark(i);
                std::slice::from_mut(&mut self.scalar[i])
            }
            Some(slot) => {
                let s = slot as usize;
                let len = descent_tensor::numel(&self.shapes[s]);
                let spare = &mut self.spare;
                self.tensor[s].get_or_insert_with(|| {
                    let mut buf = spare.take_at_least(len).unwrap_or_default();
                    buf.clear();
                    buf.resize(len, T::zero());
                    buf
                })
            }
        }
    }

    /// Sizes the shared zeros that unreached nodes' lookups read (made on first use).
    /// Inlined up to the test, which is all a scalar graph's walk (W1) pays.
    #[inline]
    pub(crate) fn finish(&mut self) {
        if !self.tensor.is_empty() {
            self.size_zeros();
        }
    }

    fn size_zeros(&mut self) {
        // Lookups read these zeros for unreached nodes only, not for dropped ones.
        let longest = self
            .tensor
            .iter()
            .zip(&self.shapes)
            .zip(&self.slot_nodes)
            .filter(|((t, _), node)| t.is_none() && !self.is_dropped(**node as usize))
            .map(|((_, s), _)| descent_tensor::numel(s))
            .max()
            .unwrap_or(0);
        if longest > self.zeros_len {
            self.zeros_len = longest;
            if let Some(short) = self.zeros.take() {
                self.spare.give(short);
            }
        }
    }

    #[inline]
    fn slot_of(&self, id: NodeId) -> Option<usize> {
        if self.slot_nodes.is_empty() {
            return None;
        }
        self.slot_nodes.binary_search(&(id.index() as u32)).ok()
    }

    #[inline]
    fn check(&self, x: &Var<'_, T>) -> Result<(), Error> {
        if x.tape().uid() == self.tape_uid && x.generation() == self.generation {
            Ok(())
        } else {
            Err(self.handle_error(x))
        }
    }

    /// Why `x` cannot be looked up here (out of line: lookups inline `check`).
    #[cold]
    #[inline(never)]
    fn handle_error(&self, x: &Var<'_, T>) -> Error {
        if x.tape().uid() != self.tape_uid {
            return Error::ForeignHandle {
                id: x.id(),
                handle_tape: x.tape().uid(),
                gradients_tape: self.tape_uid,
            };
        }
        Error::StaleHandle {
            id: x.id(),
            handle_generation: x.generation(),
            gradients_generation: self.generation,
        }
    }

    /// The gradient with respect to `x`, shaped like `x`'s value; zeros when no
    /// gradient reached it (it is not on a path to the output, was recorded after it
    /// but before `backward` ran, or is a constant).
    ///
    /// # Panics
    /// If `x` is from another tape, or from another generation of this tape than the
    /// one these gradients were computed on, or was recorded after they were computed
    /// ([`Error::RecordedAfter`]: they do not know its shape), or is an intermediate
    /// node and this store keeps only the leaves' gradients ([`Error::NotKept`]).
    #[inline]
    pub fn wrt(&self, x: Var<'_, T>) -> View<'_, T> {
        match self.try_wrt(x) {
            Ok(v) => v,
            Err(e) => fail(e),
        }
    }

    /// The fallible form of [`Gradients::wrt`].
    #[inline]
    pub fn try_wrt(&self, x: Var<'_, T>) -> Result<View<'_, T>, Error> {
        self.check(&x)?;
        if x.id().index() >= self.known {
            return Err(Error::RecordedAfter {
                id: x.id(),
                known: self.known,
            });
        }
        self.check_kept(x.id())?;
        // `finish` sized `zeros` for the largest unreached tensor node.
        Ok(self
            .view_of(x.id())
            .unwrap_or_else(|| self.zeros_like(x.id())))
    }

    /// The gradient with respect to `x`, or `None` when no gradient reached it (also
    /// when `x` was recorded after these gradients were computed).
    ///
    /// # Panics
    /// If `x` is from another tape, or from another generation of this tape, or is an
    /// intermediate node and this store keeps only the leaves' gradients.
    pub fn get(&self, x: Var<'_, T>) -> Option<View<'_, T>> {
        if let Err(e) = self.check(&x).and_then(|()| self.check_kept(x.id())) {
            fail(e);
        }
        self.view_of(x.id())
    }

    /// The gradient of a node by id, or `None` when no gradient reached it or this
    /// store does not keep it ([`Keep::Leaves`]). Ids beyond the output have none.
    pub fn by_id(&self, id: NodeId) -> Option<View<'_, T>> {
        self.view_of(id)
    }

    #[inline]
    fn view_of(&self, id: NodeId) -> Option<View<'_, T>> {
        if self.is_dropped(id.index()) {
            return None;
        }
        self.stored(id)
    }

    /// The gradient held for `id`, whether or not this store keeps it after the walk:
    /// what the walk's own checks read before the buffer is given back.
    #[inline]
    pub(crate) fn stored(&self, id: NodeId) -> Option<View<'_, T>> {
        let i = id.index();
        if i >= self.len() {
            return None;
        }
        if self.slot_nodes.is_empty() {
            return self.is_reached(i).then(|| View::scalar(&self.scalar[i]));
        }
        self.view_in_slots(id)
    }

    /// [`Gradients::view_of`] when the tape has tensor nodes (a search of their ids).
    fn view_in_slots(&self, id: NodeId) -> Option<View<'_, T>> {
        let i = id.index();
        match self.slot_of(id) {
            Some(s) => self.tensor[s]
                .as_deref()
                .map(|d| View::new(&self.shapes[s], d)),
            None => self.is_reached(i).then(|| View::scalar(&self.scalar[i])),
        }
    }

    /// The gradient with respect to a parameter bound on the tape with `Tape::param`,
    /// or `None` if it was not bound (or no gradient reached it).
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([2.0, 3.0]));
    /// let tape = Tape::new();
    /// let loss = (tape.param(&store, w) * 4.0).sum();
    /// let grads = loss.backward();
    /// assert_eq!(grads.param(w).unwrap().data(), &[4.0, 4.0]);
    /// ```
    pub fn param(&self, id: ParamId) -> Option<View<'_, T>> {
        let node = self.bound_node(id)?;
        self.view_of(node)
    }

    /// The `i`th bound parameter and its gradient, `None` where no gradient reached it.
    pub(crate) fn bound(&self, i: usize) -> Option<(ParamId, View<'_, T>)> {
        let (id, node) = self.bindings[i];
        self.view_of(node).map(|g| (id, g))
    }

    /// The node `id` was bound to, in O(1).
    fn bound_node(&self, id: ParamId) -> Option<NodeId> {
        // Boxed: a map inline made the store too large to move without `memcpy`,
        // which W1's `loss.backward()` a step paid three times over (callgrind).
        let index = self.binding_index.get_or_init(|| {
            let mut index = Box::<ParamIndex>::default();
            index_bindings(&mut index, &self.bindings);
            index
        });
        let pos = index.find(id)?;
        Some(self.bindings[pos].1)
    }

    /// Every bound parameter's gradient, in binding order (zeros where no gradient
    /// reached a bound parameter).
    pub fn params(&self) -> impl Iterator<Item = (ParamId, View<'_, T>)> + '_ {
        self.bindings.iter().map(|&(id, node)| {
            let view = self.view_of(node).unwrap_or_else(|| self.zeros_like(node));
            (id, view)
        })
    }

    pub(crate) fn zeros_like(&self, id: NodeId) -> View<'_, T> {
        match self.slot_of(id) {
            Some(s) => {
                let shape: &[usize] = &self.shapes[s];
                let zeros = self.zeros.get_or_init(|| vec![T::zero(); self.zeros_len]);
                View::new(shape, &zeros[..descent_tensor::numel(shape)])
            }
            None => View::scalar(T::ZERO_REF),
        }
    }

    /// Number of nodes covered (the output's id plus one).
    #[inline]
    pub fn len(&self) -> usize {
        if self.reached.is_empty() {
            0
        } else {
            self.output as usize + 1
        }
    }

    /// True when no node is covered.
    pub fn is_empty(&self) -> bool {
        self.reached.is_empty()
    }
}

/// The gradients of the parameters bound on the tape, in binding order, read in place
/// by optimisers and clipping: a step copies nothing. A bound parameter no gradient
/// reached reads as zeros (and has no buffer for clipping to change).
///
/// ```
/// use descent_backprop::Backward;
/// use descent_tape::{ParamGradients, ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([3.0, 4.0]));
/// let tape = Tape::new();
/// let loss = (tape.param(&store, w) * 2.0).sum();
/// let grads = loss.backward();
/// assert_eq!(grads.count(), 1);
/// assert_eq!(grads.entry(0).1.data(), &[2.0, 2.0]);
/// assert_eq!(ParamGradients::global_norm(&grads), 8f64.sqrt());
/// ```
impl<T: Float> ParamGradients<T> for Gradients<T> {
    fn count(&self) -> usize {
        self.bindings.len()
    }

    fn entry(&self, i: usize) -> (ParamId, View<'_, T>) {
        let (id, node) = self.bindings[i];
        let view = self.view_of(node).unwrap_or_else(|| self.zeros_like(node));
        (id, view)
    }

    fn entry_mut(&mut self, i: usize) -> Option<&mut [T]> {
        let node = self.bindings[i].1;
        match self.slot_of(node) {
            Some(s) => self.tensor[s].as_deref_mut(),
            None => {
                let k = node.index();
                (k < self.len() && self.is_reached(k))
                    .then(|| std::slice::from_mut(&mut self.scalar[k]))
            }
        }
    }
}

/// Adds `v` to scalar gradient `i` and marks it reached. A gradient not yet reached in
/// this walk holds a stale value (`prepare` clears only the marks): its first arrival
/// is `0 + v`, the same bits as adding into a zeroed gradient (`-0.0` becomes `0.0`).
#[inline(always)]
pub(crate) fn accumulate<T: Float>(scalar: &mut [T], reached: &mut [u64], i: usize, v: T) {
    let (word, bit) = (i / 64, 1u64 << (i % 64));
    // Both sums, then a choice: the add does not wait for the marks (a scalar graph
    // accumulates into gradients whose marks share a word, each mark stored just before).
    let (added, first) = (scalar[i] + v, T::zero() + v);
    let marks = reached[word];
    scalar[i] = if marks & bit != 0 { added } else { first };
    reached[word] = marks | bit;
}

/// Records each binding's position in `index`.
fn index_bindings(index: &mut ParamIndex, bindings: &[(ParamId, NodeId)]) {
    for (pos, &(p, _)) in bindings.iter().enumerate() {
        index.insert(p, pos);
    }
}

/// Panics with a lookup's error, out of line.
#[cold]
#[inline(never)]
fn fail(e: Error) -> ! {
    panic!("{e}")
}

impl<'t, T: Float> std::ops::Index<Var<'t, T>> for Gradients<T> {
    type Output = [T];

    /// The gradient's elements, row-major (zeros when unreached).
    fn index(&self, x: Var<'t, T>) -> &[T] {
        self.wrt(x).data()
    }
}

/// A summary: how many nodes the walk covered and how many a gradient reached.
impl<T: Float> std::fmt::Display for Gradients<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reached = (0..self.len())
            .filter(|&i| self.view_of(NodeId::from_index(i)).is_some())
            .count();
        write!(
            f,
            "gradients of tape #{} (generation {}): {reached} of {} nodes reached, {} parameters bound",
            self.tape_uid,
            self.generation,
            self.len(),
            self.bindings.len()
        )
    }
}

impl<T: Float> std::fmt::Debug for Gradients<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reached = (0..self.len())
            .filter(|&i| self.view_of(NodeId::from_index(i)).is_some())
            .count();
        f.debug_struct("Gradients")
            .field("tape", &self.tape_uid)
            .field("generation", &self.generation)
            .field("nodes", &self.len())
            .field("reached", &reached)
            .finish()
    }
}
