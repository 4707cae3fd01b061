//! One recurrent step: the vanilla RNN, GRU and LSTM cells, with PyTorch's gate order,
//! parameter names and formulas.

use crate::Error;
use crate::init::Init;
use descent_tape::{ParamId, ParamStore, Tape, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use rand::Rng;

/// Which recurrence a cell computes. With `x` the input, `h` the previous hidden state,
/// `W_i* x + b_i*` and `W_h* h + b_h*` the gate blocks of the two products, in
/// PyTorch's order:
///
/// | kind | gates (blocks of `hidden` rows) | new state |
/// |---|---|---|
/// | `RnnTanh` | 1 | `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` |
/// | `RnnRelu` | 1 | `h' = relu(W_ih x + b_ih + W_hh h + b_hh)` |
/// | `Gru` | `r, z, n` | `r = σ(..r), z = σ(..z), n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 - z) ⊙ n + z ⊙ h` |
/// | `Lstm` | `i, f, g, o` | `c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)`, `h' = σ(o) ⊙ tanh(c')` |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// PyTorch's `RNN(nonlinearity="tanh")` / `RNNCell`.
    RnnTanh,
    /// PyTorch's `RNN(nonlinearity="relu")`.
    RnnRelu,
    /// PyTorch's `GRU` / `GRUCell`.
    Gru,
    /// PyTorch's `LSTM` / `LSTMCell` (no projection).
    Lstm,
}

impl CellKind {
    /// The number of gate blocks: the products' output is `gates × hidden` wide.
    pub fn gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }

    /// Whether the state carries a cell value `c` beside `h`.
    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }

    /// PyTorch's module name for this kind.
    pub fn torch_name(self) -> &'static str {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => "RNN",
            CellKind::Gru => "GRU",
            CellKind::Lstm => "LSTM",
        }
    }
}

/// The state a recurrent cell carries from one step to the next: the hidden state `h`
/// (`[batch, hidden]` for a cell, `[layers, batch, hidden]` for a stack) and, for an
/// LSTM, the cell state `c` of the same shape.
#[derive(Clone, Copy, Debug)]
pub struct State<'t, T: Float> {
    /// The hidden state.
    pub h: Var<'t, T>,
    /// The LSTM's cell state; `None` for the other kinds.
    pub c: Option<Var<'t, T>>,
}

impl<'t, T: Float> State<'t, T> {
    /// The same values with no path back to what computed them (PyTorch's
    /// `h.detach()`): what truncated backpropagation through time carries from one
    /// chunk of a sequence to the next. Recorded as constants on `tape`.
    pub fn detached(&self, tape: &'t Tape<T>) -> State<'t, T> {
        State {
            h: tape.constant(self.h.value()),
            c: self.c.map(|c| tape.constant(c.value())),
        }
    }
}

/// One recurrent cell: PyTorch's `RNNCell`, `GRUCell` or `LSTMCell`. Its parameters are
/// `"<name>.weight_ih"` (`[gates × hidden, input]`), `"<name>.weight_hh"`
/// (`[gates × hidden, hidden]`), `"<name>.bias_ih"` and `"<name>.bias_hh"`
/// (`[gates × hidden]`), so PyTorch's weights load by name.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{init, recurrent::{Cell, CellKind}};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// let mut store = ParamStore::<f64>::new();
/// let cell = Cell::new(&mut store, "cell", CellKind::Lstm, 3, 5, true, &mut init::rng(0));
/// assert_eq!(store.get(cell.weight_ih()).unwrap().shape(), [20, 3]);
/// let tape = Tape::new();
/// let bound = cell.bind(&tape, &store);
/// let mut state = bound.zero_state(2);
/// for t in 0..4 {
///     let x = tape.constant(Tensor::from_fn(&[2, 3], |i| (i + t) as f64 / 10.0));
///     state = bound.step(x, state);
/// }
/// assert_eq!(state.h.shape().as_slice(), [2, 5]);
/// let grads = state.h.sum().backward();
/// assert!(grads.param(cell.weight_hh()).is_some());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    name: String,
    kind: CellKind,
    input_size: usize,
    hidden_size: usize,
    weight_ih: ParamId,
    weight_hh: ParamId,
    bias: Option<(ParamId, ParamId)>,
}

