//! The same seed gives bit-identical parameters after 100 training steps: run twice,
//! and on rayon pools of 1, 2 and 8 threads (large matrix products split across the
//! pool; per-sample passes run on it).

use descent::backprop::{PerSampleOptions, per_sample_grads};
use descent::nn::{Activation, Mlp, init};
use descent::optim::{Adam, clip_grad_norm};
use descent::prelude::*;
use rand::{Rng, SeedableRng};

/// Trains a 64 -> 256 -> 128 -> 10 ReLU MLP (products of 2^20 multiply-adds and more,
/// so the parallel GEMM split is exercised) for 100 steps of Adam with global-norm
/// clipping on seeded data; returns every parameter's bits.
fn train(threads: usize) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n, d) = (64, 64);
        let x = Tensor::new(
            &[n, d],
            (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        )
        .unwrap();
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let mut store = ParamStore::<f32>::new();
        let mlp = Mlp::new(
            &mut store,
            "net",
            &[d, 256, 128, 10],
            Activation::Relu,
            &mut init::rng(5),
        );
        let mut opt = Adam::new(1e-3);
        let tape = Tape::<f32>::new();
        for _ in 0..100 {
            tape.reset();
            let logits = mlp.forward(&tape, &store, tape.constant(&x));
            let loss = logits.cross_entropy(&labels);
            let mut grads = ParamGrads::from(&loss.backward());
            clip_grad_norm(&mut grads, 1.0).unwrap();
            opt.step(&mut store, &grads).unwrap();
        }
        store
            .iter()
            .flat_map(|(_, _, t)| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            .collect()
    })
}

#[test]
fn a_hundred_training_steps_are_bit_identical_on_1_2_and_8_threads_and_across_runs() {
    let one = train(1);
    assert_eq!(one, train(1), "two runs with the same seed differ");
    assert_eq!(one, train(2), "2 threads differ from 1");
    assert_eq!(one, train(8), "8 threads differ from 1");
}

#[test]
fn per_sample_training_is_bit_identical_on_1_2_and_8_threads() {
    let run = |threads: usize| -> Vec<u64> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let samples: Vec<([f64; 4], usize)> = (0..40)
                .map(|_| {
                    (
                        [(); 4].map(|_| rng.random_range(-1.0..1.0)),
                        rng.random_range(0..3),
                    )
                })
                .collect();
            let mut store = ParamStore::<f64>::new();
            let mlp = Mlp::new(
                &mut store,
                "net",
                &[4, 8, 3],
                Activation::Tanh,
                &mut init::rng(9),
            );
            let mut opt = descent::optim::Sgd::new(0.1);
            let options = PerSampleOptions {
                clip_norm: Some(1.0),
                ..PerSampleOptions::default()
            };
            for _ in 0..100 {
                let out = per_sample_grads(&store, &samples, options, |tape, (x, y)| {
                    let x = tape.constant(Tensor::new(&[1, 4], x.to_vec()).unwrap());
                    mlp.forward(tape, &store, x).cross_entropy(&[*y])
                })
                .unwrap();
                opt.step(&mut store, &out.mean()).unwrap();
            }
            store
                .iter()
                .flat_map(|(_, _, t)| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                .collect()
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(8));
}
