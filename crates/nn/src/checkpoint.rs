//! Checkpoints in the [safetensors](https://github.com/huggingface/safetensors) format:
//! a [`ParamStore`]'s parameters, and an optimiser's state, saved so that training
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
//! [`Tensor::cast`] each parameter.
//!
//! # Optimiser state
//!
//! [`save_optimizer`] writes an optimiser's state ([`Optimizer::state`]) to a second
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
//! file in the same directory, flushed to disk (`fsync`), and renamed over the target.
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

use descent_optim::{Optimizer, OptimizerState};
use descent_tape::ParamStore;
use descent_tensor::{Float, ShapeDisplay, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensorError, SafeTensors};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The metadata key of the CRC-32 of the tensor table and data section.
const CRC_KEY: &str = "descent.crc32";
/// The metadata key of what a file holds: `"params"` or `"optimizer"`.
const KIND_KEY: &str = "descent.kind";
/// The metadata key of the parameters' order in the store (a JSON list of names).
const ORDER_KEY: &str = "descent.order";
/// The metadata key of the optimiser's name.
const OPTIMIZER_KEY: &str = "descent.optimizer";
/// The metadata key of the slots that are per-parameter numbers (a JSON list).
const SCALARS_KEY: &str = "descent.scalar_slots";
/// The prefix of the metadata keys of optimiser-wide counters.
const COUNTER_PREFIX: &str = "descent.counter.";

/// What can go wrong saving or loading a checkpoint. Every variant names the file;
/// those about one tensor name it and give what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed, with its context.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid safetensors file: empty, truncated, or corrupted.
    #[error("checkpoint {}: not a valid safetensors file: {reason}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where one is at fault.
        reason: String,
    },
    /// The tensor table or data does not match the checksum recorded when the file was
    /// saved.
    #[error(
        "checkpoint {}: the file is corrupted: the CRC-32 of its tensors (names, shapes and data) is {found:08x}, but {expected:08x} was recorded when it was saved",
        .path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The CRC-32 recorded in the header.
        expected: u32,
        /// The CRC-32 of the data as read.
        found: u32,
    },
    /// The file's tensor names and the store's parameter names differ.
    #[error("checkpoint {}: {}", .path.display(), names_message(.missing, .unexpected))]
    Names {
        /// The file.
        path: PathBuf,
        /// Names the store has and the file lacks.
        missing: Vec<String>,
        /// Names the file has and the store lacks.
        unexpected: Vec<String>,
    },
    /// A tensor's shape differs from its parameter's.
    #[error(
        "checkpoint {}: tensor '{tensor}' has shape {} in the file, but the store's is {}",
        .path.display(), ShapeDisplay(.found), ShapeDisplay(.expected)
    )]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the store (or optimiser) needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor's dtype is not the one needed (no conversion is made).
    #[error(
        "checkpoint {}: tensor '{tensor}' is {found} in the file, but {expected} is needed; dtypes are not converted (load it into a store of the file's type and cast)",
        .path.display()
    )]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The dtype needed (`"F32"`, `"F64"`).
        expected: String,
        /// The dtype in the file.
        found: String,
    },
    /// The file holds something else than asked for: optimiser state where parameters
    /// were expected, another optimiser's state, or a store that cannot be saved.
    #[error("checkpoint {}: {reason}", .path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// The optimiser refused the state.
    #[error("checkpoint {}: {source}", .path.display())]
    Optimizer {
        /// The file.
        path: PathBuf,
        /// The optimiser's error.
        #[source]
        source: Box<descent_optim::Error>,
    },
}

fn names_message(missing: &[String], unexpected: &[String]) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "missing {} (in the store, not in the file)",
            list(missing)
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "unexpected {} (in the file, not in the store)",
            list(unexpected)
        ));
    }
    format!("the names do not match: {}", parts.join("; "))
}

/// What a checkpoint error about bytes in memory names as its file.
fn memory() -> PathBuf {
    PathBuf::from("<in memory>")
}

