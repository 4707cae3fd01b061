//! Four classic graphs (a neuron, a 2-layer MLP, softmax cross-entropy fused and
//! composed, a 3-step RNN) checked against a JAX oracle in float64, and snapshotted
//! whole through `descent::backprop::render`.
//!
//! The oracle values come from `tests/oracle/classic_graphs.py` (see the README
//! there), which writes `tests/oracle/classic_graphs_values.rs`. The inputs are written
//! literally here and in the script; each test first checks they match the copy the
//! script recorded, so the two cannot drift apart silently.

use descent::backprop::{RenderOptions, render};
use descent::prelude::*;

// Generated data: not every constant is read (JAX's own fused-form shapes are not).
#[allow(dead_code)]
#[path = "oracle/classic_graphs_values.rs"]
mod oracle;

/// Relative tolerance against the oracle, and the absolute floor for values so small
/// that a relative comparison says nothing (sums that nearly cancel).
const REL: f64 = 1e-12;
const ABS: f64 = 1e-14;

/// Checks `got` against `want` element by element, panicking on the first element
/// outside the tolerance, and keeps the largest disagreement seen for the report.
#[derive(Default)]
struct Agreement {
    /// Largest `|got - want| / |want|` so far (0 for exact equality), and where.
    worst: f64,
    at: String,
}

impl Agreement {
    fn check(&mut self, what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: element counts differ");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let diff = (g - w).abs();
            assert!(
                diff <= REL * g.abs().max(w.abs()) || diff <= ABS,
                "{what}[{i}]: descent {g:e}, expected {w:e}, difference {diff:e}"
            );
            if diff > 0.0 && diff / w.abs() > self.worst {
                self.worst = diff / w.abs();
                self.at = format!("{what}[{i}] ({g:e} vs {w:e})");
            }
        }
    }

    /// Checks the gradient with respect to `x`, shape included.
    fn grad(
        &mut self,
        grads: &Gradients<f64>,
        x: Var<'_>,
        what: &str,
        want: &[f64],
        shape: &[usize],
    ) {
        let g = grads.wrt(x);
        assert_eq!(g.shape(), shape, "{what}: shape");
        self.check(what, g.data(), want);
    }

    /// Prints the largest disagreement (run with `--nocapture` to see it).
    fn report(&self, graph: &str) {
        if self.worst == 0.0 {
            eprintln!("{graph}: agree exactly");
        } else {
            eprintln!(
                "{graph}: largest relative disagreement {:e} at {}",
                self.worst, self.at
            );
        }
    }
}

/// Checks that a leaf holds the inputs the oracle used.
fn check_input(x: Var<'_>, what: &str, want: &[f64], shape: &[usize]) {
    assert_eq!(x.shape().as_slice(), shape, "input {what}: shape");
    assert_eq!(
        x.value().data(),
        want,
        "input {what} differs from the one tests/oracle/classic_graphs.py used"
    );
}

/// Snapshots the whole tape, values and gradients, in the default render.
fn snapshot(name: &str, tape: &Tape<f64>, grads: &Gradients<f64>) {
    let text = render(tape, Some(grads), &RenderOptions::default());
    insta::assert_snapshot!(name, text);
}

