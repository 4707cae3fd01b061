//! Adam, with AMSGrad and L2 or decoupled weight decay, and AdamW.

use crate::optimizer::{non_negative, unit_interval};
use crate::pointwise::{add_scaled, addcdiv, addcmul, lerp};
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// Adam as PyTorch's `torch.optim.Adam` computes it. For each parameter, at its own
/// step count `t = 1, 2, …` (a parameter without a gradient in a step is skipped and
/// its count does not advance):
///
/// ```text
/// decoupled weight decay:  p ← p (1 - η λ)
/// else:                    g ← g + λ p                 (weight decay λ)
/// m ← β₁ m + (1 - β₁) g                                (m, v, v̂ start at 0)
/// v ← β₂ v + (1 - β₂) g²
/// v̂ ← max(v̂, v) with AMSGrad, else v̂ = v
/// p ← p - η / (1 - β₁ᵗ) · m / (√v̂ / √(1 - β₂ᵗ) + ε)
/// ```
///
/// Defaults (PyTorch's, and [`Adam::default`]): η = 1e-3, (β₁, β₂) = (0.9, 0.999),
/// ε = 1e-8, λ = 0, no AMSGrad, weight decay added to the gradient. [`AdamW`] is this
/// with decoupled weight decay λ = 1e-2.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{Adam, Optimizer};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0, 1.0]));
/// let mut opt = Adam::new(0.1);
/// // Bias correction makes the first step η·sign(g), whatever the gradient's scale.
/// let grads: ParamGrads<f64> = [(w, Tensor::from([20.0, -0.02]))].into_iter().collect();
/// opt.step(&mut store, &grads).unwrap();
/// let w = store.get(w).unwrap();
/// assert!((w.data()[0] - 0.9).abs() < 1e-8);
/// assert!((w.data()[1] - 1.1).abs() < 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct Adam<T: Float> {
    name: &'static str,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    amsgrad: bool,
    decoupled_weight_decay: bool,
    state: SecondaryMap<ParamKey, AdamState<T>>,
}

#[derive(Clone, Debug)]
struct AdamState<T> {
    step: u64,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
    /// Empty unless AMSGrad.
    max_exp_avg_sq: Vec<T>,
}

impl<T: Float> Default for Adam<T> {
    /// PyTorch's defaults: learning rate 1e-3.
    fn default() -> Self {
        Self::new(1e-3)
    }
}

