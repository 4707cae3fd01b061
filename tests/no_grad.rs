//! Stopping gradients: `Tape::no_grad`, `Var::detach`, frozen parameters and frozen
//! modules, each against what PyTorch does in the same case.

use descent::nn::layers::{BatchNorm1d, ReLU};
use descent::nn::{Ctx, Linear, Module, ModuleInfo, Sequential, init};
use descent::optim::{Adam, Optimizer};
use descent::prelude::*;

/// `with torch.no_grad(): t = x * x` then `(x * t).backward()`: x.grad = t = x².
#[test]
fn no_grad_results_are_constants() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([1.0, -2.0, 3.0]));
    let t = tape.no_grad(|| (x * x).tanh());
    assert!(!t.requires_grad());
    let grads = (x * t).sum().backward();
    assert_eq!(grads.wrt(x).to_tensor(), t.value());
    // Scalars take the same rule (their fast path is left inside no_grad).
    let s = tape.var(2.0);
    let u = tape.no_grad(|| s * s + s);
    assert!(!u.requires_grad());
    assert_eq!((s * u).backward().wrt(s).item(), 6.0);
}

#[test]
fn no_grad_nests_and_restores_on_panic() {
    let tape = Tape::<f64>::new();
    tape.no_grad(|| {
        tape.no_grad(|| assert!(!tape.is_grad_enabled()));
        assert!(!tape.is_grad_enabled());
    });
    assert!(tape.is_grad_enabled());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tape.no_grad(|| panic!("inside"));
    }));
    assert!(r.is_err());
    assert!(tape.is_grad_enabled());
}

/// A parameter first bound inside `no_grad` is a constant, not among the bindings:
/// an optimiser step after it changes nothing.
#[test]
fn parameters_bound_in_no_grad_are_not_stepped() {
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([1.0, 2.0]));
    let tape = Tape::new();
    let y = tape.no_grad(|| tape.param(&store, w) * 3.0);
    assert!(tape.bindings().is_empty());
    assert_eq!(tape.read().name(y.id()), None);
    let v = tape.var(Tensor::from([1.0, 1.0]));
    let grads = (y * v).sum().backward();
    assert!(grads.param(w).is_none());
}

/// `x.detach()`: same value, no path back. d/dx (x.detach() · x²) = 2·x·x.
#[test]
fn detach_cuts_the_path_and_copies_the_value() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from([[1.0, 2.0], [3.0, 4.0]]));
    let d = x.detach();
    assert_eq!(d.value(), x.value());
    assert!(!d.requires_grad());
    assert_ne!(d.id(), x.id());
    let grads = (d * x * x).sum().backward();
    let expected: Vec<f64> = x.value().data().iter().map(|v| 2.0 * v * v).collect();
    assert_eq!(grads.wrt(x).data(), &expected[..]);
    // A scalar, and a stale handle.
    assert_eq!(tape.var(5.0).detach().item(), 5.0);
    tape.reset();
    assert!(
        x.try_detach()
            .unwrap_err()
            .to_string()
            .starts_with("detach:")
    );
}

/// A frozen submodule: no gradient for its parameters, and Adam with weight decay
/// (which would move a parameter with a zero gradient) leaves them as they were, while
/// the rest of the model trains.
#[test]
fn frozen_submodule_is_never_updated() {
    let mut store = ParamStore::<f64>::new();
    let rng = &mut init::rng(3);
    let mut body = Sequential::new("body");
    body.push(Linear::new(&mut store, body.next_name(), 3, 4, rng));
    body.push(ReLU::new());
    let head = Linear::new(&mut store, "head", 4, 1, rng);
    body.freeze(&mut store);
    assert_eq!(
        body.num_trainable_parameters(&store) + head.num_trainable_parameters(&store),
        5
    );
    let before: Vec<Tensor<f64>> = body
        .parameters()
        .iter()
        .map(|&id| store.get(id).unwrap().clone())
        .collect();
    let head_before = store.get(head.weight()).unwrap().clone();
    let mut opt = Adam::new(0.1).weight_decay(0.5);
    let tape = Tape::new();
    for _ in 0..3 {
        tape.reset();
        let mut cx = Ctx::new(&tape, &mut store);
        let x = tape.constant(Tensor::from([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]]));
        let h = body.call(&mut cx, x);
        let y = head.call(&mut cx, h);
        let grads = y.powi(2).sum().backward();
        for id in body.parameters() {
            assert!(grads.param(id).is_none());
        }
        assert!(grads.param(head.weight()).is_some());
        opt.step(&mut store, &grads).unwrap();
    }
    for (id, b) in body.parameters().iter().zip(&before) {
        assert_eq!(store.get(*id).unwrap(), b);
    }
    assert_ne!(store.get(head.weight()).unwrap(), &head_before);
    // Unfrozen, it trains again.
    body.unfreeze(&mut store);
    assert_eq!(body.num_trainable_parameters(&store), 16);
}

/// Batch norm's buffers are frozen entries: never bound as parameters, so never in a
/// gradient store, while its weight and bias are.
#[test]
fn buffers_get_no_gradient() {
    let mut store = ParamStore::<f64>::new();
    let bn = BatchNorm1d::new(&mut store, "bn", 2);
    let tape = Tape::new();
    let mut cx = Ctx::new(&tape, &mut store);
    let x = tape.var(Tensor::from([[1.0, 2.0], [3.0, 5.0], [0.0, 1.0]]));
    let y = bn.call(&mut cx, x);
    let grads = (y * y).sum().backward();
    assert_eq!(tape.bindings().len(), 2);
    for id in bn.buffers() {
        assert!(grads.param(id).is_none());
        assert!(!store.requires_grad(id));
    }
}

/// Per-sample passes leave frozen parameters out of their result: a step on it does
/// not touch them.
#[test]
fn per_sample_gradients_skip_frozen_parameters() {
    use descent::backprop::{PerSampleOptions, per_sample_grads};
    let mut store = ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([1.0, -1.0]));
    let b = store.insert("b", Tensor::from([0.5]));
    store.set_requires_grad(b, false);
    let samples = vec![[1.0, 0.0], [0.0, 2.0]];
    let out = per_sample_grads(&store, &samples, PerSampleOptions::default(), |tape, x| {
        let pred = (tape.param(&store, w) * tape.constant(*x)).sum() + tape.param(&store, b).sum();
        pred * pred
    })
    .unwrap();
    assert!(out.sum.get(b).is_none());
    // d/dw (w·x + b)² = 2(w·x + b) x: 2·1.5·[1, 0] + 2·(-1.5)·[0, 2].
    assert_eq!(out.sum.get(w).unwrap().data(), &[3.0, -6.0]);
}
