//! Every package builds its integration tests into one binary, `tests/suite.rs`, with
//! `autotests = false` (docs/PERFORMANCE.md, "First build"). Cargo then builds no file
//! of `tests/` that is not named: this test fails when a file is neither a module of its
//! package's suite nor a `[[test]]` of its own in the package's Cargo.toml, so no test
//! file is silently skipped.

use std::path::Path;

#[test]
fn every_test_file_is_built() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut packages = vec![root.to_path_buf()];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        packages.push(entry.unwrap().path());
    }
    let mut suites = 0;
    for package in packages {
        let suite = package.join("tests/suite.rs");
        let Ok(text) = std::fs::read_to_string(&suite) else {
            continue;
        };
        suites += 1;
        let manifest = std::fs::read_to_string(package.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("autotests = false"),
            "{}: a suite without `autotests = false` builds every file twice",
            package.display()
        );
        for entry in std::fs::read_dir(package.join("tests")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let Some(module) = name.strip_suffix(".rs") else {
                continue;
            };
            if module == "suite" {
                continue;
            }
            let in_suite = text.contains(&format!("\nmod {module};"));
            let own_binary = manifest.contains(&format!("path = \"tests/{name}\""));
            assert!(
                in_suite || own_binary,
                "{}/tests/{name} is neither a module of tests/suite.rs nor a [[test]]: it would never run",
                package.display()
            );
        }
    }
    assert!(suites >= 5, "found only {suites} suites");
}
