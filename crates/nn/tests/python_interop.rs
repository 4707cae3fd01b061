//! Checkpoints and Python's safetensors.
//!
//! - Files written by PyTorch (`tests/fixtures/torch_written*.safetensors`, made by the
//!   committed `tests/fixtures/make_torch_fixture.py`) load here and give PyTorch's
//!   numbers. These run everywhere: no Python needed.
//! - A checkpoint written here is read back by Python's `safetensors.numpy` (values,
//!   shapes, dtypes, and the CRC-32 recomputed with `zlib`), and a file written by
//!   Python loads here. These need an interpreter with `safetensors` and `numpy`, named
//!   by the environment variable `DESCENT_PYTHON`, so they are `#[ignore]`d: run them
//!   with `DESCENT_PYTHON=/path/to/python cargo test -p descent-nn --test suite python_interop
//!   -- --ignored` (`.ci/run` makes such a Python in a venv and does).

use descent_nn::{Activation, Mlp, checkpoint, init};
use descent_optim::{Adam, Optimizer};
use descent_tape::{ParamStore, Tape};
use descent_tensor::{Float, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

#[test]
fn a_pytorch_state_dict_loads_into_the_same_model_and_gives_pytorchs_output() {
    let mut store = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut store,
        "mlp",
        &[3, 4, 2],
        Activation::Tanh,
        &mut init::rng(0),
    );
    checkpoint::load_into(&mut store, fixture("torch_written.safetensors")).unwrap();
    // The one tensor the script set exactly.
    let bias = store.get(store.find("mlp.1.bias").unwrap()).unwrap();
    assert_eq!(bias.data(), &[0.5, -0.25]);
    assert_eq!(
        store
            .get(store.find("mlp.0.weight").unwrap())
            .unwrap()
            .shape(),
        &[4, 3]
    );

    let io = checkpoint::load::<f32>(fixture("torch_written_io.safetensors")).unwrap();
    let (x, y) = (
        io.get(io.find("x").unwrap()).unwrap(),
        io.get(io.find("y").unwrap()).unwrap(),
    );
    let tape = Tape::new();
    let out = mlp.forward(&tape, &store, tape.constant(x)).value();
    assert_eq!(out.shape(), y.shape());
    for (a, b) in out.data().iter().zip(y.data()) {
        assert!((a - b).abs() <= 1e-6, "descent {a} vs PyTorch {b}");
    }
}

#[test]
fn pytorch_float64_tensors_of_awkward_shapes_load_exactly() {
    let store = checkpoint::load::<f64>(fixture("torch_written_f64.safetensors")).unwrap();
    let get = |n: &str| store.get(store.find(n).unwrap()).unwrap().clone();
    assert_eq!(get("scalar"), Tensor::scalar(-2.5));
    assert_eq!(
        get("column"),
        Tensor::new(&[3, 1], vec![0.0, 0.25, 0.5]).unwrap()
    );
    assert_eq!(
        get("ones.axes"),
        Tensor::from_fn(&[1, 2, 1, 3], |i| i as f64 - 2.75)
    );
    assert_eq!(get("empty").shape(), &[0, 2]);
    // No file written elsewhere holds the order, so a new store is in name order.
    let names: Vec<&str> = store.iter().map(|(_, n, _)| n).collect();
    assert_eq!(names, ["column", "empty", "ones.axes", "scalar"]);
    // And float64 tensors do not load into an f32 store: no silent conversion.
    let err = checkpoint::load::<f32>(fixture("torch_written_f64.safetensors")).unwrap_err();
    assert!(
        err.to_string()
            .contains("is F64 in the file, but F32 is needed"),
        "{err}"
    );
}

/// The interpreter named by `DESCENT_PYTHON`, checked to import safetensors and numpy.
fn python() -> String {
    let Ok(py) = std::env::var("DESCENT_PYTHON") else {
        panic!(
            "DESCENT_PYTHON is not set: this test needs a Python with `safetensors` and `numpy` \
             (e.g. `python3 -m venv v && v/bin/pip install safetensors numpy`, then \
             DESCENT_PYTHON=v/bin/python); .ci/run makes one"
        );
    };
    let ok = Command::new(&py)
        .args(["-c", "import safetensors.numpy, numpy"])
        .status()
        .unwrap_or_else(|e| panic!("DESCENT_PYTHON={py} cannot be run: {e}"));
    assert!(
        ok.success(),
        "DESCENT_PYTHON={py} cannot import safetensors.numpy and numpy"
    );
    py
}

fn run_python(script: &str, args: &[&Path]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("descent-interop-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads every file given with `safetensors.numpy.load_file`, recomputes the CRC-32
/// descent records (the tensor table, then the data, through `zlib.crc32`), and prints
/// `{file: {"crc_ok": bool, "format": .., "tensors": {name: [dtype, shape, bits]}}}` as
/// JSON, each value as the bits of its `f64` widening.
const READ_BACK: &str = r#"
import json, struct, sys, zlib
from safetensors.numpy import load_file

out = {}
for path in sys.argv[1:]:
    tensors = load_file(path)
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    dt = {"float32": "F32", "float64": "F64"}
    order = sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"][0],
        -{"F64": 8, "F32": 4}[kv[1]["dtype"]], kv[0]))
    table = b"".join(
        "{}\t{}\t[{}]\t{}\n".format(name, info["dtype"], ", ".join(map(str, info["shape"])),
            info["data_offsets"][1] - info["data_offsets"][0]).encode()
        for name, info in order)
    crc = zlib.crc32(table + raw[8 + n:])
    out[path] = {
        "crc_ok": meta.get("descent.crc32") == "%08x" % crc,
        "format": meta.get("format"),
        # Values as the bits of their float64 widening: exact, whatever parses the JSON.
        "tensors": {k: [dt[str(v.dtype)], list(v.shape),
                        [struct.unpack("<Q", struct.pack("<d", float(x)))[0] for x in v.reshape(-1)]]
                    for k, v in tensors.items()},
    }
