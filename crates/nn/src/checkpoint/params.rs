//! A store's parameters: saved one tensor per parameter, loaded into a new store or,
//! strictly and by name, into an existing one.

use super::atomic::write_atomically;
use super::error::{CheckpointError, memory};
use super::format::{KIND_KEY, ORDER_KEY, Raw, raw, serialize};
use super::read::{parse, read_file};
use descent_tape::ParamStore;
use descent_tensor::{Float, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// The store's parameters as a safetensors file, in memory: one tensor per parameter,
/// named by its store name, in the store's dtype. [`save`] writes this to a file.
///
/// # Errors
/// [`CheckpointError::Content`] when two parameters share a name, or one is named
/// `__metadata__` (reserved by the format).
pub fn to_bytes<T: Float>(store: &ParamStore<T>) -> Result<Vec<u8>, CheckpointError> {
    encode_params(store, &memory())
}

fn encode_params<T: Float>(store: &ParamStore<T>, path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let tensors: Vec<(String, Raw)> = store
        .iter()
        .map(|(_, name, v)| (name.to_owned(), raw(v.shape(), v.data())))
        .collect();
    let order: Vec<&str> = store.iter().map(|(_, n, _)| n).collect();
    let metadata = BTreeMap::from([
        (KIND_KEY.to_owned(), "params".to_owned()),
        (
            ORDER_KEY.to_owned(),
            serde_json::to_string(&order).expect("strings serialize"),
        ),
    ]);
    serialize(path, &tensors, metadata)
}

/// Saves the store's parameters to `path` (see the [module docs](crate::checkpoint)), atomically:
/// a failed save leaves the previous file as it was.
///
/// # Errors
/// [`CheckpointError::Io`], or those of [`to_bytes`].
pub fn save<T: Float>(
    store: &ParamStore<T>,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let bytes = encode_params(store, path)?;
    write_file(path, &bytes)
}

pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomically(path, |w| w.write_all(bytes)).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A new store holding the parameters of a safetensors file in memory (see [`load`]).
///
/// # Errors
/// As [`load`].
pub fn from_bytes<T: Float>(bytes: &[u8]) -> Result<ParamStore<T>, CheckpointError> {
    decode_params(&memory(), bytes)
}

fn decode_params<T: Float>(path: &Path, bytes: &[u8]) -> Result<ParamStore<T>, CheckpointError> {
    let parsed = parse(path, bytes)?;
    parsed.expect_kind("params")?;
    let mut names = parsed.names();
    // The order the parameters had in the store, when the file records it.
    if let Some(order) = parsed.metadata.get(ORDER_KEY)
        && let Ok(order) = serde_json::from_str::<Vec<String>>(order)
    {
        let mut sorted = order.clone();
        sorted.sort();
        let mut have = names.clone();
        have.sort();
        if sorted == have {
            names = order;
        }
    }
    let mut store = ParamStore::new();
    for name in names {
        let (shape, data) = parsed.values::<T>(&name, None)?;
        store.insert(
            name,
            Tensor::new(&shape, data).expect("checked by safetensors"),
        );
    }
    Ok(store)
}

/// A new store holding the parameters in the file at `path`, in the order they had in
/// the store that saved them (name order for a file written elsewhere).
///
/// # Errors
/// [`CheckpointError::Io`] when the file cannot be read; [`CheckpointError::Format`]
/// or [`CheckpointError::Checksum`] when it is not a valid safetensors file (empty,
/// truncated, corrupted); [`CheckpointError::Dtype`] for a tensor not of `T`'s dtype;
/// [`CheckpointError::Content`] for a file of optimiser state.
pub fn load<T: Float>(path: impl AsRef<Path>) -> Result<ParamStore<T>, CheckpointError> {
    let path = path.as_ref();
    decode_params(path, &read_file(path)?)
}

/// Loads a safetensors file in memory into `store` by name (see [`load_into`]).
///
/// # Errors
/// As [`load_into`].
pub fn load_into_from_bytes<T: Float>(
    store: &mut ParamStore<T>,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    decode_into(store, &memory(), bytes)
}

fn decode_into<T: Float>(
    store: &mut ParamStore<T>,
    path: &Path,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    // Names in a store are unique (refused at insert), so loading by name is never
    // ambiguous.
    let parsed = parse(path, bytes)?;
    parsed.expect_kind("params")?;
    let file_names = parsed.names();
    let missing: Vec<String> = store
        .iter()
        .map(|(_, n, _)| n.to_owned())
        .filter(|n| !file_names.contains(n))
        .collect();
    let unexpected: Vec<String> = file_names
        .iter()
        .filter(|n| store.find(n).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(CheckpointError::Names {
            path: path.to_owned(),
            missing,
            unexpected,
        });
    }
    // Everything is checked before anything is written: a failed load changes nothing.
    let mut values = Vec::with_capacity(store.len());
    for (id, name, value) in store.iter() {
        let (_, data) = parsed.values::<T>(name, Some(value.shape()))?;
        values.push((id, data));
    }
    for (id, data) in values {
        store
            .get_mut(id)
            .expect("an id of the store")
            .data_mut()
            .copy_from_slice(&data);
    }
    Ok(())
}

/// Loads the parameters in the file at `path` into `store`, by name, strictly: the
/// file must hold exactly the store's parameter names, each with its parameter's shape
/// and the store's dtype. Everything is checked before any value is written, so a
/// failed load leaves the store unchanged.
///
/// # Errors
/// As [`load`], and [`CheckpointError::Names`] listing the missing and unexpected
/// names, [`CheckpointError::Shape`] naming the tensor and both shapes,
/// [`CheckpointError::Content`] when the store has two parameters of one name.
pub fn load_into<T: Float>(
    store: &mut ParamStore<T>,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    decode_into(store, path, &read_file(path)?)
}
