//! Adagrad: per-element learning rates from the running sum of squared gradients.

use crate::optimizer::non_negative;
use crate::pointwise::{add_scaled, addcdiv, addcmul};
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// Adagrad as PyTorch's `torch.optim.Adagrad` computes it. For each parameter, at its
/// own step count `t = 1, 2, …` (a parameter without a gradient in a step is skipped
/// and its count does not advance):
///
/// ```text
/// g ← g + λ p                               (weight decay λ)
/// η_t = η / (1 + (t - 1) δ)                  (learning-rate decay δ)
/// s ← s + g²                                (s starts at the initial accumulator value)
/// p ← p - η_t g / (√s + ε)
/// ```
///
/// Defaults (PyTorch's, and [`Adagrad::default`]): η = 1e-2, δ = 0, λ = 0,
/// initial accumulator 0, ε = 1e-10.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{Adagrad, Optimizer};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0, 1.0]));
/// let mut opt = Adagrad::new(0.1);
/// let grads: ParamGrads<f64> = [(w, Tensor::from([2.0, -0.5]))].into_iter().collect();
/// opt.step(&mut store, &grads).unwrap(); // s = g², so each element moves by η·sign(g)
/// opt.step(&mut store, &grads).unwrap(); // s = 2g²: by η/√2
/// assert_eq!(opt.step_count(w), 2);
/// let moved = 0.1 + 0.1 / 2f64.sqrt();
/// let w = store.get(w).unwrap();
/// assert!((w.data()[0] - (1.0 - moved)).abs() < 1e-9);
/// assert!((w.data()[1] - (1.0 + moved)).abs() < 1e-9);
/// ```
#[derive(Clone, Debug)]
pub struct Adagrad<T: Float> {
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    maximize: bool,
    initial_accumulator_value: f64,
    eps: f64,
    state: SecondaryMap<ParamKey, AdagradState<T>>,
}

#[derive(Clone, Debug)]
struct AdagradState<T> {
    step: u64,
    sum: Vec<T>,
}

impl<T: Float> Default for Adagrad<T> {
    /// PyTorch's defaults: learning rate 1e-2.
    fn default() -> Self {
        Self::new(1e-2)
    }
}

impl<T: Float> Adagrad<T> {
    /// Adagrad with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            maximize: false,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            state: SecondaryMap::new(),
        }
    }

    /// Learning-rate decay δ: step `t` uses `η / (1 + (t - 1) δ)`.
    pub fn lr_decay(mut self, lr_decay: f64) -> Self {
        self.lr_decay = lr_decay;
        self
    }

    /// L2 weight decay λ, added to the gradient.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Maximise the objective instead of minimising it: step along the gradient,
    /// as PyTorch's `maximize=True` (the gradient's sign is flipped as it is read, with
    /// no copy).
    ///
    /// ```
    /// use descent_optim::{Optimizer, Adagrad};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = Adagrad::new(0.1).maximize(true);
    /// opt.step(&mut store, &grads).unwrap();
    /// assert!(store.get(w).unwrap().item() > 0.0); // up the gradient
    /// ```
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }

    /// The value every element of the sum of squares starts at.
    pub fn initial_accumulator_value(mut self, value: f64) -> Self {
        self.initial_accumulator_value = value;
        self
    }

    /// ε, added to the root of the sum of squares.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// How many steps have updated parameter `id` (0 before its first).
    pub fn step_count(&self, id: ParamId) -> u64 {
        self.state.get(id.key()).map_or(0, |s| s.step)
    }
}

impl<T: Float> Optimizer<T> for Adagrad<T> {
    fn name(&self) -> &'static str {
        "adagrad"
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("adagrad", "learning rate", self.lr)?;
        non_negative("adagrad", "lr_decay", self.lr_decay)?;
        non_negative("adagrad", "weight decay", self.weight_decay)?;
        non_negative(
            "adagrad",
            "initial accumulator value",
            self.initial_accumulator_value,
        )?;
        non_negative("adagrad", "eps", self.eps)
    }

    /// Slots `"sum"` and the scalar `"step"`, as in
    /// `torch.optim.Adagrad`'s `state_dict()`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.state, |out, id, shape, s| {
            out.buffer(id, "sum", shape, &s.sum);
            out.scalar(id, "step", s.step as f64);
        })
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut new = SecondaryMap::new();
        for (id, mut e) in group("adagrad", params, state)? {
            let s = AdagradState {
                step: e.step()?,
                sum: e.required("sum")?,
            };
            e.finish()?;
            new.insert(id.key(), s);
        }
        self.state = new;
        Ok(())
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        let init = T::from_f64(self.initial_accumulator_value);
        let state = self
            .state
            .entry(id.key())
            .expect("a live key")
            .or_insert_with(|| AdagradState {
                step: 0,
                sum: vec![init; grad.len()],
            });
        state.step += 1;
        let clr = self.lr / (1.0 + (state.step as f64 - 1.0) * self.lr_decay);
        let neg_clr = T::from_f64(-clr);
        let wd = T::from_f64(self.weight_decay);
        let eps = T::from_f64(self.eps);
        let maximize = self.maximize;
        for ((p, &g), s) in value.iter_mut().zip(grad).zip(state.sum.iter_mut()) {
            let g = if maximize { -g } else { g };
            let g = if self.weight_decay != 0.0 {
                add_scaled(g, wd, *p)
            } else {
                g
            };
            *s = addcmul(*s, T::one(), g, g);
            *p = addcdiv(*p, neg_clr, g, s.sqrt() + eps);
        }
    }
}