/// a. A single neuron: `y = tanh(w·x + b)`, `loss = (y - 0.5)²`.
#[test]
fn neuron() {
    let tape = Tape::<f64>::new();
    let x = tape.constant(Tensor::from([0.5, -1.5, 2.0])).named("x");
    let w = tape.var(Tensor::from([0.3, -0.2, 0.1])).named("w");
    let b = tape.var(0.05).named("b");
    let y = ((w * x).sum() + b).tanh().named("y");
    let loss = (y - 0.5).powi(2).named("loss");

    check_input(x, "x", oracle::NEURON_IN_X, oracle::NEURON_IN_X_SHAPE);
    check_input(w, "w", oracle::NEURON_IN_W, oracle::NEURON_IN_W_SHAPE);
    check_input(b, "b", &[oracle::NEURON_IN_B], &[]);

    let grads = loss.backward();
    let mut jax = Agreement::default();
    jax.check("loss", &[loss.item()], &[oracle::NEURON_LOSS]);
    jax.grad(
        &grads,
        w,
        "dloss/dw",
        oracle::NEURON_GRAD_W,
        oracle::NEURON_GRAD_W_SHAPE,
    );
    jax.grad(&grads, b, "dloss/db", &[oracle::NEURON_GRAD_B], &[]);
    assert!(grads.get(x).is_none(), "a constant gets no gradient");
    jax.report("neuron");

    snapshot("neuron", &tape, &grads);
}

/// b. A 2-layer MLP: `h = tanh(X W1 + b1)`, `y = h W2 + b2`, `loss = mse(y, T)`.
#[test]
fn mlp() {
    let tape = Tape::<f64>::new();
    let x = tape
        .constant(Tensor::from([
            [0.2, -0.4, 1.0],
            [1.5, 0.3, -0.7],
            [-0.9, 0.8, 0.1],
            [0.6, -1.1, -0.3],
        ]))
        .named("x");
    let target = tape
        .constant(Tensor::from([
            [0.3, -0.2],
            [0.0, 0.5],
            [-0.4, 0.1],
            [0.25, -0.6],
        ]))
        .named("target");
    let (w1, b1, h) = {
        let _layer = tape.scope("layer1");
        let w1 = tape
            .var(Tensor::from([
                [0.1, -0.3, 0.25, 0.4, -0.15],
                [0.35, 0.2, -0.45, 0.05, 0.3],
                [-0.2, 0.15, 0.1, -0.35, 0.45],
            ]))
            .named("w1");
        let b1 = tape
            .var(Tensor::from([0.01, -0.02, 0.03, 0.0, -0.05]))
            .named("b1");
        let h = (x.matmul(w1) + b1).tanh().named("h");
        (w1, b1, h)
    };
    let (w2, b2, y) = {
        let _layer = tape.scope("layer2");
        let w2 = tape
            .var(Tensor::from([
                [0.5, -0.25],
                [-0.4, 0.3],
                [0.2, 0.6],
                [-0.1, -0.35],
                [0.45, 0.15],
            ]))
            .named("w2");
        let b2 = tape.var(Tensor::from([0.1, -0.1])).named("b2");
        let y = (h.matmul(w2) + b2).named("y");
        (w2, b2, y)
    };
    let loss = {
        let _loss = tape.scope("loss");
        y.mse(target).named("loss")
    };

    check_input(x, "x", oracle::MLP_IN_X, oracle::MLP_IN_X_SHAPE);
    check_input(w1, "w1", oracle::MLP_IN_W1, oracle::MLP_IN_W1_SHAPE);
    check_input(b1, "b1", oracle::MLP_IN_B1, oracle::MLP_IN_B1_SHAPE);
    check_input(w2, "w2", oracle::MLP_IN_W2, oracle::MLP_IN_W2_SHAPE);
    check_input(b2, "b2", oracle::MLP_IN_B2, oracle::MLP_IN_B2_SHAPE);
    check_input(target, "target", oracle::MLP_IN_T, oracle::MLP_IN_T_SHAPE);

    let grads = loss.backward();
    let mut jax = Agreement::default();
    jax.check("loss", &[loss.item()], &[oracle::MLP_LOSS]);
    for (v, what, want, shape) in [
        (
            w1,
            "dloss/dw1",
            oracle::MLP_GRAD_W1,
            oracle::MLP_GRAD_W1_SHAPE,
        ),
        (
            b1,
            "dloss/db1",
            oracle::MLP_GRAD_B1,
            oracle::MLP_GRAD_B1_SHAPE,
        ),
        (
            w2,
            "dloss/dw2",
            oracle::MLP_GRAD_W2,
            oracle::MLP_GRAD_W2_SHAPE,
        ),
        (
            b2,
            "dloss/db2",
            oracle::MLP_GRAD_B2,
            oracle::MLP_GRAD_B2_SHAPE,
        ),
        // The δ of the hidden layer, a lookup like any other.
        (h, "dloss/dh", oracle::MLP_GRAD_H, oracle::MLP_GRAD_H_SHAPE),
    ] {
        jax.grad(&grads, v, what, want, shape);
    }
    assert!(grads.get(x).is_none() && grads.get(target).is_none());
    jax.report("mlp");

    snapshot("mlp", &tape, &grads);
}

