//! # descent
//!
//! Reverse-mode automatic differentiation with a tape, in Rust. Build a computation
//! op by op; every op is recorded on a [`Tape`]; [`Backward::backward`] walks the tape
//! from the output back and gives the gradient of the output with respect to every
//! node, the δ of each layer included.
//!
//! This crate gathers the workspace's crates behind one name:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`tensor`] | `descent-tensor` | n-d arrays ([`Tensor`]) and their kernels |
//! | [`tape`] | `descent-tape` | the [`Tape`], [`Var`] handles, the op set, parameters |
//! | [`backprop`] | `descent-backprop` | the reverse walk ([`backward`]), [`Gradients`], [`gradcheck`], renders, per-sample gradients |
//! | [`optim`] | `descent-optim` | optimisers, schedules, clipping, data loading |
//! | [`nn`] | `descent-nn` | layers, initialisers, checkpoints |
//! | [`data`] | `descent-data` | datasets (in memory, CSV, `.npy`) and batch loaders |
#![cfg_attr(
    feature = "plot",
    doc = "| [`plot`] | `descent-plot` | pictures of gradient flow and training curves, SVG and PNG (feature `plot`) |"
)]
#![cfg_attr(
    not(feature = "plot"),
    doc = "| `plot` | `descent-plot` | pictures of gradient flow and training curves, SVG and PNG (feature `plot`, off in this build of the docs) |"
)]
//!
//! The names most programs use are in [`prelude`]. A binary that trains should install
//! [`LineAligned`] as its global allocator (two lines, shown on its page): tensors'
//! buffers then start on cache lines, as PyTorch's do, and loops over them run at the
//! same speed whatever the heap's layout.
//!
//! ```
//! use descent::prelude::*;
//!
//! // Gradient descent on L(x) = ln(cosh(x)), whose gradient is tanh(x).
//! let mut x = 1.0f64;
//! let tape = Tape::new();
//! for _ in 0..100 {
//!     tape.reset();
//!     let xv = tape.var(x);
//!     let loss = xv.cosh().ln();
//!     let grads = loss.backward();
//!     x -= 0.1 * grads.wrt(xv).item();
//! }
//! assert!(x.abs() < 1e-3);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Inlined, so that the modules are documented here: `cargo doc --no-deps` builds no
// page for the crates behind them, and a plain re-export would link to those pages.
#[doc(inline)]
pub use descent_backprop as backprop;
#[doc(inline)]
pub use descent_data as data;
#[doc(inline)]
pub use descent_nn as nn;
#[doc(inline)]
pub use descent_optim as optim;
#[cfg(feature = "plot")]
#[doc(inline)]
pub use descent_plot as plot;
#[doc(inline)]
pub use descent_tape as tape;
#[doc(inline)]
pub use descent_tensor as tensor;

pub use descent_backprop::{Backward, Gradients, backward, backward_with, gradcheck};
pub use descent_tape::{Tape, Var};
pub use descent_tensor::{Float, LineAligned, Tensor};

/// The names most programs use: `use descent::prelude::*;`.
pub mod prelude {
    pub use descent_backprop::{
        Backward, GradCheckOptions, Gradients, Keep, ParamGrads, backward, backward_into,
        backward_with, gradcheck,
    };
    pub use descent_data::{Dataset, Loader, Targets, TensorDataset};
    pub use descent_nn::{Ctx, Module, ModuleInfo, Sequential};
    pub use descent_optim::Optimizer;
    pub use descent_tape::{NodeId, Op, ParamGradients, ParamId, ParamStore, Tape, Var};
    pub use descent_tensor::{Float, Tensor};
    // Higher-order and forward-mode differentiation (docs/guide/higher-order.md).
    pub use descent_backprop::{
        GradGraph, HvpMode, JacobianMode, grad, grad_graph, hessian, hvp, hvp_with, jacobian, jvp,
        vjp,
    };
    // Convolution and pooling options (docs/guide/modules.md).
    pub use descent_tape::{Conv1dOptions, Conv2dOptions, Pool2dOptions};
}

/// The README's example, compiled and run as a doctest so it cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide's pages (`docs/guide/`), each compiled and run as doctests.
#[cfg(doctest)]
mod guide;
