//! `max_pool2d` recorded where no gradient can flow (under `no_grad`, or of an input
//! that wants none) finds and keeps no positions of its maxima: its values must still
//! be those of the recorded op, and a recorded pooling beside it must still
//! differentiate.

use descent::prelude::*;

fn input() -> Tensor<f64> {
    Tensor::from_fn(&[2, 3, 5, 6], |i| ((7919 * i) % 2003) as f64 / 1001.5 - 1.0)
}

#[test]
fn values_match_with_and_without_positions() {
    let tape = Tape::<f64>::new();
    let o = Pool2dOptions::new(2).stride(2).padding(1);
    let x = tape.var(input());
    let recorded = x.max_pool2d(o);
    let off = tape.no_grad(|| x.max_pool2d(o));
    let constant = tape.constant(input()).max_pool2d(o);
    assert!(recorded.requires_grad());
    assert!(!off.requires_grad() && !constant.requires_grad());
    assert_eq!(off.value().data(), recorded.value().data());
    assert_eq!(constant.value().data(), recorded.value().data());
    // The recorded one still sends each window's gradient to its maximum: one 1 per
    // window (15 windows of 3 × 4 per plane, 6 planes), the rest 0.
    let loss = (recorded + off + constant).sum();
    let g = loss.backward();
    let gx = g.wrt(x);
    assert_eq!(gx.data().iter().sum::<f64>(), 6.0 * 12.0);
    assert!(gx.data().iter().all(|&v| v == 0.0 || v == 1.0));
}
