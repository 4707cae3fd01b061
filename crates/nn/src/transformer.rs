//! The transformer encoder block, PyTorch's `nn.TransformerEncoderLayer` with
//! `batch_first=True`, written from [`MultiheadAttention`], [`Linear`] and
//! [`LayerNorm`]: every gradient is the ops' own.

use crate::attention::{AttentionMask, MultiheadAttention};
use crate::layers::LayerNorm;
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use crate::{Activation, Error, Linear};
use descent_tape::{ParamId, ParamStore, Var};
use descent_tensor::{Float, ShapeDisplay};
use rand::Rng;

/// One transformer encoder block, PyTorch's `nn.TransformerEncoderLayer(d_model,
/// nhead, dim_feedforward, dropout=0.0, activation, batch_first=True, norm_first)`:
///
/// - post-norm (`norm_first = false`, PyTorch's default):
///   `x = norm1(x + attn(x))`, then `x = norm2(x + ff(x))`;
/// - pre-norm (`norm_first = true`): `x = x + attn(norm1(x))`, then
///   `x = x + ff(norm2(x))`;
///
/// with `attn` multi-head self-attention ([`MultiheadAttention`], masked by the
/// layer's [`AttentionMask`]: PyTorch's `src_mask` causal and `src_key_padding_mask`)
/// and `ff(x) = linear2(act(linear1(x)))`. The layer norms use `eps = 1e-5`.
///
/// The activation is [`Activation::Relu`] by default (PyTorch's `"relu"`). descent's
/// [`Activation::Gelu`] is the tanh form, so it equals PyTorch's
/// `activation=lambda x: F.gelu(x, approximate="tanh")`, not `activation="gelu"`
/// (which is erf-based). There is no dropout (PyTorch's `dropout=0.0`).
///
/// Parameters, under PyTorch's names below the layer's name: `self_attn.in_proj_weight`,
/// `self_attn.in_proj_bias`, `self_attn.out_proj.weight`, `self_attn.out_proj.bias`,
/// `linear1.weight`, `linear1.bias`, `linear2.weight`, `linear2.bias`, `norm1.weight`,
/// `norm1.bias`, `norm2.weight`, `norm2.bias`. A stack named `"<enc>.layers.<i>"` has
/// the `state_dict` names of `nn.TransformerEncoder`.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::attention::AttentionMask;
/// use descent_nn::transformer::TransformerEncoderLayer;
/// use descent_nn::{Activation, Ctx, Module, init};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// let mut store = ParamStore::<f64>::new();
/// let layer = TransformerEncoderLayer::new(&mut store, "enc", 8, 2, 16, &mut init::rng(0))
///     .activation(Activation::Gelu)
///     .norm_first(true)
///     .mask(AttentionMask::causal());
/// assert_eq!(layer.num_parameters(&store), 3 * 8 * 8 + 3 * 8 + 8 * 8 + 8 + 8 * 16 + 16 + 16 * 8 + 8 + 4 * 8);
/// let tape = Tape::new();
/// let x = tape.var(Tensor::from_fn(&[2, 5, 8], |i| (i % 7) as f64 / 7.0));
/// let y = layer.call(&mut Ctx::new(&tape, &mut store), x);
/// assert_eq!(y.shape().as_slice(), [2, 5, 8]);
/// let grads = y.sum().backward();
/// assert_eq!(grads.wrt(x).shape(), [2, 5, 8]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerEncoderLayer {
    name: String,
    d_model: usize,
    activation: Activation,
    norm_first: bool,
    mask: AttentionMask,
    self_attn: MultiheadAttention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
}

