//! `descent-bench`: W1..W6 of `shared/docs/WORKLOADS.md`, one JSON line each (W2: one
//! per variant, scalar nodes and tensors).
//!
//! ```text
//! cargo run --release -p descent-bench -- <W1|W2|W3|W4|W5|W6|all> [--reps K] [--n N] [--threads T]
//! cargo run --release -p descent-bench -- W4 --threads T [--reps K] [--dump DIR]
//! cargo run --release -p descent-bench -- W6 --mem [--limit] [--prealloc] [--n N]
//! cargo run --release -p descent-bench -- W5 --mem
//! cargo run --release -p descent-bench -- W3,W6 --anomaly [--reps K]
//! ```
//!
//! - `--reps K` (default 5): timed repetitions after one warm-up; times are medians.
//!   W4: each repetition starts from the initial parameters, runs 5 warm-up batches and
//!   times 50, as the peers do.
//! - `--n N`: W1 step count (default 10,000) / W6 chain length (default 1,000,000).
//! - `--threads T`: the size of rayon's global pool (without it, rayon's default: one
//!   thread per core). It runs W4's per-sample passes, and every matrix product of at
//!   least 2^20 multiply-adds splits its output in blocks across it (bit-identical to
//!   one thread); element-wise ops and the tape itself run on the calling thread.
//!   Pin with `taskset -c 0` (1 thread) or `taskset -c 0,1` (2 threads) as the peers
//!   are pinned.
//! - `--dump DIR`: W4 writes its averaged clipped gradient of the first batch to
//!   `DIR/w4_descent.npz` (numpy `savez` layout: `arr_0..arr_3` = W1, b1, W2, b2, and
//!   `norms`), for `shared/peers/compare_w4.py DIR`.
//! - `--mem`: W6 memory in a fresh process: RSS before, peak (VmHWM, reset through
//!   `/proc/self/clear_refs`) after ONE forward + backward, nothing else run first.
//!   `--limit` measures the hand-written tape instead; `--prealloc` gives descent's
//!   tape its final capacity up front (`Tape::with_capacity`).
//! - `W5 --mem`: W5's peak resident memory in a fresh process: RSS after the data is
//!   made, peak (VmHWM, reset first) over one repetition (3 + 30 steps).
//! - `--anomaly`: W3 and W6 also run with `tape.set_anomaly_detection(true)`,
//!   alternating with the plain runs, and report the cost ratio (`anomaly_*` keys).
//! - `--only descent|limit`: W6 timing runs only one side (for profilers:
//!   `valgrind --tool=callgrind target/release/descent-bench W6 --n 30000 --only descent`);
//!   the JSON line is then a profile aid, without the other side's figures.
//! - `--on-pool`: the workloads run on a worker of rayon's pool (inside `rayon::scope`),
//!   as a training loop inside `pool.install` does, so that the calling thread is one
//!   of the `T` threads, as the peers' calling thread is one of theirs. Without it the
//!   calling thread stays outside the pool and sleeps through every parallel section
//!   (docs/PERFORMANCE.md, "Training on the pool"). JSON key `on_pool`.
//!
//! The timing run also reports memory from its first (warm-up) W6 run, as the peers
//! do; that figure is clean only when W6 is the process's first workload.

mod harness;

use descent_bench::alloc_count::CountingAlloc;
use std::ffi::OsString;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The flags, as parsed (see the crate docs).
#[derive(Debug, PartialEq)]
pub struct Args {
    /// The workloads to run, in order (`W1`..`W6`).
    pub workloads: Vec<String>,
    /// Timed repetitions after one warm-up (at least 1).
    pub reps: usize,
    /// W1's step count or W6's chain length, if given.
    pub n: Option<usize>,
    /// The size of rayon's global pool, if given.
    pub threads: Option<usize>,
    /// W4: the directory to dump the first averaged gradient to.
    pub dump: Option<String>,
    /// Measure memory in a fresh process (W5 or W6 alone).
    pub mem: bool,
    /// `W6 --mem`: measure the hand-written tape instead.
    pub limit: bool,
    /// `W6 --mem`: give descent's tape its final capacity up front.
    pub prealloc: bool,
    /// `W6 --only descent|limit`: time one side alone.
    pub only: Option<String>,
    /// W3 and W6: also run with anomaly detection on.
    pub anomaly: bool,
    /// W8: a GRU layer in place of the LSTM.
    pub gru: bool,
    /// Run the workloads on a worker of rayon's pool, so that the calling thread is
    /// one of the `--threads` (as a loop inside `pool.install` runs).
    pub on_pool: bool,
}

