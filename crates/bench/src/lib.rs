//! Benchmarks of descent on the reference workloads of `shared/docs/WORKLOADS.md`:
//! W1 (per-step overhead of a tiny graph) and W6 (cost of recording and walking one
//! scalar node), each beside its hand-written "limit" in plain Rust; W2 (micrograd's
//! moons demo, on scalar nodes and on tensors); W3 (tensor MLP training, beside its
//! GEMM-peak limit); W4 (per-sample gradients in parallel, one DP-SGD step), whose
//! averaged clipped gradient can be dumped for the peers' `compare_w4.py`; and W5 (a
//! 200-step RNN with global-norm clipping).
//!
//! The binary (`src/main.rs`, which parses its flags and dispatches to one harness per
//! workload in `src/harness/`) prints one JSON line per workload with the keys the
//! peer scripts (`shared/peers/torch_workloads.py`) print, plus descent's own; the
//! criterion bench (`benches/tape.rs`) times a 10,000-op chain and its limit. This
//! library holds the models, data and limits the harnesses time.

pub mod alloc_count;
pub mod ceiling;
pub mod npz;
pub mod placement;
pub mod rss;
pub mod stats;
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

/// `Σ (i + 1) · bits(a[i])`, wrapping: a checksum of an array's exact bits in which any
/// changed bit or moved element shows. The workloads' tests compare their inputs with
/// the same key computed over the peers' arrays (numpy), to the bit.
///
/// ```
/// use descent_bench::peer_key;
/// assert_eq!(peer_key(&[1.0f32, 0.0]), 1.0f32.to_bits() as u64);
/// assert_ne!(peer_key(&[0.0f64, 1.0]), peer_key(&[1.0f64, 0.0]));
/// ```
pub fn peer_key<T: descent::Float>(a: &[T]) -> u64 {
    a.iter().enumerate().fold(0u64, |k, (i, &x)| {
        // `as_f64` is exact, so narrowing back to `f32` gives the same bits.
        let bits = if T::NAME == "f32" {
            u64::from((x.as_f64() as f32).to_bits())
        } else {
            x.as_f64().to_bits()
        };
        k.wrapping_add((i as u64 + 1).wrapping_mul(bits))
    })
}
