//! Stochastic gradient descent, with momentum, Nesterov momentum and weight decay.

use crate::optimizer::{for_chunks, non_negative};
use crate::pointwise::add_scaled;
use crate::state::{export, group};
use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;

/// SGD as PyTorch's `torch.optim.SGD` computes it:
///
/// ```text
/// g ← g + λ p                       (weight decay λ)
/// b ← g on the first step, else μ b + (1 - τ) g      (momentum μ, dampening τ)
/// g ← g + μ b if Nesterov, else b
/// p ← p - η g
/// ```
///
/// ```
/// use descent_tape::ParamGrads;
/// use descent_optim::{Optimizer, Sgd};
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let w = store.insert("w", Tensor::from([1.0]));
/// let mut sgd = Sgd::new(0.1).momentum(0.9);
/// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
/// sgd.step(&mut store, &grads).unwrap();   // b = 1,   w = 1 - 0.1
/// sgd.step(&mut store, &grads).unwrap();   // b = 1.9, w = 0.9 - 0.19
/// assert!((store.get(w).unwrap().item() - 0.71).abs() < 1e-15);
/// ```
#[derive(Clone, Debug)]
pub struct Sgd<T: Float> {
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    maximize: bool,
    buffers: SecondaryMap<ParamKey, Vec<T>>,
}

impl<T: Float> Sgd<T> {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            maximize: false,
            buffers: SecondaryMap::new(),
        }
    }

    /// Momentum factor μ (0 turns it off).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Dampening τ of the momentum buffer.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Nesterov momentum (needs momentum > 0 and no dampening, as in PyTorch).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
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
    /// use descent_optim::{Optimizer, Sgd};
    /// use descent_tape::{ParamGrads, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let grads: ParamGrads<f64> = [(w, Tensor::from([1.0]))].into_iter().collect();
    /// let mut opt = Sgd::new(0.1).maximize(true);
    /// opt.step(&mut store, &grads).unwrap();
    /// assert!(store.get(w).unwrap().item() > 0.0); // up the gradient
    /// ```
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("sgd", "learning rate", self.lr)?;
        non_negative("sgd", "momentum", self.momentum)?;
        non_negative("sgd", "weight decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::Config {
                op: "sgd",
                reason: "Nesterov momentum needs momentum > 0 and zero dampening".into(),
            });
        }
        Ok(())
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

    /// The slot `"momentum_buffer"` of each parameter stepped with momentum.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        export(params, &self.buffers, |out, id, shape, b| {
            out.buffer(id, "momentum_buffer", shape, b)
        })
    }

    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut buffers = SecondaryMap::new();
        for (id, mut e) in group("sgd", params, state)? {
            let b = e.required("momentum_buffer")?;
            e.finish()?;
            buffers.insert(id.key(), b);
        }
        self.buffers = buffers;
        Ok(())
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        let k = SgdConsts {
            lr: T::from_f64(self.lr),
            wd: T::from_f64(self.weight_decay),
            mu: T::from_f64(self.momentum),
            keep: T::from_f64(1.0 - self.dampening),
        };
        let wd = self.weight_decay != 0.0;
        let max = self.maximize;
        if self.momentum == 0.0 {
            for_chunks(
                value,
                grad,
                &mut [],
                #[inline(always)]
                |p, g, _| match (wd, max) {
                    (false, false) => plain::<T, false, false>(p, g, &k),
                    (false, true) => plain::<T, false, true>(p, g, &k),
                    (true, false) => plain::<T, true, false>(p, g, &k),
                    (true, true) => plain::<T, true, true>(p, g, &k),
                },
            );
            return;
        }
        let first = !self.buffers.contains_key(id.key());
        let buf = self
            .buffers
            .entry(id.key())
            .expect("a live key")
            .or_insert_with(|| vec![T::zero(); grad.len()]);
        let nesterov = self.nesterov;
        for_chunks(
            value,
            grad,
            buf,
            #[inline(always)]
            |p, g, b| match (wd, max) {
                (false, false) => momentum_of::<T, false, false>(first, nesterov, p, g, b, &k),
                (false, true) => momentum_of::<T, false, true>(first, nesterov, p, g, b, &k),
                (true, false) => momentum_of::<T, true, false>(first, nesterov, p, g, b, &k),
                (true, true) => momentum_of::<T, true, true>(first, nesterov, p, g, b, &k),
            },
        );
    }
}

