//! Second-order quantities through the per-sample pass: a loss that holds a recorded
//! gradient (a gradient-norm penalty), differentiated once more per sample, checked
//! against its derivative worked out by hand.

use descent_backprop::{PerSampleOptions, grad, per_sample_grads};
use descent_tape::ParamStore;
use descent_tensor::Tensor;

type Sample = ([f64; 3], f64);

fn samples() -> Vec<Sample> {
    (0..20)
        .map(|i| {
            let t = i as f64;
            (
                [0.3 * t - 2.0, (0.7 * t).sin(), 1.0 - 0.05 * t],
                0.1 * t - 0.5,
            )
        })
        .collect()
}

const W: [f64; 3] = [0.5, -0.25, 1.5];
const LAMBDA: f64 = 0.3;

fn residual(x: &[f64; 3]) -> f64 {
    W.iter().zip(x).map(|(w, x)| w * x).sum()
}

#[test]
fn a_per_sample_gradient_norm_penalty_has_its_derivative() {
    // lᵢ = rᵢ² with rᵢ = w·xᵢ − yᵢ: ∇_w lᵢ = 2rᵢxᵢ, so the penalty ‖∇_w lᵢ‖² = 4rᵢ²‖xᵢ‖²,
    // and d/dw (lᵢ + λ·4rᵢ²‖xᵢ‖²) = 2rᵢxᵢ (1 + 4λ‖xᵢ‖²).
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from(W));
    let data = samples();
    let options = PerSampleOptions {
        keep_per_sample: true,
        ..PerSampleOptions::default()
    };
    let out = per_sample_grads(&store, &data, options, |tape, (x, y)| {
        let wv = tape.param(&store, w);
        let r = (wv * tape.constant(Tensor::from(*x))).sum() - *y;
        let l = r * r;
        let g = grad(l, &[wv]).expect("a differentiable loss")[0];
        l + (g * g).sum() * LAMBDA
    })
    .unwrap();
    let per = out.per_sample.as_ref().unwrap();
    let mut want_sum = [0.0; 3];
    for (i, (x, y)) in data.iter().enumerate() {
        let r = residual(x) - y;
        let xx: f64 = x.iter().map(|v| v * v).sum();
        let got = per[i].get(w).unwrap();
        for j in 0..3 {
            let want = 2.0 * r * x[j] * (1.0 + 4.0 * LAMBDA * xx);
            want_sum[j] += want;
            assert!(
                (got.data()[j] - want).abs() <= 1e-12 * want.abs().max(1.0),
                "sample {i}, w[{j}]: {} vs {want}",
                got.data()[j]
            );
        }
        let loss = r * r + LAMBDA * 4.0 * r * r * xx;
        assert!((out.losses[i] - loss).abs() <= 1e-12 * loss.max(1.0));
    }
    for (got, want) in out.sum.get(w).unwrap().data().iter().zip(want_sum) {
        assert!((got - want).abs() <= 1e-11 * want.abs().max(1.0));
    }
}

#[test]
fn an_input_gradient_penalty_per_sample() {
    // lᵢ = tanh(w·xᵢ) with a penalty λ‖∇_x lᵢ‖² = λ(1 − t²)²‖w‖² (t = tanh(w·xᵢ)):
    // d/dw = (1 − t²)xᵢ + λ[2(1 − t²)²w − 4t(1 − t²)²‖w‖² xᵢ].
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from(W));
    let data = samples();
    let options = PerSampleOptions {
        keep_per_sample: true,
        ..PerSampleOptions::default()
    };
    let out = per_sample_grads(&store, &data, options, |tape, (x, _)| {
        let wv = tape.param(&store, w);
        let xv = tape.var(Tensor::from(*x));
        let l = (wv * xv).sum().tanh();
        let gx = grad(l, &[xv]).expect("a differentiable loss")[0];
        l + (gx * gx).sum() * LAMBDA
    })
    .unwrap();
    let ww: f64 = W.iter().map(|v| v * v).sum();
    for (i, (x, _)) in data.iter().enumerate() {
        let t = residual(x).tanh();
        let s = 1.0 - t * t;
        let got = out.per_sample.as_ref().unwrap()[i].get(w).unwrap();
        for j in 0..3 {
            let want = s * x[j] + LAMBDA * (2.0 * s * s * W[j] - 4.0 * t * s * s * ww * x[j]);
            assert!(
                (got.data()[j] - want).abs() <= 1e-12 * want.abs().max(1.0),
                "sample {i}, w[{j}]: {} vs {want}",
                got.data()[j]
            );
        }
    }
}
