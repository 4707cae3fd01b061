//! `backward_into` reuses a `Gradients`' buffers from step to step, and some rules
//! overwrite a buffer's stale contents instead of zeroing it first (the first product
//! to reach an operand of `matmul_t`). Whatever the earlier steps left behind, every
//! gradient must equal a fresh `backward`'s bit for bit, and agree with the same
//! program written with `matmul` and `transpose` (other rules, which always add).
//! Products large enough to compute both gradients side by side on two threads must
//! give the bits that one thread gives.

use descent_backprop::{Backward, Gradients, backward_into};
use descent_tape::Tape;
use descent_tensor::Tensor;

fn tensor(shape: &[usize], seed: usize, scale: f64) -> Tensor<f64> {
    let n = shape.iter().product();
    Tensor::new(
        shape,
        (0..n)
            .map(|i| ((i + 7 * seed) as f64 * 0.37).sin() * scale)
            .collect(),
    )
    .unwrap()
}

/// Runs the programs for `x: [rows, k]`, `w, v: [n, k]`, checking each step's
/// gradients against a fresh pass and the `matmul` form; returns their bits.
fn run_programs(rows: usize, k: usize, n: usize) -> Vec<Vec<u64>> {
    let tape = Tape::<f64>::new();
    let mut grads = Gradients::empty();
    let mut all = Vec::new();
    // Large stale values first, then ordinary ones; programs where an operand is
    // reached once by a product, twice by products, and by a product and an add.
    for (step, scale) in [(0, 1e6), (1, 1.0), (2, -3.0), (3, 1e-3)] {
        for program in 0..3 {
            tape.reset();
            let x = tape.var(tensor(&[rows, k], step, scale));
            let w = tape.var(tensor(&[n, k], step + 1, 1.0));
            let v = tape.var(tensor(&[n, k], step + 2, 1.0));
            let (y, y_ref) = match program {
                0 => (x.matmul_t(w), x.matmul(w.transpose(0, 1))),
                1 => (
                    x.matmul_t(w) + x.matmul_t(v),
                    x.matmul(w.transpose(0, 1)) + x.matmul(v.transpose(0, 1)),
                ),
                _ => (
                    x.matmul_t(x) + (x * 2.0).matmul_t(w).sum(),
                    x.matmul(x.transpose(0, 1)) + (x * 2.0).matmul(w.transpose(0, 1)).sum(),
                ),
            };
            let loss = (y * y).sum();
            backward_into(loss, &mut grads).unwrap();
            let fresh = loss.backward();
            let other = (y_ref * y_ref).sum().backward();
            for (name, var) in [("x", x), ("w", w), ("v", v)] {
                let what = format!("step {step}, program {program}, d/d{name}");
                let bits = |t: &[f64]| t.iter().map(|g| g.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(grads.wrt(var).data()),
                    bits(fresh.wrt(var).data()),
                    "{what}"
                );
                let scale = other
                    .wrt(var)
                    .data()
                    .iter()
                    .fold(1.0f64, |m, g| m.max(g.abs()));
                for (a, b) in grads.wrt(var).data().iter().zip(other.wrt(var).data()) {
                    assert!((a - b).abs() <= 1e-12 * scale, "{what}: {a} vs {b}");
                }
                all.push(bits(grads.wrt(var).data()));
            }
        }
    }
    all
}

#[test]
fn reused_buffers_give_fresh_gradients() {
    run_programs(5, 4, 3);
}

#[test]
fn side_by_side_gradient_products_match_one_thread() {
    // 64·128·160 multiply-adds per product: above the size at which both gradients of
    // a product run at the same time, when there are two threads.
    let on = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_programs(64, 128, 160))
    };
    let one = on(1);
    assert_eq!(one.len(), 4 * 3 * 3);
    assert!(one == on(2), "two threads changed some gradient's bits");
}
