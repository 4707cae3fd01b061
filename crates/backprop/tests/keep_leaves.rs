//! `Keep::Leaves`: a walk that gives intermediate nodes' buffers back as it passes must
//! leave every leaf's gradient bit for bit as a walk that keeps them all, step after
//! step in a reused store, and must refuse lookups of what it did not keep rather
//! than answer them with zeros.

use descent_backprop::{Backward, Error, Gradients, Keep, backward_into};
use descent_tape::{ParamGradients, ParamStore, Tape, Var};
use descent_tensor::Tensor;

fn tensor(shape: &[usize], seed: usize) -> Tensor<f64> {
    let n = shape.iter().product();
    Tensor::new(
        shape,
        (0..n)
            .map(|i| ((i * 3 + 11 * seed) as f64 * 0.61).sin())
            .collect(),
    )
    .unwrap()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A recurrent cell run for `steps`, a bias broadcast along the batch, a scalar leaf
/// scaling the read-out, a constant target, and an intermediate reached twice:
/// buffers of several sizes, given back and taken again in one walk.
fn program<'t>(
    tape: &'t Tape<f64>,
    store: &ParamStore<f64>,
    ids: [descent_tape::ParamId; 3],
    scale: Var<'t, f64>,
    steps: usize,
    seed: usize,
) -> (Var<'t, f64>, Vec<Var<'t, f64>>) {
    let [wx, wh, b] = ids.map(|id| tape.param(store, id));
    let mut h = tape.constant(Tensor::zeros(&[4, 6]));
    let mut inner = Vec::new();
    for t in 0..steps {
        let x = tape.constant(tensor(&[4, 3], seed + t));
        let pre = x.matmul_t(wx) + h.matmul_t(wh) + b;
        inner.push(pre);
        h = pre.tanh().named(&format!("h{t}"));
    }
    let twice = h * h + h;
    inner.push(twice);
    let target = tape.constant(tensor(&[4, 6], 99));
    let loss = ((twice - target) * scale).powf(2.0).mean();
    (loss, inner)
}

#[test]
fn leaves_match_a_walk_that_keeps_everything_step_after_step() {
    let mut store = ParamStore::<f64>::new();
    let ids = [
        store.insert("wx", tensor(&[6, 3], 1)),
        store.insert("wh", tensor(&[6, 6], 2)),
        store.insert("b", tensor(&[6], 3)),
    ];
    let tape = Tape::<f64>::new();
    let mut leaves = Gradients::empty().keeping(Keep::Leaves);
    assert_eq!(leaves.keeps(), Keep::Leaves);
    // Long programs first, so the reused store starts with stale buffers of every size.
    for (step, len) in [(0, 9), (1, 3), (2, 5), (3, 1)] {
        tape.reset();
        let scale = tape.var(0.5 + step as f64);
        let (loss, inner) = program(&tape, &store, ids, scale, len, step);
        backward_into(loss, &mut leaves).unwrap();
        let all = loss.backward();
        assert_eq!(all.keeps(), Keep::All);
        let what = format!("step {step}");
        for i in 0..3 {
            let (id, g) = leaves.entry(i);
            let (id_all, g_all) = all.entry(i);
            assert_eq!(id, id_all, "{what}");
            assert_eq!(bits(g.data()), bits(g_all.data()), "{what}, parameter {i}");
            assert_eq!(
                bits(leaves.param(id).unwrap().data()),
                bits(g_all.data()),
                "{what}, lookup by id"
            );
        }
        assert_eq!(
            leaves.wrt(scale).item().to_bits(),
            all.wrt(scale).item().to_bits()
        );
        assert_eq!(
            ParamGradients::global_norm(&leaves).to_bits(),
            ParamGradients::global_norm(&all).to_bits()
        );
        // What was not kept is refused, not read as zeros.
        for &v in inner.iter().chain([&loss]) {
            assert!(all.get(v).is_some(), "{what}: reached");
            match leaves.try_wrt(v) {
                Err(Error::NotKept { id }) => assert_eq!(id, v.id()),
                other => panic!("{what}: node {} gave {other:?}", v.id().index()),
            }
            assert!(leaves.by_id(v.id()).is_none());
        }
        assert!(matches!(
            leaves.try_named(&tape, "h0"),
            Err(Error::NotKept { .. })
        ));
        assert!(matches!(
            leaves.scope_deltas(&tape),
            Ok(d) if d.is_empty()
        ));
    }
}