impl Cell {
    /// A cell with PyTorch's initialisation: every weight and bias U(-1/√hidden,
    /// 1/√hidden), drawn in the order `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
    ///
    /// # Panics
    /// If `hidden_size` is 0.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let name = name.into();
        let names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map(|p| format!("{name}.{p}"));
        Self::with_names(store, name, names, kind, input_size, hidden_size, bias, rng)
    }

    /// A cell whose four parameters are named `names` (the stacked layers name them
    /// `weight_ih_l0` and so on).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_names<T: Float>(
        store: &mut ParamStore<T>,
        name: String,
        names: [String; 4],
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(
            hidden_size > 0,
            "{name}: a recurrent cell needs a hidden size of at least 1"
        );
        let bound = 1.0 / (hidden_size as f64).sqrt();
        let init = Init::Uniform {
            low: -bound,
            high: bound,
        };
        let rows = kind.gates() * hidden_size;
        let mut draw = |shape: &[usize]| -> Tensor<T> {
            init.try_tensor(shape, rng)
                .expect("a finite symmetric uniform initialiser cannot fail")
        };
        let w_ih = draw(&[rows, input_size]);
        let w_hh = draw(&[rows, hidden_size]);
        let biases = bias.then(|| (draw(&[rows]), draw(&[rows])));
        let [n_wih, n_whh, n_bih, n_bhh] = names;
        Cell {
            weight_ih: store.insert(n_wih, w_ih),
            weight_hh: store.insert(n_whh, w_hh),
            bias: biases.map(|(bi, bh)| (store.insert(n_bih, bi), store.insert(n_bhh, bh))),
            name,
            kind,
            input_size,
            hidden_size,
        }
    }

    /// The cell's name (its parameters' prefix and its scope on the tape).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which recurrence it computes.
    pub fn kind(&self) -> CellKind {
        self.kind
    }

    /// The input features a step takes.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// The hidden state's width.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// `W_ih`, `[gates × hidden, input]`.
    pub fn weight_ih(&self) -> ParamId {
        self.weight_ih
    }

    /// `W_hh`, `[gates × hidden, hidden]`.
    pub fn weight_hh(&self) -> ParamId {
        self.weight_hh
    }

    /// `(b_ih, b_hh)`, or `None` for a cell without biases.
    pub fn biases(&self) -> Option<(ParamId, ParamId)> {
        self.bias
    }

    /// The parameter ids, in PyTorch's order.
    pub fn params(&self) -> Vec<ParamId> {
        let mut p = vec![self.weight_ih, self.weight_hh];
        if let Some((bi, bh)) = self.bias {
            p.extend([bi, bh]);
        }
        p
    }

    /// Binds the parameters on `tape`, for any number of steps.
    ///
    /// # Panics
    /// If the parameters are not in `store`.
    pub fn bind<'a, 't, T: Float>(
        &'a self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
    ) -> BoundCell<'a, 't, T> {
        match self.try_bind(tape, store) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Cell::bind`].
    pub fn try_bind<'a, 't, T: Float>(
        &'a self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
    ) -> Result<BoundCell<'a, 't, T>, Error> {
        let _scope = tape.scope(&self.name);
        self.try_bind_in_current_scope(tape, store)
    }

    /// [`Cell::try_bind`] recorded in the tape's current scope, for a layer that
    /// records each of its cells in a scope of its own (`lstm/l0`, not `lstm/lstm.l0`
    /// for the binding and `lstm/l0` for the steps).
    pub(crate) fn try_bind_in_current_scope<'a, 't, T: Float>(
        &'a self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
    ) -> Result<BoundCell<'a, 't, T>, Error> {
        let bind = |id| tape.try_param(store, id);
        Ok(BoundCell {
            cell: self,
            tape,
            weight_ih: bind(self.weight_ih)?,
            weight_hh: bind(self.weight_hh)?,
            bias: self
                .bias
                .map(|(bi, bh)| Ok::<_, Error>((bind(bi)?, bind(bh)?)))
                .transpose()?,
        })
    }
}

/// A [`Cell`] bound on one tape, for stepping through a sequence.
#[derive(Clone, Copy)]
pub struct BoundCell<'a, 't, T: Float> {
    cell: &'a Cell,
    tape: &'t Tape<T>,
    weight_ih: Var<'t, T>,
    weight_hh: Var<'t, T>,
    bias: Option<(Var<'t, T>, Var<'t, T>)>,
}

impl<'t, T: Float> BoundCell<'_, 't, T> {
    /// The cell.
    pub fn cell(&self) -> &Cell {
        self.cell
    }

    /// A zero state for `batch` samples (PyTorch's default initial state).
    pub fn zero_state(&self, batch: usize) -> State<'t, T> {
        let zeros = || {
            self.tape
                .constant(Tensor::zeros(&[batch, self.cell.hidden_size]))
        };
        State {
            h: zeros(),
            c: self.cell.kind.has_cell_state().then(zeros),
        }
    }

    /// One step on the input `x` (`[batch, input]`) from `state`.
    ///
    /// # Panics
    /// With the message of [`BoundCell::try_step`]'s error.
    pub fn step(&self, x: Var<'t, T>, state: State<'t, T>) -> State<'t, T> {
        match self.try_step(x, state) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`BoundCell::step`]: an error naming the cell and the
    /// shapes when `x` is not `[batch, input]` or the state is not `[batch, hidden]`
    /// (with a cell state exactly for an LSTM).
    pub fn try_step(&self, x: Var<'t, T>, state: State<'t, T>) -> Result<State<'t, T>, Error> {
        let shape = x.shape();
        if shape.len() != 2 || shape[1] != self.cell.input_size {
            return Err(self.config(format!(
                "a step's input has shape {}; it should be [batch, {}]",
                ShapeDisplay(&shape),
                self.cell.input_size
            )));
        }
        let _scope = self.tape.scope(&self.cell.name);
        let projected = self.project_input(x)?;
        self.try_step_projected(projected, state)
    }

    /// `x W_ihᵀ + b_ih` for any leading axes (`[batch, input]` or `[rows, input]`):
    /// the input's part of every gate, which a layer computes for all steps at once.
    /// Every kind but the GRU adds `b_hh` here too (as `b_ih + b_hh`, one broadcast add
    /// for all steps instead of one per step): only the GRU's `n` gate needs
    /// `W_hn h + b_hn` on its own.
    pub(crate) fn project_input(&self, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        let p = x.try_matmul_t(self.weight_ih)?;
        Ok(match self.bias {
            Some((bi, _)) if self.cell.kind == CellKind::Gru => p.try_add(bi)?,
            Some((bi, bh)) => p.try_add(bi.try_add(bh)?)?,
            None => p,
        })
    }

    /// One step from the input's projection `projected` (`[batch, gates × hidden]`).
    pub(crate) fn try_step_projected(
        &self,
        projected: Var<'t, T>,
        state: State<'t, T>,
    ) -> Result<State<'t, T>, Error> {
        let (batch, hidden) = (projected.shape()[0], self.cell.hidden_size);
        let kind = self.cell.kind;
        let h_shape = state.h.shape();
        let c_ok = match state.c {
            Some(c) => kind.has_cell_state() && c.shape().as_slice() == [batch, hidden],
            None => !kind.has_cell_state(),
        };
        if h_shape.as_slice() != [batch, hidden] || !c_ok {
            return Err(self.config(format!(
                "the state has h {}{}; a {} step on {batch} samples needs h [{batch}, {hidden}]{}",
                ShapeDisplay(&h_shape),
                state.c.map_or(String::new(), |c| format!(
                    " and c {}",
                    ShapeDisplay(&c.shape())
                )),
                kind.torch_name(),
                if kind.has_cell_state() {
                    format!(" and c [{batch}, {hidden}]")
                } else {
                    String::new()
                },
            )));
        }
        let mut hp = state.h.try_matmul_t(self.weight_hh)?;
        if let (Some((_, bh)), CellKind::Gru) = (self.bias, kind) {
            hp = hp.try_add(bh)?;
        }
        Ok(match kind {
            CellKind::RnnTanh => State {
                h: projected.try_add(hp)?.tanh(),
                c: None,
            },
            CellKind::RnnRelu => State {
                h: projected.try_add(hp)?.relu(),
                c: None,
            },
            CellKind::Gru => {
                // The fused ops compute r = σ(p_r + q_r), z = σ(p_z + q_z),
                // n = tanh(p_n + r ⊙ q_n), then h' = n + z ⊙ (h - n), without copying a
                // gate out of either projection.
                let gates = projected.try_gru_gates(hp)?;
                State {
                    h: gates.try_gru_hidden(state.h)?,
                    c: None,
                }
            }
            CellKind::Lstm => {
                // The fused ops compute σ(i), σ(f), tanh(g), σ(o), then
                // c = f ⊙ c_prev + i ⊙ g and h = o ⊙ tanh(c), without copying a gate out.
                let gates = projected.try_add(hp)?.try_lstm_gates()?;
                let c_prev = state.c.expect("checked above: an LSTM state has c");
                let c = gates.try_lstm_cell(c_prev)?;
                State {
                    h: gates.try_lstm_hidden(c)?,
                    c: Some(c),
                }
            }
        })
    }

    fn config(&self, reason: String) -> Error {
        Error::Config {
            layer: self.cell.name.clone(),
            reason,
        }
    }
}
