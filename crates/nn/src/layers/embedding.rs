//! `Embedding`: a table of vectors looked up by integer index.

use crate::Error;
use crate::init::Init;
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use descent_tape::{ParamId, ParamStore, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use rand::Rng;

/// A lookup table, as PyTorch's `nn.Embedding(num_embeddings, embedding_dim)`: an
/// index of shape `S` gives `[S.., embedding_dim]`, row `i` of the weight for index
/// `i`. The weight, `"<name>.weight"` of shape `[num_embeddings, embedding_dim]`, is
/// drawn from N(0, 1) as PyTorch's is. Recorded as one `index_select` along axis 0,
/// whose backward scatter-adds each output row's gradient into the row it came from
/// (a row looked up twice gets both), so the weight's gradient is dense, as PyTorch's
/// with `sparse=False`.
///
/// As a [`Module`] its input is a tensor of indices held as floats (each a whole
/// number in range); [`Embedding::lookup`] takes them as integers.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{Ctx, Module, init, layers::Embedding};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let emb = Embedding::new(&mut store, "emb", 10, 4, &mut init::rng(0));
/// let tape = Tape::new();
/// let mut cx = Ctx::new(&tape, &mut store);
/// let e = emb.lookup(&mut cx, &[2, 3], &[1, 2, 1, 0, 9, 9]).unwrap();
/// assert_eq!(e.shape().as_slice(), &[2, 3, 4]);
/// let grads = e.sum().backward();
/// let g = grads.param(emb.weight()).unwrap();
/// assert_eq!(&g.data()[4..8], &[2.0; 4]);   // row 1, looked up twice
/// assert_eq!(&g.data()[12..16], &[0.0; 4]); // row 3, never
/// // The same through `call`, indices as floats.
/// let idx = tape.constant(Tensor::from([[1.0, 2.0, 1.0], [0.0, 9.0, 9.0]]));
/// assert_eq!(emb.call(&mut cx, idx).value(), e.value());
/// let bad = tape.constant(Tensor::from([0.5]));
/// assert!(emb.try_call(&mut cx, bad).unwrap_err().to_string().contains("0.5 at position 0"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Embedding {
    name: String,
    num_embeddings: usize,
    embedding_dim: usize,
    weight: ParamId,
}

impl Embedding {
    /// A table of `num_embeddings` vectors of `embedding_dim`, drawn from N(0, 1).
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        num_embeddings: usize,
        embedding_dim: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let w = Init::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .tensor::<T>(&[num_embeddings, embedding_dim], rng);
        Self::from_tensor(store, name, w).expect("a 2-d weight")
    }

    /// A table with the given weight `[num_embeddings, embedding_dim]`.
    ///
    /// # Errors
    /// [`Error::Config`] when the weight is not 2-d.
    pub fn from_tensor<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        weight: Tensor<T>,
    ) -> Result<Self, Error> {
        let name = name.into();
        if weight.ndim() != 2 {
            return Err(Error::Config {
                layer: name,
                reason: format!(
                    "the weight should be 2-d [num_embeddings, embedding_dim], got shape {}",
                    ShapeDisplay(weight.shape())
                ),
            });
        }
        let (num_embeddings, embedding_dim) = (weight.shape()[0], weight.shape()[1]);
        let weight = store.insert(format!("{name}.weight"), weight);
        Ok(Self {
            name,
            num_embeddings,
            embedding_dim,
            weight,
        })
    }

    /// The weight's id.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// Number of rows.
    pub fn num_embeddings(&self) -> usize {
        self.num_embeddings
    }

    /// Width of a row.
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// The rows for `index` (of shape `index_shape`): `[index_shape.., embedding_dim]`.
    ///
    /// # Errors
    /// The tape's error naming `index_select`, for an index out of range or of the
    /// wrong length.
    pub fn lookup<'t, T: Float>(
        &self,
        cx: &mut Ctx<'t, '_, T>,
        index_shape: &[usize],
        index: &[usize],
    ) -> Result<Var<'t, T>, Error> {
        let _scope = cx.tape().scope(&self.name);
        let w = cx.param(self.weight)?;
        Ok(w.try_index_select(0, index_shape, index)?)
    }
}

impl ModuleInfo for Embedding {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "Embedding"
    }
    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
        out.push((self.weight, EntryKind::Param));
    }
}

impl<T: Float> Module<T> for Embedding {
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        x.validate("embedding")?;
        let value = x.value();
        let mut index = Vec::with_capacity(value.len());
        for (position, &v) in value.data().iter().enumerate() {
            let f = v.as_f64();
            if f < 0.0 || f.fract() != 0.0 || !f.is_finite() {
                return Err(Error::Config {
                    layer: self.name.clone(),
                    reason: format!(
                        "indices must be whole numbers from 0, got {f} at position {position}"
                    ),
                });
            }
            index.push(f as usize);
        }
        self.lookup(cx, value.shape(), &index)
    }
}
