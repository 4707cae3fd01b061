//! Clipping in place, on the walk's store and on owned gradients, with PyTorch's
//! `clip_grad_norm_` formula and the exact rescale.

use descent_backprop::Backward;
use descent_optim::{
    Error, Optimizer, Sgd, clip_grad_norm, clip_grad_norm_exact, clip_grad_norm_per_param,
    clip_grad_value,
};
use descent_tape::{ParamGradients, ParamGrads, ParamStore, Tape};
use descent_tensor::Tensor;

fn two() -> (ParamStore<f64>, ParamGrads<f64>) {
    let mut store = ParamStore::<f64>::new();
    let a = store.insert("a", Tensor::from([0.0]));
    let b = store.insert("b", Tensor::from([0.0]));
    let grads = [(a, Tensor::from([30.0])), (b, Tensor::from([40.0]))]
        .into_iter()
        .collect();
    (store, grads)
}

#[test]
fn global_norm_clipping_follows_torch_formula() {
    let (store, mut grads) = two();
    let before = clip_grad_norm(&store, &mut grads, 5.0).unwrap();
    assert_eq!(before, 50.0);
    let got: Vec<f64> = grads.iter().map(|(_, g)| g.item()).collect();
    // torch.nn.utils.clip_grad_norm_ (torch 2.15, foreach=False) on float64 [30.],
    // [40.] with max_norm 5.
    assert_eq!(got, [2.9999999400000013, 3.999999920000002]);
    // At exactly the limit PyTorch still scales (gradients [3.], [4.]).
    let (store, mut at_limit) = two();
    for (k, (_, g)) in at_limit.iter_mut().enumerate() {
        g.data_mut()[0] = [3.0, 4.0][k];
    }
    clip_grad_norm(&store, &mut at_limit, 5.0).unwrap();
    let got: Vec<f64> = at_limit.iter().map(|(_, g)| g.item()).collect();
    assert_eq!(got, [2.99999940000012, 3.99999920000016]);
    // In float32 the coefficient is rounded at each step as torch's
    // `t.reciprocal() * max_norm` rounds it: torch gives 2.9999998, 3.9999998.
    let mut store = ParamStore::<f32>::new();
    let a = store.insert("a", Tensor::from([0.0f32]));
    let b = store.insert("b", Tensor::from([0.0f32]));
    let mut g32: ParamGrads<f32> = [(a, Tensor::from([30.0f32])), (b, Tensor::from([40.0f32]))]
        .into_iter()
        .collect();
    clip_grad_norm(&store, &mut g32, 5.0).unwrap();
    assert_eq!(g32.get(a).unwrap().item(), 2.999_999_8_f32);
    assert_eq!(g32.get(b).unwrap().item(), 3.999_999_8_f32);
    // Well under the limit, nothing moves.
    let (store, mut small) = two();
    small.scale(0.01);
    let copy = small.clone();
    clip_grad_norm(&store, &mut small, 5.0).unwrap();
    assert_eq!(small, copy);
}

#[test]
fn exact_clipping_rescales_to_the_limit_and_only_above_it() {
    let (store, mut grads) = two();
    assert_eq!(clip_grad_norm_exact(&store, &mut grads, 5.0).unwrap(), 50.0);
    let got: Vec<f64> = grads.iter().map(|(_, g)| g.item()).collect();
    assert_eq!(got, [3.0, 4.0]);
    let copy = grads.clone();
    assert_eq!(clip_grad_norm_exact(&store, &mut grads, 5.0).unwrap(), 5.0);
    assert_eq!(grads, copy);
}

