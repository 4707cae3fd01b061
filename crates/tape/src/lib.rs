//! # descent-tape
//!
//! The tape of the descent engine: a Wengert list of every op the program ran, in
//! order, and the op set with each op's forward computation and backward rule side by
//! side (`src/ops/`, one file per family).
//!
//! - [`Tape`] is an arena: nodes live in one `Vec` in creation order, so a node's id is
//!   its index and creation order is already a topological order. Scalar values live
//!   inline in their node; tensors live in a side arena whose buffers are recycled by
//!   [`Tape::reset`].
//! - [`Var`] is the handle a program holds: `Copy`, borrowing its tape, carrying the
//!   tape's generation so a handle from before a reset (or from another tape) is
//!   reported, never misread. Arithmetic operators and methods record ops; every op has
//!   a panicking form and a fallible `try_` form with the same message.
//! - [`Op`] is a plain enum: the tape is data you can print and snapshot.
//! - The reverse walk itself lives in `descent-backprop`; this crate provides the rule
//!   of each node (`ops::backward_node`) and nothing of the walk. The items only the
//!   walk needs are public (it is another crate) but hidden from these docs.
//!
//! ```
//! use descent_tape::Tape;
//! use descent_tensor::Tensor;
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.constant(Tensor::from([[1.0, 2.0]]));      // input: no gradient
//! let w = tape.var(Tensor::from([[0.5], [-0.25]])).named("w");
//! let b = tape.var(0.1).named("b");
//! let y = (x.matmul(w) + b).tanh().sum();
//! assert!((y.item() - 0.1f64.tanh()).abs() < 1e-15);
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod error;
pub mod norm;
mod op;
pub mod ops;
mod param_grads;
mod params;
mod tape;
mod var;

pub use error::{Error, NodeRef, Operand, Result, summarize};
pub use op::{BinaryOp, Op, UnaryOp};
pub use ops::conv::{Conv1dOptions, Conv2dOptions, IntoPair};
pub use ops::pool::Pool2dOptions;
pub use param_grads::{ParamGradients, ParamGrads, ParamIndex, non_finite_at};
pub use params::{Copies, ParamId, ParamKey, ParamStore};
pub use tape::{
    Checkpoint, GradHook, HookGrad, IntoLeaf, LeafValue, Meta, NoGradGuard, Node, NodeId,
    ScopeGuard, Tape, TapeRead, Value,
};
pub use var::Var;
