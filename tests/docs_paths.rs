//! The docs name the project's files (`crates/tape/src/ops/`, `tests/layout.rs`,
//! `examples/tour.rs`) and link to each other (`[guide](docs/guide/README.md)`). Files
//! move; this test fails, naming the page and the path, when a page names a file or a
//! folder that does not exist, so the docs cannot silently point at nothing.
//!
//! Pages: `README.md`, every `*.md` under `docs/`, and every `README.md` under `crates/`.
//! A path is any word that starts with one of the project's top-level folders
//! ([`ROOTS`]), read from the repository root; a relative Markdown link is read from its
//! page's folder, as a Markdown viewer reads it. A glob (`src/ops/*.rs`) must have an
//! existing folder before its first wildcard.

use std::fs;
use std::path::{Path, PathBuf};

/// Top-level folders of the repository whose files the docs name. A word starting with
/// one of them (and not preceded by a path character, so `../shared/docs/x.md` is not
/// read as `docs/x.md`) is taken as a path from the repository root.
const ROOTS: &[&str] = &[
    "crates/",
    "docs/",
    "examples/",
    "tests/",
    "src/",
    "data/",
    "fuzz/",
    "peers/",
    ".ci/",
];

/// Paths the docs may name although the repository does not hold them, because a
/// command the page describes creates them.
const MADE_BY_COMMANDS: &[&str] = &[
    // `cargo fuzz run programs` keeps its corpus here; it is not committed
    // (docs/RELIABILITY.md).
    "fuzz/corpus/",
    // The MPI crate is a workspace of its own: `cargo build --manifest-path
    // crates/mpi/Cargo.toml` builds into its own target folder (docs/guide/distributed.md).
    "crates/mpi/target/",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages to check, sorted so failures read in a stable order.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md")];
    collect_markdown(&root.join("docs"), &mut pages, &|_| true);
    collect_markdown(&root.join("crates"), &mut pages, &|name| {
        name == "README.md"
    });
    pages.sort();
    pages
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>, keep: &dyn Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map(|e| e.expect("a readable directory entry")) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            // Build output is not documentation.
            if name != "target" {
                collect_markdown(&path, out, keep);
            }
        } else if name.ends_with(".md") && keep(&name) {
            out.push(path);
        }
    }
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '*')
}

/// Words of `text` that start with one of [`ROOTS`], trailing sentence punctuation
/// removed.
fn named_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (start, _) in text.char_indices() {
        let before = text[..start].chars().next_back();
        if before.is_some_and(is_path_char) {
            continue;
        }
        let rest = &text[start..];
        if !ROOTS.iter().any(|r| rest.starts_with(r)) {
            continue;
        }
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let word = rest[..end].trim_end_matches(['.', '-']);
        found.push(word.to_string());
    }
    found
}

/// Targets of Markdown links `[text](target)` that point into the repository: not a
/// URL, not an anchor on the same page. The anchor of a target is dropped.
fn relative_links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split('#').next().unwrap_or_default();
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        found.push(target.to_string());
    }
    found
}

/// Whether `path` (relative to `base`) exists; a glob needs the folder before its first
/// wildcard.
fn exists(base: &Path, path: &str) -> bool {
    let literal = match path.find('*') {
        Some(i) => &path[..path[..i].rfind('/').map_or(0, |j| j + 1)],
        None => path,
    };
    base.join(literal).exists()
}

#[test]
fn every_path_named_in_the_docs_exists() {
    let root = repo_root();
    let mut missing = Vec::new();
    for page in pages(&root) {
        let text = fs::read_to_string(&page).expect("a readable page");
        let shown = page
            .strip_prefix(&root)
            .unwrap_or(&page)
            .display()
            .to_string();
        for path in named_paths(&text) {
            let made = MADE_BY_COMMANDS.iter().any(|m| path.starts_with(m));
            if !made && !exists(&root, &path) {
                missing.push(format!("{shown}: `{path}` (from the repository root)"));
            }
        }
        let dir = page.parent().expect("a page is in a folder");
        for link in relative_links(&text) {
            if !exists(dir, &link) {
                missing.push(format!("{shown}: link `{link}` (from the page's folder)"));
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "{} paths named in the docs do not exist:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_scanner_finds_paths_and_links() {
    let text = "See `crates/tape/src/ops/` and tests/layout.rs. Not ../shared/docs/W.md, \
                not out/tour/; a glob: src/ops/*.rs, a [link](../GEMM.md#top), \
                a [site](https://insta.rs) and an [anchor](#here).";
    assert_eq!(
        named_paths(text),
        ["crates/tape/src/ops/", "tests/layout.rs", "src/ops/*.rs"]
    );
    assert_eq!(relative_links(text), ["../GEMM.md"]);
    let root = repo_root();
    assert!(exists(&root, "crates/tape/src/ops/*.rs"));
    assert!(exists(&root, "tests/docs_paths.rs"));
    assert!(!exists(&root, "tests/no_such_file.rs"));
    assert!(!exists(&root, "crates/no_such_crate/*.rs"));
}
