//! The harness of each workload: it runs the model of `descent_bench::wN` (warm-up,
//! timed repetitions, correctness checks, allocation counts) and prints one JSON line.
//! Part of the binary, not the library: the counts need the binary's counting
//! allocator.

pub mod w1;
pub mod w10;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod w5r;
pub mod w6;
pub mod w7;
pub mod w8;
pub mod w9;

use crate::Args;
use descent_bench::alloc_count::Counts;
use descent_bench::rss;
use descent_bench::stats::Summary;
use serde_json::{Map, Value, json};
use std::time::Instant;

/// Relative tolerance of the correctness checks (WORKLOADS.md: 1e-12).
pub const TOL: f64 = 1e-12;

/// Trials of [`descent_bench::ceiling::parallel_ceiling`] before and after each
/// repetition of W3 and W4. A snapshot: the second core's share changes within a
/// second, so the ceiling only indicates what a repetition had.
pub const CEILING_TRIALS: usize = 7;

/// One workload's JSON line: the fields every line has (see [`Line::new`]), then the
/// workload's own. Keys come out in `serde_json`'s order (sorted); non-finite numbers
/// as `null`, as JSON has no spelling for them.
pub struct Line(Map<String, Value>);

impl Line {
    /// The fields every line has: `peer`, `workload`, `threads`, the `descent` version,
    /// the CPUs the process may run on and the size of rayon's pool.
    pub fn new(args: &Args, workload: &str) -> Self {
        // W4 runs on rayon's pool: its size is the thread count; the others run on the
        // calling thread and report `--threads` as given.
        let threads = match workload {
            "W4" => rayon::current_num_threads(),
            _ => args.threads.unwrap_or(1),
        };
        let mut line = Line(Map::new());
        line.add(json!({
            "peer": "descent",
            "workload": workload,
            "threads": threads,
            "descent": env!("CARGO_PKG_VERSION"),
            "affinity": rss::affinity(),
            "gemm_threads": rayon::current_num_threads(),
            "on_pool": args.on_pool,
        }));
        line
    }

    /// Adds the fields of `fields`, a JSON object; a key already present is replaced.
    ///
    /// # Panics
    /// If `fields` is not an object.
    pub fn add(&mut self, fields: Value) -> &mut Self {
        match fields {
            Value::Object(m) => self.0.extend(m),
            other => panic!("a line's fields are a JSON object, not {other}"),
        }
        self
    }

    /// Adds one field.
    pub fn set(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.0.insert(key.into(), value);
        self
    }

    /// Prints the line on stdout.
    pub fn print(&self) {
        println!(
            "{}",
            serde_json::to_string(&self.0).expect("a map of JSON values serializes")
        );
    }
}

/// The median of the ceilings measured around the repetitions (none on one thread).
pub fn ceiling_median(ceilings: &[f64]) -> Option<f64> {
    (!ceilings.is_empty()).then(|| Summary::of(ceilings).median)
}

/// Seconds since `t`.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The sum of two allocation counts.
pub fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        allocs: a.allocs + b.allocs,
        reallocs: a.reallocs + b.reallocs,
        deallocs: a.deallocs + b.deallocs,
        bytes: a.bytes + b.bytes,
    }
}
