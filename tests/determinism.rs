//! The same seed gives bit-identical parameters after a dozen training steps: run twice,
//! and on rayon pools of 1, 2 and 8 threads (large matrix products split across the
//! pool; per-sample passes run on it).

use descent::backprop::{PerSampleOptions, per_sample_grads};
use descent::nn::{Activation, Mlp, init};
use descent::optim::{Adam, clip_grad_norm};
use descent::prelude::*;
use rand::{Rng, SeedableRng};

/// `f` run on a fresh pool of `threads` threads.
fn on_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// The bits of `loss`, then of each node's value and gradient, in order.
fn value_and_gradient_bits<T: Float>(
    loss: Var<'_, T>,
    grads: &Gradients<T>,
    nodes: &[Var<'_, T>],
) -> Vec<u64> {
    let mut bits = vec![loss.item().as_f64().to_bits()];
    for v in nodes {
        bits.extend(v.value().data().iter().map(|x| x.as_f64().to_bits()));
        bits.extend(grads.wrt(*v).data().iter().map(|x| x.as_f64().to_bits()));
    }
    bits
}

/// Widths of the MLP and the batch: the two hidden layers' products (`x·Wᵀ` forward,
/// `gᵀ·x` and `g·W` backward) are of at least `PARALLEL_GEMM_VOLUME` multiply-adds, so
/// the pool splits them.
const WIDTHS: [usize; 4] = [64, 512, 128, 10];
const BATCH: usize = 128;
const STEPS: usize = 12;

/// Trains a 64 -> 512 -> 128 -> 10 ReLU MLP for a dozen steps of Adam with global-norm
/// clipping on seeded data; returns every parameter's bits.
fn train(threads: usize) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n, d) = (BATCH, WIDTHS[0]);
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
            &WIDTHS,
            Activation::Relu,
            &mut init::rng(5),
        );
        let mut opt = Adam::new(1e-3);
        let tape = Tape::<f32>::new();
        for _ in 0..STEPS {
            tape.reset();
            let logits = mlp.forward(&tape, &store, tape.constant(&x));
            let loss = logits.cross_entropy(&labels);
            let mut grads = loss.backward();
            clip_grad_norm(&store, &mut grads, 1.0).unwrap();
            opt.step(&mut store, &grads).unwrap();
        }
        store
            .iter()
            .flat_map(|(_, _, t)| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            .collect()
    })
}

