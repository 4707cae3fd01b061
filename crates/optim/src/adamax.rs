//! AdaMax: Adam with the infinity norm in place of the second moment.

use crate::optimizer::{non_negative, unit_interval};
use crate::pointwise::{add_scaled, addcdiv, lerp};
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// AdaMax as PyTorch's `torch.optim.Adamax` computes it. For each parameter, at its own
/// step count `t = 1, 2, …`:
///
/// ```text
/// g ← g + λ p                          (weight decay λ)
/// m ← β₁ m + (1 - β₁) g                (m and u start at 0)
/// u ← max(β₂ u, |g| + ε)
/// p ← p - η / (1 - β₁ᵗ) · m / u
/// ```
///
/// Defaults (PyTorch's, and [`Adamax::default`]): η = 2e-3, (β₁, β₂) = (0.9, 0.999),
/// ε = 1e-8, λ = 0.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{Adamax, Optimizer};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let mut opt = Adamax::new(0.1);
/// let grads: ParamGrads<f64> = [(w, Tensor::from([-4.0]))].into_iter().collect();
/// opt.step(&mut store, &grads).unwrap(); // m/(1 - β₁) = g, u = |g|: a step of η
/// assert!((store.get(w).unwrap().item() - 1.1).abs() < 1e-9);
/// ```
#[derive(Clone, Debug)]
pub struct Adamax<T: Float> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    state: SecondaryMap<ParamKey, AdamaxState<T>>,
}

#[derive(Clone, Debug)]
struct AdamaxState<T> {
    step: u64,
    exp_avg: Vec<T>,
    exp_inf: Vec<T>,
}

impl<T: Float> Default for Adamax<T> {
    /// PyTorch's defaults: learning rate 2e-3.
    fn default() -> Self {
        Self::new(2e-3)
    }
}

impl<T: Float> Adamax<T> {
    /// AdaMax with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            state: SecondaryMap::new(),
        }
    }

    /// The decay rates (β₁, β₂) of the first moment and of the infinity norm.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// ε, added to `|g|` in the infinity norm.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
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
    /// use descent_optim::{Optimizer, Adamax};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = Adamax::new(0.1).maximize(true);
    /// opt.step(&mut store, &grads).unwrap();
    /// assert!(store.get(w).unwrap().item() > 0.0); // up the gradient
    /// ```
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }

    /// How many steps have updated parameter `id` (0 before its first).
    pub fn step_count(&self, id: ParamId) -> u64 {
        self.state.get(id.key()).map_or(0, |s| s.step)
    }
}

impl<T: Float> Optimizer<T> for Adamax<T> {
    fn name(&self) -> &'static str {
        "adamax"
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// β₁, the decay rate of the first moment.
    fn group_momentum(&self, _group: usize) -> Option<f64> {
        Some(self.beta1)
    }

    fn set_group_momentum(&mut self, _group: usize, momentum: f64) {
        self.beta1 = momentum;
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("adamax", "learning rate", self.lr)?;
        non_negative("adamax", "eps", self.eps)?;
        unit_interval("adamax", "beta1", self.beta1)?;
        unit_interval("adamax", "beta2", self.beta2)?;
        non_negative("adamax", "weight decay", self.weight_decay)
    }

    /// Slots `"exp_avg"`, `"exp_inf"` and the scalar `"step"`, as in
    /// `torch.optim.Adamax`'s `state_dict()`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.state, |out, id, shape, s| {
            out.buffer(id, "exp_avg", shape, &s.exp_avg);
            out.buffer(id, "exp_inf", shape, &s.exp_inf);
            out.scalar(id, "step", s.step as f64);
        })
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut new = SecondaryMap::new();
        for (id, mut e) in group("adamax", params, state)? {
            let s = AdamaxState {
                step: e.step()?,
                exp_avg: e.required("exp_avg")?,
                exp_inf: e.required("exp_inf")?,
            };
            e.finish()?;
            new.insert(id.key(), s);
        }
        self.state = new;
        Ok(())
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        let n = grad.len();
        let state = self
            .state
            .entry(id.key())
            .expect("a live key")
            .or_insert_with(|| AdamaxState {
                step: 0,
                exp_avg: vec![T::zero(); n],
                exp_inf: vec![T::zero(); n],
            });
        state.step += 1;
        let bias_correction = 1.0 - self.beta1.powf(state.step as f64);
        let neg_clr = T::from_f64(-(self.lr / bias_correction));
        let wd = T::from_f64(self.weight_decay);
        let one_minus_beta1 = T::from_f64(1.0 - self.beta1);
        let beta2 = T::from_f64(self.beta2);
        let eps = T::from_f64(self.eps);
        let AdamaxState {
            exp_avg, exp_inf, ..
        } = state;
        let maximize = self.maximize;
        for (((p, &g), m), u) in value
            .iter_mut()
            .zip(grad)
            .zip(exp_avg.iter_mut())
            .zip(exp_inf.iter_mut())
        {
            let g = if maximize { -g } else { g };
            let g = if self.weight_decay != 0.0 {
                add_scaled(g, wd, *p)
            } else {
                g
            };
            *m = lerp(*m, g, one_minus_beta1);
            *u = (*u * beta2).max(g.abs() + eps);
            *p = addcdiv(*p, neg_clr, *m, *u);
        }
    }
}