// ---------------------------------------------------------------------------------
// Writing files safely.

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the temporary file unless the write succeeded (also on a panic).
struct TempGuard {
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Writes the file at `path` atomically: whatever `write` writes goes to a new
/// temporary file in the same directory (`.<file name>.tmp.<pid>.<n>`), which is
/// flushed, `fsync`ed, and renamed over `path`; the directory is then `fsync`ed (best
/// effort) so the rename itself is durable.
///
/// If `write` fails, or any later step does, the temporary file is removed and `path`
/// is left as it was: a reader sees the old file or the new one, never a mix. (The
/// new file has the default permissions, not the old one's.)
///
/// ```
/// use std::io::Write;
/// let dir = std::env::temp_dir().join(format!("descent-atomic-doc-{}", std::process::id()));
/// let _ = std::fs::remove_dir_all(&dir);
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("notes.txt");
/// descent_nn::checkpoint::write_atomically(&path, |w| w.write_all(b"v1")).unwrap();
/// let failed = descent_nn::checkpoint::write_atomically(&path, |w| {
///     w.write_all(b"half of v2")?;
///     Err(std::io::Error::other("disk full"))
/// });
/// assert!(failed.unwrap_err().to_string().contains("disk full"));
/// assert_eq!(std::fs::read(&path).unwrap(), b"v1");
/// assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1); // no temporary file left
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Errors
/// The first I/O error, with what was being done.
pub fn write_atomically(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let path = path.as_ref();
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| context(e, format!("cannot create {}", tmp.display())))?;
    let mut guard = TempGuard {
        path: Some(tmp.clone()),
    };
    {
        let mut w = io::BufWriter::new(&file);
        write(&mut w).map_err(|e| context(e, format!("cannot write {}", tmp.display())))?;
        w.flush()
            .map_err(|e| context(e, format!("cannot write {}", tmp.display())))?;
    }
    file.sync_all()
        .map_err(|e| context(e, format!("cannot flush {} to disk", tmp.display())))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| {
        context(
            e,
            format!("cannot rename {} to {}", tmp.display(), path.display()),
        )
    })?;
    guard.path = None;
    // The rename is durable once the directory is; not every platform or file system
    // can sync a directory, so this is best effort.
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Encoding.

/// A tensor's bytes, ready to be written.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// The safetensors dtype of `T`.
fn dtype_of<T: Float>() -> Dtype {
    if T::NAME == "f32" {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

fn raw<T: Float>(shape: &[usize], data: &[T]) -> Raw {
    let dtype = dtype_of::<T>();
    let bytes = if dtype == Dtype::F32 {
        // `as_f64` is exact and an f32 survives the round trip bit for bit.
        data.iter()
            .flat_map(|v| (v.as_f64() as f32).to_le_bytes())
            .collect()
    } else {
        data.iter().flat_map(|v| v.as_f64().to_le_bytes()).collect()
    };
    Raw {
        dtype,
        shape: shape.to_vec(),
        data: bytes,
    }
}

fn raw_f64(v: f64) -> Raw {
    Raw {
        dtype: Dtype::F64,
        shape: Vec::new(),
        data: v.to_le_bytes().to_vec(),
    }
}

/// Serializes `tensors` with `metadata` (and the CRC-32 of the tensors) as a
/// safetensors file. Written here rather than by `safetensors::serialize`, whose
/// metadata map comes out in a random order, so that the same store always gives the
/// same bytes. The layout is the one that function writes: tensors ordered by dtype
/// alignment (widest first), then name, each starting where the previous ended, and the
/// header padded with spaces to a multiple of 8 bytes.
fn serialize(
    path: &Path,
    tensors: &[(String, Raw)],
    mut metadata: BTreeMap<String, String>,
) -> Result<Vec<u8>, CheckpointError> {
    let content = |reason: String| CheckpointError::Content {
        path: path.to_owned(),
        reason,
    };
    let mut order: Vec<&(String, Raw)> = tensors.iter().collect();
    order.sort_by(|(ln, l), (rn, r)| r.dtype.cmp(&l.dtype).then(ln.cmp(rn)));
    for pair in order.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(content(format!(
                "two tensors are named '{}'; a checkpoint names each once",
                pair[0].0
            )));
        }
    }
    if tensors.iter().any(|(n, _)| n == "__metadata__") {
        return Err(content(
            "the name '__metadata__' is reserved by the safetensors format".into(),
        ));
    }
    let mut c = !0u32;
    for (name, t) in &order {
        let line = table_line(name, t.dtype, &t.shape, t.data.len());
        c = crc32_update(c, line.as_bytes());
    }
    for (_, t) in &order {
        c = crc32_update(c, &t.data);
    }
    metadata.insert(CRC_KEY.into(), format!("{:08x}", !c));
    metadata.insert("format".into(), "pt".into());

    let json = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut header = String::from("{\"__metadata__\":{");
    let entries: Vec<String> = metadata
        .iter()
        .map(|(k, v)| format!("{}:{}", json(k), json(v)))
        .collect();
    header.push_str(&entries.join(","));
    header.push('}');
    let mut offset = 0usize;
    for (name, t) in &order {
        let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"{:?}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json(name),
            t.dtype,
            shape.join(","),
            offset,
            offset + t.data.len()
        ));
        offset += t.data.len();
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for (_, t) in &order {
        bytes.extend_from_slice(&t.data);
    }
    debug_assert!(SafeTensors::deserialize(&bytes).is_ok());
    Ok(bytes)
}