#[test]
fn training_steps_are_bit_identical_on_1_2_and_8_threads_and_across_runs() {
    // Both hidden layers' products are large enough to be split; were the threshold
    // raised past them, this test would no longer compare split products.
    for layer in 0..2 {
        let volume = BATCH * WIDTHS[layer] * WIDTHS[layer + 1];
        assert!(volume >= descent::tensor::kernels::PARALLEL_GEMM_VOLUME);
    }
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

/// Forward values and every gradient of a graph of large element-wise, softmax and
/// cross-entropy nodes (at least `descent::tensor::PARALLEL_MIN` elements, so the
/// kernels split them into blocks across the pool), in `f32` and `f64`: the same bits
/// on pools of 1, 2 and 3 threads. A block that read or wrote at the wrong offset
/// would differ from the one-thread run, which computes the whole tensor at once.
#[test]
fn large_element_wise_and_softmax_nodes_are_bit_identical_on_1_2_and_3_threads() {
    fn run<T: Float>(threads: usize) -> Vec<u64> {
        on_pool(threads, || {
            // 300 rows of 1,001: not a multiple of any block or vector width.
            let (rows, cols) = (300, 1001);
            assert!(rows * cols >= descent::tensor::PARALLEL_MIN);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let mut draw = |n: usize| -> Vec<T> {
                (0..n)
                    .map(|_| T::from_f64(rng.random_range(-4.0..4.0)))
                    .collect()
            };
            let x = Tensor::new(&[rows, cols], draw(rows * cols)).unwrap();
            let w = Tensor::new(&[rows, cols], draw(rows * cols)).unwrap();
            let bias = Tensor::new(&[cols], draw(cols)).unwrap();
            let labels: Vec<usize> = (0..rows).map(|r| (r * 7) % cols).collect();
            let tape = Tape::<T>::new();
            let (xv, wv, bv) = (tape.var(&x), tape.var(&w), tape.var(&bias));
            let (half, eighth, small) = (T::from_f64(0.5), T::from_f64(0.125), T::from_f64(1e-3));
            let h = (xv * wv + bv).tanh() - xv.sigmoid() * half + xv.gelu().exp() * eighth;
            let p = h.softmax(-1) * wv + h.log_softmax(-1) * small;
            let loss = p.sum() + h.cross_entropy(&labels) + (h * h).mean();
            let grads = loss.backward();
            value_and_gradient_bits(loss, &grads, &[xv, wv, bv, h, p])
        })
    }
    for check in [run::<f32> as fn(usize) -> Vec<u64>, run::<f64>] {
        let one = check(1);
        assert!(one.iter().all(|&b| f64::from_bits(b).is_finite()));
        assert_eq!(one, check(2), "2 threads");
        assert_eq!(one, check(3), "3 threads");
    }
}

/// Nodes between the two split thresholds: at least `PARALLEL_MIN_ON_POOL` elements'
/// worth (dear functions counted at `TRANSCENDENTAL_COST`) but fewer than
/// `PARALLEL_MIN` elements, which a thread of the pool splits and a thread outside it
/// does not. An LSTM cell with rows of `4·111` gates, `exp` and `tanh`, a sum of two
/// and their gradients, in `f32` and `f64`: the same bits on pools of 2 and 3 threads
/// (split, in blocks that are not a multiple of the row) as on one thread and outside
/// any pool (whole).
#[test]
fn element_wise_nodes_split_on_the_pool_are_bit_identical_to_whole_ones() {
    use descent::tensor::{PARALLEL_MIN, PARALLEL_MIN_ON_POOL, TRANSCENDENTAL_COST};
    let (rows, hidden) = (37, 111);
    let (gates, plain) = (rows * 4 * hidden, 70_001);
    assert!(gates * TRANSCENDENTAL_COST >= PARALLEL_MIN_ON_POOL && gates < PARALLEL_MIN);
    assert!((PARALLEL_MIN_ON_POOL..PARALLEL_MIN).contains(&plain));
    fn run<T: Float>(rows: usize, hidden: usize, plain: usize) -> Vec<u64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut draw = |shape: &[usize]| {
            let n = shape.iter().product();
            let data = (0..n).map(|_| T::from_f64(rng.random_range(-3.0..3.0)));
            Tensor::new(shape, data.collect()).unwrap()
        };
        let (pre, c0, a, b) = (
            draw(&[rows, 4 * hidden]),
            draw(&[rows, hidden]),
            draw(&[plain]),
            draw(&[plain]),
        );
        let tape = Tape::<T>::new();
        let (pv, cv, av, bv) = (tape.var(&pre), tape.var(&c0), tape.var(&a), tape.var(&b));
        let g = pv.lstm_gates();
        let c = g.lstm_cell(cv);
        let h = g.lstm_hidden(c);
        let e = (av + bv).tanh() + (av * T::from_f64(0.25)).exp();
        let loss = (h * h).sum() + c.sum() + (e * e).mean() + pv.tanh().sum();
        let grads = loss.backward();
        value_and_gradient_bits(loss, &grads, &[pv, cv, av, bv, g, c, h, e])
    }
    fn check<T: Float>(rows: usize, hidden: usize, plain: usize) {
        let outside = run::<T>(rows, hidden, plain);
        assert!(outside.iter().all(|&b| f64::from_bits(b).is_finite()));
        for threads in 1..=3 {
            let split = on_pool(threads, || run::<T>(rows, hidden, plain));
            assert_eq!(outside, split, "{threads} threads");
        }
    }
    check::<f32>(rows, hidden, plain);
    check::<f64>(rows, hidden, plain);
}

/// Batched products whose matrices are each too small to split but together worth
/// splitting, so that they run side by side on the pool (21 products of `64·64·64`
/// multiply-adds: shares of 7 or 11 products): the same values and gradients, bit for
/// bit, on pools of 1, 2 and 3 threads and outside any pool, in `f32` and `f64`. One
/// operand's batch axes broadcast, so its gradient, summed over the batch, stays in
/// order on one thread while the other's runs side by side.
#[test]
fn batched_products_run_side_by_side_are_bit_identical_to_one_thread() {
    use descent::tensor::kernels::PARALLEL_GEMM_VOLUME;
    let (m, k, n) = (64, 64, 64);
    assert!(7 * 3 * m * k * n >= PARALLEL_GEMM_VOLUME && m * k * n < PARALLEL_GEMM_VOLUME / 4);
    fn run<T: Float>(m: usize, k: usize, n: usize) -> Vec<u64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut draw = |shape: &[usize]| {
            let count = shape.iter().product();
            let data = (0..count).map(|_| T::from_f64(rng.random_range(-1.0..1.0)));
            Tensor::new(shape, data.collect()).unwrap()
        };
        let (a, b, shared) = (
            draw(&[7, 3, m, k]),
            draw(&[7, 3, k, n]),
            draw(&[1, 3, m, k]),
        );
        let tape = Tape::<T>::new();
        let (av, bv, sv) = (tape.var(&a), tape.var(&b), tape.var(&shared));
        let own = av.matmul(bv);
        let broadcast = sv.matmul(bv);
        let loss = (own * broadcast).sum() + own.tanh().sum();
        let grads = loss.backward();
        value_and_gradient_bits(loss, &grads, &[av, bv, sv, own, broadcast])
    }
    fn check<T: Float>(m: usize, k: usize, n: usize) {
        let one = on_pool(1, || run::<T>(m, k, n));
        assert!(one.iter().all(|&b| f64::from_bits(b).is_finite()));
        assert_eq!(one, run::<T>(m, k, n), "outside the pool");
        for threads in 2..=3 {
            assert_eq!(
                one,
                on_pool(threads, || run::<T>(m, k, n)),
                "{threads} threads"
            );
        }
    }
    check::<f32>(m, k, n);
    check::<f64>(m, k, n);
}
