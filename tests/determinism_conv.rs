//! Convolution's values and gradients are the same bits on 1, 2 and 3 threads: samples
//! are split across rayon's pool, and the weight gradient's sum over samples is taken
//! in a split fixed by the batch size (`descent::tensor::kernels::WEIGHT_CHUNKS` runs),
//! never by the thread count. The shapes are large enough to take the parallel path
//! (over 2^20 multiply-adds a batch) and the batch (13) does not divide evenly.

use descent::prelude::*;

fn run<T: Float>(threads: usize) -> Vec<u64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let tape = Tape::<T>::new();
        let value = |shape: &[usize], seed: usize| {
            Tensor::from_fn(shape, |i| {
                T::from_f64(((7919 * i + 104_729 * seed) % 2003) as f64 / 1001.5 - 1.0)
            })
        };
        let x = tape.var(value(&[13, 4, 32, 24], 1));
        let w = tape.var(value(&[8, 2, 3, 3], 2));
        let b = tape.var(value(&[8], 3));
        let o = Conv2dOptions::new().padding(1).groups(2);
        let y = x.conv2d(w, Some(b), o);
        let g = tape.constant(value(y.shape().as_slice(), 7));
        let grads = (y * g).sum().backward();
        let mut bits: Vec<u64> = y
            .value()
            .data()
            .iter()
            .map(|v| v.as_f64().to_bits())
            .collect();
        for v in [x, w, b] {
            bits.extend(grads.wrt(v).data().iter().map(|v| v.as_f64().to_bits()));
        }
        bits
    })
}

#[test]
fn convolution_is_bit_identical_on_1_2_and_3_threads() {
    let one = run::<f32>(1);
    for threads in [2, 3] {
        assert!(
            one == run::<f32>(threads),
            "f32 on {threads} threads differs from 1"
        );
    }
    let one = run::<f64>(1);
    for threads in [2, 3] {
        assert!(
            one == run::<f64>(threads),
            "f64 on {threads} threads differs from 1"
        );
    }
}
