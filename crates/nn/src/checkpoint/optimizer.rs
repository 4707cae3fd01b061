//! An optimiser's state: its buffers and per-parameter numbers as tensors named
//! `"<parameter name>.<slot>"`, its counters in the header's metadata.

use super::error::{CheckpointError, memory};
use super::format::{
    COUNTER_PREFIX, KIND_KEY, OPTIMIZER_KEY, SCALARS_KEY, raw, raw_f64, serialize,
};
use super::params::write_file;
use super::read::{parse, read_file};
use descent_optim::{Optimizer, OptimizerState};
use descent_tape::ParamStore;
use descent_tensor::{Float, Tensor};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

/// An optimiser's state as a safetensors file in memory (see [`save_optimizer`]).
///
/// # Errors
/// As [`save_optimizer`].
pub fn optimizer_to_bytes<T: Float, O: Optimizer<T> + ?Sized>(
    store: &ParamStore<T>,
    optimizer: &O,
) -> Result<Vec<u8>, CheckpointError> {
    encode_optimizer(store, optimizer, &memory())
}

fn encode_optimizer<T: Float, O: Optimizer<T> + ?Sized>(
    store: &ParamStore<T>,
    optimizer: &O,
    path: &Path,
) -> Result<Vec<u8>, CheckpointError> {
    let content = |reason: String| CheckpointError::Content {
        path: path.to_owned(),
        reason,
    };
    let state = optimizer.state(store);
    let name_of = |id| {
        store
            .name(id)
            .expect("state is exported for the store's parameters")
    };
    let check_slot = |slot: &str| {
        if slot.contains('.') || slot.is_empty() {
            Err(content(format!(
                "the optimiser's slot name '{slot}' is empty or contains a '.'"
            )))
        } else {
            Ok(())
        }
    };
    let mut tensors = Vec::new();
    for (id, slot, value) in &state.buffers {
        check_slot(slot)?;
        tensors.push((
            format!("{}.{slot}", name_of(*id)),
            raw(value.shape(), value.data()),
        ));
    }
    let mut scalar_slots: Vec<&str> = Vec::new();
    for (id, slot, v) in &state.scalars {
        check_slot(slot)?;
        if !scalar_slots.contains(&slot.as_ref()) {
            scalar_slots.push(slot);
        }
        tensors.push((format!("{}.{slot}", name_of(*id)), raw_f64(*v)));
    }
    let mut metadata = BTreeMap::from([
        (KIND_KEY.to_owned(), "optimizer".to_owned()),
        (OPTIMIZER_KEY.to_owned(), optimizer.name().to_owned()),
        (
            SCALARS_KEY.to_owned(),
            serde_json::to_string(&scalar_slots).expect("strings serialize"),
        ),
    ]);
    for (name, v) in &state.counters {
        let key = format!("{COUNTER_PREFIX}{name}");
        if metadata.insert(key, v.to_string()).is_some() {
            return Err(content(format!(
                "the optimiser's counter '{name}' is given twice"
            )));
        }
    }
    serialize(path, &tensors, metadata)
}

/// Saves `optimizer`'s state for the parameters of `store` to `path`, atomically
/// (see the [module docs](crate::checkpoint) for the layout). Save the parameters with [`save`](super::save)
/// beside it.
///
/// # Errors
/// [`CheckpointError::Io`]; [`CheckpointError::Content`] when two parameters share a
/// name.
pub fn save_optimizer<T: Float, O: Optimizer<T> + ?Sized>(
    store: &ParamStore<T>,
    optimizer: &O,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let bytes = encode_optimizer(store, optimizer, path)?;
    write_file(path, &bytes)
}

