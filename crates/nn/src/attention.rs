//! Multi-head attention (PyTorch's `nn.MultiheadAttention` with `batch_first=True`)
//! and learned positional embeddings, written with the tape's ops: every gradient is
//! the ops' own.

use crate::init::Init;
use crate::{Error, Linear};
use descent_tape::{ParamId, ParamStore, Tape, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use rand::Rng;

/// Which key positions a query may not attend to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttentionMask {
    /// Query `i` sees keys `0..=i` only (PyTorch: `is_causal=True`, or an `attn_mask`
    /// of `True` above the diagonal). Needs as many queries as keys.
    pub causal: bool,
    /// `[batch, keys]`, `true` where the key is padding to be ignored (PyTorch's
    /// `key_padding_mask`).
    pub key_padding: Option<Vec<Vec<bool>>>,
}

impl AttentionMask {
    /// No mask: every query sees every key.
    pub fn none() -> Self {
        Self::default()
    }

    /// The causal mask.
    pub fn causal() -> Self {
        AttentionMask {
            causal: true,
            key_padding: None,
        }
    }

    /// Adds a key-padding mask (`true`: ignore that key of that sample).
    pub fn with_key_padding(mut self, padding: Vec<Vec<bool>>) -> Self {
        self.key_padding = Some(padding);
        self
    }

    /// The additive mask of 0 and -∞, `[batch, 1, queries, keys]` with key padding and
    /// `[1, 1, queries, keys]` without, or `None` when nothing is masked.
    fn additive<T: Float>(
        &self,
        name: &str,
        batch: usize,
        queries: usize,
        keys: usize,
    ) -> Result<Option<Tensor<T>>, Error> {
        if !self.causal && self.key_padding.is_none() {
            return Ok(None);
        }
        if self.causal && queries != keys {
            return Err(Error::Config {
                layer: name.into(),
                reason: format!(
                    "a causal mask needs as many queries as keys, not {queries} and {keys}"
                ),
            });
        }
        if let Some(p) = &self.key_padding
            && (p.len() != batch || p.iter().any(|row| row.len() != keys))
        {
            let lens: Vec<usize> = p.iter().map(Vec::len).collect();
            return Err(Error::Config {
                layer: name.into(),
                reason: format!(
                    "the key-padding mask has {} rows of lengths {lens:?}; it should be [{batch}, {keys}]",
                    p.len()
                ),
            });
        }
        // Filled a row at a time: with a division per element it took a fifth of the
        // calling thread's samples in a causal forward (batch 8, 64 tokens, `perf`).
        // Without key padding every sample's mask is the same, so it is one
        // `[1, 1, queries, keys]` that the sum broadcasts.
        let samples = if self.key_padding.is_some() { batch } else { 1 };
        let mut data = vec![T::zero(); samples * queries * keys];
        for (r, row) in data.chunks_exact_mut(keys.max(1)).enumerate() {
            let (b, i) = (r / queries, r % queries);
            if self.causal {
                row[(i + 1).min(keys)..].fill(T::neg_infinity());
            }
            if let Some(p) = &self.key_padding {
                for (x, &ignored) in row.iter_mut().zip(&p[b]) {
                    if ignored {
                        *x = T::neg_infinity();
                    }
                }
            }
        }
        let mask = Tensor::new(&[samples, 1, queries, keys], data).expect("one value per element");
        Ok(Some(mask))
    }
}

/// What [`MultiheadAttention::forward`] returns.
#[derive(Clone, Copy, Debug)]
pub struct AttentionOutput<'t, T: Float> {
    /// `[batch, queries, embed]`.
    pub output: Var<'t, T>,
    /// The attention weights averaged over the heads, `[batch, queries, keys]`
    /// (PyTorch's `need_weights=True, average_attn_weights=True`).
    pub weights: Var<'t, T>,
}

