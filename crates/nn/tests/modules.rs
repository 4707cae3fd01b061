//! Modules: names as PyTorch's `state_dict`, scopes on the tape, summaries, the modes,
//! dropout's stream, and each layer's errors by message.

use descent_backprop::Backward;
use descent_nn::layers::{BatchNorm1d, BatchNorm2d, Dropout, Flatten, LayerNorm, ReLU, Tanh};
use descent_nn::{Ctx, Linear, Module, ModuleInfo, Sequential, init};
use descent_tape::{NodeId, ParamStore, Tape};
use descent_tensor::Tensor;

/// `nn.Sequential(OrderedDict(features=nn.Sequential(Linear, ReLU, LayerNorm),
/// head=Linear))` has keys `features.0.weight`, ..., `features.2.bias`,
/// `head.weight`; nested containers here give the same.
#[test]
fn nested_names_are_state_dict_keys() {
    let mut store = ParamStore::<f64>::new();
    let rng = &mut init::rng(0);
    let mut features = Sequential::new("features");
    features.push(Linear::new(&mut store, features.next_name(), 3, 4, rng));
    features.push(ReLU::new());
    features.push(LayerNorm::new(
        &mut store,
        features.next_name(),
        &[4],
        1e-5,
        true,
    ));
    let mut model = Sequential::new("");
    // A named child of an unnamed container is refused unless named by position...
    let mut misplaced = Sequential::<f64>::new("features");
    misplaced.push(ReLU::new());
    assert!(model.try_push(misplaced).is_err());
    // ... so the features go in a container of their own name.
    let mut root = Sequential::new("model");
    let mut inner = Sequential::new(root.next_name());
    inner.push(Linear::new(&mut store, inner.next_name(), 3, 3, rng));
    root.push(inner);
    let names: Vec<String> = root
        .state_dict_names(&store)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["model.0.0.weight", "model.0.0.bias"]);
    let names: Vec<String> = features
        .state_dict_names(&store)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "features.0.weight",
            "features.0.bias",
            "features.2.weight",
            "features.2.bias"
        ]
    );
    assert_eq!(features.children()[1].name(), "features.1");
}

/// Every node a layer records is in its scope, so `grads.scope_deltas` gives each
/// layer's δ.
#[test]
fn each_layer_records_in_its_scope() {
    let mut store = ParamStore::<f64>::new();
    let rng = &mut init::rng(0);
    let mut net = Sequential::new("net");
    net.push(Linear::new(&mut store, net.next_name(), 3, 4, rng));
    net.push(Tanh::new());
    net.push(BatchNorm1d::new(&mut store, net.next_name(), 4));
    let tape = Tape::new();
    let mut cx = Ctx::new(&tape, &mut store);
    let x = tape.constant(Tensor::from([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0]]));
    let y = net.call(&mut cx, x);
    let read = tape.read();
    let scopes: Vec<&str> = (1..tape.len())
        .map(|i| read.scope_of(NodeId::from_index(i)))
        .collect();
    assert!(
        scopes
            .iter()
            .all(|s| ["net.0", "net.1", "net.2"].contains(s)),
        "{scopes:?}"
    );
    assert_eq!(read.scope_of(y.id()), "net.2");
    drop(read);
    let grads = y.sum().backward();
    assert_eq!(grads.scope_deltas(&tape).unwrap().len(), 3);
}

#[test]
fn summary_counts_frozen_parameters() {
    let mut store = ParamStore::<f32>::new();
    let rng = &mut init::rng(0);
    let mut net = Sequential::new("net");
    net.push(Flatten::new());
    net.push(Linear::new(&mut store, net.next_name(), 12, 5, rng));
    net.push(BatchNorm1d::new(&mut store, net.next_name(), 5));
    net.children()[1].freeze(&mut store);
    let s = net.summary(&mut store, &[2, 3, 4]).unwrap();
    assert_eq!((s.total, s.trainable), (65 + 10, 10));
    assert_eq!(
        s.rows.iter().map(|r| r.kind).collect::<Vec<_>>(),
        ["Sequential", "Flatten", "Linear", "BatchNorm1d"]
    );
    assert_eq!(s.rows[3].output, [2, 5]);
    let text = s.to_string();
    assert!(
        text.ends_with(
            "total parameters:      75\ntrainable parameters:  10\nfrozen parameters:     65"
        ),
        "{text}"
    );
    // Evaluation mode and a tape of its own: the running statistics are untouched.
    let bn = net.children()[2].buffers();
    assert_eq!(store.get(bn[2]).unwrap().data(), &[0.0]);
    // A shape the model refuses is the model's error.
    let err = net.summary(&mut store, &[2, 5]).unwrap_err().to_string();
    assert_eq!(
        err,
        "net.1: the input has shape [2, 5], whose last axis should be the layer's 12 input features"
    );
}