/// A tensor's line in the checksummed table (see the module docs).
fn table_line(name: &str, dtype: Dtype, shape: &[usize], len: usize) -> String {
    format!("{name}\t{dtype:?}\t{}\t{len}\n", ShapeDisplay(shape))
}

/// The tensors in data order: the order [`serialize`] writes them in.
fn in_data_order<'a>(st: &SafeTensors<'a>) -> Vec<(&'a [u8], String, TensorView<'a>)> {
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (t.data(), n, t))
        .collect();
    // By offset; tensors of no bytes share an offset with their neighbour, and among
    // them the writer's order is widest dtype first, then name.
    v.sort_by(|(ld, ln, lt), (rd, rn, rt)| {
        (ld.as_ptr() as usize)
            .cmp(&(rd.as_ptr() as usize))
            .then(rt.dtype().cmp(&lt.dtype()))
            .then(ln.cmp(rn))
    });
    v
}

/// The CRC-32 of the tensor table and data (see the module docs).
fn content_crc(st: &SafeTensors<'_>) -> u32 {
    let tensors = in_data_order(st);
    let mut c = !0u32;
    for (data, name, t) in &tensors {
        let line = table_line(name, t.dtype(), t.shape(), data.len());
        c = crc32_update(c, line.as_bytes());
    }
    for (data, _, _) in &tensors {
        c = crc32_update(c, data);
    }
    !c
}

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

/// Saves the store's parameters to `path` (see the [module docs](self)), atomically:
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

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomically(path, |w| w.write_all(bytes)).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })
}

// ---------------------------------------------------------------------------------
// Decoding.

/// A parsed file: its tensors by name (in data order) and its metadata.
struct Parsed<'a> {
    path: PathBuf,
    st: SafeTensors<'a>,
    metadata: HashMap<String, String>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    fs::read(path).map_err(|e| CheckpointError::Io {
        path: path.to_owned(),
        source: context(e, "cannot read the file".into()),
    })
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<Parsed<'a>, CheckpointError> {
    let format = |reason: String| CheckpointError::Format {
        path: path.to_owned(),
        reason,
    };
    let (_, meta) = match SafeTensors::read_metadata(bytes) {
        Ok(v) => v,
        Err(e) => return Err(format(diagnose(bytes, &e))),
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| format(diagnose(bytes, &e)))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    if let Some(recorded) = metadata.get(CRC_KEY) {
        let expected = u32::from_str_radix(recorded, 16).map_err(|_| {
            format(format!(
                "the recorded checksum '{recorded}' is not a hexadecimal CRC-32 (the header is corrupted)"
            ))
        })?;
        let found = content_crc(&st);
        if found != expected {
            return Err(CheckpointError::Checksum {
                path: path.to_owned(),
                expected,
                found,
            });
        }
    }
    Ok(Parsed {
        path: path.to_owned(),
        st,
        metadata,
    })
}

