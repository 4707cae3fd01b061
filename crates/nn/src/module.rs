//! Modules: layers and containers that own parameter ids, record their forward on a
//! tape, and list their parameters and buffers by PyTorch's `state_dict` names.
//!
//! A module holds ids, never tensors: values live in a [`ParamStore`], which
//! optimisers update and checkpoints save. A module's entries are named in the store
//! with the module's path as prefix (`features.0.weight`, `bn.running_mean`), so the
//! store's names *are* the `state_dict` keys, and a PyTorch checkpoint loads by name
//! ([`crate::checkpoint::load_state_dict`]).
//!
//! | PyTorch | descent |
//! |---|---|
//! | `class Net(nn.Module)` | `impl Module<T> for Net` (`record`, `entries`) |
//! | `model(x)` | `model.call(&mut cx, x)` |
//! | `model.train()` / `model.eval()` | `Ctx::new(&tape, &mut store)` / `.eval()` |
//! | `model.state_dict()` keys | `model.state_dict_names(&store)` |
//! | `model.named_parameters()` | `model.named_parameters(&store)` |
//! | `p.requires_grad_(False)` for a submodule | `sub.freeze(&mut store)` |
//! | `sum(p.numel() for p in model.parameters())` | `model.num_parameters(&store)` |
//! | `torchinfo.summary(model, shape)` / Keras `summary()` | `model.summary(&mut store, &shape)` |

use crate::Error;
use descent_tape::{ParamId, ParamStore, Tape, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use std::fmt;

/// What an entry of a module is: a trained parameter, or a buffer (state that is
/// saved and loaded but not trained, such as batch norm's running statistics, kept in
/// the store as a frozen entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A parameter (PyTorch's `nn.Parameter`).
    Param,
    /// A buffer (PyTorch's `register_buffer`).
    Buffer,
}

/// What a module's forward records with: the tape, the parameter store, and whether
/// the module runs in training mode (dropout drops, batch norm uses and updates batch
/// statistics) or evaluation mode.
///
/// The store is borrowed mutably because training-mode batch norm updates its running
/// statistics in it. A `Ctx` starts in training mode, as a new PyTorch module does.
///
/// ```
/// use descent_nn::{Ctx, Linear, Module, init};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let fc = Linear::new(&mut store, "fc", 3, 2, &mut init::rng(0));
/// let tape = Tape::new();
/// let mut cx = Ctx::new(&tape, &mut store).eval();
/// assert!(!cx.is_training());
/// let x = tape.constant(Tensor::<f64>::ones(&[4, 3]));
/// assert_eq!(fc.call(&mut cx, x).shape().as_slice(), &[4, 2]);
/// ```
pub struct Ctx<'t, 's, T: Float> {
    tape: &'t Tape<T>,
    store: &'s mut ParamStore<T>,
    train: bool,
    trace: Option<Vec<SummaryRow>>,
    depth: usize,
}

impl<'t, 's, T: Float> Ctx<'t, 's, T> {
    /// A context in training mode.
    pub fn new(tape: &'t Tape<T>, store: &'s mut ParamStore<T>) -> Self {
        Self {
            tape,
            store,
            train: true,
            trace: None,
            depth: 0,
        }
    }

    /// The same context in evaluation mode (PyTorch's `model.eval()`).
    pub fn eval(mut self) -> Self {
        self.train = false;
        self
    }

    /// Sets training (`true`) or evaluation (`false`) mode.
    pub fn set_training(&mut self, train: bool) {
        self.train = train;
    }

    /// Whether modules run in training mode.
    pub fn is_training(&self) -> bool {
        self.train
    }

    /// The tape.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The parameter store.
    pub fn store(&self) -> &ParamStore<T> {
        self.store
    }

    /// The parameter store, mutably (for buffers updated by a forward pass).
    pub fn store_mut(&mut self) -> &mut ParamStore<T> {
        self.store
    }

    /// Binds a parameter on the tape ([`Tape::try_param`]): a variable, or a constant
    /// for a frozen parameter or in no-gradient mode.
    pub fn param(&self, id: ParamId) -> Result<Var<'t, T>, Error> {
        Ok(self.tape.try_param(self.store, id)?)
    }

    /// A buffer's value as a constant on the tape.
    pub fn buffer(&self, id: ParamId) -> Result<Var<'t, T>, Error> {
        self.store.check("buffer", id)?;
        let value = self.store.get(id).expect("checked");
        Ok(self.tape.constant(value))
    }
}

/// The part of a module that does not depend on the element type: its name, its
/// type, and the ids of its parameters and buffers. Every module implements it and
/// [`Module`] (see there).
pub trait ModuleInfo {
    /// The module's path: the prefix of its entries' names in the store, and its scope
    /// on the tape (empty for a parameterless layer not yet placed in a container).
    fn name(&self) -> &str;

