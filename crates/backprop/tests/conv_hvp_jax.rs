//! A tiny CNN's Hessian-vector product against JAX: conv2d (stride, padding,
//! dilation, groups, bias), `tanh`, avg_pool2d (padding counted), conv1d (stride,
//! padding, dilation, groups, bias), a weighted `tanh` sum and a square, every input a
//! variable. `tests/oracle/conv_hvp.py` computes the loss, the gradient and `H v`
//! (`jax.jvp(jax.grad(L))`) in float64 and writes `tests/oracle/conv_hvp.json`, which
//! this test reads (inputs included); both of descent's compositions must agree within
//! `1e-10 · max(1, |JAX|)`.

use descent_backprop::{HvpMode, backward, hvp_with};
use descent_tape::{Conv1dOptions, Conv2dOptions, Pool2dOptions, Tape, Var};
use descent_tensor::Tensor;

const FIXTURE: &str = include_str!("oracle/conv_hvp.json");
const TOL: f64 = 1e-10;

/// The numbers of `key` (one key per line in the fixture, as the script writes it).
fn numbers(key: &str) -> Vec<f64> {
    let prefix = format!("\"{key}\": ");
    let line = FIXTURE
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the fixture has no {key:?}"));
    let body = line.trim_end_matches(',');
    let body = body
        .strip_prefix('[')
        .map_or(body, |b| b.trim_end_matches(']'));
    body.split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("{key}: {s:?}: {e}"))
        })
        .collect()
}

/// The values of `key` with the shape of `shape_of` (an input's direction has the
/// input's shape).
fn shaped(key: &str, shape_of: &str) -> Tensor<f64> {
    let shape: Vec<usize> = numbers(&format!("{shape_of}_shape"))
        .iter()
        .map(|&d| d as usize)
        .collect();
    Tensor::new(&shape, numbers(key)).unwrap()
}

fn tensor(key: &str) -> Tensor<f64> {
    shaped(key, key)
}

const NAMES: [&str; 5] = ["x", "w1", "b1", "w2", "b2"];

/// The loss of `conv_hvp.py`, recorded.
fn loss<'t>(tape: &'t Tape<f64>, v: &[Var<'t, f64>]) -> Var<'t, f64> {
    let o1 = Conv2dOptions::new()
        .stride([2, 1])
        .padding([1, 2])
        .dilation([1, 2])
        .groups(2);
    let h = v[0].conv2d(v[1], Some(v[2]), o1);
    let p = h.tanh().avg_pool2d(Pool2dOptions::new(2).padding(1));
    let s = p.shape();
    let p = p.reshape(&[s[0], s[1], s[2] * s[3]]);
    let o2 = Conv1dOptions::new()
        .stride(2)
        .padding(1)
        .dilation(2)
        .groups(3);
    let q = p.conv1d(v[3], Some(v[4]), o2);
    let c = tape.constant(tensor("c"));
    (c * q.tanh()).sum() + (q * q).sum() * 0.1
}

fn close(what: &str, got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst: f64 = 0.0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(
            err <= TOL,
            "{what}[{i}]: descent {g:e}, JAX {w:e}, error {err:e}"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn cnn_hessian_vector_product_matches_jax() {
    let inputs: Vec<Tensor<f64>> = NAMES.iter().map(|k| tensor(k)).collect();
    let dirs: Vec<Tensor<f64>> = NAMES
        .iter()
        .map(|k| shaped(&format!("{k}_dir"), k))
        .collect();
    let mut worst: f64 = 0.0;
    {
        let tape = Tape::new();
        let vars: Vec<Var<'_, f64>> = inputs.iter().map(|t| tape.var(t)).collect();
        let l = loss(&tape, &vars);
        worst = worst.max(close("loss", &[l.item()], &numbers("loss")));
        let g = backward(l).unwrap();
        for (k, v) in NAMES.iter().zip(&vars) {
            let got = g.wrt(*v).to_tensor();
            worst = worst.max(close(
                &format!("gradient {k}"),
                got.data(),
                &numbers(&format!("{k}_grad")),
            ));
        }
    }
    for mode in [HvpMode::ForwardOverReverse, HvpMode::ReverseOverReverse] {
        let tape = Tape::new();
        let vars: Vec<Var<'_, f64>> = inputs.iter().map(|t| tape.var(t)).collect();
        let l = loss(&tape, &vars);
        let hv = hvp_with(l, &vars, &dirs, mode).unwrap();
        for (k, h) in NAMES.iter().zip(&hv) {
            let want = numbers(&format!("{k}_hvp"));
            assert!(
                want.iter().any(|w| w.abs() > 1e-3),
                "{k}: a zero H v tests nothing"
            );
            worst = worst.max(close(&format!("H v ({mode:?}) {k}"), h.data(), &want));
        }
    }
    eprintln!("conv H v against JAX: largest relative error {worst:e}");
}
