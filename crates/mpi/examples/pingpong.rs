//! A ping-pong between ranks 0 and 1: the per-message cost `α` (half the round trip
//! of an 8-byte message) and the per-byte cost `β` (from the half round trips of
//! large messages), the two numbers of the cost model in `docs/guide/distributed.md`.
//!
//! ```text
//! cargo build --release --manifest-path crates/mpi/Cargo.toml --example pingpong
//! mpirun -np 2 crates/mpi/target/release/examples/pingpong
//! ```
//!
//! (Blocking sends and receives: this measures the link, not descent's bounded waits.)

use mpi::traits::*;
use std::error::Error;
use std::time::Instant;

fn main() -> Result<(), Box<dyn Error>> {
    let universe = mpi::initialize().ok_or("MPI is initialised already")?;
    let world = universe.world();
    if world.size() != 2 {
        return Err("run on exactly 2 ranks".into());
    }
    let rank = world.rank();
    let other = world.process_at_rank(1 - rank);
    for (bytes, rounds) in [
        (8usize, 2000usize),
        (1 << 16, 500),
        (1 << 20, 100),
        (1 << 22, 40),
        (2_143_272, 60),
    ] {
        let mut buf = vec![0u8; bytes];
        let mut halves = Vec::new();
        for round in 0..rounds + 10 {
            world.barrier();
            let t = Instant::now();
            if rank == 0 {
                other.send(&buf[..]);
                other.receive_into(&mut buf[..]);
            } else {
                other.receive_into(&mut buf[..]);
                other.send(&buf[..]);
            }
            if round >= 10 {
                halves.push(t.elapsed().as_secs_f64() / 2.0);
            }
        }
        halves.sort_by(f64::total_cmp);
        if rank == 0 {
            let half = halves[halves.len() / 2];
            println!(
                "{{\"bytes\": {bytes}, \"half_round_trip_us\": {:.2}, \"bandwidth_GBps\": {:.3}}}",
                half * 1e6,
                bytes as f64 / half / 1e9
            );
        }
    }
    Ok(())
}
