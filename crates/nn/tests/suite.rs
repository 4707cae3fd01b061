//! Every integration test of this package, in one binary: one link instead of one
//! per file (docs/PERFORMANCE.md, "First build"). Each file of `tests/` is a module
//! here; `cargo test --test suite <module>` runs one of them. The root package's
//! `suites_complete` test fails when a file of `tests/` is missing from this list.

mod common;

mod checkpoint;
mod conv_layers;
mod modules;
mod python_interop;
mod torch_attention;
mod torch_layers;
mod torch_recurrent;
mod torch_state_dict;
mod torch_transformer;
