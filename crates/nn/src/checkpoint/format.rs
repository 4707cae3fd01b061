//! The bytes of a file: the metadata keys this crate writes, tensors' bytes in and
//! out, the deterministic layout of the header and data, and the CRC-32 over them.

use super::error::CheckpointError;
use descent_tensor::{Float, ShapeDisplay};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

/// The metadata key of the CRC-32 of the tensor table and data section.
pub(super) const CRC_KEY: &str = "descent.crc32";
/// The metadata key of what a file holds: `"params"` or `"optimizer"`.
pub(super) const KIND_KEY: &str = "descent.kind";
/// The metadata key of the parameters' order in the store (a JSON list of names).
pub(super) const ORDER_KEY: &str = "descent.order";
/// The metadata key of the optimiser's name.
pub(super) const OPTIMIZER_KEY: &str = "descent.optimizer";
/// The metadata key of the slots that are per-parameter numbers (a JSON list).
pub(super) const SCALARS_KEY: &str = "descent.scalar_slots";
/// The prefix of the metadata keys of optimiser-wide counters.
pub(super) const COUNTER_PREFIX: &str = "descent.counter.";

/// A tensor's bytes, ready to be written.
pub(super) struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// The safetensors dtype of `T`.
pub(super) fn dtype_of<T: Float>() -> Dtype {
    if T::NAME == "f32" {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

pub(super) fn raw<T: Float>(shape: &[usize], data: &[T]) -> Raw {
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

pub(super) fn raw_f64(v: f64) -> Raw {
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
pub(super) fn serialize(
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
    let mut crc = crc32fast::Hasher::new();
    for (name, t) in &order {
        crc.update(table_line(name, t.dtype, &t.shape, t.data.len()).as_bytes());
    }
    for (_, t) in &order {
        crc.update(&t.data);
    }
    metadata.insert(CRC_KEY.into(), format!("{:08x}", crc.finalize()));
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
pub(super) fn in_data_order<'a>(st: &SafeTensors<'a>) -> Vec<(&'a [u8], String, TensorView<'a>)> {
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
pub(super) fn content_crc(st: &SafeTensors<'_>) -> u32 {
    let tensors = in_data_order(st);
    let mut crc = crc32fast::Hasher::new();
    for (data, name, t) in &tensors {
        crc.update(table_line(name, t.dtype(), t.shape(), data.len()).as_bytes());
    }
    for (data, _, _) in &tensors {
        crc.update(data);
    }
    crc.finalize()
}

/// Decodes little-endian `F32` or `F64` bytes (the dtype was checked) into `T`.
pub(super) fn decode<T: Float>(dtype: Dtype, bytes: &[u8]) -> Vec<T> {
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