const USAGE: &str = "usage: descent-bench <W1|W2|W3|W4|W5|W5R|W6|W7|W8|W9|W10|all>[,...] [--reps K] [--n N] \
                     [--threads T] [--dump DIR] [--mem [--limit] [--prealloc]] \
                     [--only descent|limit] [--anomaly] [--gru] [--on-pool]";

const HELP: &str = "\
Runs the reference workloads W1..W6 and prints one JSON line each (W2: one per variant).
W7 (a CNN training step), W8 (an LSTM training step), W9 (a Hessian-vector product of
W3's loss, beside one gradient), W10 (a 512-2048-2048-10 MLP, batch 16: wide layers,
small batch) and W5R (W5's RNN over 1,000 steps, plain against activation
checkpointing: peak memory and time) run only when named.

  <W1|..|W10|W5R|all>[,...] the workloads, in order (`all`: W1, W6, W4, W2, W3, W5)
  --reps K               timed repetitions after one warm-up; times are medians (default 5)
  --n N                  W1's step count (10,000) / W6's chain length (1,000,000)
  --threads T            the size of rayon's pool (default: one thread per core)
  --dump DIR             W4: write the first averaged clipped gradient to DIR/w4_descent.npz
  --mem                  W6 or W5 alone: memory of one run in a fresh process
  --limit                with W6 --mem: measure the hand-written tape instead
  --prealloc             with W6 --mem: give descent's tape its final capacity up front
  --only descent|limit   W6: time one side alone (for profilers)
  --anomaly              W3, W6: also run with anomaly detection on, report the cost
  --gru                  W8: a GRU layer in place of the LSTM (not a reference workload)
  --on-pool              run the workloads on a worker of rayon's pool (as inside
                         `pool.install`): the calling thread is then one of the T threads
  -h, --help             this help

Pin with `taskset -c 0` (1 thread) or `taskset -c 0,1` (2 threads) as the peers are pinned.";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Run(Args),
    Help,
}

/// A count, written with or without `_` separators (`1_000_000`).
fn count(flag: &str, v: OsString) -> Result<usize, String> {
    let v = v
        .into_string()
        .map_err(|v| format!("{flag}: not a count: {v:?}"))?;
    v.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: not a count: {v}"))
}