    /// Gives a parameterless module its path; containers call it on the children they
    /// place. A module whose entries are already named keeps its name (the default).
    fn set_name(&mut self, name: String) {
        let _ = name;
    }

    /// The module's type as PyTorch names it (`"Linear"`, `"BatchNorm2d"`), for
    /// summaries.
    fn kind(&self) -> &'static str;

    /// Appends the module's parameter and buffer ids, in `state_dict` order (its own,
    /// then its children's, recursively).
    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>);

    /// The parameter ids (not the buffers), in order.
    fn parameters(&self) -> Vec<ParamId> {
        let mut all = Vec::new();
        self.entries(&mut all);
        all.into_iter()
            .filter(|(_, k)| *k == EntryKind::Param)
            .map(|(id, _)| id)
            .collect()
    }

    /// The buffer ids, in order.
    fn buffers(&self) -> Vec<ParamId> {
        let mut all = Vec::new();
        self.entries(&mut all);
        all.into_iter()
            .filter(|(_, k)| *k == EntryKind::Buffer)
            .map(|(id, _)| id)
            .collect()
    }
}

/// A layer or a container of layers, for element type `T`.
///
/// Implement [`Module::record`] (the forward computation, recorded on `cx`'s tape)
/// and [`ModuleInfo::entries`] (the parameter and buffer ids, in `state_dict` order: the
/// module's own first, then its children's); and [`ModuleInfo`]'s `name` and `kind`; everything else is provided.
///
/// Call a module with [`Module::call`] (or [`Module::try_call`]), which also feeds
/// [`Module::summary`]; containers call their children the same way.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{Ctx, Linear, Module, layers::ReLU, init, Sequential};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let rng = &mut init::rng(0);
/// let mut net = Sequential::new("net");
/// net.push(Linear::new(&mut store, net.next_name(), 4, 8, rng));
/// net.push(ReLU::new());
/// net.push(Linear::new(&mut store, net.next_name(), 8, 2, rng));
/// assert_eq!(
///     net.state_dict_names(&store).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
///     ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
/// );
/// assert_eq!(net.num_parameters(&store), 4 * 8 + 8 + 8 * 2 + 2);
///
/// let tape = Tape::new();
/// let mut cx = Ctx::new(&tape, &mut store);
/// let y = net.call(&mut cx, tape.constant(Tensor::<f64>::ones(&[3, 4])));
/// let grads = y.sum().backward();
/// assert_eq!(grads.params().count(), 4);
/// ```
pub trait Module<T: Float>: ModuleInfo {
    /// Records the forward computation of `x` on `cx`'s tape and returns the output.
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error>;

