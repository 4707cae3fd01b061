//! Gradients keyed by parameter: what optimisers and clipping consume.

use crate::Gradients;
use descent_tape::{ParamId, ParamStore};
use descent_tensor::{Float, Tensor};

/// Owned gradients of parameters, keyed by [`ParamId`], in a fixed order (the order
/// the parameters were bound on the tape, or inserted by the caller). Flat and ordered,
/// never hashed, so norms and reductions over it are deterministic bit for bit.
///
/// ```
/// use descent_backprop::{Backward, ParamGrads};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([3.0, 4.0]));
/// let tape = Tape::new();
/// let loss = (tape.param(&store, w) * 1.0).sum();
/// let grads = ParamGrads::from(&loss.backward());
/// assert_eq!(grads.get(w).unwrap().data(), &[1.0, 1.0]);
/// assert_eq!(grads.global_norm(), 2f64.sqrt());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamGrads<T: Float> {
    entries: Vec<(ParamId, Tensor<T>)>,
}

impl<T: Float> ParamGrads<T> {
    /// No gradients.
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Zero gradients for every parameter of `store`, in its order: a starting point
    /// for accumulating.
    pub fn zeros_like(store: &ParamStore<T>) -> Self {
        Self {
            entries: store
                .iter()
                .map(|(id, _, v)| (id, Tensor::zeros(v.shape())))
                .collect(),
        }
    }

    /// Sets the gradient of `id` (replacing any it had, keeping its position).
    pub fn insert(&mut self, id: ParamId, grad: Tensor<T>) {
        match self.entries.iter_mut().find(|(p, _)| *p == id) {
            Some((_, g)) => *g = grad,
            None => self.entries.push((id, grad)),
        }
    }

    /// The gradient of `id`.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<T>> {
        self.entries.iter().find(|(p, _)| *p == id).map(|(_, g)| g)
    }

    /// The gradient of `id`, mutably.
    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut Tensor<T>> {
        self.entries
            .iter_mut()
            .find(|(p, _)| *p == id)
            .map(|(_, g)| g)
    }

    /// `(id, gradient)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Tensor<T>)> + '_ {
        self.entries.iter().map(|(p, g)| (*p, g))
    }

    /// `(id, gradient)` in order, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Tensor<T>)> + '_ {
        self.entries.iter_mut().map(|(p, g)| (*p, g))
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no parameter has a gradient.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The L2 norm over all gradients together, `√(Σ g²)`, summed in order (in `f64`).
    /// NaN if any element is NaN, infinite if any is infinite.
    pub fn global_norm(&self) -> f64 {
        self.entries
            .iter()
            .flat_map(|(_, g)| g.data())
            .map(|&x| x.as_f64() * x.as_f64())
            .sum::<f64>()
            .sqrt()
    }

    /// The first parameter holding a NaN or infinite gradient element, if any.
    pub fn first_non_finite(&self) -> Option<ParamId> {
        self.entries
            .iter()
            .find(|(_, g)| !g.all_finite())
            .map(|(p, _)| *p)
    }

    /// Adds `other`'s gradients into these (parameters missing here are appended).
    pub fn add_assign(&mut self, other: &ParamGrads<T>) {
        for (id, g) in other.iter() {
            match self.get_mut(id) {
                Some(mine) => {
                    for (a, &b) in mine.data_mut().iter_mut().zip(g.data()) {
                        *a += b;
                    }
                }
                None => self.entries.push((id, g.clone())),
            }
        }
    }

    /// Multiplies every gradient element by `factor`.
    pub fn scale(&mut self, factor: T) {
        for (_, g) in self.entries.iter_mut() {
            g.data_mut().iter_mut().for_each(|x| *x *= factor);
        }
    }
}

/// A summary: the number of parameters and the global L2 norm.
impl<T: Float> std::fmt::Display for ParamGrads<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let elements: usize = self.entries.iter().map(|(_, g)| g.len()).sum();
        write!(
            f,
            "gradients of {} parameters ({elements} elements), global L2 norm {}",
            self.entries.len(),
            self.global_norm()
        )
    }
}

impl<T: Float> From<&Gradients<T>> for ParamGrads<T> {
    /// The gradients of every parameter bound on the tape, in binding order (zeros for
    /// a bound parameter no gradient reached).
    fn from(grads: &Gradients<T>) -> Self {
        Self {
            entries: grads.params().map(|(id, v)| (id, v.to_tensor())).collect(),
        }
    }
}

impl<T: Float> FromIterator<(ParamId, Tensor<T>)> for ParamGrads<T> {
    fn from_iter<I: IntoIterator<Item = (ParamId, Tensor<T>)>>(iter: I) -> Self {
        let mut out = Self::new();
        for (id, g) in iter {
            out.insert(id, g);
        }
        out
    }
}

/// `for (id, grad) in &grads`: the same order as [`ParamGrads::iter`].
///
/// ```
/// use descent_backprop::ParamGrads;
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let grads: ParamGrads<f64> = [(w, Tensor::from([0.5]))].into_iter().collect();
/// for (id, g) in &grads {
///     assert_eq!((id, g.item()), (w, 0.5));
/// }
/// ```
impl<'a, T: Float> IntoIterator for &'a ParamGrads<T> {
    type Item = (ParamId, &'a Tensor<T>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (ParamId, Tensor<T>)>,
        fn(&'a (ParamId, Tensor<T>)) -> (ParamId, &'a Tensor<T>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(p, g)| (*p, g))
    }
}
