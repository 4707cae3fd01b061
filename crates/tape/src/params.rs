//! Parameters: named tensors that outlive tapes, keyed by generational ids.

use crate::error::{Error, Result};
use crate::op::Op;
use crate::{NodeId, Tape, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use slotmap::SlotMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

slotmap::new_key_type! {
    /// The slotmap key under a [`ParamId`]: what optimiser state is keyed by, in
    /// `slotmap::SecondaryMap`s.
    pub struct ParamKey;
}

/// A parameter's identity: generational (a removed parameter's id never names a new
/// one) and tied to its store (an id from another store is reported, never misread).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId {
    key: ParamKey,
    store: u32,
}

impl ParamId {
    /// The slotmap key, for keying optimiser state in a `SecondaryMap`.
    pub fn key(self) -> ParamKey {
        self.key
    }
}

struct Param<T> {
    name: std::sync::Arc<str>,
    /// Shared with every tape that binds it (`Tape::param` clones the `Arc`, never the
    /// elements); changed only through `Arc::make_mut` (`ParamStore::get_mut`).
    value: Arc<Tensor<T>>,
    /// The value a copy-on-write last displaced (still held by a tape then): once that
    /// tape lets go, the next copy goes into it, so a loop that steps under a live tape
    /// copies without allocating.
    spare: Option<Arc<Tensor<T>>>,
    /// False for a frozen parameter: bound as a constant, so no gradient is computed
    /// for it and no optimiser step sees it.
    requires_grad: bool,
}

/// The next store's identity. It only tells stores apart (an id of one store used
/// with another is reported, not misread), never orders or changes a value, so
/// `Relaxed` is enough: each `fetch_add` is unique whatever the ordering. 2³² stores
/// in one process would wrap it.
static NEXT_STORE_UID: AtomicU32 = AtomicU32::new(1);

/// Named parameters that live across training steps, in insertion order.
///
/// Each step binds the parameters it uses as leaves of a fresh tape with
/// [`Tape::param`]; after backward, their gradients come back keyed by [`ParamId`].
///
/// ```
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("layer1.weight", Tensor::from([[1.0, 2.0]]));
/// let b = store.insert("layer1.bias", Tensor::from([0.5]));
/// assert_eq!(store.len(), 2);
/// assert_eq!(store.num_elements(), 3);
/// assert_eq!(store.name(w), Some("layer1.weight"));
/// assert_eq!(store.ids().collect::<Vec<_>>(), vec![w, b]);
/// let tape = Tape::new();
/// let wv = tape.param(&store, w);
/// assert_eq!(wv.shape().as_slice(), &[1, 2]);
/// ```
pub struct ParamStore<T: Float = f32> {
    params: SlotMap<ParamKey, Param<T>>,
    order: Vec<ParamKey>,
    /// Each name's parameter: names are unique (checkpoints and `state_dict`s key by
    /// them), and [`ParamStore::find`] is a lookup, not a scan.
    names: std::collections::HashMap<std::sync::Arc<str>, ParamKey>,
    uid: u32,
    /// Values copied because a tape still held them when they were changed.
    copies: Copies,
}

/// What [`ParamStore::get_mut`] copied: values a live tape still held when they were
/// about to change (copy-on-write). Zero in a loop that resets (or drops) the tape
/// before its optimiser step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copies {
    /// How many values were copied.
    pub count: u64,
    /// How many bytes those copies moved.
    pub bytes: u64,
}

impl<T: Float> Default for ParamStore<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> std::fmt::Debug for ParamStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for id in self.ids() {
            let p = &self.params[id.key];
            m.entry(&p.name, &ShapeDisplay(p.value.shape()).to_string());
        }
        m.finish()
    }
}

