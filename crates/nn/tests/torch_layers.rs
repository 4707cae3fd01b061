//! Every layer against torch.nn in f64: forward values, the input's gradient, every
//! parameter's gradient and, for batch norm, the running statistics after the call,
//! over a grid of settings (train and eval modes, shapes, options). The values come
//! from `tests/fixtures/torch_layers.safetensors`, written by the committed
//! `tests/oracle/torch_layers.py` (torch 2.x, float64); no Python is needed here.
//!
//! Agreement is to 1e-10 relative: `|ours - torch| <= 1e-10 · max(|torch|, 1)` for
//! every element (relative above 1, absolute below, where relative error of a value
//! near zero measures cancellation, not a mistake).

use descent_backprop::Backward;
use descent_nn::layers::{
    BatchNorm1d, BatchNorm2d, Dropout, Embedding, Flatten, GELU, Identity, LayerNorm, LeakyReLU,
    LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh,
};
use descent_nn::{Ctx, Linear, Module};
use descent_tape::{ParamStore, Tape};
use descent_tensor::Tensor;
use safetensors::SafeTensors;
use serde_json::Value;
use std::path::Path;

const TOL: f64 = 1e-10;

fn fixture() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_layers.safetensors");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensor(st: &SafeTensors<'_>, name: &str) -> Option<Tensor<f64>> {
    let view = st.tensor(name).ok()?;
    assert_eq!(view.dtype(), safetensors::Dtype::F64, "{name}");
    let data = view
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Some(Tensor::new(view.shape(), data).unwrap())
}

