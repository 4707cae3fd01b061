//! Checkpoints in the [safetensors](https://github.com/huggingface/safetensors) format:
//! a [`ParamStore`](descent_tape::ParamStore)'s parameters, and an optimiser's state, saved so that training
//! resumes bit for bit and so that PyTorch opens them.
//!
//! # Parameters
//!
//! [`save`] writes one tensor per parameter, named by its store name (`"fc1.weight"`),
//! with its shape, row-major, in the store's element type: `F32` for
//! `ParamStore<f32>`, `F64` for `ParamStore<f64>`. Layers name their parameters as
//! PyTorch's modules do (`Linear` has `"<name>.weight"` of shape `[out, in]` and
//! `"<name>.bias"`), so for matching names
//!
//! ```python
//! from safetensors.torch import load_file
//! model.load_state_dict(load_file("model.safetensors"))
//! ```
//!
//! loads a checkpoint into a PyTorch model, and [`load_into`] loads a PyTorch
//! `save_file(model.state_dict(), ...)` into a store.
//!
//! [`load_into`] is strict and all-or-nothing: every parameter of the store must be in
//! the file and every tensor of the file must be a parameter of the store, with the
//! same shape and dtype; otherwise the error names the tensors (and the expected and
//! found shapes or dtypes) and the store is unchanged. [`load`] makes a new store
//! from a file, in the order the parameters had when saved.
//!
//! **Dtypes are not converted.** A tensor whose dtype is not the store's (an `F64`
//! tensor for a `ParamStore<f32>`, a `BF16` one for either) is a
//! [`CheckpointError::Dtype`] error: a checkpoint never loses precision, nor changes
//! type, silently. To convert, load it into a store of the file's type and
//! [`Tensor::cast`](descent_tensor::Tensor::cast) each parameter.
//!
//! [`load_state_dict`] loads a PyTorch `state_dict` into a [`Module`](crate::Module)
//! by its entries' names, parameters and buffers (batch norm's running statistics)
//! alike, as `model.load_state_dict(...)` does.
//!
//! # Optimiser state
//!
//! [`save_optimizer`] writes an optimiser's state ([`Optimizer::state`](descent_optim::Optimizer::state)) to a second
//! file: its buffers as `"<parameter name>.<slot>"` tensors in the store's dtype
//! (`"fc1.weight.exp_avg"`, slots named as in PyTorch's `state_dict()`), its
//! per-parameter numbers (`"step"`, NAdam's `"mu_product"`) as 0-d `F64` tensors of
//! the same naming, and its optimiser-wide counters (a schedule's step count) in the
//! header's metadata. Slot names never contain a dot, so the last dot splits a name.
//! [`load_optimizer`] loads such a file into an optimiser of the same kind, by
//! parameter name, as strictly as [`load_into`].
//!
//! # Writing safely
//!
//! Every save goes through [`write_atomically`]: the file is written to a temporary
//! file in the same directory (made by the `tempfile` crate), flushed to disk (`fsync`), and renamed over the target.
//! A save that fails at any point leaves the previous checkpoint as it was and no
//! temporary file behind. The bytes are laid out as `safetensors::serialize` lays them
//! out, but written here so that the same store always gives the same bytes (that
//! function writes the metadata in a random order); files are read, and checked, by the
//! `safetensors` crate.
//!
//! # Integrity
//!
//! The safetensors format has no checksum, so a flipped bit in a tensor's data, or in
//! a name in the header, would load as a wrong number or a renamed tensor. Files
//! written here record in the header's metadata, under `"descent.crc32"`, a CRC-32
//! (IEEE, as Python's `zlib.crc32`, 8 hex digits) of the tensor table followed by the
//! data section: for each tensor in data order the line
//! `"{name}\t{dtype}\t[{shape, comma-space separated}]\t{byte length}\n"`, then all
//! the tensors' bytes. Loading checks it when present (files written elsewhere have
//! none). A truncated file, a corrupted header, or a file that fails the checksum is a
//! [`CheckpointError::Format`] or [`CheckpointError::Checksum`] error that says what is
//! wrong and, where it can, which tensor; loading never panics on a bad file.
//!
//! ```
//! use descent_nn::{Linear, checkpoint, init};
//! use descent_tape::ParamStore;
//!
//! let dir = std::env::temp_dir().join(format!("descent-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("model.safetensors");
//!
//! let mut store = ParamStore::<f32>::new();
//! let fc = Linear::new(&mut store, "fc", 3, 2, &mut init::rng(0));
//! checkpoint::save(&store, &path).unwrap();
//!
//! // Into a model built the same way, by name:
//! let mut fresh = ParamStore::<f32>::new();
//! let fc2 = Linear::new(&mut fresh, "fc", 3, 2, &mut init::rng(1));
//! checkpoint::load_into(&mut fresh, &path).unwrap();
//! assert_eq!(fresh.get(fc2.weight()), store.get(fc.weight()));
//!
//! // A model of another shape is refused, naming the tensor and both shapes.
//! let mut wider = ParamStore::<f32>::new();
//! Linear::new(&mut wider, "fc", 4, 2, &mut init::rng(1));
//! let err = checkpoint::load_into(&mut wider, &path).unwrap_err().to_string();
//! assert!(err.contains("'fc.weight' has shape [2, 3] in the file, but the store's is [2, 4]"), "{err}");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

// The parts, in the order a save and a load go through them.
mod atomic; // replacing a file whole
mod diagnose; // what is wrong with a file the parser refused
mod error; // `CheckpointError`
mod format; // metadata keys, the bytes of a file, its CRC-32
mod optimizer; // an optimiser's state
mod params; // a store's parameters
mod read; // parsing and checking a file, reading tensors out of it
mod state_dict; // a PyTorch state_dict into a module, by name

pub use atomic::write_atomically;
pub use error::CheckpointError;
pub use optimizer::{
    load_optimizer, load_optimizer_from_bytes, optimizer_to_bytes, save_optimizer,
};
pub use params::{from_bytes, load, load_into, load_into_from_bytes, save, to_bytes};
pub use state_dict::{load_state_dict, load_state_dict_from_bytes};
