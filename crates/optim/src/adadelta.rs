//! Adadelta: steps scaled by the ratio of running root mean squares of past updates
//! and of gradients.

use crate::optimizer::{closed_unit_interval, non_negative};
use crate::pointwise::{add_scaled, addcmul};
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// Adadelta as PyTorch's `torch.optim.Adadelta` computes it, per parameter:
///
/// ```text
/// g ← g + λ p                               (weight decay λ)
/// v ← ρ v + (1 - ρ) g²                      (v and u start at 0)
/// Δ = √(u + ε) / √(v + ε) · g
/// u ← ρ u + (1 - ρ) Δ²
/// p ← p - η Δ
/// ```
///
/// Defaults (PyTorch's, and [`Adadelta::default`]): η = 1.0, ρ = 0.9, ε = 1e-6, λ = 0.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{Adadelta, Optimizer};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let mut opt = Adadelta::default();
/// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
/// opt.step(&mut store, &grads).unwrap(); // Δ = √ε / √(0.1 + ε) ≈ 0.00316
/// let delta = 1e-6f64.sqrt() / (0.1f64 + 1e-6).sqrt();
/// assert!((store.get(w).unwrap().item() - (1.0 - delta)).abs() < 1e-12);
/// ```
#[derive(Clone, Debug)]
pub struct Adadelta<T: Float> {
    lr: f64,
    rho: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    state: SecondaryMap<ParamKey, AdadeltaState<T>>,
}

#[derive(Clone, Debug)]
struct AdadeltaState<T> {
    step: u64,
    square_avg: Vec<T>,
    acc_delta: Vec<T>,
}

impl<T: Float> Default for Adadelta<T> {
    /// PyTorch's defaults: learning rate 1.0.
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl<T: Float> Adadelta<T> {
    /// Adadelta with learning rate `lr` (a factor on the computed step; PyTorch's
    /// default is 1.0) and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
            state: SecondaryMap::new(),
        }
    }

    /// Smoothing constant ρ of both running averages.
    pub fn rho(mut self, rho: f64) -> Self {
        self.rho = rho;
        self
    }

    /// ε, added inside both roots.
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
    /// use descent_optim::{Optimizer, Adadelta};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = Adadelta::new(0.1).maximize(true);
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

impl<T: Float> Optimizer<T> for Adadelta<T> {
    fn name(&self) -> &'static str {
        "adadelta"
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("adadelta", "learning rate", self.lr)?;
        closed_unit_interval("adadelta", "rho", self.rho)?;
        non_negative("adadelta", "eps", self.eps)?;
        non_negative("adadelta", "weight decay", self.weight_decay)
    }

    /// Slots `"square_avg"`, `"acc_delta"` and the scalar `"step"`, as in
    /// `torch.optim.Adadelta`'s `state_dict()`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.state, |out, id, shape, s| {
            out.buffer(id, "square_avg", shape, &s.square_avg);
            out.buffer(id, "acc_delta", shape, &s.acc_delta);
            out.scalar(id, "step", s.step as f64);
        })
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut new = SecondaryMap::new();
        for (id, mut e) in group("adadelta", params, state)? {
            let s = AdadeltaState {
                step: e.step()?,
                square_avg: e.required("square_avg")?,
                acc_delta: e.required("acc_delta")?,
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
            .or_insert_with(|| AdadeltaState {
                step: 0,
                square_avg: vec![T::zero(); n],
                acc_delta: vec![T::zero(); n],
            });
        state.step += 1;
        let rho = T::from_f64(self.rho);
        let one_minus_rho = T::from_f64(1.0 - self.rho);
        let wd = T::from_f64(self.weight_decay);
        let eps = T::from_f64(self.eps);
        let neg_lr = T::from_f64(-self.lr);
        let AdadeltaState {
            square_avg,
            acc_delta,
            ..
        } = state;
        let maximize = self.maximize;
        for (((p, &g), v), u) in value
            .iter_mut()
            .zip(grad)
            .zip(square_avg.iter_mut())
            .zip(acc_delta.iter_mut())
        {
            let g = if maximize { -g } else { g };
            let g = if self.weight_decay != 0.0 {
                add_scaled(g, wd, *p)
            } else {
                g
            };
            *v = addcmul(*v * rho, one_minus_rho, g, g);
            let std = (*v + eps).sqrt();
            let delta = (*u + eps).sqrt() / std * g;
            *u = addcmul(*u * rho, one_minus_rho, delta, delta);
            *p = add_scaled(*p, neg_lr, delta);
        }
    }
}