/// Multi-head scaled dot-product attention, PyTorch's `nn.MultiheadAttention(embed,
/// heads, batch_first=True)` (no dropout, same key and value width):
///
/// `head_h = softmax(q_h k_hᵀ / √d + mask) v_h`, with `q = query W_qᵀ + b_q` (and
/// likewise `k`, `v`) split into `heads` blocks of `d = embed / heads` features, and the
/// output `concat(head_1..head_H) W_oᵀ + b_o`.
///
/// Parameters, under PyTorch's names: `"<name>.in_proj_weight"` (`[3 embed, embed]`,
/// the rows of `W_q`, `W_k`, `W_v`), `"<name>.in_proj_bias"` (`[3 embed]`), and the
/// output projection `"<name>.out_proj.weight"`, `"<name>.out_proj.bias"`.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{attention::{AttentionMask, MultiheadAttention}, init};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// let mut store = ParamStore::<f64>::new();
/// let mha = MultiheadAttention::new(&mut store, "attn", 8, 2, true, &mut init::rng(0));
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from_fn(&[3, 5, 8], |i| (i % 11) as f64 / 11.0));
/// let out = mha.forward(&tape, &store, x, x, x, &AttentionMask::causal());
/// assert_eq!(out.output.shape().as_slice(), [3, 5, 8]);
/// // Causal: the first query attends to the first key only.
/// assert_eq!(out.weights.value().data()[..5], [1.0, 0.0, 0.0, 0.0, 0.0]);
/// let grads = out.output.sum().backward();
/// assert!(grads.param(mha.in_proj_weight()).is_some());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiheadAttention {
    name: String,
    embed_dim: usize,
    num_heads: usize,
    in_proj_weight: ParamId,
    in_proj_bias: Option<ParamId>,
    out_proj: Linear,
}

impl MultiheadAttention {
    /// A layer with PyTorch's initialisation: `in_proj_weight` Xavier uniform,
    /// `out_proj.weight` U(-1/√embed, 1/√embed), biases zero.
    ///
    /// # Panics
    /// If `num_heads` is 0 or does not divide `embed_dim`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        embed_dim: usize,
        num_heads: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let name = name.into();
        assert!(
            num_heads > 0 && embed_dim.is_multiple_of(num_heads),
            "{name}: {num_heads} heads do not divide the embedding width {embed_dim}"
        );
        let w = Init::XavierUniform { gain: 1.0 }
            .try_tensor::<T>(&[3 * embed_dim, embed_dim], rng)
            .expect("a fan-based initialiser on a non-empty matrix");
        let in_proj_weight = store.insert(format!("{name}.in_proj_weight"), w);
        let in_proj_bias = bias.then(|| {
            store.insert(
                format!("{name}.in_proj_bias"),
                Tensor::zeros(&[3 * embed_dim]),
            )
        });
        let bound = 1.0 / (embed_dim as f64).sqrt();
        let out_proj = Linear::with_init(
            store,
            format!("{name}.out_proj"),
            embed_dim,
            embed_dim,
            Init::Uniform {
                low: -bound,
                high: bound,
            },
            bias.then_some(Init::Zeros),
            rng,
        )
        .expect("a finite uniform initialiser");
        MultiheadAttention {
            name,
            embed_dim,
            num_heads,
            in_proj_weight,
            in_proj_bias,
            out_proj,
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The embedding width.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    /// The number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// `[W_q; W_k; W_v]`, `[3 embed, embed]`.
    pub fn in_proj_weight(&self) -> ParamId {
        self.in_proj_weight
    }

    /// `[b_q; b_k; b_v]`, `[3 embed]`, if the layer has biases.
    pub fn in_proj_bias(&self) -> Option<ParamId> {
        self.in_proj_bias
    }

    /// The output projection.
    pub fn out_proj(&self) -> &Linear {
        &self.out_proj
    }

    /// Every parameter id, in PyTorch's order.
    pub fn params(&self) -> Vec<ParamId> {
        let mut p = vec![self.in_proj_weight];
        p.extend(self.in_proj_bias);
        p.push(self.out_proj.weight());
        p.extend(self.out_proj.bias());
        p
    }

    /// Attention of `query` (`[batch, queries, embed]`) over `key` and `value` (both
    /// `[batch, keys, embed]`), masked as `mask` says, recorded in the scope `name`.
    ///
    /// # Panics
    /// With the message of [`MultiheadAttention::try_forward`]'s error.
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        query: Var<'t, T>,
        key: Var<'t, T>,
        value: Var<'t, T>,
        mask: &AttentionMask,
    ) -> AttentionOutput<'t, T> {
        match self.try_forward(tape, store, query, key, value, mask) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`MultiheadAttention::forward`]: an error naming the layer
    /// and the shapes when the inputs are not `[batch, n, embed]` with one batch and
    /// as many keys as values, or the mask does not fit.
    pub fn try_forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        query: Var<'t, T>,
        key: Var<'t, T>,
        value: Var<'t, T>,
        mask: &AttentionMask,
    ) -> Result<AttentionOutput<'t, T>, Error> {
        let (qs, ks, vs) = (query.shape(), key.shape(), value.shape());
        let e = self.embed_dim;
        let fits = |s: &[usize]| s.len() == 3 && s[2] == e && s[0] == qs[0];
        if !fits(&qs) || !fits(&ks) || !fits(&vs) || ks[1] != vs[1] {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "query {}, key {} and value {}: they should be [batch, queries, {e}], [batch, keys, {e}] and [batch, keys, {e}]",
                    ShapeDisplay(&qs),
                    ShapeDisplay(&ks),
                    ShapeDisplay(&vs)
                ),
            });
        }
        let (batch, nq, nk) = (qs[0], qs[1], ks[1]);
        let additive = mask.additive::<T>(&self.name, batch, nq, nk)?;
        let (heads, d) = (self.num_heads, e / self.num_heads);

        let _scope = tape.scope(&self.name);
        let w = tape.try_param(store, self.in_proj_weight)?;
        let b = self
            .in_proj_bias
            .map(|b| tape.try_param(store, b))
            .transpose()?;
        // [batch, n, embed] -> the k-th block's projection, [batch, heads, n, d].
        let project = |x: Var<'t, T>, block: usize, n: usize| -> Result<Var<'t, T>, Error> {
            let wk = w.try_slice(0, block * e, (block + 1) * e)?;
            let mut p = x.try_matmul_t(wk)?;
            if let Some(b) = b {
                p = p.try_add(b.try_slice(0, block * e, (block + 1) * e)?)?;
            }
            Ok(p.try_reshape(&[batch, n, heads, d])?.try_transpose(1, 2)?)
        };
        let q = project(query, 0, nq)?;
        let k = project(key, 1, nk)?;
        let v = project(value, 2, nk)?;
        let scale = T::from_f64(1.0 / (d as f64).sqrt());
        let mut scores = q
            .try_mul(tape.constant(Tensor::scalar(scale)))?
            .try_matmul(k.try_transpose(2, 3)?)?;
        if let Some(m) = additive {
            scores = scores.try_add(tape.constant(m))?;
        }
        let attn = scores.try_softmax(-1)?.named("attention");
        let heads_out = attn
            .try_matmul(v)?
            .try_transpose(1, 2)?
            .try_reshape(&[batch, nq, e])?;
        let output = self.out_proj.try_forward(tape, store, heads_out)?;
        let weights = attn.try_mean_axis(1, false)?;
        Ok(AttentionOutput { output, weights })
    }
}