#[test]
fn constants_and_unreached_leaves_read_zeros() {
    let tape = Tape::<f64>::new();
    let x = tape.var(tensor(&[3], 1));
    let unused = tape.var(tensor(&[5], 2));
    let c = tape.constant(tensor(&[3], 3));
    let loss = (x * c).tanh().sum();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    backward_into(loss, &mut grads).unwrap();
    assert_eq!(grads.wrt(unused).data(), &[0.0; 5]);
    assert_eq!(grads.wrt(c).data(), &[0.0; 3]);
    assert!(grads.get(unused).is_none());
    let all = loss.backward();
    assert_eq!(bits(grads.wrt(x).data()), bits(all.wrt(x).data()));
}

#[test]
fn scopes_report_that_their_deltas_were_not_kept() {
    let tape = Tape::<f64>::new();
    let x = tape.var(tensor(&[3], 1));
    let h = {
        let _s = tape.scope("layer");
        x.tanh()
    };
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    backward_into(h.sum(), &mut grads).unwrap();
    match grads.scope_deltas(&tape) {
        Err(Error::NotKept { id }) => assert_eq!(id, h.id()),
        other => panic!("{other:?}"),
    }
}

#[test]
#[should_panic(expected = "keep only the leaves'")]
fn wrt_of_an_intermediate_node_panics_with_the_reason() {
    let tape = Tape::<f64>::new();
    let x = tape.var(tensor(&[3], 1));
    let h = x.tanh();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    backward_into(h.sum(), &mut grads).unwrap();
    let _ = grads.wrt(h);
}

#[test]
#[should_panic(expected = "keep only the leaves'")]
fn get_of_an_intermediate_scalar_panics_too() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let h = x * x;
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    backward_into(h * 3.0, &mut grads).unwrap();
    assert_eq!(grads.wrt(x).item(), 12.0);
    let _ = grads.get(h);
}

#[test]
fn a_store_set_back_to_all_keeps_everything_again() {
    let tape = Tape::<f64>::new();
    let mut grads = Gradients::empty().keeping(Keep::Leaves);
    for keep in [Keep::Leaves, Keep::All, Keep::Leaves, Keep::All] {
        tape.reset();
        let x = tape.var(tensor(&[4], 5));
        let h = x.tanh() * x;
        let loss = h.sum();
        grads = grads.keeping(keep);
        backward_into(loss, &mut grads).unwrap();
        let all = loss.backward();
        assert_eq!(bits(grads.wrt(x).data()), bits(all.wrt(x).data()));
        match keep {
            Keep::All => assert_eq!(bits(grads.wrt(h).data()), bits(all.wrt(h).data())),
            Keep::Leaves => assert!(grads.try_wrt(h).is_err()),
        }
    }
}

/// Anomaly detection reads the gradients the walk is about to give back: the report
/// (which node, which rule, which value) is the one a store keeping everything gives,
/// whether the bad gradient first lands on a leaf or on an intermediate node.
#[test]
fn anomaly_detection_reports_as_with_every_gradient_kept() {
    let programs: [fn(Var<'_, f64>) -> Var<'_, f64>; 3] = [
        |x| x.sqrt().sum(),
        |x| (x * 1.5).sqrt().sum(),
        |x| ((x * 1.5).sqrt() + x).tanh().sum(),
    ];
    for (k, program) in programs.iter().enumerate() {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_detection(true);
        let x = tape.var(Tensor::from([0.0, 1.0]));
        let loss = program(x);
        let all = backward_into(loss, &mut Gradients::empty()).unwrap_err();
        let mut grads = Gradients::empty().keeping(Keep::Leaves);
        let leaves = backward_into(loss, &mut grads).unwrap_err();
        assert!(
            matches!(leaves, Error::NonFiniteGradient { .. }),
            "{leaves}"
        );
        assert_eq!(leaves.to_string(), all.to_string(), "program {k}");
    }
}