/// Loads optimiser state saved by [`save_optimizer`] into `optimizer`, matching
/// parameters of `store` by name. The optimiser must be of the kind that saved it
/// (its name: `"adam"`, `"sgd"`); its hyper-parameters are its own. Every tensor must
/// name a parameter of `store` and have its shape and dtype; the optimiser then checks
/// that it has the slots it needs. A failed load leaves the optimiser unchanged.
///
/// # Errors
/// As [`load`](super::load), and [`CheckpointError::Content`] for another optimiser's state or a
/// file of parameters, [`CheckpointError::Names`] for a tensor of no parameter of the
/// store, [`CheckpointError::Shape`] or [`CheckpointError::Dtype`] naming a tensor,
/// [`CheckpointError::Optimizer`] when the optimiser refuses the state (a slot missing
/// or unknown to it).
pub fn load_optimizer<T: Float, O: Optimizer<T> + ?Sized>(
    store: &ParamStore<T>,
    optimizer: &mut O,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    decode_optimizer(store, optimizer, path, &read_file(path)?)
}

/// Loads optimiser state from a safetensors file in memory (see [`load_optimizer`]).
///
/// # Errors
/// As [`load_optimizer`].
pub fn load_optimizer_from_bytes<T: Float, O: Optimizer<T> + ?Sized>(
    store: &ParamStore<T>,
    optimizer: &mut O,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    decode_optimizer(store, optimizer, &memory(), bytes)
}

fn decode_optimizer<T: Float, O: Optimizer<T> + ?Sized>(
    store: &ParamStore<T>,
    optimizer: &mut O,
    path: &Path,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    let content = |reason: String| CheckpointError::Content {
        path: path.to_owned(),
        reason,
    };
    let parsed = parse(path, bytes)?;
    if parsed.kind() != Some("optimizer") {
        return Err(content(
            "the file holds no optimiser state (it was not saved by save_optimizer)".into(),
        ));
    }
    match parsed.metadata.get(OPTIMIZER_KEY) {
        Some(name) if name == optimizer.name() => {}
        found => {
            return Err(content(format!(
                "the file holds the state of {}, not of {}",
                found.map_or("an unnamed optimiser".into(), |n| format!("'{n}'")),
                optimizer.name()
            )));
        }
    }
    let scalar_slots: Vec<String> = match parsed.metadata.get(SCALARS_KEY) {
        Some(s) => serde_json::from_str(s).map_err(|_| {
            content(format!(
                "the list of scalar slots '{s}' is not a JSON list of names (the header is corrupted)"
            ))
        })?,
        None => Vec::new(),
    };
    let mut state = OptimizerState::<T>::default();
    let mut unexpected = Vec::new();
    for name in parsed.names() {
        let Some((param, slot)) = name.rsplit_once('.') else {
            unexpected.push(name);
            continue;
        };
        let Some(id) = store.find(param) else {
            unexpected.push(name);
            continue;
        };
        let slot = Cow::Owned(slot.to_owned());
        if scalar_slots.iter().any(|s| *s == slot) {
            state.scalars.push((id, slot, parsed.scalar_f64(&name)?));
        } else {
            let shape = store.get(id).expect("found above").shape();
            let (_, data) = parsed.values::<T>(&name, Some(shape))?;
            let value = Tensor::new(shape, data).expect("shape checked");
            state.buffers.push((id, slot, value));
        }
    }
    if !unexpected.is_empty() {
        return Err(CheckpointError::Names {
            path: path.to_owned(),
            missing: Vec::new(),
            unexpected,
        });
    }
    for (key, v) in &parsed.metadata {
        if let Some(name) = key.strip_prefix(COUNTER_PREFIX) {
            let v: u64 = v.parse().map_err(|_| {
                content(format!(
                    "the counter '{name}' is '{v}', not a whole number (the header is corrupted)"
                ))
            })?;
            state.counters.push((Cow::Owned(name.to_owned()), v));
        }
    }
    optimizer
        .load_state(store, state)
        .map_err(|source| CheckpointError::Optimizer {
            path: path.to_owned(),
            source: Box::new(source),
        })
}