#[test]
fn a_non_finite_gradient_is_refused_by_name_and_nothing_is_clipped() {
    for bad in [f64::NAN, f64::INFINITY] {
        let (store, mut grads) = two();
        let b = store.find("b").unwrap();
        grads.get_mut(b).unwrap().data_mut()[0] = bad;
        let copy = grads.clone();
        type Clip = fn(&ParamStore<f64>, &mut ParamGrads<f64>) -> Result<(), Error>;
        let clips: [(&str, Clip); 4] = [
            ("clip_grad_norm", |s, g| clip_grad_norm(s, g, 1.0).map(drop)),
            ("clip_grad_norm_exact", |s, g| {
                clip_grad_norm_exact(s, g, 1.0).map(drop)
            }),
            ("clip_grad_value", |s, g| clip_grad_value(s, g, 1.0)),
            ("clip_grad_norm_per_param", |s, g| {
                clip_grad_norm_per_param(s, g, 1.0).map(drop)
            }),
        ];
        for (op, clip) in clips {
            let err = clip(&store, &mut grads).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(&err, Error::NonFinite { op: o, name, index: 0, .. } if *o == op && name == "b"),
                "{message}"
            );
            assert!(
                message.starts_with(&format!("{op}: the gradient of 'b'")),
                "{message}"
            );
            assert!(message.contains("nothing was clipped"), "{message}");
            assert!(!message.contains("step"), "{message}");
            // Bitwise: NaN != NaN, so compare bits.
            let bits = |g: &ParamGrads<f64>| -> Vec<u64> {
                g.iter().map(|(_, t)| t.item().to_bits()).collect()
            };
            assert_eq!(bits(&grads), bits(&copy), "{op} changed a gradient");
        }
    }
}

#[test]
fn gradients_of_another_store_or_shape_are_refused_before_any_change() {
    let (store, mut grads) = two();
    let (other, _) = two();
    let foreign = other.find("a").unwrap();
    let a = store.find("a").unwrap();
    grads.insert(a, Tensor::from([1.0, 2.0]));
    let err = clip_grad_norm(&store, &mut grads, 1.0).unwrap_err();
    assert!(
        matches!(err, Error::Shape { ref name, .. } if name == "a"),
        "{err}"
    );
    let mut g: ParamGrads<f64> = [(foreign, Tensor::from([1.0]))].into_iter().collect();
    let err = clip_grad_norm(&store, &mut g, 1.0).unwrap_err();
    assert!(matches!(err, Error::UnknownParam { .. }), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "a typed source");
    assert!(err.to_string().contains("another store"), "{err}");
}

/// Clipping the walk's store in place and stepping from it gives the bits of clipping
/// and stepping a copy: the copy-free step is the same step.
#[test]
fn clipping_and_stepping_in_place_equals_doing_it_on_a_copy() {
    let mut store = ParamStore::<f32>::new();
    let w = store.insert("w", Tensor::from_fn(&[3, 4], |i| (i as f32 - 5.0) * 0.3));
    let b = store.insert("b", Tensor::from_fn(&[4], |i| i as f32 * 0.1));
    let unused = store.insert("unused", Tensor::from([1.0f32, 2.0]));
    let mut copy_store = ParamStore::<f32>::new();
    for (_, name, v) in store.iter() {
        copy_store.insert(name, v.clone());
    }
    let (mut sgd, mut twin) = (Sgd::new(0.05).momentum(0.9), Sgd::new(0.05).momentum(0.9));
    for step in 0..4 {
        let tape = Tape::new();
        let x = tape.constant(Tensor::from_fn(&[2, 3], |i| (i + step) as f32 * 0.7 - 1.0));
        let _bound_but_unused = tape.param(&store, unused);
        let h = (x.matmul(tape.param(&store, w)) + tape.param(&store, b)).tanh();
        let loss = (h * h).sum() * 40.0;
        let mut grads = loss.backward();
        let mut copied = ParamGrads::from(&grads);
        let n1 = clip_grad_norm(&store, &mut grads, 1.0).unwrap();
        let ids: Vec<_> = store.ids().collect();
        let mut renamed = ParamGrads::new();
        for (i, id) in ids.iter().enumerate() {
            if let Some(g) = copied.get(*id) {
                renamed.insert(copy_store.ids().nth(i).unwrap(), g.clone());
            }
        }
        copied = renamed;
        let n2 = clip_grad_norm(&copy_store, &mut copied, 1.0).unwrap();
        assert_eq!(n1.to_bits(), n2.to_bits());
        assert_eq!(grads.count(), 3);
        sgd.step(&mut store, &grads).unwrap();
        twin.step(&mut copy_store, &copied).unwrap();
        let bits = |s: &ParamStore<f32>| -> Vec<u32> {
            s.iter()
                .flat_map(|(_, _, v)| v.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                .collect()
        };
        assert_eq!(bits(&store), bits(&copy_store), "step {step}");
    }
}
