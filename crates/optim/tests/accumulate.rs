//! Gradient accumulation: micro-batches, their shares over processes, the flat buffer
//! in the store's order, and the mean over the global batch.

use descent_backprop::Backward;
use descent_optim::{Error, FlatGrads, MicroBatches, Optimizer, Sgd, accumulate, accumulate_mean};
use descent_tape::{ParamGradients, ParamGrads, ParamStore, Tape};
use descent_tensor::Tensor;
use std::ops::Range;

/// A 3 -> 4 -> 1 tanh network and `n` samples, all from a small linear congruential
/// stream (values in [-1, 1]).
struct Problem {
    store: ParamStore<f32>,
    x: Vec<f32>,
    y: Vec<f32>,
}

fn stream(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn problem(n: usize) -> Problem {
    let mut store = ParamStore::new();
    store.insert("w1", Tensor::new(&[3, 4], stream(1, 12)).unwrap());
    store.insert("b1", Tensor::new(&[4], stream(2, 4)).unwrap());
    store.insert("w2", Tensor::new(&[4, 1], stream(3, 4)).unwrap());
    Problem {
        store,
        x: stream(4, 3 * n),
        y: stream(5, n),
    }
}

/// The gradients and the loss of `Σ (net(x) - y)²` over the samples `r`.
fn micro(p: &Problem, r: Range<usize>) -> Result<(ParamGrads<f32>, f64), Error> {
    let tape = Tape::new();
    let ids: Vec<_> = p.store.ids().collect();
    let n = r.len();
    let x = tape.constant(Tensor::new(&[n, 3], p.x[3 * r.start..3 * r.end].to_vec()).unwrap());
    let y = tape.constant(Tensor::new(&[n, 1], p.y[r].to_vec()).unwrap());
    let h = (x.matmul(tape.param(&p.store, ids[0])) + tape.param(&p.store, ids[1])).tanh();
    let err = h.matmul(tape.param(&p.store, ids[2])) - y;
    let loss = (err * err).sum();
    let grads = loss.backward();
    Ok((ParamGrads::copy_of(&grads), f64::from(loss.value().item())))
}

#[test]
fn micro_batches_cover_the_batch_with_a_short_last_one() {
    let m = MicroBatches::new(37, 5).unwrap();
    assert_eq!(m.count(), 8);
    let ranges: Vec<_> = m.iter().collect();
    assert_eq!(ranges[0], 0..5);
    assert_eq!(ranges[7], 35..37);
    assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), 37);
    assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
    // One micro-batch larger than the batch: the whole batch.
    assert_eq!(
        MicroBatches::new(3, 8).unwrap().iter().collect::<Vec<_>>(),
        vec![0..3]
    );
}

#[test]
fn shares_are_contiguous_in_order_and_differ_by_at_most_one() {
    for (global, micro) in [(37, 5), (8, 1), (3, 1), (64, 16), (10, 10)] {
        let m = MicroBatches::new(global, micro).unwrap();
        for ranks in 1..=6 {
            let shares: Vec<_> = (0..ranks).map(|r| m.share(r, ranks)).collect();
            assert_eq!(shares[0].start, 0);
            assert_eq!(shares[ranks - 1].end, m.count());
            assert!(shares.windows(2).all(|w| w[0].end == w[1].start));
            let (lo, hi) = shares.iter().fold((usize::MAX, 0), |(lo, hi), s| {
                (lo.min(s.len()), hi.max(s.len()))
            });
            assert!(hi - lo <= 1, "{global}/{micro} over {ranks}: {shares:?}");
        }
    }
    // More processes than micro-batches: the last ones get none.
    let m = MicroBatches::new(3, 1).unwrap();
    assert_eq!(
        (0..5).map(|r| m.share(r, 5)).collect::<Vec<_>>(),
        vec![0..1, 1..2, 2..3, 3..3, 3..3]
    );
}