/// Picks the momentum loop for the step's runtime flags.
#[inline(always)]
fn momentum_of<T: Float, const WD: bool, const MAX: bool>(
    first: bool,
    nesterov: bool,
    p: &mut [T],
    g: &[T],
    b: &mut [T],
    k: &SgdConsts<T>,
) {
    match (first, nesterov) {
        (false, false) => momentum::<T, WD, MAX, false, false>(p, g, b, k),
        (false, true) => momentum::<T, WD, MAX, false, true>(p, g, b, k),
        (true, false) => momentum::<T, WD, MAX, true, false>(p, g, b, k),
        (true, true) => momentum::<T, WD, MAX, true, true>(p, g, b, k),
    }
}

/// The step's constants in the parameters' type.
struct SgdConsts<T> {
    lr: T,
    wd: T,
    mu: T,
    keep: T,
}

/// `p ← p - lr · (g + wd·p)`, each step one fused multiply-add as PyTorch's
/// `add(alpha=)` computes it: `g + wd·p` and `p + (-lr)·g` are each rounded once. The
/// flags (weight decay, maximize) are type parameters so that each combination is its own branch-free loop,
/// which the compiler vectorises.
#[inline(always)]
fn plain<T: Float, const WD: bool, const MAX: bool>(value: &mut [T], grad: &[T], k: &SgdConsts<T>) {
    let neg_lr = -k.lr;
    for (p, &g) in value.iter_mut().zip(grad) {
        let g = if MAX { -g } else { g };
        let g = if WD { add_scaled(g, k.wd, *p) } else { g };
        *p = add_scaled(*p, neg_lr, g);
    }
}

/// `torch.optim.SGD`'s momentum step: `b = g` on the first step, else
/// `b = mu·b + (1 - dampening)·g` (`b.mul_(mu).add_(g, alpha=1 - dampening)`: the
/// product rounded, then one fused multiply-add); then `p -= lr · b`, or
/// `lr · (g + mu·b)` with Nesterov, each a fused multiply-add.
#[inline(always)]
fn momentum<T: Float, const WD: bool, const MAX: bool, const FIRST: bool, const NESTEROV: bool>(
    value: &mut [T],
    grad: &[T],
    buf: &mut [T],
    k: &SgdConsts<T>,
) {
    let neg_lr = -k.lr;
    for ((p, &g), b) in value.iter_mut().zip(grad).zip(buf.iter_mut()) {
        let g = if MAX { -g } else { g };
        let g = if WD { add_scaled(g, k.wd, *p) } else { g };
        *b = if FIRST {
            g
        } else {
            add_scaled(k.mu * *b, k.keep, g)
        };
        let step = if NESTEROV {
            add_scaled(g, k.mu, *b)
        } else {
            *b
        };
        *p = add_scaled(*p, neg_lr, step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use descent_tape::{ParamGrads, ParamStore};
    use descent_tensor::Tensor;

    /// `torch.optim.SGD(lr=0.1)` on p = 0.1, g = 0.1 gives 0.09000000000000001: the
    /// update is one fused multiply-add, not a product rounded and then a difference
    /// (which gives 0.09).
    #[test]
    fn rounds_once_as_torch_does() {
        let mut store = ParamStore::<f64>::new();
        let w = store.insert("w", Tensor::from([0.1]));
        let grads: ParamGrads<f64> = [(w, Tensor::from([0.1]))].into_iter().collect();
        Sgd::new(0.1).step(&mut store, &grads).unwrap();
        assert_eq!(store.get(w).unwrap().item(), 0.09000000000000001);
    }
}
