//! Keeps the guide (`docs/guide/`) honest. Its Rust code blocks are doctests of this
//! crate (`src/guide.rs` includes every page); these tests check that no page is left
//! out of that list and that the snapshot-testing page shows `tests/guide_snapshot.rs`
//! exactly as it runs.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    let p = Path::new(ROOT).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_guide_page_is_compiled_as_doctests() {
    let included = read("src/guide.rs");
    let mut pages: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs/guide"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 11, "{pages:?}");
    for page in pages {
        let line = format!("#[doc = include_str!(\"../docs/guide/{page}\")]");
        assert!(
            included.contains(&line),
            "docs/guide/{page} is not included in src/guide.rs, so its code is not tested"
        );
    }
}

#[test]
fn the_snapshot_page_shows_the_test_that_runs() {
    let page = read("docs/guide/snapshot-testing.md");
    let start = page.find("```rust\n").expect("a Rust block") + "```rust\n".len();
    let block = &page[start..];
    let block = &block[..block.find("```").expect("a closed block")];
    let test = read("tests/guide_snapshot.rs");
    // The test file is the block, after its `//!` header and a blank line.
    let (_, body) = test.split_once("\n\n").expect("a header");
    assert_eq!(
        block, body,
        "docs/guide/snapshot-testing.md and tests/guide_snapshot.rs differ"
    );
}
