//! A model written by PyTorch (`tests/fixtures/torch_model.safetensors`, its
//! `state_dict` saved by safetensors as PyTorch users save it; made by the committed
//! `tests/oracle/torch_model.py`) loads by name into the same architecture built here,
//! and gives PyTorch's outputs to 1e-10, in evaluation mode and in training mode
//! (with the running statistics it then updates). No Python is needed.

use descent_nn::layers::{BatchNorm1d, Dropout, LayerNorm, ReLU, Tanh};
use descent_nn::{Ctx, Linear, Module, ModuleInfo, Sequential, checkpoint, init};
use descent_tape::{ParamStore, Tape};
use descent_tensor::Tensor;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `nn.Sequential(Linear(6, 8), BatchNorm1d(8), ReLU(), Dropout(0.0), Linear(8, 8),
/// LayerNorm(8), Tanh(), Linear(8, 3))`, with descent's own initial values.
fn model(store: &mut ParamStore<f64>) -> Sequential<f64> {
    let rng = &mut init::rng(1);
    let mut m = Sequential::new("");
    m.push(Linear::new(store, m.next_name(), 6, 8, rng));
    m.push(BatchNorm1d::new(store, m.next_name(), 8));
    m.push(ReLU::new());
    m.push(Dropout::new(0.0, 0));
    m.push(Linear::new(store, m.next_name(), 8, 8, rng));
    m.push(LayerNorm::new(store, m.next_name(), &[8], 1e-5, true));
    m.push(Tanh::new());
    m.push(Linear::new(store, m.next_name(), 8, 3, rng));
    m
}

fn io() -> ParamStore<f64> {
    checkpoint::load(fixture("torch_model_io.safetensors")).unwrap()
}

fn get(store: &ParamStore<f64>, name: &str) -> Tensor<f64> {
    store.get(store.find(name).unwrap()).unwrap().clone()
}

fn close(what: &str, ours: &Tensor<f64>, torch: &Tensor<f64>) {
    assert_eq!(ours.shape(), torch.shape(), "{what}");
    for (i, (a, b)) in ours.data().iter().zip(torch.data()).enumerate() {
        assert!(
            (a - b).abs() <= 1e-10 * b.abs().max(1.0),
            "{what}[{i}]: ours {a}, torch {b}"
        );
    }
}

#[test]
fn a_torch_state_dict_loads_by_name_and_gives_torchs_outputs() {
    let mut store = ParamStore::<f64>::new();
    let net = model(&mut store);
    let names: Vec<String> = net
        .state_dict_names(&store)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
            "4.weight",
            "4.bias",
            "5.weight",
            "5.bias",
            "7.weight",
            "7.bias"
        ]
    );
    checkpoint::load_state_dict(&net, &mut store, fixture("torch_model.safetensors")).unwrap();
    // torch's int64 count of batches, five training steps.
    assert_eq!(get(&store, "1.num_batches_tracked").data(), &[5.0]);

    let io = io();
    let x = get(&io, "input");
    let tape = Tape::new();
    let mut cx = Ctx::new(&tape, &mut store).eval();
    let y = tape.no_grad(|| net.call(&mut cx, tape.constant(&x)));
    close("eval output", &y.value(), &get(&io, "eval_out"));

    // Training mode: batch statistics, and the running ones updated as torch's.
    tape.reset();
    let mut cx = Ctx::new(&tape, &mut store);
    let y = net.call(&mut cx, tape.constant(&x));
    close("train output", &y.value(), &get(&io, "train_out"));
    for id in net.buffers() {
        let name = store.name(id).unwrap().to_owned();
        close(
            &name,
            store.get(id).unwrap(),
            &get(&io, &format!("after.{name}")),
        );
    }
}

/// A file for another architecture is refused with the names that differ, and the
/// store is left as it was.
#[test]
fn a_mismatched_state_dict_changes_nothing() {
    let mut store = ParamStore::<f64>::new();
    let rng = &mut init::rng(1);
    let mut net = Sequential::new("");
    net.push(Linear::new(&mut store, net.next_name(), 6, 8, rng));
    net.push(BatchNorm1d::new(&mut store, net.next_name(), 8));
    let before: Vec<Tensor<f64>> = store.iter().map(|(_, _, v)| v.clone()).collect();
    let err = checkpoint::load_state_dict(&net, &mut store, fixture("torch_model.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected '4.weight'") || err.contains("'4.weight'"),
        "{err}"
    );
    let after: Vec<Tensor<f64>> = store.iter().map(|(_, _, v)| v.clone()).collect();
    assert_eq!(before, after);

    // The right names with a wrong shape: named, with both shapes.
    let mut store = ParamStore::<f64>::new();
    let rng = &mut init::rng(1);
    let mut wide = Sequential::new("");
    wide.push(Linear::new(&mut store, wide.next_name(), 7, 8, rng));
    wide.push(BatchNorm1d::new(&mut store, wide.next_name(), 8));
    wide.push(ReLU::new());
    wide.push(Dropout::new(0.0, 0));
    wide.push(Linear::new(&mut store, wide.next_name(), 8, 8, rng));
    wide.push(LayerNorm::new(
        &mut store,
        wide.next_name(),
        &[8],
        1e-5,
        true,
    ));
    wide.push(Tanh::new());
    wide.push(Linear::new(&mut store, wide.next_name(), 8, 3, rng));
    let err = checkpoint::load_state_dict(&wide, &mut store, fixture("torch_model.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor '0.weight' has shape [8, 6] in the file, but the store's is [8, 7]"),
        "{err}"
    );
}

/// A float64 file does not load into an f32 model (precision is never lost silently).
#[test]
fn f64_weights_are_refused_by_an_f32_model() {
    let mut store = ParamStore::<f32>::new();
    let rng = &mut init::rng(1);
    let mut net = Sequential::<f32>::new("");
    net.push(Linear::new(&mut store, net.next_name(), 6, 8, rng));
    net.push(BatchNorm1d::new(&mut store, net.next_name(), 8));
    net.push(ReLU::new());
    net.push(Dropout::new(0.0, 0));
    net.push(Linear::new(&mut store, net.next_name(), 8, 8, rng));
    net.push(LayerNorm::new(
        &mut store,
        net.next_name(),
        &[8],
        1e-5,
        true,
    ));
    net.push(Tanh::new());
    net.push(Linear::new(&mut store, net.next_name(), 8, 3, rng));
    let err = checkpoint::load_state_dict(&net, &mut store, fixture("torch_model.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is F64 in the file, but F32 is needed"),
        "{err}"
    );
}