fn parse_args(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Command, String> {
    use lexopt::Arg::{Long, Short, Value};
    use lexopt::ValueExt;
    let mut a = Args {
        workloads: Vec::new(),
        reps: 5,
        n: None,
        threads: None,
        dump: None,
        mem: false,
        limit: false,
        prealloc: false,
        only: None,
        anomaly: false,
        gru: false,
        on_pool: false,
    };
    let mut p = lexopt::Parser::from_args(args);
    let text = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(text)? {
        match arg {
            Long("reps") => a.reps = count("--reps", p.value().map_err(text)?)?.max(1),
            Long("n") => a.n = Some(count("--n", p.value().map_err(text)?)?),
            Long("threads") => {
                a.threads = Some(count("--threads", p.value().map_err(text)?)?.max(1))
            }
            Long("dump") => a.dump = Some(p.value().map_err(text)?.string().map_err(text)?),
            Long("mem") => a.mem = true,
            Long("limit") => a.limit = true,
            Long("prealloc") => a.prealloc = true,
            Long("anomaly") => a.anomaly = true,
            Long("gru") => a.gru = true,
            Long("on-pool") => a.on_pool = true,
            Long("only") => match p.value().map_err(text)?.to_str() {
                Some(w @ ("descent" | "limit")) => a.only = Some(w.into()),
                _ => return Err("--only takes `descent` or `limit`".into()),
            },
            Short('h') | Long("help") => return Ok(Command::Help),
            Value(list) => {
                let list = list.string().map_err(text)?;
                for w in list.split(',') {
                    match w.trim().to_ascii_uppercase().as_str() {
                        "ALL" => a
                            .workloads
                            .extend(["W1", "W6", "W4", "W2", "W3", "W5"].map(String::from)),
                        w @ ("W1" | "W2" | "W3" | "W4" | "W5" | "W5R" | "W6" | "W7" | "W8"
                        | "W9" | "W10") => a.workloads.push(w.into()),
                        other => return Err(format!("unknown workload {other}\n{USAGE}")),
                    }
                }
            }
            other => return Err(format!("{}\n{USAGE}", text(other.unexpected()))),
        }
    }
    if a.workloads.is_empty() {
        return Err(format!("no workload given\n{USAGE}"));
    }
    if a.only.is_some() && a.workloads != ["W6"] {
        return Err("--only applies to W6 alone".into());
    }
    if a.gru && a.workloads != ["W8"] {
        return Err("--gru applies to W8 alone".into());
    }
    if a.mem && a.workloads != ["W6"] && a.workloads != ["W5"] {
        return Err("--mem measures W6 or W5 alone: run `-- W6 --mem` or `-- W5 --mem`".into());
    }
    Ok(Command::Run(a))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(a)) => a,
        Ok(Command::Help) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = args.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
    {
        eprintln!("cannot build a rayon pool of {n} threads: {e}");
        return ExitCode::FAILURE;
    }
    let ok = if args.on_pool {
        rayon::scope(|_| run(&args))
    } else {
        run(&args)
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the workloads `args` names; `false` if a result failed its check.
fn run(args: &Args) -> bool {
    if args.mem {
        match args.workloads[0].as_str() {
            "W5" => harness::w5::bench(args),
            _ => harness::w6::mem(args),
        }
    } else {
        let mut ok = true;
        for w in &args.workloads {
            ok &= match w.as_str() {
                "W1" => harness::w1::bench(args),
                "W2" => harness::w2::bench(args),
                "W3" => harness::w3::bench(args),
                "W4" => harness::w4::bench(args),
                "W5" => harness::w5::bench(args),
                "W5R" => harness::w5r::bench(args),
                "W7" => harness::w7::bench(args),
                "W8" => harness::w8::bench(args),
                "W9" => harness::w9::bench(args),
                "W10" => harness::w10::bench(args),
                _ => harness::w6::bench(args),
            };
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Args {
        match parse_args(args) {
            Ok(Command::Run(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        parse_args(args).unwrap_err()
    }

    #[test]
    fn flags_and_workloads() {
        let a = run(&[
            "w3,W6",
            "--reps",
            "0",
            "--threads=2",
            "--n",
            "1_000",
            "--anomaly",
        ]);
        assert_eq!(a.workloads, ["W3", "W6"]);
        assert_eq!(
            (a.reps, a.threads, a.n, a.anomaly),
            (1, Some(2), Some(1000), true)
        );
        assert_eq!(
            run(&["all"]).workloads,
            ["W1", "W6", "W4", "W2", "W3", "W5"]
        );
        let a = run(&["W6", "--mem", "--limit", "--prealloc"]);
        assert!(a.mem && a.limit && a.prealloc);
        assert_eq!(
            run(&["W6", "--only", "limit"]).only.as_deref(),
            Some("limit")
        );
        assert_eq!(run(&["W4", "--dump", "out"]).dump.as_deref(), Some("out"));
        assert!(run(&["W8", "--gru"]).gru);
        assert!(run(&["W3,W8", "--on-pool"]).on_pool);
        assert!(!run(&["W3"]).on_pool);
        assert_eq!(err(&["W3", "--gru"]), "--gru applies to W8 alone");
    }

    #[test]
    fn help_wins_over_everything_else() {
        for args in [&["--help"][..], &["-h"], &["W1", "--reps", "3", "--help"]] {
            assert_eq!(parse_args(args), Ok(Command::Help), "{args:?}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        assert!(err(&[]).starts_with("no workload given\nusage:"));
        assert!(err(&["W11"]).starts_with("unknown workload W11"));
        assert_eq!(run(&["w8"]).workloads, ["W8"]);
        assert_eq!(run(&["w7"]).workloads, ["W7"]);
        assert_eq!(run(&["w10"]).workloads, ["W10"]);
        assert_eq!(run(&["w5r"]).workloads, ["W5R"]);
        assert!(
            err(&["W1", "--reps"]).contains("--reps"),
            "{}",
            err(&["W1", "--reps"])
        );
        assert_eq!(err(&["W1", "--reps", "x"]), "--reps: not a count: x");
        assert!(
            err(&["W1", "--fast"]).starts_with("invalid option '--fast'"),
            "{}",
            err(&["W1", "--fast"])
        );
        assert_eq!(
            err(&["W6", "--only", "both"]),
            "--only takes `descent` or `limit`"
        );
        assert_eq!(
            err(&["W1", "--only", "limit"]),
            "--only applies to W6 alone"
        );
        assert!(err(&["W1", "--mem"]).starts_with("--mem measures W6 or W5 alone"));
    }
}
