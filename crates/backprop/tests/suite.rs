//! Every integration test of this package, in one binary: one link instead of one
//! per file (docs/PERFORMANCE.md, "First build"). Each file of `tests/` is a module
//! here; `cargo test --test suite <module>` runs one of them. The root package's
//! `suites_complete` test fails when a file of `tests/` is missing from this list.

mod conv_hvp_jax;
mod flow;
mod higher_order;
mod higher_order_snapshots;
mod keep_leaves;
mod per_sample_second_order;
mod reuse;
