//! A PyTorch `state_dict` loaded into a module by name.

use super::error::{CheckpointError, memory};
use super::read::{parse, read_file};
use crate::module::Module;
use descent_tape::ParamStore;
use descent_tensor::Float;
use std::path::Path;

/// Loads a PyTorch `state_dict` saved as safetensors
/// (`safetensors.torch.save_file(model.state_dict(), path)`) into `module`'s entries
/// in `store`, by name, as `model.load_state_dict(sd)` (strict) does: every parameter
/// and buffer of the module (`features.0.weight`, `bn.running_mean`,
/// `bn.num_batches_tracked`) must be in the file with the module's shape, and every
/// tensor of the file must be an entry of the module. Parameters and buffers alike are
/// written; the module's other store entries, and whether a parameter is frozen, are
/// left alone. Everything is checked before anything is written, so a failed load
/// leaves the store unchanged.
///
/// Dtypes are converted only where no value can change: `F32` into a `ParamStore<f64>`,
/// and integer tensors (PyTorch keeps `num_batches_tracked` as `I64`) of exactly
/// representable values. A `F64` tensor is refused by a `ParamStore<f32>`.
///
/// ```
/// use descent_nn::{Linear, Module, Sequential, checkpoint, init, layers::{BatchNorm1d, ReLU}};
/// use descent_tape::ParamStore;
/// let mut store = ParamStore::<f64>::new();
/// let mut net = Sequential::<f64>::new("");
/// net.push(Linear::new(&mut store, net.next_name(), 2, 3, &mut init::rng(0)));
/// net.push(BatchNorm1d::new(&mut store, net.next_name(), 3));
/// net.push(ReLU::new());
/// // A file with the same names (here written by descent; PyTorch writes the same).
/// let bytes = checkpoint::to_bytes(&store).unwrap();
/// let mut other = ParamStore::<f64>::new();
/// let mut same = Sequential::<f64>::new("");
/// same.push(Linear::new(&mut other, same.next_name(), 2, 3, &mut init::rng(1)));
/// same.push(BatchNorm1d::new(&mut other, same.next_name(), 3));
/// checkpoint::load_state_dict_from_bytes(&same, &mut other, &bytes).unwrap();
/// assert_eq!(other.get(other.find("0.weight").unwrap()), store.get(store.find("0.weight").unwrap()));
/// // A module without batch norm: the file's extra tensors are named.
/// let mut small = ParamStore::<f64>::new();
/// let mut lin = Sequential::<f64>::new("");
/// lin.push(Linear::new(&mut small, lin.next_name(), 2, 3, &mut init::rng(1)));
/// let err = checkpoint::load_state_dict_from_bytes(&lin, &mut small, &bytes).unwrap_err();
/// assert!(err.to_string().contains("unexpected '1.bias', '1.num_batches_tracked', '1.running_mean'"), "{err}");
/// ```
///
/// # Errors
/// [`CheckpointError::Io`], [`CheckpointError::Format`] for a file that is not
/// safetensors, [`CheckpointError::Names`] listing the missing and unexpected names,
/// [`CheckpointError::Shape`] naming the tensor and both shapes,
/// [`CheckpointError::Dtype`] for a tensor that would lose precision.
pub fn load_state_dict<T: Float, M: Module<T> + ?Sized>(
    module: &M,
    store: &mut ParamStore<T>,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    decode(module, store, path, &read_file(path)?)
}

/// [`load_state_dict`] from the bytes of a file in memory.
///
/// # Errors
/// As [`load_state_dict`].
pub fn load_state_dict_from_bytes<T: Float, M: Module<T> + ?Sized>(
    module: &M,
    store: &mut ParamStore<T>,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    decode(module, store, &memory(), bytes)
}

fn decode<T: Float, M: Module<T> + ?Sized>(
    module: &M,
    store: &mut ParamStore<T>,
    path: &Path,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    let parsed = parse(path, bytes)?;
    parsed.expect_kind("params")?;
    let entries = module.state_dict_names(store);
    let file_names = parsed.names();
    let missing: Vec<String> = entries
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !file_names.contains(n))
        .collect();
    let unexpected: Vec<String> = file_names
        .iter()
        .filter(|n| !entries.iter().any(|(e, _)| e == *n))
        .cloned()
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(CheckpointError::Names {
            path: path.to_owned(),
            missing,
            unexpected,
        });
    }
    let mut values = Vec::with_capacity(entries.len());
    for (name, id) in &entries {
        let shape = store
            .get(*id)
            .map(|t| t.shape().to_vec())
            .unwrap_or_default();
        values.push((*id, parsed.values_lossless::<T>(name, &shape)?));
    }
    for (id, data) in values {
        store
            .get_mut(id)
            .expect("an entry of the module")
            .data_mut()
            .copy_from_slice(&data);
    }
    Ok(())
}