    /// Runs the module on `x`: [`Module::record`], plus a row of the summary when one
    /// is being made.
    fn try_call<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        let row = cx.trace.as_mut().map(|rows| {
            rows.push(SummaryRow {
                depth: cx.depth,
                name: String::new(),
                kind: "",
                output: Vec::new(),
                params: 0,
            });
            rows.len() - 1
        });
        cx.depth += 1;
        let y = self.record(cx, x);
        cx.depth -= 1;
        let y = y?;
        if let Some(i) = row {
            let params = self.num_parameters(cx.store);
            let rows = cx.trace.as_mut().expect("tracing");
            rows[i].name = self.name().to_owned();
            rows[i].kind = self.kind();
            rows[i].output = y.shape().to_vec();
            rows[i].params = params;
        }
        Ok(y)
    }

    /// The panicking form of [`Module::try_call`].
    ///
    /// # Panics
    /// With the message of the error [`Module::try_call`] returns.
    fn call<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Var<'t, T> {
        match self.try_call(cx, x) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// `(name, id)` of every parameter, as PyTorch's `named_parameters()`.
    fn named_parameters(&self, store: &ParamStore<T>) -> Vec<(String, ParamId)> {
        named(store, self.parameters())
    }

    /// `(name, id)` of every parameter and buffer, in the order and with the names of
    /// PyTorch's `state_dict()`.
    fn state_dict_names(&self, store: &ParamStore<T>) -> Vec<(String, ParamId)> {
        let mut all = Vec::new();
        self.entries(&mut all);
        named(store, all.into_iter().map(|(id, _)| id).collect())
    }

    /// Number of scalar parameters (buffers excluded).
    fn num_parameters(&self, store: &ParamStore<T>) -> usize {
        self.parameters()
            .into_iter()
            .filter_map(|id| store.get(id))
            .map(Tensor::len)
            .sum()
    }

    /// Number of scalar parameters that are not frozen.
    fn num_trainable_parameters(&self, store: &ParamStore<T>) -> usize {
        self.parameters()
            .into_iter()
            .filter(|&id| store.requires_grad(id))
            .filter_map(|id| store.get(id))
            .map(Tensor::len)
            .sum()
    }

    /// Freezes every parameter of the module and its children: each binds as a
    /// constant, so no gradient is computed for it and no optimiser updates it
    /// (PyTorch: `for p in sub.parameters(): p.requires_grad_(False)`).
    fn freeze(&self, store: &mut ParamStore<T>) {
        for id in self.parameters() {
            store.set_requires_grad(id, false);
        }
    }

    /// Undoes [`Module::freeze`].
    fn unfreeze(&self, store: &mut ParamStore<T>) {
        for id in self.parameters() {
            store.set_requires_grad(id, true);
        }
    }

    /// Runs the module once on zeros of `input_shape` (evaluation mode, gradients off,
    /// on a tape of its own: the store is not changed) and tabulates each module it
    /// calls: its name, type, output shape and parameter count, as Keras' `summary()`.
    ///
    /// ```
    /// use descent_nn::{Linear, Module, Sequential, init, layers::{Flatten, ReLU}};
    /// use descent_tape::ParamStore;
    /// let mut store = ParamStore::<f32>::new();
    /// let mut net = Sequential::new("net");
    /// net.push(Flatten::new());
    /// net.push(Linear::new(&mut store, net.next_name(), 6, 4, &mut init::rng(0)));
    /// net.push(ReLU::new());
    /// let summary = net.summary(&mut store, &[2, 2, 3]).unwrap();
    /// let text = summary.to_string();
    /// let lines: Vec<&str> = text.lines().collect();
    /// assert_eq!(lines[3], "net          Sequential   [2, 4]                28");
    /// assert_eq!(lines[4], "  net.0      Flatten      [2, 6]                 0");
    /// assert_eq!(lines[5], "  net.1      Linear       [2, 4]                28");
    /// assert_eq!(lines[6], "  net.2      ReLU         [2, 4]                 0");
    /// assert_eq!(summary.total, 28);
    /// ```
    ///
    /// # Errors
    /// As [`Module::try_call`] on such an input.
    fn summary(&self, store: &mut ParamStore<T>, input_shape: &[usize]) -> Result<Summary, Error> {
        let tape = Tape::new();
        let mut cx = Ctx::new(&tape, store).eval();
        cx.trace = Some(Vec::new());
        let x = tape.constant(Tensor::<T>::zeros(input_shape));
        let _ = tape.no_grad(|| self.try_call(&mut cx, x))?;
        let rows = cx.trace.take().expect("tracing");
        let total = self.num_parameters(cx.store);
        let trainable = self.num_trainable_parameters(cx.store);
        Ok(Summary {
            input: input_shape.to_vec(),
            rows,
            total,
            trainable,
        })
    }
}

fn named<T: Float>(store: &ParamStore<T>, ids: Vec<ParamId>) -> Vec<(String, ParamId)> {
    ids.into_iter()
        .map(|id| (store.name(id).unwrap_or("<removed>").to_owned(), id))
        .collect()
}

/// One module's line of a [`Summary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    /// Nesting depth (0 for the module summarised).
    pub depth: usize,
    /// The module's path.
    pub name: String,
    /// Its type.
    pub kind: &'static str,
    /// The shape of its output.
    pub output: Vec<usize>,
    /// Its parameters' scalar count, its children's included.
    pub params: usize,
}

/// A model's summary ([`Module::summary`]); `Display` prints it as a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The input shape it was made with.
    pub input: Vec<usize>,
    /// One row per module called, in call order (a container before its children).
    pub rows: Vec<SummaryRow>,
    /// Total scalar parameters.
    pub total: usize,
    /// Scalar parameters not frozen.
    pub trainable: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:<12} {:<16} {:>7}",
            "layer", "type", "output shape", "params"
        )?;
        writeln!(f, "{}", "-".repeat(50))?;
        writeln!(
            f,
            "{:<12} {:<12} {:<16} {:>7}",
            "input",
            "",
            ShapeDisplay(&self.input).to_string(),
            ""
        )?;
        for r in &self.rows {
            let name = format!("{}{}", "  ".repeat(r.depth), r.name);
            writeln!(
                f,
                "{:<12} {:<12} {:<16} {:>7}",
                name,
                r.kind,
                ShapeDisplay(&r.output).to_string(),
                r.params
            )?;
        }
        writeln!(f, "{}", "-".repeat(50))?;
        writeln!(f, "total parameters:      {}", self.total)?;
        writeln!(f, "trainable parameters:  {}", self.trainable)?;
        write!(
            f,
            "frozen parameters:     {}",
            self.total.saturating_sub(self.trainable)
        )
    }
}