/// One line per parameter, in order: `layer1.weight [2, 3]`.
///
/// ```
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f32>::new();
/// store.insert("w", Tensor::<f32>::zeros(&[2, 3]));
/// store.insert("b", Tensor::<f32>::zeros(&[3]));
/// assert_eq!(store.to_string(), "2 parameters, 9 elements\nw [2, 3]\nb [3]\n");
/// ```
impl<T: Float> std::fmt::Display for ParamStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} parameters, {} elements",
            self.len(),
            self.num_elements()
        )?;
        for (_, name, value) in self.iter() {
            writeln!(f, "{name} {}", ShapeDisplay(value.shape()))?;
        }
        Ok(())
    }
}

impl<T: Float> ParamStore<T> {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            params: SlotMap::with_key(),
            order: Vec::new(),
            names: std::collections::HashMap::new(),
            // Identity only: tells stores apart; never affects a value or an order.
            uid: NEXT_STORE_UID.fetch_add(1, Ordering::Relaxed),
            copies: Copies::default(),
        }
    }

    /// Adds a parameter and returns its id.
    ///
    /// # Panics
    /// If the store already holds a parameter of that name (see
    /// [`ParamStore::try_insert`]).
    ///
    /// ```should_panic
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// store.insert("w", Tensor::from([1.0]));
    /// store.insert("w", Tensor::from([2.0]));   // panics: the name is taken
    /// ```
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Tensor<T>>) -> ParamId {
        match self.try_insert(name, value) {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// Adds a parameter and returns its id, or an error naming the name if the store
    /// already holds a parameter of that name: names are how checkpoints, reports and
    /// PyTorch's `state_dict` tell parameters apart, so two of one name are refused
    /// here rather than when a save fails.
    ///
    /// ```
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// store.try_insert("w", Tensor::from([1.0])).unwrap();
    /// let err = store.try_insert("w", Tensor::from([2.0])).unwrap_err();
    /// assert!(err.to_string().contains("already holds a parameter named 'w'"));
    /// assert_eq!(store.len(), 1);
    /// ```
    pub fn try_insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<Tensor<T>>,
    ) -> Result<ParamId> {
        let name: std::sync::Arc<str> = std::sync::Arc::from(name.into());
        if self.names.contains_key(&name) {
            return Err(Error::DuplicateParam {
                op: "insert",
                name: name.to_string(),
            });
        }
        let key = self.params.insert(Param {
            name: std::sync::Arc::clone(&name),
            value: Arc::new(value.into()),
            spare: None,
            requires_grad: true,
        });
        self.names.insert(name, key);
        self.order.push(key);
        Ok(ParamId {
            key,
            store: self.uid,
        })
    }

    /// Removes a parameter, returning its value. Its id never names another parameter;
    /// its name is free again.
    pub fn remove(&mut self, id: ParamId) -> Option<Tensor<T>> {
        if id.store != self.uid {
            return None;
        }
        let p = self.params.remove(id.key)?;
        self.order.retain(|&k| k != id.key);
        self.names.remove(&p.name);
        // The elements themselves when no tape holds them, else a copy.
        Some(Arc::try_unwrap(p.value).unwrap_or_else(|shared| Tensor::clone(&shared)))
    }

    /// Whether `id` names a parameter of this store.
    pub fn contains(&self, id: ParamId) -> bool {
        id.store == self.uid && self.params.contains_key(id.key)
    }

    /// Checks that `id` names a parameter of this store, naming `op` in the error.
    pub fn check(&self, op: &'static str, id: ParamId) -> Result<()> {
        if id.store != self.uid {
            return Err(Error::ForeignParam {
                op,
                param_store: id.store,
                store: self.uid,
            });
        }
        if !self.params.contains_key(id.key) {
            return Err(Error::RemovedParam { op });
        }
        Ok(())
    }

    /// The parameter's value.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<T>> {
        self.contains(id).then(|| &*self.params[id.key].value)
    }

    /// The parameter's value, mutably (optimisers update through this).
    ///
    /// Tapes that bind the parameter share its value rather than copy it
    /// ([`Tape::param`]), and a live tape's values never change: if a tape still holds
    /// the value, it is copied first (copy-on-write, `Arc::make_mut`), the tape keeping
    /// the old one, and the copy is counted ([`ParamStore::copies`]). Reset or drop the
    /// tape before the optimiser step, and nothing is copied. A copy goes into the
    /// value the previous copy displaced, once no tape holds that any more, so a loop
    /// that steps under a live tape copies but does not allocate.
    ///
    /// ```
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([1.0, 2.0]));
    /// let tape = Tape::new();
    /// let wv = tape.param(&store, w);
    /// store.get_mut(w).unwrap().data_mut()[0] = 5.0; // the tape still holds w
    /// assert_eq!(wv.value().data(), &[1.0, 2.0]);     // and keeps its value
    /// assert_eq!(store.copies().bytes, 16);
    /// tape.reset();                                   // released
    /// store.get_mut(w).unwrap().data_mut()[1] = 6.0;  // in place
    /// assert_eq!(store.copies().count, 1);
    /// assert_eq!(store.get(w).unwrap().data(), &[5.0, 6.0]);
    /// ```
    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut Tensor<T>> {
        if !self.contains(id) {
            return None;
        }
        let param = &mut self.params[id.key];
        if Arc::strong_count(&param.value) > 1 {
            self.copies.count += 1;
            self.copies.bytes += (param.value.len() * std::mem::size_of::<T>()) as u64;
            // Into the spare if no tape holds it any more, else into a new tensor.
            let reused = match param.spare.take() {
                Some(mut spare) => match Arc::get_mut(&mut spare) {
                    Some(t) if t.shape() == param.value.shape() => {
                        t.data_mut().copy_from_slice(param.value.data());
                        Some(spare)
                    }
                    _ => None,
                },
                None => None,
            };
            let fresh = reused.unwrap_or_else(|| Arc::new(Tensor::clone(&param.value)));
            param.spare = Some(std::mem::replace(&mut param.value, fresh));
        }
        // The store's own now: `make_mut` copies nothing.
        Some(Arc::make_mut(&mut param.value))
    }

    /// The values [`ParamStore::get_mut`] has copied because a tape still held them,
    /// since the store was made: zero when every tape is reset or dropped before the
    /// optimiser step.
    pub fn copies(&self) -> Copies {
        self.copies
    }

    /// The shared value, for binding on a tape.
    pub(crate) fn shared(&self, id: ParamId) -> &Arc<Tensor<T>> {
        &self.params[id.key].value
    }

    /// Freezes (`false`) or unfreezes (`true`) a parameter, as PyTorch's
    /// `p.requires_grad_(False)`. A frozen parameter binds on a tape as a constant
    /// ([`Tape::param`]): no gradient is computed for it, backward does no work for
    /// it, and since it is not among the tape's bound parameters no optimiser step
    /// sees or updates it. Its value still saves and loads by name. Returns `false`
    /// (and changes nothing) when `id` is not a parameter of this store.
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([2.0]));
    /// let b = store.insert("b", Tensor::from([1.0]));
    /// assert!(store.set_requires_grad(b, false));
    /// assert!(!store.requires_grad(b));
    /// assert_eq!(store.num_trainable_elements(), 1);
    /// let tape = Tape::new();
    /// let (wv, bv) = (tape.param(&store, w), tape.param(&store, b));
    /// assert!(!bv.requires_grad());
    /// let grads = (wv * bv).sum().backward();
    /// assert_eq!(grads.param(w).unwrap().data(), &[1.0]);
    /// assert!(grads.param(b).is_none()); // not bound as a parameter: nothing to step
    /// ```
    pub fn set_requires_grad(&mut self, id: ParamId, requires_grad: bool) -> bool {
        if !self.contains(id) {
            return false;
        }
        self.params[id.key].requires_grad = requires_grad;
        true
    }

    /// Whether the parameter is trainable (not frozen); `false` for an id not of
    /// this store.
    pub fn requires_grad(&self, id: ParamId) -> bool {
        self.contains(id) && self.params[id.key].requires_grad
    }

    /// Number of scalar elements over the trainable (not frozen) parameters.
    pub fn num_trainable_elements(&self) -> usize {
        self.params
            .values()
            .filter(|p| p.requires_grad)
            .map(|p| p.value.len())
            .sum()
    }

    /// The parameter's name.
    pub fn name(&self, id: ParamId) -> Option<&str> {
        self.contains(id).then(|| &*self.params[id.key].name)
    }

    /// The id of the parameter with this name.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.get(name).map(|&key| ParamId {
            key,
            store: self.uid,
        })
    }

    /// Ids in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.order.iter().map(|&key| ParamId {
            key,
            store: self.uid,
        })
    }

    /// `(id, name, value)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &Tensor<T>)> + '_ {
        self.ids().map(|id| {
            let p = &self.params[id.key];
            (id, &*p.name, &*p.value)
        })
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Total number of scalar elements over all parameters.
    pub fn num_elements(&self) -> usize {
        self.params.values().map(|p| p.value.len()).sum()
    }
}

