//! Saying what is wrong with a file the safetensors parser refused.

use descent_tensor::ShapeDisplay;
use safetensors::SafeTensorError;

/// Says what is wrong with a file the safetensors parser refused, naming the tensor
/// at fault where there is one. Reads the header with its own checks, so it never
/// panics, whatever the bytes.
pub(super) fn diagnose(bytes: &[u8], err: &SafeTensorError) -> String {
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
        let shape: Option<Vec<usize>> =
            info.get("shape").and_then(|s| s.as_array()).and_then(|s| {
                s.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect()
            });
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
        let shape_text = ShapeDisplay(shape);
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
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
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
