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
//! | [`tensor`] | `descent-tensor` | n-d arrays and kernels |
//! | [`tape`] | `descent-tape` | the tape, `Var` handles, the op set |
//! | [`backprop`] | `descent-backprop` | the reverse walk, gradient checks, renders |
//! | [`optim`] | `descent-optim` | optimisers and clipping |
//! | [`nn`] | `descent-nn` | layers, initialisers, losses |
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
#![warn(missing_docs)]

pub use descent_backprop as backprop;
pub use descent_nn as nn;
pub use descent_optim as optim;
pub use descent_tape as tape;
pub use descent_tensor as tensor;

pub use descent_backprop::{Backward, Gradients, backward, backward_with, gradcheck};
pub use descent_tape::{Tape, Var};
pub use descent_tensor::{Float, Tensor};

/// The names most programs use: `use descent::prelude::*;`.
pub mod prelude {
    pub use descent_backprop::{
        Backward, GradCheckOptions, Gradients, ParamGrads, backward, backward_into, backward_with,
        gradcheck,
    };
    pub use descent_optim::Optimizer;
    pub use descent_tape::{NodeId, Op, ParamGradients, ParamId, ParamStore, Tape, Var};
    pub use descent_tensor::{Float, Tensor};
}

/// The README's example, compiled and run as a doctest so it cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide's pages (`docs/guide/`), each compiled and run as doctests.
#[cfg(doctest)]
mod guide;