/// c. Softmax cross-entropy on `logits = X W + b`, through the fused `cross_entropy`
/// (`fused`) or composed as `-mean(gather(log_softmax(logits), labels))`.
fn softmax_ce(tape: &Tape<f64>, fused: bool) -> [Var<'_>; 4] {
    const LABELS: [usize; 3] = [2, 0, 4];
    assert_eq!(
        LABELS,
        oracle::CE_IN_LABELS,
        "labels differ from the oracle's"
    );
    let x = tape
        .constant(Tensor::from([
            [1.0, -0.5, 0.25, 2.0],
            [-1.5, 0.75, 1.25, -0.3],
            [0.4, 0.9, -1.1, 0.6],
        ]))
        .named("x");
    let w = tape
        .var(Tensor::from([
            [0.2, -0.1, 0.4, -0.3, 0.05],
            [0.15, 0.35, -0.25, 0.1, -0.4],
            [-0.05, 0.3, 0.2, -0.15, 0.25],
            [0.45, -0.2, 0.1, 0.3, -0.35],
        ]))
        .named("w");
    let b = tape
        .var(Tensor::from([0.1, -0.2, 0.05, 0.0, 0.15]))
        .named("b");
    check_input(x, "x", oracle::CE_IN_X, oracle::CE_IN_X_SHAPE);
    check_input(w, "w", oracle::CE_IN_W, oracle::CE_IN_W_SHAPE);
    check_input(b, "b", oracle::CE_IN_B, oracle::CE_IN_B_SHAPE);

    let logits = (x.matmul(w) + b).named("logits");
    let loss = if fused {
        logits.cross_entropy(&LABELS)
    } else {
        let picked = logits
            .log_softmax(-1)
            .gather(1, &[LABELS.len(), 1], &LABELS)
            .named("picked");
        -picked.mean()
    };
    [w, b, logits, loss.named("loss")]
}

#[test]
fn softmax_cross_entropy() {
    let fused_tape = Tape::<f64>::new();
    let composite_tape = Tape::<f64>::new();
    let fused = softmax_ce(&fused_tape, true);
    let composite = softmax_ce(&composite_tape, false);
    let fused_grads = fused[3].backward();
    let composite_grads = composite[3].backward();

    let mut jax = Agreement::default();
    for (form, [w, b, logits, loss], grads) in [
        ("fused", fused, &fused_grads),
        ("composite", composite, &composite_grads),
    ] {
        jax.check(&format!("{form} loss"), &[loss.item()], &[oracle::CE_LOSS]);
        for (v, what, want, shape) in [
            (w, "dloss/dw", oracle::CE_GRAD_W, oracle::CE_GRAD_W_SHAPE),
            (b, "dloss/db", oracle::CE_GRAD_B, oracle::CE_GRAD_B_SHAPE),
            (
                logits,
                "dloss/dlogits",
                oracle::CE_GRAD_LOGITS,
                oracle::CE_GRAD_LOGITS_SHAPE,
            ),
        ] {
            jax.grad(grads, v, &format!("{form} {what}"), want, shape);
        }
    }

    // The fused op and its composition agree with each other, not only with JAX.
    let [fw, fb, fl, floss] = fused;
    let [cw, cb, cl, closs] = composite;
    let mut each_other = Agreement::default();
    each_other.check("loss", &[floss.item()], &[closs.item()]);
    for (f, c, what) in [(fw, cw, "w"), (fb, cb, "b"), (fl, cl, "logits")] {
        each_other.check(
            &format!("fused vs composite dloss/d{what}"),
            fused_grads.wrt(f).data(),
            composite_grads.wrt(c).data(),
        );
    }
    // JAX's own fused form (logsumexp minus the picked logit) as a sanity check of
    // the oracle.
    let mut jax_forms = Agreement::default();
    jax_forms.check("loss", &[oracle::CE_FUSED_LOSS], &[oracle::CE_LOSS]);
    jax_forms.check("dloss/dw", oracle::CE_FUSED_GRAD_W, oracle::CE_GRAD_W);
    jax_forms.check("dloss/db", oracle::CE_FUSED_GRAD_B, oracle::CE_GRAD_B);
    jax.report("softmax cross-entropy");
    each_other.report("descent fused vs composite");
    jax_forms.report("JAX fused vs composite");

    snapshot("softmax_ce_fused", &fused_tape, &fused_grads);
    snapshot("softmax_ce_composite", &composite_tape, &composite_grads);
}

