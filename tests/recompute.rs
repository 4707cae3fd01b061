//! Activation checkpointing (`descent::backprop::recompute`): a segment recorded as one
//! node and replayed in backward. Its gradients against finite differences and
//! against the same program recorded plainly (LSTM steps, nested segments, per-sample
//! passes), its second order and tangents, the same bits for any thread count, the
//! errors, and the backward pass as a snapshot.

use descent::backprop::{
    GradCheckOptions, HvpMode, PerSampleOptions, RenderOptions, grad, gradcheck, hvp_with, jvp,
    per_sample_grads, recompute, render,
};
use descent::prelude::*;
use descent::tape::{Error as TapeError, ParamStore};

type Result<T> = std::result::Result<T, TapeError>;

/// Deterministic values in (-1, 1).
fn values(seed: u64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let x = (seed * 7919 + i as u64 * 104_729) % 1000;
            x as f64 / 500.0 - 1.0
        })
        .collect()
}

fn tensor(seed: u64, shape: &[usize]) -> Tensor<f64> {
    let n = shape.iter().product();
    Tensor::new(shape, values(seed, n)).unwrap()
}

/// One LSTM step on the state `[h | c]` (`[B, 2H]`), PyTorch's gate order: the
/// state is one tensor so that a segment has one output.
fn lstm_step<'t>(
    x: Var<'t, f64>,
    state: Var<'t, f64>,
    w_ih: Var<'t, f64>,
    w_hh: Var<'t, f64>,
    b: Var<'t, f64>,
) -> Result<Var<'t, f64>> {
    let hidden = w_hh.shape()[1];
    let h = state.try_slice(1, 0, hidden)?;
    let c = state.try_slice(1, hidden, 2 * hidden)?;
    let gates = x
        .try_matmul_t(w_ih)?
        .try_add(h.try_matmul_t(w_hh)?)?
        .try_add(b)?;
    let gate = |k: usize| gates.try_slice(1, k * hidden, (k + 1) * hidden);
    let (i, f, g, o) = (
        gate(0)?.try_sigmoid()?,
        gate(1)?.try_sigmoid()?,
        gate(2)?.try_tanh()?,
        gate(3)?.try_sigmoid()?,
    );
    let c = f.try_mul(c)?.try_add(i.try_mul(g)?)?;
    let h = o.try_mul(c.try_tanh()?)?;
    Var::try_concat(&[h, c], 1)
}

const B: usize = 2;
const I: usize = 3;
const H: usize = 4;
const STEPS: usize = 12;

struct Lstm {
    xs: std::rc::Rc<Vec<Tensor<f64>>>,
    params: [Tensor<f64>; 3],
    state0: Tensor<f64>,
}

impl Lstm {
    fn new() -> Self {
        Lstm {
            xs: std::rc::Rc::new(
                (0..STEPS)
                    .map(|t| tensor(100 + t as u64, &[B, I]))
                    .collect(),
            ),
            params: [
                tensor(1, &[4 * H, I]).map(|v| v * 0.5),
                tensor(2, &[4 * H, H]).map(|v| v * 0.5),
                tensor(3, &[4 * H]).map(|v| v * 0.1),
            ],
            state0: tensor(4, &[B, 2 * H]).map(|v| v * 0.3),
        }
    }

    /// The loss `Σ w ⊙ h_T` over all steps, each run of `segment` steps recorded
    /// through `recompute` (`None`: plainly).
    fn loss<'t>(
        &self,
        tape: &'t Tape<f64>,
        leaves: &[Var<'t, f64>],
        segment: Option<usize>,
    ) -> Var<'t, f64> {
        let (mut state, w_ih, w_hh, b) = (leaves[0], leaves[1], leaves[2], leaves[3]);
        let mut t = 0;
        while t < STEPS {
            match segment {
                None => {
                    state = lstm_step(tape.constant(&self.xs[t]), state, w_ih, w_hh, b).unwrap();
                    t += 1;
                }
                Some(k) => {
                    let end = (t + k).min(STEPS);
                    let xs = std::rc::Rc::clone(&self.xs);
                    state = recompute(&[state, w_ih, w_hh, b], move |tape, v| {
                        let mut s = v[0];
                        for x in &xs[t..end] {
                            s = lstm_step(tape.constant(x), s, v[1], v[2], v[3])?;
                        }
                        Ok(s)
                    })
                    .unwrap();
                    t = end;
                }
            }
        }
        let w = tape.constant(tensor(9, &[B, 2 * H]));
        (state * w).sum()
    }

    fn leaves<'t>(&self, tape: &'t Tape<f64>) -> Vec<Var<'t, f64>> {
        std::iter::once(&self.state0)
            .chain(&self.params)
            .map(|t| tape.var(t))
            .collect()
    }
}

