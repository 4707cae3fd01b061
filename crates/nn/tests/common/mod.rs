//! What the PyTorch agreement tests share: fixtures written by the scripts in
//! `tests/oracle/` (safetensors, read as a `ParamStore` by name) and the comparison.

use descent_nn::checkpoint;
use descent_tape::ParamStore;
use descent_tensor::{Tensor, View};

/// Relative tolerance of every comparison with PyTorch in f64.
pub const TOL: f64 = 1e-10;

/// The fixture `tests/fixtures/<dir>/<case>.safetensors`.
pub fn fixture(dir: &str, case: &str) -> ParamStore<f64> {
    let path = format!(
        "{}/tests/fixtures/{dir}/{case}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    checkpoint::load::<f64>(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture's tensor `name`.
pub fn get<'a>(f: &'a ParamStore<f64>, name: &str) -> &'a Tensor<f64> {
    f.get(
        f.find(name)
            .unwrap_or_else(|| panic!("no {name} in the fixture")),
    )
    .unwrap()
}

/// Whether the fixture holds `name`.
pub fn has(f: &ParamStore<f64>, name: &str) -> bool {
    f.find(name).is_some()
}

/// Asserts the largest |a - b| / max(1, |b|) (relative where values are large, absolute
/// near 0) is at most [`TOL`].
pub fn assert_close(what: &str, ours: View<'_, f64>, torch: &Tensor<f64>) {
    assert_eq!(ours.shape(), torch.shape(), "{what}: shapes");
    let worst = ours
        .data()
        .iter()
        .zip(torch.data())
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max);
    assert!(worst <= TOL, "{what}: off by {worst:e} (relative)");
}

/// Copies the fixture's values into every parameter of `store`, by name; asserts the
/// fixture's parameters (names starting "net.") are exactly the store's.
pub fn load_weights(store: &mut ParamStore<f64>, f: &ParamStore<f64>) {
    let mut ours: Vec<String> = store.iter().map(|(_, n, _)| n.to_owned()).collect();
    let mut theirs: Vec<String> = f
        .iter()
        .map(|(_, n, _)| n.to_owned())
        .filter(|n| n.starts_with("net."))
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "parameter names");
    let ids: Vec<_> = store.ids().collect();
    for id in ids {
        let name = store.name(id).unwrap().to_owned();
        *store.get_mut(id).unwrap() = get(f, &name).clone();
    }
}

/// Asserts every parameter's gradient equals the fixture's `grad.<name>`.
pub fn assert_param_grads(
    case: &str,
    f: &ParamStore<f64>,
    store: &ParamStore<f64>,
    grads: &descent_backprop::Gradients<f64>,
) {
    for (id, name, _) in store.iter() {
        let g = grads
            .param(id)
            .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
        assert_close(
            &format!("{case}: ∂L/∂{name}"),
            g,
            get(f, &format!("grad.{name}")),
        );
    }
}
