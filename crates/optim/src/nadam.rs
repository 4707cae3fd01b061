//! NAdam: Adam with Nesterov momentum and a momentum schedule.

use crate::optimizer::{non_negative, unit_interval};
use crate::pointwise::{add_scaled, addcdiv, addcmul, lerp};
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// NAdam as PyTorch's `torch.optim.NAdam` computes it. For each parameter, at its own
/// step count `t = 1, 2, …`, with the momentum schedule
/// `μ_t = β₁ (1 - ½ · 0.96^(t ψ))` (momentum decay ψ) and the running product
/// `Π_t = μ_1 ⋯ μ_t`:
///
/// ```text
/// decoupled weight decay:  p ← p (1 - η λ)
/// else:                    g ← g + λ p              (weight decay λ)
/// m ← β₁ m + (1 - β₁) g                             (m and v start at 0)
/// v ← β₂ v + (1 - β₂) g²
/// d = √(v / (1 - β₂ᵗ)) + ε
/// p ← p - η (1 - μ_t) / (1 - Π_t) · g / d - η μ_{t+1} / (1 - Π_t μ_{t+1}) · m / d
/// ```
///
/// Defaults (PyTorch's, and [`NAdam::default`]): η = 2e-3, (β₁, β₂) = (0.9, 0.999),
/// ε = 1e-8, λ = 0, ψ = 4e-3, weight decay added to the gradient.
///
/// `Π_t` is kept in `f64` whatever `T` is. PyTorch keeps it in the default dtype, so
/// with the usual `float32` default its NAdam drifts from this one (by ~1e-8 relative
/// over 20 steps) even on `float64` parameters.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{NAdam, Optimizer};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let mut opt = NAdam::new(0.1);
/// let grads: ParamGrads<f64> = [(w, Tensor::from([0.5]))].into_iter().collect();
/// opt.step(&mut store, &grads).unwrap();
/// // d = |g| (ε aside) and m = (1 - β₁) g, so the step is η ((1 - μ₁)/(1 - μ₁)
/// // + μ₂ (1 - β₁) / (1 - μ₁ μ₂)).
/// let mu = |t: f64| 0.9 * (1.0 - 0.5 * 0.96f64.powf(t * 4e-3));
/// let step = 0.1 * (1.0 + mu(2.0) * 0.1 / (1.0 - mu(1.0) * mu(2.0)));
/// assert!((store.get(w).unwrap().item() - (1.0 - step)).abs() < 1e-7);
/// ```
#[derive(Clone, Debug)]
pub struct NAdam<T: Float> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    momentum_decay: f64,
    decoupled_weight_decay: bool,
    state: SecondaryMap<ParamKey, NAdamState<T>>,
}

#[derive(Clone, Debug)]
struct NAdamState<T> {
    step: u64,
    mu_product: f64,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
}

impl<T: Float> Default for NAdam<T> {
    /// PyTorch's defaults: learning rate 2e-3.
    fn default() -> Self {
        Self::new(2e-3)
    }
}

impl<T: Float> NAdam<T> {
    /// NAdam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            momentum_decay: 4e-3,
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
    /// [`NAdam::decoupled_weight_decay`], applied to the parameter as `p (1 - η λ)`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Maximise the objective instead of minimising it: step along the gradient,
    /// as PyTorch's `maximize=True` (the gradient's sign is flipped as it is read, with
    /// no copy).
    ///
    /// ```
    /// use descent_optim::{Optimizer, NAdam};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = NAdam::new(0.1).maximize(true);
    /// opt.step(&mut store, &grads).unwrap();
    /// assert!(store.get(w).unwrap().item() > 0.0); // up the gradient
    /// ```
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }

    /// Momentum decay ψ of the schedule `μ_t = β₁ (1 - ½ · 0.96^(t ψ))`.
    pub fn momentum_decay(mut self, momentum_decay: f64) -> Self {
        self.momentum_decay = momentum_decay;
        self
    }

    /// Decoupled weight decay (NAdamW): shrink the parameter by `1 - η λ` before the
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

impl<T: Float> Optimizer<T> for NAdam<T> {
    fn name(&self) -> &'static str {
        "nadam"
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
        non_negative("nadam", "learning rate", self.lr)?;
        non_negative("nadam", "eps", self.eps)?;
        unit_interval("nadam", "beta1", self.beta1)?;
        unit_interval("nadam", "beta2", self.beta2)?;
        non_negative("nadam", "weight decay", self.weight_decay)?;
        non_negative("nadam", "momentum decay", self.momentum_decay)
    }

    /// Slots `"exp_avg"`, `"exp_avg_sq"`, and the scalars `"mu_product"` and `"step"`,
    /// as in `torch.optim.NAdam`'s `state_dict()`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.state, |out, id, shape, s| {
            out.buffer(id, "exp_avg", shape, &s.exp_avg);
            out.buffer(id, "exp_avg_sq", shape, &s.exp_avg_sq);
            out.scalar(id, "mu_product", s.mu_product);
            out.scalar(id, "step", s.step as f64);
        })
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut new = SecondaryMap::new();
        for (id, mut e) in group("nadam", params, state)? {
            let s = NAdamState {
                step: e.step()?,
                mu_product: e.scalar("mu_product")?,
                exp_avg: e.required("exp_avg")?,
                exp_avg_sq: e.required("exp_avg_sq")?,
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
            .or_insert_with(|| NAdamState {
                step: 0,
                mu_product: 1.0,
                exp_avg: vec![T::zero(); n],
                exp_avg_sq: vec![T::zero(); n],
            });
        state.step += 1;
        let t = state.step as f64;
        let (lr, beta1) = (self.lr, self.beta1);
        let bias_correction2 = T::from_f64(1.0 - self.beta2.powf(t));
        let mu = beta1 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay));
        let mu_next = beta1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * self.momentum_decay));
        state.mu_product *= mu;
        let mu_product_next = state.mu_product * mu_next;
        let grad_coef = T::from_f64(-lr * (1.0 - mu) / (1.0 - state.mu_product));
        let avg_coef = T::from_f64((-lr * mu_next) / (1.0 - mu_product_next));
        let decay_grad = self.weight_decay != 0.0 && !self.decoupled_weight_decay;
        let decay_param = self.weight_decay != 0.0 && self.decoupled_weight_decay;
        let wd = T::from_f64(self.weight_decay);
        let shrink = T::from_f64(1.0 - lr * self.weight_decay);
        let one_minus_beta1 = T::from_f64(1.0 - beta1);
        let beta2 = T::from_f64(self.beta2);
        let one_minus_beta2 = T::from_f64(1.0 - self.beta2);
        let eps = T::from_f64(self.eps);
        let NAdamState {
            exp_avg,
            exp_avg_sq,
            ..
        } = state;
        let maximize = self.maximize;
        for (((p, &g), m), v) in value
            .iter_mut()
            .zip(grad)
            .zip(exp_avg.iter_mut())
            .zip(exp_avg_sq.iter_mut())
        {
            let g = if maximize { -g } else { g };
            if decay_param {
                *p *= shrink;
            }
            let g = if decay_grad { add_scaled(g, wd, *p) } else { g };
            *m = lerp(*m, g, one_minus_beta1);
            *v = addcmul(*v * beta2, one_minus_beta2, g, g);
            let denom = (*v / bias_correction2).sqrt() + eps;
            *p = addcdiv(*p, grad_coef, g, denom);
            *p = addcdiv(*p, avg_coef, *m, denom);
        }
    }
}