#[test]
fn zero_sizes_are_refused() {
    for (g, m) in [(0, 4), (4, 0)] {
        let err = MicroBatches::new(g, m).unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}

#[test]
fn the_sum_is_formed_in_micro_batch_order_whatever_the_split() {
    let p = problem(37);
    let m = MicroBatches::new(37, 5).unwrap();
    let (reference, loss) = accumulate(&p.store, m, |r| micro(&p, r)).unwrap();
    // Each process computes its micro-batches' gradients, then adds them, in order,
    // to the running sum the previous process handed on (what descent-mpi does).
    for ranks in 1..=4 {
        let mut running = FlatGrads::zeros_like(&p.store);
        let mut running_loss = 0.0;
        for rank in 0..ranks {
            let local: Vec<_> = m
                .share(rank, ranks)
                .map(|i| micro(&p, m.range(i)).unwrap())
                .collect();
            for (g, l) in &local {
                running.add(g).unwrap();
                running_loss += l;
            }
        }
        let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(running.as_slice()),
            bits(reference.as_slice()),
            "{ranks} ranks"
        );
        assert_eq!(running_loss.to_bits(), loss.to_bits());
    }
    // Pre-summing a share before adding it re-associates the additions: the bits
    // may change (they do here), which is why shares are not pre-summed.
    let mut first = FlatGrads::zeros_like(&p.store);
    for i in 0..4 {
        first.add(&micro(&p, m.range(i)).unwrap().0).unwrap();
    }
    let mut second = FlatGrads::zeros_like(&p.store);
    for i in 4..8 {
        second.add(&micro(&p, m.range(i)).unwrap().0).unwrap();
    }
    first.add_slice(second.as_slice());
    assert_ne!(first.as_slice(), reference.as_slice());
}

#[test]
fn the_mean_matches_one_full_batch_with_an_uneven_last_micro_batch() {
    let p = problem(37);
    let (mean, loss) = accumulate_mean(&p.store, MicroBatches::new(37, 5).unwrap(), |r| {
        micro(&p, r)
    })
    .unwrap();
    let (full, full_loss) = micro(&p, 0..37).unwrap();
    for (i, (id, name, _)) in mean.params().enumerate() {
        let want = full.get(id).unwrap();
        for (a, b) in ParamGradients::entry(&mean, i)
            .1
            .data()
            .iter()
            .zip(want.data())
        {
            let b = b / 37.0;
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{name}: {a} vs {b}"
            );
        }
    }
    assert!((loss - full_loss / 37.0).abs() < 1e-6);
    // One micro-batch of the whole batch: exactly the full gradient times 1/37.
    let (one, _) = accumulate_mean(&p.store, MicroBatches::new(37, 37).unwrap(), |r| {
        micro(&p, r)
    })
    .unwrap();
    let mut scaled = full.clone();
    scaled.scale(1.0 / 37.0);
    assert_eq!(one.to_param_grads(), scaled);
}

#[test]
fn a_step_from_the_flat_buffer_is_a_step_from_owned_gradients() {
    let p = problem(12);
    let (mean, _) = accumulate_mean(&p.store, MicroBatches::new(12, 5).unwrap(), |r| {
        micro(&p, r)
    })
    .unwrap();
    let (mut a, mut b) = (problem(12).store, problem(12).store);
    // The ids of `p.store` are not those of `a`; rebuild the gradients by name.
    let by_name = |s: &ParamStore<f32>| -> ParamGrads<f32> {
        mean.params()
            .enumerate()
            .map(|(i, (_, name, _))| {
                (
                    s.find(name).unwrap(),
                    ParamGradients::entry(&mean, i).1.to_tensor(),
                )
            })
            .collect()
    };
    let ga = by_name(&a);
    let mut flat = FlatGrads::zeros_like(&b);
    flat.add(&by_name(&b)).unwrap();
    Sgd::new(0.1).momentum(0.9).step(&mut a, &ga).unwrap();
    Sgd::new(0.1).momentum(0.9).step(&mut b, &flat).unwrap();
    for ((_, _, va), (_, _, vb)) in a.iter().zip(b.iter()) {
        assert_eq!(va.data(), vb.data());
    }
}

#[test]
fn frozen_parameters_are_left_out_and_strangers_refused() {
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([1.0, 2.0]));
    let f = store.insert("frozen", Tensor::from([5.0]));
    store.set_requires_grad(f, false);
    let mut flat = FlatGrads::zeros_like(&store);
    assert_eq!(flat.len(), 2);
    assert_eq!(flat.count(), 1);
    let bad: ParamGrads<f64> = [(f, Tensor::from([1.0]))].into_iter().collect();
    let err = flat.add(&bad).unwrap_err();
    assert!(
        err.to_string().contains("not a trainable parameter"),
        "{err}"
    );
    let wrong: ParamGrads<f64> = [(w, Tensor::from([1.0, 2.0, 3.0]))].into_iter().collect();
    let err = flat.add(&wrong).unwrap_err();
    assert!(
        matches!(err, Error::Shape { ref name, .. } if name == "w"),
        "{err}"
    );
    assert_eq!(
        flat.as_slice(),
        &[0.0, 0.0],
        "a refused add changes nothing"
    );
}
