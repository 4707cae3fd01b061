//! What the examples share: a command line that answers `--help` and refuses what it
//! does not know, and the allocator the project recommends to a binary that trains.
//! (Not an example itself: cargo builds `examples/*.rs` and `examples/*/main.rs` only.)

/// Every buffer of 1 KiB or more starts on a cache line, so the examples' speed does
/// not depend on where the heap puts their tensors (`docs/PERFORMANCE.md`, "Buffers on
/// cache lines").
#[global_allocator]
static ALLOC: descent::LineAligned = descent::LineAligned;

use std::ffi::OsString;

/// The free arguments of the command line, at most `max_free` of them. `-h` or
/// `--help` prints `about` and `usage` and exits; an unknown option or one free
/// argument too many prints what was wrong and `usage`, and exits with status 2.
pub fn command_line(about: &str, usage: &str, max_free: usize) -> Vec<OsString> {
    match parse(max_free) {
        Ok(Some(free)) => free,
        Ok(None) => {
            println!("{about}\n\n{usage}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("error: {e}\n{usage}");
            std::process::exit(2);
        }
    }
}

/// `None` when help was asked for.
fn parse(max_free: usize) -> Result<Option<Vec<OsString>>, lexopt::Error> {
    use lexopt::Arg::{Long, Short, Value};
    let mut args = lexopt::Parser::from_env();
    let mut free = Vec::new();
    while let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Value(v) if free.len() < max_free => free.push(v),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Some(free))
}
