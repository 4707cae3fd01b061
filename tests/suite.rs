//! Every integration test of this package, in one binary: one link instead of one
//! per file (docs/PERFORMANCE.md, "First build"). Each file of `tests/` is a module
//! here; `cargo test --test suite <module>` runs one of them. The root package's
//! `suites_complete` test fails when a file of `tests/` is missing from this list.

mod broadcast_rows;
mod classic_graphs;
mod conv_grad_ops;
mod conv_snapshots;
mod determinism;
mod determinism_conv;
mod docs_paths;
mod errors;
mod errors_conv;
mod errors_select;
mod exploding_rnn;
mod fuzz_regressions;
mod gradcheck_conv;
mod gradcheck_ops;
mod gradcheck_select;
mod gru_ops;
mod guide;
mod guide_snapshot;
mod index_select;
mod inspect;
mod layout;
mod lstm_ops;
mod no_grad;
mod no_grad_pool;
mod number_ops;
mod op_snapshots;
mod param_sharing;
mod params;
mod properties;
mod random_programs;
mod recompute;
mod rewind;
mod select_snapshots;
mod suites_complete;
mod torch_conv;