/// Learned positional embeddings: a `[max_len, embed]` table whose first `time` rows
/// are added to a `[batch, time, embed]` input (as GPT-2's `wpe`, PyTorch's
/// `x + pos(torch.arange(T))` with an `nn.Embedding`). The table is `"<name>.weight"`,
/// drawn from N(0, 1) like `nn.Embedding`'s.
///
/// ```
/// use descent_nn::{attention::PositionalEmbedding, init};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f32>::new();
/// let pos = PositionalEmbedding::new(&mut store, "pos", 16, 4, &mut init::rng(0));
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::zeros(&[2, 5, 4]));
/// let y = pos.forward(&tape, &store, x);
/// let table = store.get(pos.weight()).unwrap();
/// assert_eq!(y.value().data()[..20], table.data()[..20]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionalEmbedding {
    name: String,
    max_len: usize,
    embed_dim: usize,
    weight: ParamId,
}

impl PositionalEmbedding {
    /// A table for sequences of up to `max_len` steps.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        max_len: usize,
        embed_dim: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let name = name.into();
        let table = Init::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .try_tensor::<T>(&[max_len, embed_dim], rng)
        .expect("a finite normal initialiser");
        let weight = store.insert(format!("{name}.weight"), table);
        PositionalEmbedding {
            name,
            max_len,
            embed_dim,
            weight,
        }
    }

    /// The table, `[max_len, embed]`.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// `x + table[..time]`.
    ///
    /// # Panics
    /// With the message of [`PositionalEmbedding::try_forward`]'s error.
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        match self.try_forward(tape, store, x) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`PositionalEmbedding::forward`]: an error when `x` is
    /// not `[batch, time, embed]` with `time ≤ max_len`.
    pub fn try_forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        let s = x.shape();
        if s.len() != 3 || s[2] != self.embed_dim || s[1] > self.max_len {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "the input has shape {}; it should be [batch, time ≤ {}, {}]",
                    ShapeDisplay(&s),
                    self.max_len,
                    self.embed_dim
                ),
            });
        }
        let _scope = tape.scope(&self.name);
        let table = tape.try_param(store, self.weight)?;
        Ok(x.try_add(table.try_slice(0, 0, s[1])?)?)
    }
}
