//! Writes numpy `.npz` archives (a zip of `.npy` files, stored uncompressed), the format
//! the peers' `--dump` uses, so `shared/peers/compare_w4.py` reads descent's arrays
//! beside theirs. The `.npy` files come from `descent::data::encode_npy`.

use std::io::{self, Write};

/// A zip archive of `(name, contents)` entries, stored (no compression): what
/// `numpy.savez` writes.
pub fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    // 1980-01-01 00:00, the earliest DOS date.
    let (time, date) = (0u16, (1 << 5) | 1);
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(data);
        let size = data.len() as u32;
        let name_len = name.len() as u16;
        // Local file header.
        put32(&mut out, 0x0403_4b50);
        for v in [20u16, 0, 0, time, date] {
            put16(&mut out, v);
        }
        put32(&mut out, crc);
        put32(&mut out, size);
        put32(&mut out, size);
        put16(&mut out, name_len);
        put16(&mut out, 0);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory record.
        put32(&mut central, 0x0201_4b50);
        for v in [20u16, 20, 0, 0, time, date] {
            put16(&mut central, v);
        }
        put32(&mut central, crc);
        put32(&mut central, size);
        put32(&mut central, size);
        for v in [name_len, 0, 0, 0, 0] {
            put16(&mut central, v);
        }
        put32(&mut central, 0);
        put32(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    // End of central directory.
    put32(&mut out, 0x0605_4b50);
    let n = entries.len() as u16;
    for v in [0u16, 0, n, n] {
        put16(&mut out, v);
    }
    put32(&mut out, cd_size);
    put32(&mut out, cd_offset);
    put16(&mut out, 0);
    out
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes `arrays` (`name` without `.npy`) to `path` as an `.npz`.
pub fn write_npz(path: &std::path::Path, arrays: Vec<(String, Vec<u8>)>) -> io::Result<()> {
    let entries: Vec<(String, Vec<u8>)> = arrays
        .into_iter()
        .map(|(name, npy)| (format!("{name}.npy"), npy))
        .collect();
    let mut f = std::fs::File::create(path)?;
    f.write_all(&zip_stored(&entries))?;
    f.flush()
}