/// The loss of a confident, correct prediction is small next to its largest logit; it
/// keeps its own digits, fused or composed (`log_softmax` then `gather`), in `f64` and
/// `f32`. (Computed as `ln Σ eˣ − x[label]`, it kept only those above the largest
/// logit's last digit: 0.6% off in `f64`, and 0 instead of 6.1e-7 in `f32`.)
#[test]
fn a_confident_prediction_keeps_the_digits_of_its_loss() {
    // ln(1 + t) for t the other logits' e^(x − m): t − t²/2 is exact to far below t's
    // last digit here.
    let exact = |others: &[f64]| {
        let t: f64 = others.iter().map(|v| v.exp()).sum();
        t - t * t / 2.0
    };
    let tape = Tape::<f64>::new();
    let z = tape.var(Tensor::from([[30.0, 0.0, 0.0], [0.0, 0.0, 30.0]]));
    let want = exact(&[-30.0, -30.0]);
    let fused = z.cross_entropy(&[0, 2]).item();
    let composed = -(z.log_softmax(-1).gather(1, &[2, 1], &[0, 2]).mean()).item();
    for got in [fused, composed] {
        assert!((got - want).abs() <= 1e-14 * want, "{got} vs {want}");
    }

    let tape = Tape::<f32>::new();
    for (logits, others) in [
        ([20.0f32, 5.0, 5.0], [-15.0, -15.0]),
        ([200.0, 180.0, 185.0], [-20.0, -15.0]),
    ] {
        let z = tape.var(Tensor::new(&[1, 3], logits.to_vec()).unwrap());
        let want = exact(&others);
        let fused = f64::from(z.cross_entropy(&[0]).item());
        let composed = -f64::from(z.log_softmax(-1).gather(1, &[1, 1], &[0]).item());
        for got in [fused, composed] {
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "{logits:?}: {got} vs {want}"
            );
        }
    }
}

