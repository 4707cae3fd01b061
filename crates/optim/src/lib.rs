//! # descent-optim
//!
//! Optimisers, gradient clipping and training loops for the descent engine. This
//! crate sees parameters and their gradients, never a tape.
//!
//! It is being built (see the project's issues); the core engine does not depend on it.
