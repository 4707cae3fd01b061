//! Random programs from the input bytes, run through the fallible API, then backward;
//! see `fuzz/src/program.rs` for the decoding and the checks, and
//! `docs/RELIABILITY.md` for how to run it.
#![no_main]

#[path = "../src/program.rs"]
mod program;

libfuzzer_sys::fuzz_target!(|data: &[u8]| program::run(data));
