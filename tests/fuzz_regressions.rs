//! Replays the fuzz corpus kept in `tests/fuzz_corpus/` through the same program
//! decoder and checks as the cargo-fuzz target `programs` (`fuzz/src/program.rs`,
//! included here so there is one copy), so CI exercises them without cargo-fuzz or a
//! nightly toolchain. See `docs/RELIABILITY.md`.

#[path = "../fuzz/src/program.rs"]
mod program;

use std::path::Path;

#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the kept corpus in {}, found {} files",
        dir.display(),
        files.len()
    );
    for path in &files {
        let data = std::fs::read(path).expect("a corpus file");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if let Err(e) = std::panic::catch_unwind(|| program::run(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("corpus input {name} failed: {msg}");
        }
    }
}

/// A few hand-written programs, so the replay means something even before a corpus is
/// refreshed: empty input, all-zero bytes, and every op code on a small leaf.
#[test]
fn hand_written_programs_run_cleanly() {
    program::run(&[]);
    program::run(&[0; 64]);
    program::run(&[0xff; 64]);
    for header in 0..8u8 {
        for code in 0..46u8 {
            // Header, one leaf of shape [2, 3] (ndim byte 2, extents 3 and 5 -> 2, 3)
            // of moderate values, a variable; then the op with assorted argument bytes.
            let mut input = vec![header, 0, 2, 3, 5];
            input.extend((0..6).flat_map(|i| [0u8, 100 + 10 * i]));
            input.push(1);
            input.extend([code, 0, 7, 3, 1, 2, 9, 4, 6, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
            program::run(&input);
        }
    }
}
