//! NumPy's `.npy` format: one array per file, a short header (a Python dict literal
//! giving the element type, the order and the shape) and the raw elements.
//!
//! Written here rather than taken from a crate: the one maintained reader (`npyz`)
//! parses the header with a general Python-literal parser (`py_literal`, built on
//! `pest` and its derive macro, `num-bigint`, `stacker` with a C build): about 25
//! crates for a dict of three known keys. See docs/ARCHITECTURE.md.

use crate::error::{Error, Result};
use descent_tensor::{Float, Tensor};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads the array in the `.npy` file at `path`, converting its elements to `T`
/// (floats, signed and unsigned integers and booleans, either byte order, C or
/// Fortran order).
///
/// ```
/// use descent_data::{read_npy, write_npy};
/// use descent_tensor::Tensor;
/// let dir = std::env::temp_dir().join(format!("descent-npy-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("a.npy");
/// let a = Tensor::new(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
/// write_npy(&path, &a).unwrap();
/// let back: Tensor<f64> = read_npy(&path).unwrap();
/// assert_eq!(back.shape(), [2, 3]);
/// assert_eq!(back.data(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Npy`] when it is not a `.npy`
/// file, its header is malformed, its element type is not numeric (strings, objects,
/// complex numbers, structured types), or its data is shorter than its shape.
pub fn read_npy<T: Float>(path: impl AsRef<Path>) -> Result<Tensor<T>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    decode(&bytes).map_err(|reason| Error::Npy {
        path: path.into(),
        reason,
    })
}

/// Writes `tensor` to `path` as a `.npy` file (version 1.0, little-endian, C order,
/// `<f4` or `<f8`), which `numpy.load` reads. The file appears whole or not at all: it
/// is written beside `path` and renamed into place.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn write_npy<T: Float>(path: impl AsRef<Path>, tensor: &Tensor<T>) -> Result<()> {
    let path = path.as_ref();
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(&encode(tensor)).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// `tensor` as the bytes of a `.npy` file (version 1.0, little-endian, C order).
pub fn encode<T: Float>(tensor: &Tensor<T>) -> Vec<u8> {
    let (descr, width) = if std::mem::size_of::<T>() == 4 {
        ("<f4", 4)
    } else {
        ("<f8", 8)
    };
    let dims = match tensor.shape() {
        [n] => format!("({n},)"),
        shape => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + tensor.len() * width);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &x in tensor.data() {
        if width == 4 {
            out.extend_from_slice(&(x.as_f64() as f32).to_le_bytes());
        } else {
            out.extend_from_slice(&x.as_f64().to_le_bytes());
        }
    }
    out
}

/// The array in `bytes`, or why it cannot be read.
fn decode<T: Float>(bytes: &[u8]) -> Result<Tensor<T>, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(format!(
                "format version {v} is not one this reader knows (1, 2, 3)"
            ));
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("the header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the header is not UTF-8")?;
    let header = Header::parse(header)?;
    let count: usize = header.shape.iter().product();
    let data = &bytes[start + header_len..];
    let element = Element::parse(&header.descr)?;
    if data.len() < count * element.width {
        return Err(format!(
            "shape {:?} needs {} bytes of data, the file holds {}",
            header.shape,
            count * element.width,
            data.len()
        ));
    }
    let values: Vec<T> = data
        .chunks_exact(element.width)
        .take(count)
        .map(|b| T::from_f64(element.read(b)))
        .collect();
    let values = if header.fortran_order && header.shape.len() > 1 {
        to_row_major(&values, &header.shape)
    } else {
        values
    };
    Tensor::new(&header.shape, values).map_err(|e| e.to_string())
}

/// Column-major `values` of `shape`, rearranged to row-major.
fn to_row_major<T: Copy>(values: &[T], shape: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..values.len() {
        // Column-major offset of the row-major multi-index `index`.
        let (mut offset, mut stride) = (0, 1);
        for (i, &n) in index.iter().zip(shape) {
            offset += i * stride;
            stride *= n;
        }
        out.push(values[offset]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// The three keys of a `.npy` header.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`.
    fn parse(text: &str) -> Result<Header, String> {
        let body = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| format!("the header {text:?} is not a dict"))?;
        let value_of = |key: &str| -> Result<&str, String> {
            let quoted = [format!("'{key}'"), format!("\"{key}\"")];
            let at = quoted
                .iter()
                .find_map(|q| body.find(q.as_str()).map(|i| i + q.len()))
                .ok_or_else(|| format!("the header has no {key:?}"))?;
            let rest = body[at..].trim_start();
            rest.strip_prefix(':')
                .map(str::trim_start)
                .ok_or_else(|| format!("no ':' after {key:?} in the header"))
        };
        let descr = {
            let v = value_of("descr")?;
            let quote = v.chars().next().filter(|c| *c == '\'' || *c == '"');
            let quote = quote.ok_or("'descr' is not a string (structured types are not read)")?;
            let end = v[1..].find(quote).ok_or("'descr' is not a closed string")?;
            v[1..1 + end].to_owned()
        };
        let fortran_order = {
            let v = value_of("fortran_order")?;
            if v.starts_with("True") {
                true
            } else if v.starts_with("False") {
                false
            } else {
                return Err("'fortran_order' is neither True nor False".into());
            }
        };
        let shape = {
            let v = value_of("shape")?;
            let inner = v
                .strip_prefix('(')
                .and_then(|t| t.split_once(')'))
                .map(|(inner, _)| inner)
                .ok_or("'shape' is not a tuple")?;
            inner
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| d.trim_end_matches('L').parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("'shape' ({inner}) is not a tuple of sizes"))?
        };
        Ok(Header {
            descr,
            fortran_order,
            shape,
        })
    }
}

/// How one element is stored.
struct Element {
    kind: char,
    width: usize,
    big_endian: bool,
}

impl Element {
    /// Parses a type string such as `<f8`, `|u1`, `>i4`, `|b1`.
    fn parse(descr: &str) -> Result<Element, String> {
        let mut chars = descr.chars();
        let (order, kind) = (chars.next(), chars.next());
        let width: Option<usize> = chars.as_str().parse().ok();
        let (Some(order), Some(kind), Some(width)) = (order, kind, width) else {
            return Err(format!(
                "element type {descr:?} is not one this reader knows"
            ));
        };
        let known = match kind {
            'f' => matches!(width, 4 | 8),
            'i' | 'u' => matches!(width, 1 | 2 | 4 | 8),
            'b' => width == 1,
            _ => false,
        };
        if !known || !matches!(order, '<' | '>' | '|' | '=') {
            return Err(format!(
                "element type {descr:?} is not a number this reader converts \
                 (floats f4/f8, integers i/u 1-8 bytes, booleans)"
            ));
        }
        Ok(Element {
            kind,
            width,
            big_endian: order == '>',
        })
    }

    /// The element stored in `b` (exactly `width` bytes), as an `f64`.
    fn read(&self, b: &[u8]) -> f64 {
        let mut raw = [0u8; 8];
        raw[..self.width].copy_from_slice(b);
        if self.big_endian {
            raw[..self.width].reverse();
        }
        let bits = u64::from_le_bytes(raw);
        match (self.kind, self.width) {
            ('f', 4) => f64::from(f32::from_bits(bits as u32)),
            ('f', _) => f64::from_bits(bits),
            ('u' | 'b', _) => bits as f64,
            // Sign-extend from `width` bytes.
            (_, w) => {
                let shift = 64 - 8 * w as u32;
                ((bits << shift) as i64 >> shift) as f64
            }
        }
    }
}
