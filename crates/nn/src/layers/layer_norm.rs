//! `LayerNorm`: each sample normalised over its last axes, then scaled and shifted.

use crate::Error;
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use descent_tape::{ParamId, ParamStore, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};

/// Layer normalisation, as PyTorch's `nn.LayerNorm(normalized_shape, eps,
/// elementwise_affine)`: over the last `k = normalized_shape.len()` axes,
///
/// `y = (x - mean) / √(var + eps) · weight + bias`
///
/// with the biased variance (`mean((x - mean)²)`). `weight` (ones) and `bias`
/// (zeros) have shape `normalized_shape` and are entries `"<name>.weight"`,
/// `"<name>.bias"` when `elementwise_affine`. Built from ops (`mean_axis`, `sub`,
/// `mul`, `sqrt`, `div`), so its gradient is theirs; no fused op, since none has been
/// measured to pay.
///
/// ```
/// use descent_nn::{Ctx, Module, layers::LayerNorm};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let ln = LayerNorm::new(&mut store, "ln", &[3], 1e-5, true);
/// let tape = Tape::new();
/// let x = tape.var(Tensor::from([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]]));
/// let y = ln.call(&mut Ctx::new(&tape, &mut store), x).value();
/// // Row 0: mean 2, variance 2/3.
/// let s = (2.0f64 / 3.0 + 1e-5).sqrt();
/// assert!((y.data()[0] + 1.0 / s).abs() < 1e-12);
/// assert_eq!(ln.state_dict_names(&store).len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    name: String,
    normalized_shape: Vec<usize>,
    eps: f64,
    weight: Option<ParamId>,
    bias: Option<ParamId>,
}

impl LayerNorm {
    /// A layer over the trailing `normalized_shape`, registering `weight` and `bias`
    /// in `store` when `elementwise_affine`.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        normalized_shape: &[usize],
        eps: f64,
        elementwise_affine: bool,
    ) -> Self {
        let name = name.into();
        let (weight, bias) = if elementwise_affine {
            (
                Some(store.insert(
                    format!("{name}.weight"),
                    Tensor::<T>::ones(normalized_shape),
                )),
                Some(store.insert(format!("{name}.bias"), Tensor::<T>::zeros(normalized_shape))),
            )
        } else {
            (None, None)
        };
        Self {
            name,
            normalized_shape: normalized_shape.to_vec(),
            eps,
            weight,
            bias,
        }
    }

    /// The weight's id, if affine.
    pub fn weight(&self) -> Option<ParamId> {
        self.weight
    }

    /// The bias's id, if affine.
    pub fn bias(&self) -> Option<ParamId> {
        self.bias
    }
}

/// Mean over the last `k` axes, kept as extent 1.
pub(crate) fn mean_last<'t, T: Float>(x: Var<'t, T>, k: usize) -> Result<Var<'t, T>, Error> {
    let mut m = x;
    for i in 0..k {
        m = m.try_mean_axis(-1 - i as isize, true)?;
    }
    Ok(m)
}

impl ModuleInfo for LayerNorm {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "LayerNorm"
    }
    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
        out.extend(self.weight.map(|w| (w, EntryKind::Param)));
        out.extend(self.bias.map(|b| (b, EntryKind::Param)));
    }
}

impl<T: Float> Module<T> for LayerNorm {
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        x.validate("layer_norm")?;
        let shape = x.shape();
        let k = self.normalized_shape.len();
        if shape.len() < k || shape[shape.len() - k..] != self.normalized_shape[..] {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "the input has shape {}, whose last axes should be the normalized shape {}",
                    ShapeDisplay(&shape),
                    ShapeDisplay(&self.normalized_shape)
                ),
            });
        }
        let _scope = cx.tape().scope(&self.name);
        let tape = cx.tape();
        let d = x.try_sub(mean_last(x, k)?)?;
        let var = mean_last(d.try_mul(d)?, k)?;
        let std = var
            .try_add(tape.constant(Tensor::scalar(T::from_f64(self.eps))))?
            .try_sqrt()?;
        let mut y = d.try_div(std)?;
        if let Some(w) = self.weight {
            y = y.try_mul(cx.param(w)?)?;
        }
        if let Some(b) = self.bias {
            y = y.try_add(cx.param(b)?)?;
        }
        Ok(y)
    }
}