/// The same seed gives the same masks; each call draws a new one; `p = 1` zeroes
/// everything; the kept fraction is about `1 - p`.
#[test]
fn dropout_stream() {
    let tape = Tape::<f64>::new();
    let mut store = ParamStore::new();
    let x = tape.var(Tensor::<f64>::ones(&[4000]));
    let (a, b) = (Dropout::new(0.25, 9), Dropout::new(0.25, 9));
    let mut cx = Ctx::new(&tape, &mut store);
    let ya = a.call(&mut cx, x).value();
    let yb = b.call(&mut cx, x).value();
    assert_eq!(ya, yb);
    let ya2 = a.call(&mut cx, x).value();
    assert_ne!(ya, ya2);
    let kept = ya.data().iter().filter(|&&v| v != 0.0).count() as f64 / 4000.0;
    assert!((kept - 0.75).abs() < 0.03, "{kept}");
    assert!(
        ya.data()
            .iter()
            .all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-15)
    );
    let all = Dropout::new(1.0, 0).call(&mut cx, x).value();
    assert!(all.data().iter().all(|&v| v == 0.0));
    assert_eq!(Dropout::new(0.0, 0).call(&mut cx, x).id(), x.id());
}

/// Momentum `None`: the running statistics are the plain average over the batches
/// seen, as PyTorch's cumulative moving average.
#[test]
fn batch_norm_cumulative_average() {
    let mut store = ParamStore::<f64>::new();
    let bn = BatchNorm1d::with_options(&mut store, "bn", 1, 1e-5, None, true);
    let tape = Tape::new();
    for batch in [[[1.0], [3.0]], [[5.0], [7.0]]] {
        tape.reset();
        let mut cx = Ctx::new(&tape, &mut store);
        let _ = bn.call(&mut cx, tape.constant(Tensor::from(batch)));
    }
    // (2 + 6) / 2 for the mean; the unbiased variances are 2 and 2, so 2.
    assert_eq!(store.get(bn.running_mean()).unwrap().data(), &[4.0]);
    assert_eq!(store.get(bn.running_var()).unwrap().data(), &[2.0]);
    assert_eq!(store.get(bn.num_batches_tracked()).unwrap().data(), &[2.0]);
}

#[test]
fn layer_errors_name_the_layer_and_shapes() {
    let mut store = ParamStore::<f64>::new();
    let bn = BatchNorm1d::new(&mut store, "bn", 3);
    let bn2 = BatchNorm2d::new(&mut store, "bn2", 3);
    let ln = LayerNorm::new(&mut store, "ln", &[2, 3], 1e-5, false);
    let tape = Tape::new();
    let mut cx = Ctx::new(&tape, &mut store);
    let err = |r: Result<descent_tape::Var<'_, f64>, descent_nn::Error>| r.unwrap_err().to_string();
    assert_eq!(
        err(bn.try_call(&mut cx, tape.constant(Tensor::<f64>::zeros(&[4, 2])))),
        "bn: the input has shape [4, 2], but BatchNorm1d of 3 features takes [N, C] or [N, C, L]"
    );
    assert_eq!(
        err(bn.try_call(&mut cx, tape.constant(Tensor::<f64>::zeros(&[1, 3])))),
        "bn: training needs more than one value per channel, got input shape [1, 3]"
    );
    assert_eq!(
        err(bn2.try_call(&mut cx, tape.constant(Tensor::<f64>::zeros(&[2, 3, 4])))),
        "bn2: the input has shape [2, 3, 4], but BatchNorm2d of 3 features takes [N, C, H, W]"
    );
    assert_eq!(
        err(ln.try_call(&mut cx, tape.constant(Tensor::<f64>::zeros(&[4, 3, 2])))),
        "ln: the input has shape [4, 3, 2], whose last axes should be the normalized shape [2, 3]"
    );
    let mut flat = Flatten::with_dims(2, 1);
    flat.set_name("flat".into());
    assert_eq!(
        err(flat.try_call(&mut cx, tape.constant(Tensor::<f64>::zeros(&[4, 3, 2])))),
        "flat: cannot flatten axes 2..=1 of an input of shape [4, 3, 2]"
    );
    // In evaluation mode one sample is fine: the running statistics are used.
    cx.set_training(false);
    assert!(
        bn.try_call(&mut cx, tape.constant(Tensor::<f64>::zeros(&[1, 3])))
            .is_ok()
    );
}
