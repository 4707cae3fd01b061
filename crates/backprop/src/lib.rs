//! # descent-backprop
//!
//! The reverse walk of the descent engine. [`backward`] (or `loss.backward()` through
//! the [`Backward`] trait) seeds the output's gradient and visits the tape's nodes in
//! reverse creation order, each node's rule (from `descent-tape`) adding its
//! contribution to its operands' gradients. The result, [`Gradients`], holds the
//! gradient of the output with respect to every node on a path to it: the δ of every
//! layer is a lookup, not a hook.
//!
//! Also here: [`gradcheck`], which compares a backward pass against central finite
//! differences in `f64`, and [`render`], a stable text form of a tape with its values
//! and gradients for snapshot tests.
//!
//! ```
//! use descent_backprop::Backward;
//! use descent_tape::Tape;
//! use descent_tensor::Tensor;
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.constant(Tensor::from([[1.0, -1.0]]));
//! let w = tape.var(Tensor::from([[0.5], [0.25]]));
//! let h = x.matmul(w).tanh();          // δ of h is a lookup below
//! let loss = (h * h).sum();
//! let grads = loss.backward();
//! let dh = grads.wrt(h).item();
//! assert!((dh - 2.0 * 0.25f64.tanh()).abs() < 1e-15);
//! assert_eq!(grads.wrt(w).shape(), &[2, 1]);
//! ```
#![warn(missing_docs)]

#[cfg(debug_assertions)]
#[doc(hidden)]
pub mod dev_instances;
mod error;
mod flow;
mod gradcheck;
mod gradients;
mod higher;
mod inspect;
mod param_grads;
mod per_sample;
mod recompute;
mod render;
mod walk;

pub use descent_tape::{ParamGradients, ParamGrads};
pub use error::Error;
pub use flow::{Flag, FlowOptions, FlowReport, FlowStats, LayerFlow, ParamFlow, layer_of};
pub use gradcheck::{GradCheckOptions, GradCheckReport, Mismatch, gradcheck};
pub use gradients::{Gradients, Keep};
pub use higher::{
    GradGraph, HvpMode, JacobianMode, grad, grad_graph, hessian, hvp, hvp_with, jacobian, jvp, vjp,
};
pub use inspect::{ScopeDelta, to_dot};
pub use per_sample::{NonFinitePolicy, PerSample, PerSampleOptions, per_sample_grads};
pub use recompute::recompute;
pub use render::{RenderOptions, format_number, render};
pub use walk::{Backward, backward, backward_into, backward_with};
