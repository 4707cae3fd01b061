//! Reading a file: parsing it with the `safetensors` crate, checking its CRC-32, and
//! taking tensors out of it with their dtype and shape checked.

use super::atomic::context;
use super::diagnose::diagnose;
use super::error::CheckpointError;
use super::format::{CRC_KEY, KIND_KEY, content_crc, decode, dtype_of, in_data_order};
use descent_tensor::Float;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A parsed file: its tensors by name (in data order) and its metadata.
pub(super) struct Parsed<'a> {
    pub(super) path: PathBuf,
    st: SafeTensors<'a>,
    pub(super) metadata: HashMap<String, String>,
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    fs::read(path).map_err(|e| CheckpointError::Io {
        path: path.to_owned(),
        source: context(e, "cannot read the file".into()),
    })
}

pub(super) fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<Parsed<'a>, CheckpointError> {
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
    pub(super) fn kind(&self) -> Option<&str> {
        self.metadata.get(KIND_KEY).map(String::as_str)
    }

    pub(super) fn expect_kind(&self, want: &str) -> Result<(), CheckpointError> {
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
    pub(super) fn names(&self) -> Vec<String> {
        in_data_order(&self.st)
            .into_iter()
            .map(|(_, n, _)| n)
            .collect()
    }

    /// The values of tensor `name` as `T`, checking its dtype and, if given, shape.
    pub(super) fn values<T: Float>(
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

    /// The values of tensor `name` as `T`, its shape checked against `shape`,
    /// converting only where no value can change: `F32` into `f64`, and integers
    /// (`I64`, `I32`, as PyTorch writes batch norm's `num_batches_tracked`) of
    /// magnitude below 2^24 into `f32`, 2^53 into `f64`.
    pub(super) fn values_lossless<T: Float>(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<Vec<T>, CheckpointError> {
        let view = self.st.tensor(name).map_err(|_| CheckpointError::Names {
            path: self.path.clone(),
            missing: vec![name.to_owned()],
            unexpected: Vec::new(),
        })?;
        if view.shape() != shape {
            return Err(CheckpointError::Shape {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let want = dtype_of::<T>();
        let exact = if want == Dtype::F32 {
            1i64 << 24
        } else {
            1i64 << 53
        };
        let ints = |width: usize| -> Vec<i64> {
            view.data()
                .chunks_exact(width)
                .map(|c| {
                    if width == 8 {
                        i64::from_le_bytes(c.try_into().expect("8 bytes"))
                    } else {
                        i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64
                    }
                })
                .collect()
        };
        let refuse = || CheckpointError::Dtype {
            path: self.path.clone(),
            tensor: name.to_owned(),
            expected: format!("{want:?}"),
            found: format!("{:?}", view.dtype()),
        };
        match view.dtype() {
            d if d == want => Ok(decode::<T>(d, view.data())),
            Dtype::F32 if want == Dtype::F64 => Ok(decode::<T>(Dtype::F32, view.data())),
            d @ (Dtype::I64 | Dtype::I32) => {
                let v = ints(if d == Dtype::I64 { 8 } else { 4 });
                if v.iter().any(|i| i.abs() > exact) {
                    return Err(refuse());
                }
                Ok(v.into_iter().map(|i| T::from_f64(i as f64)).collect())
            }
            _ => Err(refuse()),
        }
    }

    pub(super) fn scalar_f64(&self, name: &str) -> Result<f64, CheckpointError> {
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
