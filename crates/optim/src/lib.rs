//! # descent-optim
//!
//! Optimisers and gradient clipping for the descent engine. This crate sees
//! parameters ([`descent_tape::ParamStore`]) and their gradients
//! ([`descent_backprop::ParamGrads`]), never a tape.
//!
//! - [`Optimizer`]: one trait; state in `slotmap::SecondaryMap`s keyed by parameter.
//!   Every step checks all gradients first, so a step with a NaN gradient is skipped
//!   whole and says which parameter held it.
//! - [`Sgd`] (momentum, Nesterov, weight decay).
//! - [`Adagrad`], [`RmsProp`], [`Adadelta`], [`Adam`], [`AdamW`], [`Adamax`], [`NAdam`]:
//!   PyTorch's update rules and defaults, checked against `torch.optim` in `f64`
//!   (`tests/torch_reference.rs`).
//! - Learning-rate schedules: [`Schedule`] ([`Constant`], [`StepLr`], [`Exponential`],
//!   [`Cosine`], [`LinearWarmup`]), run with any optimiser by [`Scheduled`].
//! - Clipping: [`clip_grad_norm`] (global L2 norm, returning the norm before
//!   clipping), [`clip_grad_value`], [`clip_grad_norm_per_param`].
//! - Checkpoints: [`Optimizer::state`] exports an optimiser's state by parameter
//!   ([`OptimizerState`], slots named as in PyTorch's `state_dict()`), and
//!   [`Optimizer::load_state`] imports it, so training resumes bit for bit.
//! - Training loops: [`DataLoader`] yields the batches of sample indices of each epoch
//!   (full batch, stochastic, mini-batch; seeded reshuffling; last batch kept or dropped).
//!
//! ```
//! use descent_backprop::{Backward, ParamGrads};
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
//!     let mut grads = ParamGrads::from(&loss.backward());
//!     clip_grad_norm(&mut grads, 5.0).unwrap();
//!     opt.step(&mut store, &grads).unwrap();
//! }
//! let w = store.get(w).unwrap();
//! assert!((w.data()[0] + 2.0 * w.data()[1] - 3.0).abs() < 1e-9);
//! ```
#![warn(missing_docs)]

mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod clip;
mod error;
mod nadam;
mod optimizer;
mod pointwise;
mod rmsprop;
mod schedule;
mod sgd;
mod state;
mod train;

pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use adamax::Adamax;
pub use clip::{clip_grad_norm, clip_grad_norm_per_param, clip_grad_value};
pub use error::Error;
pub use nadam::NAdam;
pub use optimizer::{Optimizer, check_grads};
pub use rmsprop::RmsProp;
pub use schedule::{Constant, Cosine, Exponential, LinearWarmup, Schedule, Scheduled, StepLr};
pub use sgd::Sgd;
pub use state::OptimizerState;
pub use train::{Batches, DataLoader};
