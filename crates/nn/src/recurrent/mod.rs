//! Recurrent layers: a [`Cell`] for one step, and [`Recurrent`], a stack of cells run
//! over a sequence `[batch, time, features]`: PyTorch's `nn.RNN`, `nn.GRU` and
//! `nn.LSTM` with `batch_first=True`, their gate order and their parameter names, so
//! PyTorch's weights load by name.

mod cell;

pub use cell::{BoundCell, Cell, CellKind, State};

use crate::Error;
use descent_tape::{ParamId, ParamStore, Tape, Var};
use descent_tensor::{Float, ShapeDisplay};
use rand::Rng;

/// A stack of recurrent layers run over a sequence. Layer `k` is a [`Cell`] whose
/// parameters are `"<name>.weight_ih_l<k>"`, `"<name>.weight_hh_l<k>"`,
/// `"<name>.bias_ih_l<k>"`, `"<name>.bias_hh_l<k>"`, as in PyTorch's `state_dict`; layer
/// 0 reads the input, each later layer the hidden states of the one below.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{init, recurrent::Recurrent};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// let mut store = ParamStore::<f32>::new();
/// let lstm = Recurrent::lstm(&mut store, "lstm", 3, 8, 2, &mut init::rng(0));
/// assert_eq!(store.name(lstm.layers()[1].weight_hh()), Some("lstm.weight_hh_l1"));
///
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from_fn(&[4, 10, 3], |i| (i % 7) as f32 / 7.0));
/// let out = lstm.forward(&tape, &store, x, None);
/// assert_eq!(out.output.shape().as_slice(), [4, 10, 8]);     // every step's h, top layer
/// assert_eq!(out.state.h.shape().as_slice(), [2, 4, 8]);     // h_n of each layer
/// assert_eq!(out.state.c.unwrap().shape().as_slice(), [2, 4, 8]);
/// assert_eq!(out.steps.len(), 10);                           // h_t nodes, top layer
///
/// // ∂L/∂h_t for every step: how far back the loss reaches.
/// let grads = out.output.slice(1, 9, 10).sum().backward();
/// let first = grads.wrt(out.steps[0]).data().iter().map(|g| g * g).sum::<f32>();
/// assert!(first > 0.0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recurrent {
    name: String,
    kind: CellKind,
    input_size: usize,
    hidden_size: usize,
    layers: Vec<Cell>,
}

/// The shape of a [`Recurrent`] stack: PyTorch's constructor arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecurrentConfig {
    /// Which recurrence.
    pub kind: CellKind,
    /// The input features of a step.
    pub input_size: usize,
    /// The hidden state's width.
    pub hidden_size: usize,
    /// How many layers are stacked (default 1).
    pub num_layers: usize,
    /// Whether the layers have biases (default `true`).
    pub bias: bool,
}

impl RecurrentConfig {
    /// One layer of `kind` with biases.
    pub fn new(kind: CellKind, input_size: usize, hidden_size: usize) -> Self {
        RecurrentConfig {
            kind,
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
        }
    }

    /// `num_layers` stacked layers.
    pub fn layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// With or without biases.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// What [`Recurrent::forward`] returns.
#[derive(Clone, Debug)]
pub struct RecurrentOutput<'t, T: Float> {
    /// The top layer's hidden state at every step, `[batch, time, hidden]` (PyTorch's
    /// `output`).
    pub output: Var<'t, T>,
    /// The final state of every layer, `h` (and `c`) `[layers, batch, hidden]`
    /// (PyTorch's `h_n`, `c_n`).
    pub state: State<'t, T>,
    /// The top layer's hidden state at each step as its own node, `[batch, hidden]`:
    /// `grads.wrt(steps[t])` is ∂L/∂h_t, everything the loss receives through `h_t`,
    /// directly and through the later steps.
    pub steps: Vec<Var<'t, T>>,
}

