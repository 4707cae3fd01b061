//! RAdam: Adam with the variance of its adaptive rate rectified.

use crate::optimizer::{non_negative, unit_interval};
use crate::pointwise::{add_scaled, addcmul, lerp};
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// RAdam (Liu et al., 2020) as PyTorch's `torch.optim.RAdam` computes it. For each
/// parameter, at its own step count `t = 1, 2, …`, with `ρ∞ = 2 / (1 - β₂) - 1` and
/// `ρ_t = ρ∞ - 2 t β₂ᵗ / (1 - β₂ᵗ)`:
///
/// ```text
/// g ← -g if maximize
/// decoupled weight decay:  p ← p (1 - η λ)
/// else:                    g ← g + λ p                 (weight decay λ)
/// m ← β₁ m + (1 - β₁) g                                (m and v start at 0)
/// v ← β₂ v + (1 - β₂) g²
/// m̂ = m / (1 - β₁ᵗ)
/// ρ_t > 5:  r = √((ρ_t - 4)(ρ_t - 2) ρ∞ / ((ρ∞ - 4)(ρ∞ - 2) ρ_t))
///           p ← p - m̂ η · √(1 - β₂ᵗ) / (√v + ε) · r
/// else:     p ← p - m̂ η                                 (plain momentum, no adaptive rate)
/// ```
///
/// The rectification rule is PyTorch's: the adaptive rate is used once `ρ_t > 5`
/// (from the 6th step with β₂ = 0.999), the paper's threshold of 4 is not.
///
/// Defaults (PyTorch's, and [`RAdam::default`]): η = 1e-3, (β₁, β₂) = (0.9, 0.999),
/// ε = 1e-8, λ = 0, weight decay added to the gradient.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{Optimizer, RAdam};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let mut opt = RAdam::new(0.1);
/// let grads: ParamGrads<f64> = [(w, Tensor::from([4.0]))].into_iter().collect();
/// // The first steps are not rectified: p moves by η m̂, and m̂ = g on step 1.
/// opt.step(&mut store, &grads).unwrap();
/// assert!((store.get(w).unwrap().item() - (1.0 - 0.1 * 4.0)).abs() < 1e-12);
/// ```
#[derive(Clone, Debug)]
pub struct RAdam<T: Float> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    decoupled_weight_decay: bool,
    state: SecondaryMap<ParamKey, RAdamState<T>>,
}

#[derive(Clone, Debug)]
struct RAdamState<T> {
    step: u64,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
}

impl<T: Float> Default for RAdam<T> {
    /// PyTorch's defaults: learning rate 1e-3.
    fn default() -> Self {
        Self::new(1e-3)
    }
}

impl<T: Float> RAdam<T> {
    /// RAdam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
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

    /// ε, added to the root of the second moment.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Weight decay λ: added to the gradient as `λ p`, or, with
    /// [`RAdam::decoupled_weight_decay`], applied to the parameter as `p (1 - η λ)`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Decoupled weight decay (as AdamW's): shrink the parameter by `1 - η λ` before
    /// the update instead of adding `λ p` to the gradient (PyTorch's
    /// `decoupled_weight_decay=True`).
    pub fn decoupled_weight_decay(mut self, decoupled: bool) -> Self {
        self.decoupled_weight_decay = decoupled;
        self
    }

    /// Maximise the objective instead of minimising it (PyTorch's `maximize=True`).
    ///
    /// ```
    /// use descent_optim::{Optimizer, RAdam};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = RAdam::new(0.1).maximize(true);
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

impl<T: Float> Optimizer<T> for RAdam<T> {
    fn name(&self) -> &'static str {
        "radam"
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
        non_negative("radam", "learning rate", self.lr)?;
        non_negative("radam", "eps", self.eps)?;
        unit_interval("radam", "beta1", self.beta1)?;
        unit_interval("radam", "beta2", self.beta2)?;
        non_negative("radam", "weight decay", self.weight_decay)
    }

    /// Slots `"exp_avg"`, `"exp_avg_sq"` and the scalar `"step"`, as in
    /// `torch.optim.RAdam`'s `state_dict()`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.state, |out, id, shape, s| {
            out.buffer(id, "exp_avg", shape, &s.exp_avg);
            out.buffer(id, "exp_avg_sq", shape, &s.exp_avg_sq);
            out.scalar(id, "step", s.step as f64);
        })
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut new = SecondaryMap::new();
        for (id, mut e) in group("radam", params, state)? {
            let s = RAdamState {
                step: e.step()?,
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
            .or_insert_with(|| RAdamState {
                step: 0,
                exp_avg: vec![T::zero(); n],
                exp_avg_sq: vec![T::zero(); n],
            });
        state.step += 1;
        let t = state.step as f64;
        let (lr, beta2) = (self.lr, self.beta2);
        let bias_correction1 = T::from_f64(1.0 - self.beta1.powf(t));
        let bias_correction2 = 1.0 - beta2.powf(t);
        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * beta2.powf(t) / bias_correction2;
        // `None` for the unrectified steps; else (√(1 - β₂ᵗ), r).
        let rectified = (rho_t > 5.0).then(|| {
            let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .powf(0.5);
            (T::from_f64(bias_correction2.powf(0.5)), T::from_f64(rect))
        });
        let decay_grad = self.weight_decay != 0.0 && !self.decoupled_weight_decay;
        let decay_param = self.weight_decay != 0.0 && self.decoupled_weight_decay;
        let wd = T::from_f64(self.weight_decay);
        let shrink = T::from_f64(1.0 - lr * self.weight_decay);
        let lr = T::from_f64(lr);
        let one_minus_beta1 = T::from_f64(1.0 - self.beta1);
        let one_minus_beta2 = T::from_f64(1.0 - beta2);
        let beta2 = T::from_f64(beta2);
        let eps = T::from_f64(self.eps);
        let maximize = self.maximize;
        let RAdamState {
            exp_avg,
            exp_avg_sq,
            ..
        } = state;
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
            // PyTorch's order: `m̂ * lr * adaptive * rect`, each product rounded, then
            // `p.add_(…, alpha=-1)`.
            let scaled = *m / bias_correction1 * lr;
            let step = match rectified {
                Some((bc2_sqrt, rect)) => scaled * (bc2_sqrt / (v.sqrt() + eps)) * rect,
                None => scaled,
            };
            *p -= step;
        }
    }
}