impl<T: Float> Adam<T> {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            name: "adam",
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            amsgrad: false,
            decoupled_weight_decay: false,
            state: SecondaryMap::new(),
        }
    }

    /// The decay rates (β₁, β₂) of the first and second moment estimates.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// ε, added to the bias-corrected root of the second moment.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Weight decay λ: added to the gradient as `λ p`, or, with
    /// [`Adam::decoupled_weight_decay`], applied to the parameter as `p (1 - η λ)`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Maximise the objective instead of minimising it: step along the gradient,
    /// as PyTorch's `maximize=True` (the gradient's sign is flipped as it is read, with
    /// no copy).
    ///
    /// ```
    /// use descent_optim::{Optimizer, Adam};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = Adam::new(0.1).maximize(true);
    /// opt.step(&mut store, &grads).unwrap();
    /// assert!(store.get(w).unwrap().item() > 0.0); // up the gradient
    /// ```
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }

    /// AMSGrad: normalise by the largest second moment seen so far.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }

    /// Decoupled weight decay (AdamW's): shrink the parameter by `1 - η λ` before the
    /// update instead of adding `λ p` to the gradient.
    pub fn decoupled_weight_decay(mut self, decoupled: bool) -> Self {
        self.decoupled_weight_decay = decoupled;
        self
    }

    /// How many steps have updated parameter `id` (0 before its first).
    pub fn step_count(&self, id: ParamId) -> u64 {
        self.state.get(id.key()).map_or(0, |s| s.step)
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    /// Slots `"exp_avg"`, `"exp_avg_sq"`, `"max_exp_avg_sq"` (with AMSGrad) and the
    /// scalar `"step"`, as in `torch.optim.Adam`'s `state_dict()`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.state, |out, id, shape, s| {
            out.buffer(id, "exp_avg", shape, &s.exp_avg);
            out.buffer(id, "exp_avg_sq", shape, &s.exp_avg_sq);
            if !s.max_exp_avg_sq.is_empty() {
                out.buffer(id, "max_exp_avg_sq", shape, &s.max_exp_avg_sq);
            }
            out.scalar(id, "step", s.step as f64);
        })
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut new = SecondaryMap::new();
        for (id, mut e) in group(self.name, params, state)? {
            let s = AdamState {
                step: e.step()?,
                exp_avg: e.required("exp_avg")?,
                exp_avg_sq: e.required("exp_avg_sq")?,
                max_exp_avg_sq: if self.amsgrad {
                    e.required("max_exp_avg_sq")?
                } else {
                    e.optional("max_exp_avg_sq").unwrap_or_default()
                },
            };
            e.finish()?;
            new.insert(id.key(), s);
        }
        self.state = new;
        Ok(())
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
        non_negative(self.name, "learning rate", self.lr)?;
        non_negative(self.name, "eps", self.eps)?;
        unit_interval(self.name, "beta1", self.beta1)?;
        unit_interval(self.name, "beta2", self.beta2)?;
        non_negative(self.name, "weight decay", self.weight_decay)
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        let n = grad.len();
        let amsgrad = self.amsgrad;
        let state = self
            .state
            .entry(id.key())
            .expect("a live key")
            .or_insert_with(|| AdamState {
                step: 0,
                exp_avg: vec![T::zero(); n],
                exp_avg_sq: vec![T::zero(); n],
                max_exp_avg_sq: vec![T::zero(); if amsgrad { n } else { 0 }],
            });
        state.step += 1;
        if amsgrad && state.max_exp_avg_sq.len() != n {
            // AMSGrad switched on after this parameter's first step: start from zero.
            state.max_exp_avg_sq = vec![T::zero(); n];
        }
        let t = state.step as f64;
        let bias_correction1 = 1.0 - self.beta1.powf(t);
        let bias_correction2 = 1.0 - self.beta2.powf(t);
        let neg_step_size = T::from_f64(-(self.lr / bias_correction1));
        let bias_correction2_sqrt = T::from_f64(bias_correction2.powf(0.5));
        let decay_grad = self.weight_decay != 0.0 && !self.decoupled_weight_decay;
        let decay_param = self.weight_decay != 0.0 && self.decoupled_weight_decay;
        let wd = T::from_f64(self.weight_decay);
        let shrink = T::from_f64(1.0 - self.lr * self.weight_decay);
        let one_minus_beta1 = T::from_f64(1.0 - self.beta1);
        let beta2 = T::from_f64(self.beta2);
        let one_minus_beta2 = T::from_f64(1.0 - self.beta2);
        let eps = T::from_f64(self.eps);
        let maximize = self.maximize;
        for (i, (p, &g)) in value.iter_mut().zip(grad).enumerate() {
            let g = if maximize { -g } else { g };
            if decay_param {
                *p *= shrink;
            }
            let g = if decay_grad { add_scaled(g, wd, *p) } else { g };
            let m = &mut state.exp_avg[i];
            *m = lerp(*m, g, one_minus_beta1);
            let v = &mut state.exp_avg_sq[i];
            *v = addcmul(*v * beta2, one_minus_beta2, g, g);
            let v_hat = if amsgrad {
                let vmax = &mut state.max_exp_avg_sq[i];
                *vmax = vmax.max(*v);
                *vmax
            } else {
                *v
            };
            let denom = v_hat.sqrt() / bias_correction2_sqrt + eps;
            *p = addcdiv(*p, neg_step_size, *m, denom);
        }
    }
}