/// d. A 3-step vanilla RNN: `h_t = tanh(x_t Wx + h_{t-1} Wh + b)` from `h_0 = 0`,
/// read out as `y = h_3 Wo`, `loss = mse(y, target)`.
#[test]
fn rnn() {
    let tape = Tape::<f64>::new();
    let xs = [
        [[0.5, -0.3, 0.8], [-0.6, 0.2, 0.1]],
        [[0.1, 0.9, -0.4], [0.7, -0.5, 0.3]],
        [[-0.2, 0.4, 0.6], [0.3, 0.3, -0.9]],
    ];
    let xs: Vec<Var<'_>> = xs
        .iter()
        .enumerate()
        .map(|(t, &x)| tape.constant(Tensor::from(x)).named(&format!("x{}", t + 1)))
        .collect();
    let target = tape.constant(Tensor::from([[0.2], [-0.3]])).named("target");
    let wx = tape
        .var(Tensor::from([
            [0.3, -0.2, 0.5, 0.1],
            [-0.4, 0.25, 0.15, -0.3],
            [0.2, 0.35, -0.1, 0.45],
        ]))
        .named("wx");
    let wh = tape
        .var(Tensor::from([
            [0.1, -0.3, 0.2, 0.05],
            [0.25, 0.15, -0.2, 0.1],
            [-0.15, 0.2, 0.3, -0.25],
            [0.05, -0.1, 0.15, 0.35],
        ]))
        .named("wh");
    let b = tape
        .var(Tensor::from([0.02, -0.01, 0.03, -0.04]))
        .named("b");
    let wo = tape
        .var(Tensor::from([[0.6], [-0.45], [0.3], [0.5]]))
        .named("wo");

    let xs_flat: Vec<f64> = xs.iter().flat_map(|x| x.value().into_data()).collect();
    assert_eq!(oracle::RNN_IN_XS_SHAPE, &[3, 2, 3]);
    assert_eq!(
        xs_flat,
        oracle::RNN_IN_XS,
        "inputs x1..x3 differ from the oracle's"
    );
    check_input(wx, "wx", oracle::RNN_IN_WX, oracle::RNN_IN_WX_SHAPE);
    check_input(wh, "wh", oracle::RNN_IN_WH, oracle::RNN_IN_WH_SHAPE);
    check_input(b, "b", oracle::RNN_IN_B, oracle::RNN_IN_B_SHAPE);
    check_input(wo, "wo", oracle::RNN_IN_WO, oracle::RNN_IN_WO_SHAPE);
    check_input(target, "target", oracle::RNN_IN_T, oracle::RNN_IN_T_SHAPE);

    let mut h = tape.constant(Tensor::zeros(&[2, 4])).named("h0");
    let mut hs = Vec::new();
    for (t, &x) in xs.iter().enumerate() {
        let _step = tape.scope(&format!("step{}", t + 1));
        h = (x.matmul(wx) + h.matmul(wh) + b)
            .tanh()
            .named(&format!("h{}", t + 1));
        hs.push(h);
    }
    let loss = {
        let _readout = tape.scope("readout");
        let y = h.matmul(wo).named("y");
        y.mse(target).named("loss")
    };

    let grads = loss.backward();
    let mut jax = Agreement::default();
    jax.check("loss", &[loss.item()], &[oracle::RNN_LOSS]);
    for (v, what, want, shape) in [
        (
            wx,
            "dloss/dwx",
            oracle::RNN_GRAD_WX,
            oracle::RNN_GRAD_WX_SHAPE,
        ),
        (
            wh,
            "dloss/dwh",
            oracle::RNN_GRAD_WH,
            oracle::RNN_GRAD_WH_SHAPE,
        ),
        (b, "dloss/db", oracle::RNN_GRAD_B, oracle::RNN_GRAD_B_SHAPE),
        (
            wo,
            "dloss/dwo",
            oracle::RNN_GRAD_WO,
            oracle::RNN_GRAD_WO_SHAPE,
        ),
        // The δ of each step's hidden state.
        (
            hs[0],
            "dloss/dh1",
            oracle::RNN_GRAD_H1,
            oracle::RNN_GRAD_H1_SHAPE,
        ),
        (
            hs[1],
            "dloss/dh2",
            oracle::RNN_GRAD_H2,
            oracle::RNN_GRAD_H2_SHAPE,
        ),
        (
            hs[2],
            "dloss/dh3",
            oracle::RNN_GRAD_H3,
            oracle::RNN_GRAD_H3_SHAPE,
        ),
    ] {
        jax.grad(&grads, v, what, want, shape);
    }
    jax.report("rnn");

    snapshot("rnn", &tape, &grads);
}