impl<T: Float> Tape<T> {
    /// Binds a parameter as a variable leaf of this tape, for this step, known by the
    /// parameter's name in errors and renders. Binding the same parameter again returns
    /// the same node. After backward, its gradient is
    /// looked up by `ParamId`.
    ///
    /// A frozen parameter ([`ParamStore::set_requires_grad`]), or any parameter not
    /// yet bound while the tape is in no-gradient mode ([`Tape::no_grad`]), binds as
    /// a constant leaf instead (named by the parameter, but not among
    /// [`Tape::bindings`], so no gradient is computed and no optimiser steps it); each
    /// such binding is a new node.
    ///
    /// Binding copies nothing: the tape holds the store's value (a reference count)
    /// until it is reset, rewound past the binding, or dropped; the store copies a
    /// value a tape still holds before changing it ([`ParamStore::get_mut`]).
    ///
    /// # Panics
    /// If `id` is not a parameter of `store`.
    pub fn param<'t>(&'t self, store: &ParamStore<T>, id: ParamId) -> Var<'t, T> {
        match self.try_param(store, id) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Tape::param`].
    pub fn try_param<'t>(&'t self, store: &ParamStore<T>, id: ParamId) -> Result<Var<'t, T>> {
        store.check("param", id)?;
        let param = &store.params[id.key];
        if !param.requires_grad {
            return Ok(self.param_constant(store, id));
        }
        // Already bound this generation: the same node (an O(1) lookup, so binding n
        // parameters a step costs O(n)).
        let bound = self.inner.borrow().binding(id);
        if let Some(node) = bound {
            return Ok(self.handle(node));
        }
        if self.grad_off() {
            return Ok(self.param_constant(store, id));
        }
        let v = self.shared_leaf(store.shared(id), Op::Var);
        let mut inner = self.inner.borrow_mut();
        inner.bind(id, v.id());
        // The node is known by the parameter's name (a shared string: no allocation).
        inner
            .param_names
            .push((v.id(), std::sync::Arc::clone(&param.name)));
        Ok(v)
    }

    /// A parameter as a constant leaf, known by its name.
    fn param_constant<'t>(&'t self, store: &ParamStore<T>, id: ParamId) -> Var<'t, T> {
        let param = &store.params[id.key];
        let v = self.shared_leaf(store.shared(id), Op::Constant);
        self.inner
            .borrow_mut()
            .param_names
            .push((v.id(), std::sync::Arc::clone(&param.name)));
        v
    }

    /// The parameters bound on this tape since the last reset, in binding order.
    pub fn bindings(&self) -> Vec<(ParamId, NodeId)> {
        self.inner.borrow().bindings.clone()
    }
}
