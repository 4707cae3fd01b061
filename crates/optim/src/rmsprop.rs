//! RMSprop: gradients scaled by a running root mean square, optionally centred and
//! with momentum.

use crate::optimizer::{closed_unit_interval, non_negative};
use crate::pointwise::{add_scaled, addcdiv, addcmul, lerp};
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// RMSprop as PyTorch's `torch.optim.RMSprop` computes it, per parameter:
///
/// ```text
/// g ← g + λ p                                   (weight decay λ)
/// v ← α v + (1 - α) g²                          (smoothing α; v starts at 0)
/// centred:  ḡ ← α ḡ + (1 - α) g,   a = √(v - ḡ²) + ε
/// else:                            a = √v + ε
/// momentum μ > 0:  b ← μ b + g / a,   p ← p - η b     (b starts at 0)
/// else:                               p ← p - η g / a
/// ```
///
/// Defaults (PyTorch's, and [`RmsProp::default`]): η = 1e-2, α = 0.99, ε = 1e-8, λ = 0,
/// μ = 0, not centred. PyTorch accepts any α ≥ 0; this refuses α > 1, for which `v`
/// can turn negative.
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{Optimizer, RmsProp};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let mut opt = RmsProp::new(0.01).alpha(0.75);
/// let grads: ParamGrads<f64> = [(w, Tensor::from([3.0]))].into_iter().collect();
/// opt.step(&mut store, &grads).unwrap(); // v = 0.25·9, so the step is η·3/1.5 = 2η
/// assert!((store.get(w).unwrap().item() - 0.98).abs() < 1e-9);
/// ```
#[derive(Clone, Debug)]
pub struct RmsProp<T: Float> {
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    momentum: f64,
    centered: bool,
    state: SecondaryMap<ParamKey, RmsPropState<T>>,
}

#[derive(Clone, Debug)]
struct RmsPropState<T> {
    step: u64,
    square_avg: Vec<T>,
    /// Empty unless centred.
    grad_avg: Vec<T>,
    /// Empty unless momentum > 0.
    momentum_buffer: Vec<T>,
}

impl<T: Float> Default for RmsProp<T> {
    /// PyTorch's defaults: learning rate 1e-2.
    fn default() -> Self {
        Self::new(1e-2)
    }
}

impl<T: Float> RmsProp<T> {
    /// RMSprop with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            momentum: 0.0,
            centered: false,
            state: SecondaryMap::new(),
        }
    }

    /// Smoothing constant α of the running averages.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// ε, added to the root mean square.
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
    /// use descent_optim::{Optimizer, RmsProp};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = RmsProp::new(0.1).maximize(true);
    /// opt.step(&mut store, &grads).unwrap();
    /// assert!(store.get(w).unwrap().item() > 0.0); // up the gradient
    /// ```
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }

    /// Momentum factor μ (0 turns it off).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Centred RMSprop: normalise by an estimate of the gradient's variance instead of
    /// its second moment.
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    /// How many steps have updated parameter `id` (0 before its first).
    pub fn step_count(&self, id: ParamId) -> u64 {
        self.state.get(id.key()).map_or(0, |s| s.step)
    }
}

impl<T: Float> Optimizer<T> for RmsProp<T> {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The momentum μ.
    fn group_momentum(&self, _group: usize) -> Option<f64> {
        Some(self.momentum)
    }

    fn set_group_momentum(&mut self, _group: usize, momentum: f64) {
        self.momentum = momentum;
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("rmsprop", "learning rate", self.lr)?;
        closed_unit_interval("rmsprop", "alpha", self.alpha)?;
        non_negative("rmsprop", "eps", self.eps)?;
        non_negative("rmsprop", "weight decay", self.weight_decay)?;
        non_negative("rmsprop", "momentum", self.momentum)
    }

    /// Slots `"square_avg"`, `"grad_avg"` (centred), `"momentum_buffer"` (with
    /// momentum) and the scalar `"step"`, as in `torch.optim.RMSprop`'s `state_dict()`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.state, |out, id, shape, s| {
            out.buffer(id, "square_avg", shape, &s.square_avg);
            if !s.grad_avg.is_empty() {
                out.buffer(id, "grad_avg", shape, &s.grad_avg);
            }
            if !s.momentum_buffer.is_empty() {
                out.buffer(id, "momentum_buffer", shape, &s.momentum_buffer);
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
        for (id, mut e) in group("rmsprop", params, state)? {
            let s = RmsPropState {
                step: e.step()?,
                square_avg: e.required("square_avg")?,
                grad_avg: if self.centered {
                    e.required("grad_avg")?
                } else {
                    e.optional("grad_avg").unwrap_or_default()
                },
                momentum_buffer: if self.momentum > 0.0 {
                    e.required("momentum_buffer")?
                } else {
                    e.optional("momentum_buffer").unwrap_or_default()
                },
            };
            e.finish()?;
            new.insert(id.key(), s);
        }
        self.state = new;
        Ok(())
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        let n = grad.len();
        let (centered, with_momentum) = (self.centered, self.momentum > 0.0);
        let state = self
            .state
            .entry(id.key())
            .expect("a live key")
            .or_insert_with(|| RmsPropState {
                step: 0,
                square_avg: vec![T::zero(); n],
                grad_avg: vec![T::zero(); if centered { n } else { 0 }],
                momentum_buffer: vec![T::zero(); if with_momentum { n } else { 0 }],
            });
        state.step += 1;
        // Options switched on after the first step start their buffers at zero.
        if centered && state.grad_avg.len() != n {
            state.grad_avg = vec![T::zero(); n];
        }
        if with_momentum && state.momentum_buffer.len() != n {
            state.momentum_buffer = vec![T::zero(); n];
        }
        let alpha = T::from_f64(self.alpha);
        let one_minus_alpha = T::from_f64(1.0 - self.alpha);
        let wd = T::from_f64(self.weight_decay);
        let eps = T::from_f64(self.eps);
        let mu = T::from_f64(self.momentum);
        let neg_lr = T::from_f64(-self.lr);
        let maximize = self.maximize;
        for (i, (p, &g)) in value.iter_mut().zip(grad).enumerate() {
            let g = if maximize { -g } else { g };
            let g = if self.weight_decay != 0.0 {
                add_scaled(g, wd, *p)
            } else {
                g
            };
            let v = &mut state.square_avg[i];
            *v = addcmul(*v * alpha, one_minus_alpha, g, g);
            let avg = if centered {
                let ga = &mut state.grad_avg[i];
                *ga = lerp(*ga, g, one_minus_alpha);
                addcmul(*v, -T::one(), *ga, *ga).sqrt()
            } else {
                v.sqrt()
            } + eps;
            if with_momentum {
                let b = &mut state.momentum_buffer[i];
                *b = addcdiv(*b * mu, T::one(), g, avg);
                *p = add_scaled(*p, neg_lr, *b);
            } else {
                *p = addcdiv(*p, neg_lr, g, avg);
            }
        }
    }
}