impl Parsed<'_> {
    fn kind(&self) -> Option<&str> {
        self.metadata.get(KIND_KEY).map(String::as_str)
    }

    fn expect_kind(&self, want: &str) -> Result<(), CheckpointError> {
        match self.kind() {
            Some(k) if k != "params" && k != "optimizer" => Err(CheckpointError::Content {
                path: self.path.clone(),
                reason: format!(
                    "the file says it holds '{k}', which this crate never writes (the header is corrupted)"
                ),
            }),
            Some(k) if k != want => Err(CheckpointError::Content {
                path: self.path.clone(),
                reason: format!(
                    "the file holds {} (saved by {}), not {}",
                    describe_kind(k),
                    if k == "optimizer" {
                        "save_optimizer"
                    } else {
                        "save"
                    },
                    describe_kind(want)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Tensor names in data order.
    fn names(&self) -> Vec<String> {
        in_data_order(&self.st)
            .into_iter()
            .map(|(_, n, _)| n)
            .collect()
    }

    /// The values of tensor `name` as `T`, checking its dtype and, if given, shape.
    fn values<T: Float>(
        &self,
        name: &str,
        shape: Option<&[usize]>,
    ) -> Result<(Vec<usize>, Vec<T>), CheckpointError> {
        let view = self.st.tensor(name).map_err(|_| CheckpointError::Names {
            path: self.path.clone(),
            missing: vec![name.to_owned()],
            unexpected: Vec::new(),
        })?;
        let want = dtype_of::<T>();
        if view.dtype() != want {
            return Err(CheckpointError::Dtype {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: format!("{want:?}"),
                found: format!("{:?}", view.dtype()),
            });
        }
        if let Some(shape) = shape
            && view.shape() != shape
        {
            return Err(CheckpointError::Shape {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        Ok((
            view.shape().to_vec(),
            decode::<T>(view.dtype(), view.data()),
        ))
    }

    fn scalar_f64(&self, name: &str) -> Result<f64, CheckpointError> {
        let view = self.st.tensor(name).expect("the name comes from the file");
        if view.dtype() != Dtype::F64 {
            return Err(CheckpointError::Dtype {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: "F64".into(),
                found: format!("{:?}", view.dtype()),
            });
        }
        if !view.shape().is_empty() {
            return Err(CheckpointError::Shape {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: Vec::new(),
                found: view.shape().to_vec(),
            });
        }
        Ok(decode::<f64>(Dtype::F64, view.data())[0])
    }
}

fn describe_kind(kind: &str) -> &'static str {
    if kind == "optimizer" {
        "optimiser state"
    } else {
        "parameters"
    }
}

/// Decodes little-endian `F32` or `F64` bytes (the dtype was checked) into `T`.
fn decode<T: Float>(dtype: Dtype, bytes: &[u8]) -> Vec<T> {
    if dtype == Dtype::F32 {
        bytes
            .chunks_exact(4)
            .map(|c| T::from_f64(f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64))
            .collect()
    } else {
        bytes
            .chunks_exact(8)
            .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
            .collect()
    }
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

fn duplicate_name<T: Float>(store: &ParamStore<T>) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    store.iter().map(|(_, n, _)| n).find(|n| !seen.insert(*n))
}

fn decode_into<T: Float>(
    store: &mut ParamStore<T>,
    path: &Path,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    if let Some(name) = duplicate_name(store) {
        return Err(CheckpointError::Content {
            path: path.to_owned(),
            reason: format!(
                "the store has two parameters named '{name}', so loading by name is ambiguous"
            ),
        });
    }
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

// ---------------------------------------------------------------------------------
// Optimiser state.

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
    if let Some(name) = duplicate_name(store) {
        return Err(content(format!(
            "the store has two parameters named '{name}', so its state cannot be saved by name"
        )));
    }
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
/// (see the [module docs](self) for the layout). Save the parameters with [`save`]
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
/// As [`load`], and [`CheckpointError::Content`] for another optimiser's state or a
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
    if let Some(name) = duplicate_name(store) {
        return Err(content(format!(
            "the store has two parameters named '{name}', so state cannot be loaded by name"
        )));
    }
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

// ---------------------------------------------------------------------------------
// Diagnosis of bad files.

/// Says what is wrong with a file the safetensors parser refused, naming the tensor
/// at fault where there is one. Reads the header with its own checks, so it never
/// panics, whatever the bytes.
fn diagnose(bytes: &[u8], err: &SafeTensorError) -> String {
    let len = bytes.len();
    if len < 8 {
        return format!(
            "the file is {len} bytes, too short for the 8-byte header length that starts a safetensors file (empty or truncated)"
        );
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > 100_000_000 {
        return format!(
            "its first 8 bytes give a header of {n} bytes, more than the format's 100 MB limit (not a safetensors file, or its start is corrupted)"
        );
    }
    let n = n as usize;
    if 8 + n > len {
        return format!(
            "the header should be {n} bytes, but only {} follow its length (the file is truncated)",
            len - 8
        );
    }
    let header = match std::str::from_utf8(&bytes[8..8 + n]) {
        Ok(h) => h,
        Err(e) => {
            return format!(
                "the header is not UTF-8 text at byte {} of the file (the header is corrupted)",
                8 + e.valid_up_to()
            );
        }
    };
    let json: serde_json::Value = match serde_json::from_str(header) {
        Ok(v) => v,
        Err(e) => return format!("the header is not valid JSON ({e}): the header is corrupted"),
    };
    let Some(entries) = json.as_object() else {
        return "the header is not a JSON object (the header is corrupted)".into();
    };
    let data_len = len - 8 - n;
    let mut tensors = Vec::new();
    for (name, info) in entries {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
        let shape: Option<Vec<u64>> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64()).collect());
        let dtype = info.get("dtype").and_then(|d| d.as_str());
        let (Some((start, end)), Some(shape), Some(dtype)) = (offsets, shape, dtype) else {
            return format!(
                "the header's entry for tensor '{name}' lacks a valid dtype, shape or data_offsets (the header is corrupted)"
            );
        };
        tensors.push((start, end, name.as_str(), shape, dtype));
    }
    tensors.sort();
    let mut at = 0u64;
    for (start, end, name, shape, dtype) in &tensors {
        let shape_text = format!(
            "[{}]",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let width = match *dtype {
            "F64" | "I64" | "U64" | "C64" => Some(8),
            "F32" | "I32" | "U32" => Some(4),
            "F16" | "BF16" | "I16" | "U16" => Some(2),
            "U8" | "I8" | "BOOL" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
            | "F8_E5M2FNUZ" => Some(1),
            "F4" | "F6_E2M3" | "F6_E3M2" => None,
            _ => {
                return format!(
                    "tensor '{name}' has dtype '{dtype}', which is not a safetensors dtype (the header is corrupted)"
                );
            }
        };
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if let (Some(w), Some(numel)) = (width, numel)
            && numel.checked_mul(w) != end.checked_sub(*start)
        {
            return format!(
                "tensor '{name}' is {dtype} of shape {shape_text}, {} bytes, but its data offsets {start}..{end} span {} (the header is corrupted)",
                numel.saturating_mul(w),
                end.saturating_sub(*start) as i128
            );
        }
        if *end as u128 > data_len as u128 {
            return format!(
                "tensor '{name}' ({dtype} {shape_text}) needs data bytes {start}..{end}, but the file has only {data_len} bytes of data (the file is truncated)"
            );
        }
        if *start != at {
            return format!(
                "tensor '{name}' starts at data byte {start}, where {at} was expected (the header is corrupted)"
            );
        }
        at = *end;
    }
    if at as usize != data_len {
        return format!(
            "the tensors' data ends at byte {at} of the data section, but the file has {data_len} bytes of data (corrupted, or bytes were appended)"
        );
    }
    format!("{err}")
}

/// Runs the CRC-32 (IEEE 802.3, as zlib's `crc32`) register `c` over `bytes`; start
/// from `!0` and complement the end.
fn crc32_update(mut c: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        // zlib.crc32(b"123456789") == 0xcbf43926, the standard check value.
        let crc32 = |b: &[u8]| !crc32_update(!0, b);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
