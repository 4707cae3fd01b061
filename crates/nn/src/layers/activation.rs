//! Activations as modules: parameterless, element-wise (or along one axis for
//! softmax), each the PyTorch module of the same name.

use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use crate::{Activation, Error};
use descent_tape::{ParamId, Var};
use descent_tensor::Float;

/// Declares a parameterless module: its struct (a name and its settings), `new`, and
/// its `Module` impl recording `$apply` inside its scope.
macro_rules! activation {
    // Without settings: also `Default`. (A layer with settings has no default here:
    // PyTorch's defaults, a slope of 0.01 say, are not `Default`'s zeros.)
    (
        $(#[$doc:meta])*
        $ty:ident {} => |$x:ident, $s:ident| $apply:expr
    ) => {
        activation! { @layer $(#[$doc])* $ty {} => |$x, $s| $apply }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    };
    (
        $(#[$doc:meta])*
        $ty:ident { $($field:ident : $fty:ty),+ } => |$x:ident, $s:ident| $apply:expr
    ) => {
        activation! { @layer $(#[$doc])* $ty { $($field: $fty),+ } => |$x, $s| $apply }
    };
    (
        @layer
        $(#[$doc:meta])*
        $ty:ident { $($field:ident : $fty:ty),* } => |$x:ident, $s:ident| $apply:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $ty {
            name: String,
            $($field: $fty,)*
        }

        impl $ty {
            /// The module (named when placed in a container).
            pub fn new($($field: $fty),*) -> Self {
                Self { name: String::new(), $($field,)* }
            }

            /// The module, named `name` (its scope on the tape).
            pub fn named(name: impl Into<String>, $($field: $fty),*) -> Self {
                Self { name: name.into(), $($field,)* }
            }
        }

        impl ModuleInfo for $ty {
            fn name(&self) -> &str {
                &self.name
            }
            fn set_name(&mut self, name: String) {
                self.name = name;
            }
            fn kind(&self) -> &'static str {
                stringify!($ty)
            }
            fn entries(&self, _out: &mut Vec<(ParamId, EntryKind)>) {}
        }

        impl<T: Float> Module<T> for $ty {
            fn record<'t>(
                &self,
                cx: &mut Ctx<'t, '_, T>,
                $x: Var<'t, T>,
            ) -> Result<Var<'t, T>, Error> {
                let _scope = cx.tape().scope(&self.name);
                let $s = self;
                let _ = $s;
                Ok($apply?)
            }
        }
    };
}

activation! {
    /// `max(x, 0)`. PyTorch: `nn.ReLU()`.
    ///
    /// ```
    /// use descent_nn::{Ctx, Module, layers::ReLU};
    /// let tape = descent_tape::Tape::<f64>::new();
    /// let mut store = descent_tape::ParamStore::new();
    /// let mut cx = Ctx::new(&tape, &mut store);
    /// let y = ReLU::new().call(&mut cx, tape.var([-1.0, 2.0]));
    /// assert_eq!(y.value().data(), &[0.0, 2.0]);
    /// ```
    ReLU {} => |x, s| x.try_relu()
}

activation! {
    /// `tanh x`. PyTorch: `nn.Tanh()`.
    Tanh {} => |x, s| x.try_tanh()
}

activation! {
    /// `1 / (1 + e^-x)`. PyTorch: `nn.Sigmoid()`.
    Sigmoid {} => |x, s| x.try_sigmoid()
}

activation! {
    /// GELU with the tanh approximation. PyTorch: `nn.GELU(approximate="tanh")`.
    GELU {} => |x, s| x.try_gelu()
}

activation! {
    /// `ln(1 + e^x)`. PyTorch: `nn.Softplus()` (β = 1; PyTorch returns `x` itself
    /// above its threshold 20, where the two differ by under `e^-20`).
    Softplus {} => |x, s| x.try_softplus()
}

activation! {
    /// `x · sigmoid(x)` (also called swish). PyTorch: `nn.SiLU()`.
    SiLU {} => |x, s| x.try_sigmoid().and_then(|g| x.try_mul(g))
}

activation! {
    /// `x` for `x > 0`, `negative_slope · x` otherwise. PyTorch:
    /// `nn.LeakyReLU(negative_slope)` (whose default slope is 0.01).
    LeakyReLU { negative_slope: f64 } => |x, s| x.try_leaky_relu(s.negative_slope)
}

activation! {
    /// Softmax along `dim` (negative counts from the end). PyTorch: `nn.Softmax(dim)`.
    Softmax { dim: isize } => |x, s| x.try_softmax(s.dim)
}

activation! {
    /// Log-softmax along `dim`. PyTorch: `nn.LogSoftmax(dim)`.
    LogSoftmax { dim: isize } => |x, s| x.try_log_softmax(s.dim)
}

activation! {
    /// The input, unchanged (a placeholder, as PyTorch's `nn.Identity()`).
    Identity {} => |x, s| x.validate("identity").map(|()| x)
}

/// The [`Activation`] enum is a module too, so a choice of activation can be data.
impl ModuleInfo for Activation {
    fn name(&self) -> &str {
        ""
    }
    fn kind(&self) -> &'static str {
        match self {
            Activation::Identity => "Identity",
            Activation::Relu => "ReLU",
            Activation::LeakyRelu(_) => "LeakyReLU",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::Gelu => "GELU",
            Activation::Softplus => "Softplus",
        }
    }
    fn entries(&self, _out: &mut Vec<(ParamId, EntryKind)>) {}
}

impl<T: Float> Module<T> for Activation {
    fn record<'t>(&self, _cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        self.try_apply(x)
    }
}
