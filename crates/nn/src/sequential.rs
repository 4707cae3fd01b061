//! `Sequential`: modules applied one after the other, named by position as
//! PyTorch's `nn.Sequential` names them.

use crate::Error;
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use descent_tape::{ParamId, Var};
use descent_tensor::Float;

/// Modules applied in order, each to the previous one's output, as PyTorch's
/// `nn.Sequential`. Child `i` is named `"<name>.<i>"` (`"<i>"` for a top-level
/// container with an empty name), so its entries are `"<name>.<i>.weight"` and so on:
/// build a layer with parameters under [`Sequential::next_name`], and a parameterless
/// one (an activation, dropout) gets its name when pushed. Sequentials nest.
///
/// ```
/// use descent_nn::{Ctx, Linear, Module, Sequential, init, layers::{Dropout, Tanh}};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let rng = &mut init::rng(0);
/// // An unnamed top-level model: children "0", "1"; the nested one's are "0.0", "0.1", ...
/// let mut model = Sequential::new("");
/// let mut body = Sequential::new(model.next_name());
/// body.push(Linear::new(&mut store, body.next_name(), 3, 5, rng));
/// body.push(Tanh::new());
/// body.push(Dropout::new(0.5, 7));
/// model.push(body);
/// model.push(Linear::new(&mut store, model.next_name(), 5, 1, rng));
/// let names: Vec<String> = model.state_dict_names(&store).into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["0.0.weight", "0.0.bias", "1.weight", "1.bias"]);
/// assert_eq!(model.children()[0].kind(), "Sequential");
/// assert_eq!(model.children()[0].name(), "0");
///
/// let tape = Tape::new();
/// let mut cx = Ctx::new(&tape, &mut store).eval();
/// let y = model.call(&mut cx, tape.constant(Tensor::<f64>::ones(&[2, 3])));
/// assert_eq!(y.shape().as_slice(), &[2, 1]);
/// assert_eq!(tape.read().scope_of(y.id()), "1");
/// ```
pub struct Sequential<T: Float> {
    name: String,
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Float> Sequential<T> {
    /// An empty container named `name` (may be empty for a top-level model, whose
    /// children are then `"0"`, `"1"`, ... as in a PyTorch `state_dict`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            layers: Vec::new(),
        }
    }

    /// The name the next child pushed must have: `"<name>.<len>"`.
    pub fn next_name(&self) -> String {
        self.child_name(self.layers.len())
    }

    fn child_name(&self, i: usize) -> String {
        if self.name.is_empty() {
            i.to_string()
        } else {
            format!("{}.{i}", self.name)
        }
    }

    /// Appends a module. A parameterless one is given the name [`Sequential::next_name`].
    ///
    /// # Panics
    /// With the message of [`Sequential::try_push`]'s error.
    pub fn push(&mut self, layer: impl Module<T> + 'static) -> &mut Self {
        if let Err(e) = self.try_push(layer) {
            panic!("{e}");
        }
        self
    }

    /// Appends a module, refusing one named otherwise than [`Sequential::next_name`]
    /// (its entries would not have `state_dict` names).
    ///
    /// ```
    /// use descent_nn::{Linear, Sequential, init};
    /// use descent_tape::ParamStore;
    /// let mut store = ParamStore::<f32>::new();
    /// let mut seq = Sequential::<f32>::new("features");
    /// let err = seq.try_push(Linear::new(&mut store, "fc", 2, 2, &mut init::rng(0))).unwrap_err();
    /// assert_eq!(err.to_string(), "features: child 0 is named 'fc', but it must be 'features.0' for its entries to have state_dict names (build it with next_name())");
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] naming both names.
    pub fn try_push(&mut self, mut layer: impl Module<T> + 'static) -> Result<&mut Self, Error> {
        let want = self.next_name();
        if layer.name().is_empty() {
            layer.set_name(want.clone());
        }
        if layer.name() != want {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "child {} is named '{}', but it must be '{want}' for its entries to have state_dict names (build it with next_name())",
                    self.layers.len(),
                    layer.name()
                ),
            });
        }
        self.layers.push(Box::new(layer));
        Ok(self)
    }

    /// The children, in order.
    pub fn children(&self) -> &[Box<dyn Module<T>>] {
        &self.layers
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True with no children.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// The name and each child's name and type.
impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let children: Vec<String> = self
            .layers
            .iter()
            .map(|l| format!("{} ({})", l.name(), l.kind()))
            .collect();
        f.debug_struct("Sequential")
            .field("name", &self.name)
            .field("children", &children)
            .finish()
    }
}

impl<T: Float> ModuleInfo for Sequential<T> {
    fn name(&self) -> &str {
        &self.name
    }

    /// Renames a container that was built empty-named and has no children yet.
    fn set_name(&mut self, name: String) {
        if self.layers.is_empty() {
            self.name = name;
        }
    }

    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
        for layer in &self.layers {
            layer.entries(out);
        }
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        let mut h = x;
        for layer in &self.layers {
            h = layer.try_call(cx, h)?;
        }
        Ok(h)
    }
}
