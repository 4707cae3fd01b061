//! [`Linear`] and [`Mlp`] as modules: their existing `forward(tape, store, x)` stays,
//! and they can be placed in containers and named, counted, frozen and summarised.

use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use crate::{Error, Linear, Mlp};
use descent_tape::{ParamId, Var};
use descent_tensor::Float;

/// `x @ Wᵀ + b`, PyTorch's `nn.Linear`; entries `weight`, `bias`.
///
/// ```
/// use descent_nn::{Ctx, Linear, Module, ModuleInfo, init};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let fc = Linear::new(&mut store, "fc", 3, 2, &mut init::rng(0));
/// assert_eq!(fc.kind(), "Linear");
/// assert_eq!(fc.num_parameters(&store), 8);
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::<f64>::ones(&[1, 3]));
/// let by_module = fc.call(&mut Ctx::new(&tape, &mut store), x).value();
/// assert_eq!(by_module, fc.forward(&tape, &store, x).value());
/// ```
impl ModuleInfo for Linear {
    fn name(&self) -> &str {
        Linear::name(self)
    }
    fn kind(&self) -> &'static str {
        "Linear"
    }
    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
        out.push((self.weight(), EntryKind::Param));
        if let Some(b) = self.bias() {
            out.push((b, EntryKind::Param));
        }
    }
}

impl<T: Float> Module<T> for Linear {
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        self.try_forward(cx.tape(), cx.store(), x)
    }
}

/// A stack of `Linear` layers with an activation between them; entries
/// `<i>.weight`, `<i>.bias` for each layer, as a PyTorch `ModuleList` of linears.
///
/// ```
/// use descent_nn::{Activation, Mlp, Module, init};
/// use descent_tape::ParamStore;
/// let mut store = ParamStore::<f32>::new();
/// let mlp = Mlp::new(&mut store, "mlp", &[2, 3, 1], Activation::Tanh, &mut init::rng(0));
/// assert_eq!(mlp.num_parameters(&store), 2 * 3 + 3 + 3 + 1);
/// mlp.layers()[0].freeze(&mut store);
/// assert_eq!(mlp.num_trainable_parameters(&store), 4);
/// ```
impl ModuleInfo for Mlp {
    fn name(&self) -> &str {
        Mlp::name(self)
    }
    fn kind(&self) -> &'static str {
        "Mlp"
    }
    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
        for layer in self.layers() {
            layer.entries(out);
        }
    }
}

impl<T: Float> Module<T> for Mlp {
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        self.try_forward(cx.tape(), cx.store(), x)
    }
}
