//! `Flatten`: axes `start_dim..=end_dim` merged into one.

use crate::Error;
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use descent_tape::{ParamId, Var};
use descent_tensor::{Float, ShapeDisplay};

/// Merges axes `start_dim..=end_dim` (negative counts from the end) into one, as
/// PyTorch's `nn.Flatten(start_dim=1, end_dim=-1)`: a batch of images `[N, C, H, W]`
/// becomes `[N, C·H·W]`. A reshape: backward reshapes the gradient back.
///
/// ```
/// use descent_nn::{Ctx, Module, layers::Flatten};
/// use descent_tensor::Tensor;
/// let tape = descent_tape::Tape::<f64>::new();
/// let mut store = descent_tape::ParamStore::new();
/// let mut cx = Ctx::new(&tape, &mut store);
/// let x = tape.var(Tensor::<f64>::zeros(&[2, 3, 4, 5]));
/// assert_eq!(Flatten::new().call(&mut cx, x).shape().as_slice(), &[2, 60]);
/// assert_eq!(Flatten::with_dims(1, 2).call(&mut cx, x).shape().as_slice(), &[2, 12, 5]);
/// assert!(Flatten::new().try_call(&mut cx, tape.var(1.0)).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flatten {
    name: String,
    start_dim: isize,
    end_dim: isize,
}

impl Default for Flatten {
    fn default() -> Self {
        Self::new()
    }
}

impl Flatten {
    /// Flattens every axis but the first (PyTorch's defaults, 1 and -1).
    pub fn new() -> Self {
        Self::with_dims(1, -1)
    }

    /// Flattens axes `start_dim..=end_dim`.
    pub fn with_dims(start_dim: isize, end_dim: isize) -> Self {
        Self {
            name: String::new(),
            start_dim,
            end_dim,
        }
    }
}

impl ModuleInfo for Flatten {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn kind(&self) -> &'static str {
        "Flatten"
    }
    fn entries(&self, _out: &mut Vec<(ParamId, EntryKind)>) {}
}

impl<T: Float> Module<T> for Flatten {
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        x.validate("flatten")?;
        let shape = x.shape();
        let n = shape.len() as isize;
        let resolve = |d: isize| if d < 0 { d + n } else { d };
        let (s, e) = (resolve(self.start_dim), resolve(self.end_dim));
        if n == 0 || s < 0 || e >= n || s > e {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "cannot flatten axes {}..={} of an input of shape {}",
                    self.start_dim,
                    self.end_dim,
                    ShapeDisplay(&shape)
                ),
            });
        }
        let (s, e) = (s as usize, e as usize);
        let mut out: Vec<usize> = shape[..s].to_vec();
        out.push(shape[s..=e].iter().product());
        out.extend_from_slice(&shape[e + 1..]);
        let _scope = cx.tape().scope(&self.name);
        Ok(x.try_reshape(&out)?)
    }
}