/// AdamW as PyTorch's `torch.optim.AdamW` computes it: [`Adam`] with decoupled weight
/// decay, the parameter shrunk by `1 - η λ` before each update instead of `λ p` added
/// to the gradient:
///
/// ```text
/// p ← p (1 - η λ)
/// m ← β₁ m + (1 - β₁) g,   v ← β₂ v + (1 - β₂) g²,   v̂ ← max(v̂, v) with AMSGrad
/// p ← p - η / (1 - β₁ᵗ) · m / (√v̂ / √(1 - β₂ᵗ) + ε)
/// ```
///
/// Defaults (PyTorch's, and [`AdamW::default`]): η = 1e-3, (β₁, β₂) = (0.9, 0.999),
/// ε = 1e-8, λ = 1e-2, no AMSGrad.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{AdamW, Optimizer};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([2.0]));
/// let mut opt = AdamW::new(0.1).weight_decay(0.5);
/// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
/// opt.step(&mut store, &grads).unwrap(); // 2·(1 - 0.05), then η·sign(g)
/// assert!((store.get(w).unwrap().item() - (1.9 - 0.1)).abs() < 1e-8);
/// ```
#[derive(Clone, Debug)]
pub struct AdamW<T: Float>(Adam<T>);

impl<T: Float> Default for AdamW<T> {
    /// PyTorch's defaults: learning rate 1e-3, weight decay 1e-2.
    fn default() -> Self {
        Self::new(1e-3)
    }
}

impl<T: Float> AdamW<T> {
    /// AdamW with learning rate `lr` and PyTorch's other defaults (weight decay 1e-2).
    pub fn new(lr: f64) -> Self {
        let mut adam = Adam::new(lr)
            .weight_decay(1e-2)
            .decoupled_weight_decay(true);
        adam.name = "adamw";
        Self(adam)
    }

    /// The decay rates (β₁, β₂) of the first and second moment estimates.
    pub fn betas(self, beta1: f64, beta2: f64) -> Self {
        Self(self.0.betas(beta1, beta2))
    }

    /// ε, added to the bias-corrected root of the second moment.
    pub fn eps(self, eps: f64) -> Self {
        Self(self.0.eps(eps))
    }

    /// Decoupled weight decay λ: each step first shrinks the parameter by `1 - η λ`.
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        Self(self.0.weight_decay(weight_decay))
    }

    /// AMSGrad: normalise by the largest second moment seen so far.
    pub fn amsgrad(self, amsgrad: bool) -> Self {
        Self(self.0.amsgrad(amsgrad))
    }

    /// Maximise the objective instead of minimising it (PyTorch's `maximize=True`).
    ///
    /// ```
    /// use descent_optim::{Optimizer, AdamW};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = AdamW::new(0.1).maximize(true);
    /// opt.step(&mut store, &grads).unwrap();
    /// assert!(store.get(w).unwrap().item() > 0.0); // up the gradient
    /// ```
    pub fn maximize(self, maximize: bool) -> Self {
        Self(self.0.maximize(maximize))
    }

    /// How many steps have updated parameter `id` (0 before its first).
    pub fn step_count(&self, id: ParamId) -> u64 {
        self.0.step_count(id)
    }
}

impl<T: Float> Optimizer<T> for AdamW<T> {
    fn name(&self) -> &'static str {
        self.0.name
    }

    fn learning_rate(&self) -> f64 {
        self.0.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.0.lr = lr;
    }

    fn group_momentum(&self, group: usize) -> Option<f64> {
        self.0.group_momentum(group)
    }

    fn set_group_momentum(&mut self, group: usize, momentum: f64) {
        self.0.set_group_momentum(group, momentum);
    }

    fn validate(&self) -> Result<(), Error> {
        self.0.validate()
    }

    /// As [`Adam`]'s.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        self.0.state(params)
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        self.0.load_state(params, state)
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        self.0.update(id, value, grad);
    }
}