fn close(what: &str, ours: &[f64], torch: &Tensor<f64>) {
    assert_eq!(ours.len(), torch.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(torch.data()).enumerate() {
        assert!(
            (a - b).abs() <= TOL * b.abs().max(1.0),
            "{what}[{i}]: ours {a}, torch {b} (difference {:e})",
            (a - b).abs()
        );
    }
}

/// The layer a case describes, named "m" (its entries "m.weight" and so on).
fn build(spec: &Value, store: &mut ParamStore<f64>) -> Box<dyn Module<f64>> {
    let f = |k: &str| spec[k].as_f64().unwrap();
    let u = |k: &str| spec[k].as_u64().unwrap() as usize;
    let b = |k: &str| spec[k].as_bool().unwrap();
    match spec["layer"].as_str().unwrap() {
        "Linear" => {
            let (i, o) = (u("in"), u("out"));
            let w = Tensor::zeros(&[o, i]);
            let bias = b("bias").then(|| Tensor::zeros(&[o]));
            Box::new(Linear::from_tensors(store, "m", w, bias).unwrap())
        }
        "ReLU" => Box::new(ReLU::named("m")),
        "Tanh" => Box::new(Tanh::named("m")),
        "Sigmoid" => Box::new(Sigmoid::named("m")),
        "GELU" => Box::new(GELU::named("m")),
        "Softplus" => Box::new(Softplus::named("m")),
        "SiLU" => Box::new(SiLU::named("m")),
        "LeakyReLU" => Box::new(LeakyReLU::named("m", f("slope"))),
        "Softmax" => Box::new(Softmax::named("m", spec["dim"].as_i64().unwrap() as isize)),
        "LogSoftmax" => Box::new(LogSoftmax::named(
            "m",
            spec["dim"].as_i64().unwrap() as isize,
        )),
        "Identity" => Box::new(Identity::named("m")),
        "Flatten" => Box::new(Flatten::with_dims(
            spec["start"].as_i64().unwrap() as isize,
            spec["end"].as_i64().unwrap() as isize,
        )),
        "Dropout" => Box::new(Dropout::new(f("p"), 0)),
        "LayerNorm" => {
            let shape: Vec<usize> = spec["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            Box::new(LayerNorm::new(store, "m", &shape, f("eps"), b("affine")))
        }
        "BatchNorm1d" => Box::new(BatchNorm1d::with_options(
            store,
            "m",
            u("features"),
            f("eps"),
            spec["momentum"].as_f64(),
            b("affine"),
        )),
        "BatchNorm2d" => Box::new(BatchNorm2d::with_options(
            store,
            "m",
            u("features"),
            f("eps"),
            spec["momentum"].as_f64(),
            b("affine"),
        )),
        "Embedding" => Box::new(
            Embedding::from_tensor(store, "m", Tensor::zeros(&[u("num"), u("dim")])).unwrap(),
        ),
        other => panic!("no layer {other}"),
    }
}

fn run_case(st: &SafeTensors<'_>, spec: &Value) -> usize {
    let id = spec["id"].as_str().unwrap();
    let what = format!("{id} {spec}");
    let mut store = ParamStore::<f64>::new();
    let layer = build(spec, &mut store);
    // Torch's parameters and buffers, by state_dict name: every entry of the layer
    // must be in the fixture, and every fixture entry must be an entry of the layer.
    let names = layer.state_dict_names(&store);
    let fixture_params = st
        .names()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{id}.param.")))
        .count();
    assert_eq!(names.len(), fixture_params, "{what}: entries {names:?}");
    for (name, pid) in &names {
        let key = name.strip_prefix("m.").unwrap();
        let value =
            tensor(st, &format!("{id}.param.{key}")).unwrap_or_else(|| panic!("{what}: {key}"));
        let dst = store.get_mut(*pid).unwrap();
        assert_eq!(dst.shape(), value.shape(), "{what}: {key}");
        dst.data_mut().copy_from_slice(value.data());
    }
    let input = tensor(st, &format!("{id}.input")).unwrap();
    let cotangent = tensor(st, &format!("{id}.cotangent")).unwrap();
    let train = spec["train"].as_bool().unwrap_or(true);
    let tape = Tape::new();
    let mut cx = Ctx::new(&tape, &mut store);
    cx.set_training(train);
    let integer_input = spec["layer"] == "Embedding";
    let x = if integer_input {
        tape.constant(&input)
    } else {
        tape.var(&input)
    };
    let y = layer.call(&mut cx, x);
    close(
        &format!("{what} out"),
        y.value().data(),
        &tensor(st, &format!("{id}.out")).unwrap(),
    );
    let loss = (y * tape.constant(&cotangent)).sum();
    let grads = loss.backward();
    let mut checked = 1;
    if !integer_input {
        close(
            &format!("{what} grad_input"),
            grads.wrt(x).data(),
            &tensor(st, &format!("{id}.grad_input")).unwrap(),
        );
        checked += 1;
    }
    for (name, pid) in layer.named_parameters(&store) {
        let key = name.strip_prefix("m.").unwrap();
        let g = grads
            .param(pid)
            .unwrap_or_else(|| panic!("{what}: no gradient for {key}"));
        close(
            &format!("{what} grad.{key}"),
            g.data(),
            &tensor(st, &format!("{id}.grad.{key}")).unwrap(),
        );
        checked += 1;
    }
    for pid in layer.buffers() {
        let name = store.name(pid).unwrap().to_owned();
        let key = name.strip_prefix("m.").unwrap();
        let after = tensor(st, &format!("{id}.after.{key}")).unwrap();
        close(
            &format!("{what} after.{key}"),
            store.get(pid).unwrap().data(),
            &after,
        );
        checked += 1;
    }
    checked
}

#[test]
fn every_layer_agrees_with_torch_nn() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let cases: Vec<Value> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["cases"]).unwrap();
    assert_eq!(cases.len(), 86, "the script writes 86 cases");
    let mut layers = std::collections::BTreeSet::new();
    let mut checked = 0;
    for spec in &cases {
        checked += run_case(&st, spec);
        layers.insert(spec["layer"].as_str().unwrap().to_owned());
    }
    // Every layer kind is covered, and every tensor of the fixture was compared.
    assert_eq!(layers.len(), 17, "{layers:?}");
    let compared_kinds = st
        .names()
        .iter()
        .filter(|n| n.contains(".out") || n.contains(".grad") || n.contains(".after."))
        .count();
    assert_eq!(checked, compared_kinds);
}
