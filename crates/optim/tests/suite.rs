//! Every integration test of this package, in one binary: one link instead of one
//! per file (docs/PERFORMANCE.md, "First build"). Each file of `tests/` is a module
//! here; `cargo test --test suite <module>` runs one of them. `listed` below fails
//! when a file of `tests/` is missing from this list, so none is silently skipped.

mod accumulate;
mod clip;
mod groups;
mod optimizers;
mod torch_groups;
mod torch_reference;

/// Test files built as binaries of their own (see Cargo.toml).
const SEPARATE: &[&str] = &[];

#[test]
fn listed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let me = include_str!("suite.rs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module == "suite" || SEPARATE.contains(&module) {
            continue;
        }
        assert!(
            me.contains(&format!("\nmod {module};")),
            "tests/{name} is not a module of tests/suite.rs: it would never run"
        );
    }
}