fn grads_of(lstm: &Lstm, segment: Option<usize>) -> (f64, Vec<Vec<f64>>) {
    let tape = Tape::<f64>::new();
    let leaves = lstm.leaves(&tape);
    let loss = lstm.loss(&tape, &leaves, segment);
    let g = loss.backward();
    (
        loss.item(),
        leaves.iter().map(|&v| g.wrt(v).data().to_vec()).collect(),
    )
}

#[test]
fn segments_give_the_plain_gradients() {
    let lstm = Lstm::new();
    let (loss, plain) = grads_of(&lstm, None);
    for segment in [1, 3, 5, STEPS] {
        let (l, g) = grads_of(&lstm, Some(segment));
        // The forward pass is the same ops on the same values: the same bits.
        assert_eq!(l.to_bits(), loss.to_bits(), "segment {segment}");
        for (a, b) in plain.iter().flatten().zip(g.iter().flatten()) {
            assert!(
                (a - b).abs() <= 1e-14 * a.abs().max(1.0),
                "segment {segment}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn segments_agree_with_finite_differences() {
    let lstm = Lstm::new();
    let inputs: Vec<Tensor<f64>> = std::iter::once(lstm.state0.clone())
        .chain(lstm.params.iter().cloned())
        .collect();
    let report = gradcheck(
        &inputs,
        |tape, v| lstm.loss(tape, v, Some(5)),
        GradCheckOptions::default(),
    )
    .unwrap();
    assert!(report.max_error < 1e-8, "{report:?}");
    assert_eq!(report.checked, B * 2 * H + 4 * H * I + 4 * H * H + 4 * H);
}

#[test]
fn the_tape_keeps_one_node_per_segment() {
    let lstm = Lstm::new();
    let count = |segment| {
        let tape = Tape::<f64>::new();
        let leaves = lstm.leaves(&tape);
        let _ = lstm.loss(&tape, &leaves, segment);
        tape.len()
    };
    // 4 leaves, then per plain step: x, 2 matmuls, 2 adds, 4 gate slices, 2 state
    // slices, 4 activations, 3 products, an add, tanh, concat = 21; the loss: the
    // weights, the product, the sum.
    assert_eq!(count(None), 4 + 21 * STEPS + 3);
    assert_eq!(count(Some(4)), 4 + STEPS / 4 + 3);
}

#[test]
fn nested_segments() {
    let lstm = Lstm::new();
    let (_, plain) = grads_of(&lstm, None);
    let tape = Tape::<f64>::new();
    let leaves = lstm.leaves(&tape);
    let xs = std::rc::Rc::clone(&lstm.xs);
    // Two outer segments of six steps, each made of three inner segments of two.
    let mut state = leaves[0];
    for outer in 0..2 {
        let xs = std::rc::Rc::clone(&xs);
        state = recompute(&[state, leaves[1], leaves[2], leaves[3]], move |_, v| {
            let mut s = v[0];
            for inner in 0..3 {
                let xs = std::rc::Rc::clone(&xs);
                let t = outer * 6 + inner * 2;
                s = recompute(&[s, v[1], v[2], v[3]], move |tape, w| {
                    let mut s = w[0];
                    for x in &xs[t..t + 2] {
                        s = lstm_step(tape.constant(x), s, w[1], w[2], w[3])?;
                    }
                    Ok(s)
                })
                .map_err(|e| TapeError::Argument {
                    op: "test",
                    reason: e.to_string(),
                })?;
            }
            Ok(s)
        })
        .unwrap();
    }
    let loss = (state * tape.constant(tensor(9, &[B, 2 * H]))).sum();
    let g = loss.backward();
    for (leaf, want) in leaves.iter().zip(&plain) {
        for (a, b) in g.wrt(*leaf).data().iter().zip(want) {
            assert!((a - b).abs() <= 1e-14 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}

#[test]
fn second_order_and_tangents_through_a_segment() {
    let lstm = Lstm::new();
    let v: Vec<Tensor<f64>> = std::iter::once(&lstm.state0)
        .chain(&lstm.params)
        .enumerate()
        .map(|(k, t)| tensor(50 + k as u64, t.shape()))
        .collect();
    // The recorded gradient, H v both ways, and a tangent, for every leaf.
    let run = |segment| {
        let mut out: Vec<Vec<f64>> = Vec::new();
        for mode in [HvpMode::ForwardOverReverse, HvpMode::ReverseOverReverse] {
            let tape = Tape::<f64>::new();
            let leaves = lstm.leaves(&tape);
            let loss = lstm.loss(&tape, &leaves, segment);
            out.extend(
                hvp_with(loss, &leaves, &v, mode)
                    .unwrap()
                    .iter()
                    .map(|t| t.data().to_vec()),
            );
        }
        let tape = Tape::<f64>::new();
        let leaves = lstm.leaves(&tape);
        let loss = lstm.loss(&tape, &leaves, segment);
        out.extend(
            grad(loss, &leaves)
                .unwrap()
                .iter()
                .map(|g| g.value().data().to_vec()),
        );
        let tangents: Vec<Var<'_, f64>> = v.iter().map(|t| tape.constant(t)).collect();
        out.push(vec![jvp(loss, &leaves, &tangents).unwrap().item()]);
        out
    };
    let plain = run(None);
    // Segments that chain (the state entering one depends on the parameters it also
    // takes) and one segment over all steps.
    for segment in [3, 5, STEPS] {
        for (k, (a, b)) in plain.iter().zip(run(Some(segment))).enumerate() {
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-13 * x.abs().max(1.0),
                    "segment {segment}, output {k}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn the_same_bits_for_any_thread_count() {
    // Large enough values (2^18 elements) that element-wise kernels split them across
    // threads, and a product.
    let n = 512;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let tape = Tape::<f64>::new();
            let x = tape.var(tensor(7, &[n, n]).map(|v| v * 0.05));
            let w = tape.var(tensor(8, &[n, n]).map(|v| v * 0.05));
            let y = recompute(&[x, w], |_, v| {
                let a = v[0].try_mul(v[1])?.try_tanh()?.try_mul(v[0])?;
                a.try_slice(0, 0, 16)?.try_matmul(v[1])
            })
            .unwrap();
            let g = y.sum().backward();
            (g.wrt(x).data().to_vec(), g.wrt(w).data().to_vec())
        })
    };
    let one = run(1);
    let two = run(2);
    assert!(
        one.0
            .iter()
            .zip(&two.0)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    assert!(
        one.1
            .iter()
            .zip(&two.1)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

fn two_layers<'t>(x: Var<'t, f64>, w: Var<'t, f64>) -> Result<Var<'t, f64>> {
    x.try_matmul(w)?.try_tanh()?.try_matmul(w)
}

fn sample_loss<'t>(
    tape: &'t Tape<f64>,
    store: &ParamStore<f64>,
    w: descent::tape::ParamId,
    x: &Tensor<f64>,
    recomputed: bool,
) -> Var<'t, f64> {
    let (x, w) = (tape.constant(x), tape.param(store, w));
    let y = if recomputed {
        recompute(&[x, w], |_, v| two_layers(v[0], v[1])).unwrap()
    } else {
        two_layers(x, w).unwrap()
    };
    y.powi(2).sum()
}

#[test]
fn inside_per_sample_passes() {
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", tensor(11, &[3, 3]));
    let samples: Vec<Tensor<f64>> = (0..6).map(|s| tensor(20 + s, &[1, 3])).collect();
    let run = |recomputed: bool| {
        per_sample_grads(&store, &samples, PerSampleOptions::default(), |tape, x| {
            sample_loss(tape, &store, w, x, recomputed)
        })
        .unwrap()
    };
    let (plain, seg) = (run(false), run(true));
    let (a, b) = (plain.sum.get(w).unwrap(), seg.sum.get(w).unwrap());
    for (x, y) in a.data().iter().zip(b.data()) {
        assert!((x - y).abs() <= 1e-14 * x.abs().max(1.0), "{x} vs {y}");
    }
    assert_eq!(plain.losses, seg.losses);
}

#[test]
fn errors() {
    let tape = Tape::<f64>::new();
    // No input.
    let err = recompute::<f64, _>(&[], |_, v| Ok(v[0]))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "recompute: a segment needs at least one input");
    // A parameter bound inside the segment: its gradient would be lost.
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([2.0]));
    let store = std::rc::Rc::new(store);
    let x = tape.var(Tensor::from([1.0]));
    let inner = std::rc::Rc::clone(&store);
    let err = recompute(&[x], move |tape, v| v[0].try_mul(tape.param(&inner, w)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bound a parameter on its own tape"), "{err}");
    assert_eq!(tape.len(), 1, "a refused segment records nothing");
    // The body's own error, with its op and shapes.
    let err = recompute(&[x], |tape, v| {
        v[0].try_matmul(tape.constant(Tensor::from([1.0, 2.0])))
    })
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("matmul"), "{err}");
    // A stale handle.
    tape.reset();
    let err = recompute(&[x], |_, v| Ok(v[0])).unwrap_err().to_string();
    assert!(err.contains("before the tape was reset"), "{err}");
}

#[test]
fn backward_pass_snapshot() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([0.5, -1.0])).named("x");
    let w = tape.var(Tensor::from([[0.8, -0.3], [0.2, 0.6]])).named("w");
    let h = recompute(&[x, w], |_, v| {
        v[0].try_reshape(&[1, 2])?
            .try_matmul(v[1])?
            .try_tanh()?
            .try_reshape(&[2])
    })
    .unwrap()
    .named("h");
    let loss = (h * h).sum();
    let grads = loss.backward();
    insta::assert_snapshot!(
        "recompute_backward",
        render(&tape, Some(&grads), &RenderOptions::default())
    );
}