impl TransformerEncoderLayer {
    /// A post-norm ReLU block without mask, with PyTorch's initialisation of each part
    /// (attention as [`MultiheadAttention::new`], the linears as [`Linear::new`], the
    /// norms ones and zeros), drawn in PyTorch's order: attention, `linear1`, `linear2`.
    ///
    /// # Panics
    /// If `nhead` is 0 or does not divide `d_model`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        d_model: usize,
        nhead: usize,
        dim_feedforward: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let name = name.into();
        let self_attn = MultiheadAttention::new(
            store,
            format!("{name}.self_attn"),
            d_model,
            nhead,
            true,
            rng,
        );
        let linear1 = Linear::new(
            store,
            format!("{name}.linear1"),
            d_model,
            dim_feedforward,
            rng,
        );
        let linear2 = Linear::new(
            store,
            format!("{name}.linear2"),
            dim_feedforward,
            d_model,
            rng,
        );
        let norm1 = LayerNorm::new(store, format!("{name}.norm1"), &[d_model], 1e-5, true);
        let norm2 = LayerNorm::new(store, format!("{name}.norm2"), &[d_model], 1e-5, true);
        TransformerEncoderLayer {
            name,
            d_model,
            activation: Activation::Relu,
            norm_first: false,
            mask: AttentionMask::none(),
            self_attn,
            linear1,
            linear2,
            norm1,
            norm2,
        }
    }

    /// The same layer with the feed-forward activation `activation`.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The same layer, pre-norm (`true`) or post-norm (`false`).
    pub fn norm_first(mut self, norm_first: bool) -> Self {
        self.norm_first = norm_first;
        self
    }

    /// The same layer with the mask [`Module::record`] uses.
    pub fn mask(mut self, mask: AttentionMask) -> Self {
        self.mask = mask;
        self
    }

    /// The model width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// The self-attention.
    pub fn self_attn(&self) -> &MultiheadAttention {
        &self.self_attn
    }

    /// The feed-forward layers, `linear1` and `linear2`.
    pub fn feed_forward(&self) -> (&Linear, &Linear) {
        (&self.linear1, &self.linear2)
    }

    /// The layer norms, `norm1` and `norm2`.
    pub fn norms(&self) -> (&LayerNorm, &LayerNorm) {
        (&self.norm1, &self.norm2)
    }

    /// The block on `x` (`[batch, time, d_model]`) with the mask `mask` instead of the
    /// layer's own (PyTorch's `layer(x, src_mask, src_key_padding_mask)`).
    ///
    /// # Panics
    /// With the message of [`TransformerEncoderLayer::try_forward_masked`]'s error.
    pub fn forward_masked<'t, T: Float>(
        &self,
        cx: &mut Ctx<'t, '_, T>,
        x: Var<'t, T>,
        mask: &AttentionMask,
    ) -> Var<'t, T> {
        match self.try_forward_masked(cx, x, mask) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`TransformerEncoderLayer::forward_masked`]: an error naming
    /// the layer when `x` is not `[batch, time, d_model]` or the mask does not fit.
    pub fn try_forward_masked<'t, T: Float>(
        &self,
        cx: &mut Ctx<'t, '_, T>,
        x: Var<'t, T>,
        mask: &AttentionMask,
    ) -> Result<Var<'t, T>, Error> {
        let s = x.shape();
        if s.len() != 3 || s[2] != self.d_model {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "the input has shape {}; it should be [batch, time, {}]",
                    ShapeDisplay(&s),
                    self.d_model
                ),
            });
        }
        let _scope = cx.tape().scope(&self.name);
        let attn = |cx: &mut Ctx<'t, '_, T>, h: Var<'t, T>| -> Result<Var<'t, T>, Error> {
            Ok(self
                .self_attn
                .try_forward(cx.tape(), cx.store(), h, h, h, mask)?
                .output)
        };
        let ff = |cx: &mut Ctx<'t, '_, T>, h: Var<'t, T>| -> Result<Var<'t, T>, Error> {
            let h = self.linear1.try_forward(cx.tape(), cx.store(), h)?;
            let h = self.activation.try_apply(h)?;
            self.linear2.try_forward(cx.tape(), cx.store(), h)
        };
        if self.norm_first {
            let h = self.norm1.try_call(cx, x)?;
            let x = x.try_add(attn(cx, h)?)?;
            let h = self.norm2.try_call(cx, x)?;
            Ok(x.try_add(ff(cx, h)?)?)
        } else {
            let a = attn(cx, x)?;
            let x = self.norm1.try_call(cx, x.try_add(a)?)?;
            let f = ff(cx, x)?;
            self.norm2.try_call(cx, x.try_add(f)?)
        }
    }
}

impl ModuleInfo for TransformerEncoderLayer {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "TransformerEncoderLayer"
    }
    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
        out.extend(
            self.self_attn
                .params()
                .into_iter()
                .map(|p| (p, EntryKind::Param)),
        );
        self.linear1.entries(out);
        self.linear2.entries(out);
        self.norm1.entries(out);
        self.norm2.entries(out);
    }
}

impl<T: Float> Module<T> for TransformerEncoderLayer {
    /// The block on `x` with the layer's own mask.
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        self.try_forward_masked(cx, x, &self.mask)
    }
}