impl Recurrent {
    /// A stack as `config` describes, with PyTorch's initialisation (every parameter
    /// U(-1/√hidden, 1/√hidden), drawn layer by layer in PyTorch's order).
    ///
    /// ```
    /// use descent_nn::{init, recurrent::{CellKind, Recurrent, RecurrentConfig}};
    /// use descent_tape::ParamStore;
    /// let mut store = ParamStore::<f64>::new();
    /// let config = RecurrentConfig::new(CellKind::RnnRelu, 4, 16).layers(3).bias(false);
    /// let rnn = Recurrent::new(&mut store, "rnn", config, &mut init::rng(0));
    /// assert_eq!(store.len(), 3 * 2);
    /// ```
    ///
    /// # Panics
    /// If the hidden size or the number of layers is 0.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        config: RecurrentConfig,
        rng: &mut impl Rng,
    ) -> Self {
        let name = name.into();
        let RecurrentConfig {
            kind,
            input_size,
            hidden_size,
            num_layers,
            bias,
        } = config;
        assert!(
            num_layers > 0,
            "{name}: a recurrent layer needs at least one layer"
        );
        let layers = (0..num_layers)
            .map(|k| {
                let names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
                    .map(|p| format!("{name}.{p}_l{k}"));
                let input = if k == 0 { input_size } else { hidden_size };
                let cell_name = format!("{name}.l{k}");
                Cell::with_names(store, cell_name, names, kind, input, hidden_size, bias, rng)
            })
            .collect();
        Recurrent {
            name,
            kind,
            input_size,
            hidden_size,
            layers,
        }
    }

    /// PyTorch's `nn.RNN(input, hidden, num_layers, batch_first=True)` (tanh).
    pub fn rnn<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        rng: &mut impl Rng,
    ) -> Self {
        Self::new(
            store,
            name,
            RecurrentConfig::new(CellKind::RnnTanh, input_size, hidden_size).layers(num_layers),
            rng,
        )
    }

    /// PyTorch's `nn.GRU(input, hidden, num_layers, batch_first=True)`.
    pub fn gru<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        rng: &mut impl Rng,
    ) -> Self {
        Self::new(
            store,
            name,
            RecurrentConfig::new(CellKind::Gru, input_size, hidden_size).layers(num_layers),
            rng,
        )
    }

    /// PyTorch's `nn.LSTM(input, hidden, num_layers, batch_first=True)`.
    pub fn lstm<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        rng: &mut impl Rng,
    ) -> Self {
        Self::new(
            store,
            name,
            RecurrentConfig::new(CellKind::Lstm, input_size, hidden_size).layers(num_layers),
            rng,
        )
    }

    /// The layer's name (its parameters' prefix and its scope).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which recurrence every layer computes.
    pub fn kind(&self) -> CellKind {
        self.kind
    }

    /// The input features of a step.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// The hidden state's width.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// The stacked cells, bottom first.
    pub fn layers(&self) -> &[Cell] {
        &self.layers
    }

    /// Every parameter id, layer by layer in PyTorch's order.
    pub fn params(&self) -> Vec<ParamId> {
        self.layers.iter().flat_map(Cell::params).collect()
    }

    /// Runs the stack over `x` (`[batch, time, input]`) from `initial` (`h`, and `c`
    /// for an LSTM, each `[layers, batch, hidden]`; `None`: zeros), recording every
    /// step inside the scope `name`. The input's part of every gate is computed for all
    /// steps in one product per layer.
    ///
    /// # Panics
    /// With the message of [`Recurrent::try_forward`]'s error.
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
        initial: Option<State<'t, T>>,
    ) -> RecurrentOutput<'t, T> {
        match self.try_forward(tape, store, x, initial) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Recurrent::forward`]: an error naming the layer and the
    /// shapes when `x` is not `[batch, time, input]` with at least one step, or the
    /// initial state is not `[layers, batch, hidden]` (with `c` exactly for an LSTM).
    pub fn try_forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
        initial: Option<State<'t, T>>,
    ) -> Result<RecurrentOutput<'t, T>, Error> {
        x.validate(self.kind.torch_name())?;
        let shape = x.shape();
        if shape.len() != 3 || shape[2] != self.input_size || shape[1] == 0 {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "the input has shape {}; it should be [batch, time ≥ 1, {}]",
                    ShapeDisplay(&shape),
                    self.input_size
                ),
            });
        }
        let (batch, time) = (shape[0], shape[1]);
        let (layers, hidden) = (self.layers.len(), self.hidden_size);
        if let Some(s) = &initial {
            let want = [layers, batch, hidden];
            let c_ok = match s.c {
                Some(c) => self.kind.has_cell_state() && c.shape().as_slice() == want,
                None => !self.kind.has_cell_state(),
            };
            if s.h.shape().as_slice() != want || !c_ok {
                return Err(Error::Config {
                    layer: self.name.clone(),
                    reason: format!(
                        "the initial state has h {}{}; it should be {}{}",
                        ShapeDisplay(&s.h.shape()),
                        s.c.map_or(String::new(), |c| format!(
                            " and c {}",
                            ShapeDisplay(&c.shape())
                        )),
                        ShapeDisplay(&want),
                        if self.kind.has_cell_state() {
                            " for both h and c"
                        } else {
                            " (and no c)"
                        },
                    ),
                });
            }
        }
        let _scope = tape.scope(&self.name);
        let mut input = x;
        let (mut last_h, mut last_c) = (Vec::with_capacity(layers), Vec::with_capacity(layers));
        let mut steps = Vec::new();
        for (k, cell) in self.layers.iter().enumerate() {
            let _layer = tape.scope(&format!("l{k}"));
            let bound = cell.try_bind_in_current_scope(tape, store)?;
            let mut state = match &initial {
                Some(s) => State {
                    h: s.h.try_slice(0, k, k + 1)?.try_reshape(&[batch, hidden])?,
                    c: s.c
                        .map(|c| c.try_slice(0, k, k + 1)?.try_reshape(&[batch, hidden]))
                        .transpose()?,
                },
                None => bound.zero_state(batch),
            };
            let in_width = input.shape()[2];
            // Time-major rows: step t's part of the projection is rows t·B..(t+1)·B, one
            // contiguous slice (batch-major, it was a strided copy and a reshape).
            let time_major = input
                .try_transpose(0, 1)?
                .try_reshape(&[time * batch, in_width])?;
            let projected = bound.project_input(time_major)?;
            steps.clear();
            for t in 0..time {
                let p_t = projected.try_slice(0, t * batch, (t + 1) * batch)?;
                state = bound.try_step_projected(p_t, state)?;
                steps.push(state.h);
            }
            last_h.push(state.h);
            last_c.extend(state.c);
            input = Var::try_stack(&steps, 1)?;
        }
        Ok(RecurrentOutput {
            output: input,
            state: State {
                h: Var::try_stack(&last_h, 0)?,
                c: if last_c.is_empty() {
                    None
                } else {
                    Some(Var::try_stack(&last_c, 0)?)
                },
            },
            steps,
        })
    }
}
