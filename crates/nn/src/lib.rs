//! # descent-nn
//!
//! Layers, initialisers and losses built on the descent tape and its parameter store.
//!
//! It is being built (see the project's issues); the core engine does not depend on it.
