//! # descent-optim
//!
//! Optimisers and gradient clipping for the descent engine. This crate sees
//! parameters ([`descent_tape::ParamStore`]) and their gradients (any
//! [`descent_tape::ParamGradients`]: the store a backward walk filled, read in place,
//! or owned [`descent_tape::ParamGrads`]), never a tape, and depends on no walk.
//!
//! - [`Optimizer`]: one trait; state in `slotmap::SecondaryMap`s keyed by parameter.
//!   Every step checks all gradients first, so a step with a NaN gradient is skipped
//!   whole and says which parameter held it.
//! - [`Sgd`] (momentum, Nesterov, weight decay).
//! - [`Adagrad`], [`RmsProp`], [`Adadelta`], [`Adam`], [`AdamW`], [`Adamax`], [`NAdam`],
//!   [`RAdam`]: PyTorch's update rules and defaults, checked against `torch.optim` in
//!   `f64` (`tests/torch_reference.rs`). Every optimiser can `maximize`.
//! - [`ParamGroups`]: per-group hyper-parameters (PyTorch's `param_groups`).
//! - Learning-rate schedules: [`Schedule`] ([`Constant`], [`StepLr`], [`MultiStepLr`],
//!   [`Exponential`], [`Cosine`], [`LambdaLr`], [`OneCycle`], [`CosineWarmRestarts`],
//!   [`LinearWarmup`], [`Sequential`], [`Chain`]), run with any optimiser, group by
//!   group, by [`Scheduled`]; [`ReduceLrOnPlateau`] follows a metric.
//! - Clipping, in place: [`clip_grad_norm`] (global L2 norm by PyTorch's
//!   `clip_grad_norm_` formula, returning the norm before clipping),
//!   [`clip_grad_norm_exact`] (an exact rescale, only above the limit),
//!   [`clip_grad_value`], [`clip_grad_norm_per_param`].
//! - Checkpoints: [`Optimizer::state`] exports an optimiser's state by parameter
//!   ([`OptimizerState`], slots named as in PyTorch's `state_dict()`), and
//!   [`Optimizer::load_state`] imports it, so training resumes bit for bit.
//! - Training loops: [`DataLoader`] yields the batches of sample indices of each epoch
//!   (full batch, stochastic, mini-batch; seeded reshuffling; last batch kept or dropped).
//!
//! ```
//! use descent_backprop::Backward;
//! use descent_optim::{clip_grad_norm, Optimizer, Sgd};
//! use descent_tape::{ParamStore, Tape};
//! use descent_tensor::Tensor;
//!
//! // Fit w so that w·x = 3 for x = [1, 2].
//! let mut store = ParamStore::<f64>::new();
//! let w = store.insert("w", Tensor::from([0.0, 0.0]));
//! let mut opt = Sgd::new(0.1);
//! let tape = Tape::new();
//! for _ in 0..200 {
//!     tape.reset();
//!     let x = tape.constant(Tensor::from([1.0, 2.0]));
//!     let err = (tape.param(&store, w) * x).sum() - 3.0;
//!     let loss = err * err;
//!     let mut grads = loss.backward();
//!     clip_grad_norm(&store, &mut grads, 5.0).unwrap();
//!     opt.step(&mut store, &grads).unwrap();
//! }
//! let w = store.get(w).unwrap();
//! assert!((w.data()[0] + 2.0 * w.data()[1] - 3.0).abs() < 1e-9);
//! ```
#![warn(missing_docs)]

mod accumulate;
mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod clip;
mod error;
mod groups;
mod nadam;
mod optimizer;
mod pointwise;
mod radam;
mod rmsprop;
mod schedule;
mod sgd;
mod state;
mod train;

pub use accumulate::{FlatGrads, MicroBatches, accumulate, accumulate_mean};
pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use adamax::Adamax;
pub use clip::{clip_grad_norm, clip_grad_norm_exact, clip_grad_norm_per_param, clip_grad_value};
pub use error::Error;
pub use groups::ParamGroups;
pub use nadam::NAdam;
pub use optimizer::{Optimizer, PARALLEL_UPDATE_LEN, check_grads};
pub use radam::RAdam;
pub use rmsprop::RmsProp;
pub use schedule::{
    Anneal, BoxedSchedule, Chain, Constant, Cosine, CosineWarmRestarts, Exponential, LambdaLr,
    LinearWarmup, LrLambda, MultiStepLr, OneCycle, PlateauMode, ReduceLrOnPlateau, Schedule,
    Scheduled, Sequential, StepLr, ThresholdMode,
};
pub use sgd::Sgd;
pub use state::OptimizerState;
pub use train::{Batches, DataLoader};

/// `Display` for the optimisers: their name and current learning rate, e.g.
/// `adam (lr 0.001)`. The hyper-parameters in full are in `Debug`.
macro_rules! display_optimizer {
    ($($ty:ident),* $(,)?) => {$(
        impl<T: descent_tensor::Float> std::fmt::Display for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} (lr {})", Optimizer::<T>::name(self), Optimizer::<T>::learning_rate(self))
            }
        }
    )*};
}

display_optimizer!(
    Sgd, Adagrad, RmsProp, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam
);

/// `mini-batch of 16 over 100 samples, shuffled (seed 7)`, and so on.
///
/// ```
/// use descent_optim::DataLoader;
/// let l = DataLoader::new(100, 16).unwrap().shuffle(7);
/// assert_eq!(l.to_string(), "mini-batches of 16 over 100 samples, keeping the last partial batch, shuffled each epoch (seed 7)");
/// assert_eq!(DataLoader::full_batch(10).unwrap().to_string(), "full batches of 10 over 10 samples, in order");
/// ```
impl std::fmt::Display for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.batch_size() {
            1 => "single samples (stochastic)".to_string(),
            b if b >= self.num_samples() => format!("full batches of {b}"),
            b => format!("mini-batches of {b}"),
        };
        write!(f, "{kind} over {} samples", self.num_samples())?;
        if self.batch_size() > 1
            && self.batch_size() < self.num_samples()
            && !self.num_samples().is_multiple_of(self.batch_size())
        {
            let last = if self.drops_last() {
                "dropping"
            } else {
                "keeping"
            };
            write!(f, ", {last} the last partial batch")?;
        }
        match self.seed() {
            Some(seed) => write!(f, ", shuffled each epoch (seed {seed})"),
            None => write!(f, ", in order"),
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn optimizers_display_name_and_learning_rate() {
        assert_eq!(Adam::<f32>::new(1e-3).to_string(), "adam (lr 0.001)");
        assert_eq!(Sgd::<f64>::new(0.1).to_string(), "sgd (lr 0.1)");
    }
}
