//! Self-attention as a transformer block runs it, f32, batch 8, 64 tokens, width 128,
//! 4 heads (head width 32), causal mask:
//!
//! - `mha/forward`: `MultiheadAttention` recorded on a reset tape;
//! - `mha/forward_backward`: the same, then `backward_into` a reused gradient store
//!   from the sum of the output;
//! - `encoder/forward_backward`: a `TransformerEncoderLayer` (attention, a 128 → 512 →
//!   128 ReLU MLP, two LayerNorms, residuals, post-norm), forward and backward.
//!
//! `crates/bench/attention_torch.py` times PyTorch eager's `nn.MultiheadAttention` and
//! `nn.TransformerEncoderLayer` on the same shapes, for the same three cases.
//!
//! ```text
//! taskset -c 0 env RAYON_NUM_THREADS=1 cargo bench -p descent-bench --bench attention
//! taskset -c 0 python3 crates/bench/attention_torch.py --threads 1
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use descent::backprop::backward_into;
use descent::nn::attention::{AttentionMask, MultiheadAttention};
use descent::nn::transformer::TransformerEncoderLayer;
use descent::nn::{Ctx, Module, init};
use descent::prelude::*;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 8;
const TOKENS: usize = 64;
const WIDTH: usize = 128;
const HEADS: usize = 4;
const FEED_FORWARD: usize = 512;

fn bench(c: &mut Criterion) {
    let x = Tensor::<f32>::from_fn(&[BATCH, TOKENS, WIDTH], |i| {
        ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 2.0
    });
    let mut store = ParamStore::<f32>::new();
    let rng = &mut init::rng(7);
    let mha = MultiheadAttention::new(&mut store, "attn", WIDTH, HEADS, true, rng);
    let encoder = TransformerEncoderLayer::new(&mut store, "enc", WIDTH, HEADS, FEED_FORWARD, rng)
        .mask(AttentionMask::causal());
    let causal = AttentionMask::causal();
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty();

    let mut g = c.benchmark_group("mha");
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    g.bench_function("forward", |b| {
        b.iter(|| {
            tape.reset();
            let h = tape.constant(&x);
            let out = mha.forward(&tape, &store, h, h, h, &causal);
            black_box(out.output.value());
        })
    });
    g.bench_function("forward_backward", |b| {
        b.iter(|| {
            tape.reset();
            let h = tape.var(&x);
            let out = mha.forward(&tape, &store, h, h, h, &causal);
            backward_into(out.output.sum(), &mut grads).expect("a scalar loss");
            black_box(grads.wrt(h));
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encoder");
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    g.bench_function("forward_backward", |b| {
        b.iter(|| {
            tape.reset();
            let h = tape.var(&x);
            let y = encoder.call(&mut Ctx::new(&tape, &mut store), h);
            backward_into(y.sum(), &mut grads).expect("a scalar loss");
            black_box(grads.wrt(h));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
