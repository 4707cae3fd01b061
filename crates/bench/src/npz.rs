//! Writes numpy `.npz` archives (a zip of `.npy` files, stored uncompressed), the format
//! the peers' `--dump` uses, so `shared/peers/compare_w4.py` reads descent's arrays
//! beside theirs.

use std::io::{self, Write};

/// An array element type numpy knows.
pub trait NpyElement: Copy {
    /// numpy's type string (`<f4`, `<f8`).
    const DESCR: &'static str;
    /// Appends the little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for f64 {
    const DESCR: &'static str = "<f8";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// One array as a `.npy` file (format version 1.0, C order).
///
/// # Panics
/// If `data` does not hold `shape`'s element count.
pub fn npy<T: NpyElement>(shape: &[usize], data: &[T]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy: shape {shape:?} does not match {} elements",
        data.len()
    );
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}",
        T::DESCR
    );
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of
    // 64 and ended by a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &x in data {
        x.put(&mut out);
    }
    out
}

/// CRC-32 (IEEE 802.3, reflected, polynomial `0xEDB88320`), as zip stores it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut crc = !0u32;
    for &b in bytes {
        crc = table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A zip archive of `(name, contents)` entries, stored (no compression): what
/// `numpy.savez` writes.
pub fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    // 1980-01-01 00:00, the earliest DOS date.
    let (time, date) = (0u16, (1 << 5) | 1);
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_the_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn npy_header_is_aligned() {
        let a = npy(&[2, 3], &[1f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&a[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([a[8], a[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(a[10 + hlen - 1], b'\n');
        assert_eq!(a.len(), 10 + hlen + 24);
        let h = std::str::from_utf8(&a[10..10 + hlen]).unwrap();
        assert!(h.contains("'shape': (2, 3)"), "{h}");
        let b = npy(&[4], &[0f64; 4]);
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert!(
            std::str::from_utf8(&b[10..10 + hlen])
                .unwrap()
                .contains("(4,)")
        );
    }
}