print(json.dumps(out))
"#;

fn expect_tensor<T: Float>(got: &serde_json::Value, name: &str, value: &Tensor<T>, dtype: &str) {
    let t = &got[name];
    assert_eq!(t[0], dtype, "{name}");
    let shape: Vec<usize> = serde_json::from_value(t[1].clone()).unwrap();
    assert_eq!(shape, value.shape(), "{name}");
    let bits: Vec<u64> = serde_json::from_value(t[2].clone()).unwrap();
    let want: Vec<u64> = value.data().iter().map(|v| v.as_f64().to_bits()).collect();
    // Bit for bit: an f32 widens to f64 without rounding.
    assert_eq!(bits, want, "{name}");
}

#[test]
#[ignore = "needs DESCENT_PYTHON: a Python with safetensors and numpy (.ci/run sets one up)"]
fn python_reads_back_checkpoints_written_here() {
    let dir = scratch("read_back");
    // Parameters in both dtypes, awkward shapes, and Adam's state after a few steps.
    let mut small = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut small,
        "mlp",
        &[3, 4, 2],
        Activation::Tanh,
        &mut init::rng(5),
    );
    let mut adam = Adam::new(1e-2);
    let tape = Tape::new();
    for _ in 0..3 {
        tape.reset();
        let x = tape.constant(Tensor::from_fn(&[5, 3], |i| i as f32 * 0.1 - 0.7));
        let loss = mlp.forward(&tape, &small, x).tanh().sum();
        let grads = descent_backprop::ParamGrads::from(&descent_backprop::backward(loss).unwrap());
        adam.step(&mut small, &grads).unwrap();
    }
    let mut wide = ParamStore::<f64>::new();
    wide.insert("scalar", Tensor::scalar(std::f64::consts::PI));
    wide.insert(
        "a.b.c",
        Tensor::from_fn(&[1, 3, 1], |i| 1e-300 * (i as f64 + 1.0)),
    );
    wide.insert("empty", Tensor::<f64>::zeros(&[0, 3]));
    let (p32, p64, opt) = (
        dir.join("small.safetensors"),
        dir.join("wide.safetensors"),
        dir.join("adam.safetensors"),
    );
    checkpoint::save(&small, &p32).unwrap();
    checkpoint::save(&wide, &p64).unwrap();
    checkpoint::save_optimizer(&small, &adam, &opt).unwrap();

    let out = run_python(READ_BACK, &[&p32, &p64, &opt]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    for p in [&p32, &p64, &opt] {
        let f = &json[p.to_str().unwrap()];
        assert_eq!(
            f["crc_ok"],
            true,
            "{}: Python's zlib.crc32 disagrees",
            p.display()
        );
        assert_eq!(f["format"], "pt", "{}", p.display());
    }
    let got = &json[p32.to_str().unwrap()]["tensors"];
    assert_eq!(got.as_object().unwrap().len(), small.len());
    for (_, name, v) in small.iter() {
        expect_tensor(got, name, v, "F32");
    }
    let got = &json[p64.to_str().unwrap()]["tensors"];
    for (_, name, v) in wide.iter() {
        expect_tensor(got, name, v, "F64");
    }
    let got = &json[opt.to_str().unwrap()]["tensors"];
    let state = adam.state(&small);
    assert_eq!(
        got.as_object().unwrap().len(),
        state.buffers.len() + state.scalars.len()
    );
    for (id, slot, v) in &state.buffers {
        expect_tensor(
            got,
            &format!("{}.{slot}", small.name(*id).unwrap()),
            v,
            "F32",
        );
    }
    for (id, slot, v) in &state.scalars {
        let name = format!("{}.{slot}", small.name(*id).unwrap());
        expect_tensor(got, &name, &Tensor::scalar(*v), "F64");
    }
}

#[test]
#[ignore = "needs DESCENT_PYTHON: a Python with safetensors and numpy (.ci/run sets one up)"]
fn a_file_written_by_python_loads_here() {
    let dir = scratch("from_python");
    let path = dir.join("numpy.safetensors");
    run_python(
        r#"
import sys, numpy as np
from safetensors.numpy import save_file
save_file({
    "fc.weight": (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) / 8,
    "fc.bias": np.array([1e-30, -3.5], dtype=np.float32),
}, sys.argv[1], metadata={"note": "written by numpy"})
"#,
        &[&path],
    );
    let mut store = ParamStore::<f32>::new();
    let fc = descent_nn::Linear::new(&mut store, "fc", 3, 2, &mut init::rng(0));
    checkpoint::load_into(&mut store, &path).unwrap();
    assert_eq!(
        store.get(fc.weight()).unwrap().data(),
        &[-0.3125, -0.1875, -0.0625, 0.0625, 0.1875, 0.3125]
    );
    assert_eq!(
        store.get(fc.bias().unwrap()).unwrap().data(),
        &[1e-30, -3.5]
    );
}
