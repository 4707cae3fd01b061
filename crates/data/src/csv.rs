//! Reading a dataset from a CSV file: one sample per row, numeric inputs, one target
//! column.

use crate::dataset::{Targets, TensorDataset};
use crate::error::{Error, Result};
use descent_tensor::{Float, Tensor};
use std::path::Path;

/// Which column holds the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetColumn {
    /// The last column (the default).
    Last,
    /// The first column.
    First,
    /// The column at this 0-based position.
    Index(usize),
    /// The column with this header name (the file must have a header).
    Named(String),
}

/// What the target column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// Class indices `0..classes` (written `3` or `3.0`), for `cross_entropy`.
    Classes {
        /// The number of classes; a label at or above it is an error.
        classes: usize,
    },
    /// Numbers, as a `[n]` tensor of targets.
    Values,
}

/// How to read a CSV file; [`CsvOptions::classes`] and [`CsvOptions::values`] give the
/// usual settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvOptions {
    /// Whether the first line names the columns (default `true`).
    pub header: bool,
    /// The field separator (default `b','`).
    pub delimiter: u8,
    /// Which column is the target (default [`TargetColumn::Last`]).
    pub target: TargetColumn,
    /// What the target column holds.
    pub kind: TargetKind,
    /// Every input is multiplied by this as it is read (default 1: pixels 0..16
    /// become 0..1 with `1.0 / 16.0`).
    pub scale: f64,
}

impl CsvOptions {
    /// A header line, comma-separated, the class index in the last column.
    pub fn classes(classes: usize) -> Self {
        CsvOptions {
            header: true,
            delimiter: b',',
            target: TargetColumn::Last,
            kind: TargetKind::Classes { classes },
            scale: 1.0,
        }
    }

    /// A header line, comma-separated, a numeric target in the last column.
    pub fn values() -> Self {
        CsvOptions {
            kind: TargetKind::Values,
            ..Self::classes(0)
        }
    }

    /// The target in `column`.
    pub fn target(mut self, column: TargetColumn) -> Self {
        self.target = column;
        self
    }

    /// Inputs multiplied by `scale` as they are read.
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Whether the first line is a header.
    pub fn header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }

    /// The field separator.
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }
}

/// Reads `path`: every row a sample, the target column as `options` says, every other
/// column an input (so the inputs are `[rows, columns - 1]`).
///
/// ```
/// use descent_data::{CsvOptions, Dataset, read_csv};
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny.csv");
/// let data = read_csv::<f64>(path, &CsvOptions::classes(3).scale(0.5)).unwrap();
/// assert_eq!(data.len(), 4);
/// assert_eq!(data.inputs().shape(), [4, 2]);
/// assert_eq!(data.inputs().data()[..2], [0.5, 1.0]);
/// assert_eq!(data.targets().classes().unwrap(), [0, 2, 1, 2]);
/// ```
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Csv`] for malformed CSV;
/// [`Error::Ragged`] for a row with a different field count; [`Error::Field`] for a
/// field that is not a number (or not a class index below the class count), naming
/// line and column; [`Error::NoSuchColumn`] for a target column the file lacks;
/// [`Error::Empty`] for a file without data rows or without input columns.
pub fn read_csv<T: Float>(
    path: impl AsRef<Path>,
    options: &CsvOptions,
) -> Result<TensorDataset<T>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(options.header)
        .delimiter(options.delimiter)
        .trim(csv::Trim::All)
        // Ragged rows are reported by us, with the counts and the line.
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let csv_error = |source| Error::Csv {
        path: path.into(),
        source,
    };
    let names: Vec<String> = if options.header {
        reader
            .headers()
            .map_err(csv_error)?
            .iter()
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };

    let mut inputs: Vec<T> = Vec::new();
    let mut classes: Vec<usize> = Vec::new();
    let mut values: Vec<T> = Vec::new();
    let mut width: Option<(usize, usize)> = None; // (fields, target column)
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let (fields, target) = match width {
            Some(w) => w,
            None => {
                let fields = record.len();
                if fields < 2 {
                    return Err(Error::Empty {
                        path: path.into(),
                        what: "no input columns beside the target",
                    });
                }
                let target = target_index(path, &options.target, &names, fields)?;
                *width.insert((fields, target))
            }
        };
        if record.len() != fields {
            return Err(Error::Ragged {
                path: path.into(),
                line,
                expected: fields,
                found: record.len(),
            });
        }
        let column_name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
        let bad = |c: usize, text: &str, expected: String| Error::Field {
            path: path.into(),
            line,
            column: column_name(c),
            text: text.into(),
            expected,
        };
        for (c, text) in record.iter().enumerate() {
            let number = text.parse::<f64>().ok().filter(|v| v.is_finite());
            if c == target {
                match options.kind {
                    TargetKind::Classes { classes: k } => {
                        let class = number
                            .filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v < k as f64)
                            .ok_or_else(|| bad(c, text, format!("a class index below {k}")))?;
                        classes.push(class as usize);
                    }
                    TargetKind::Values => {
                        let v = number.ok_or_else(|| bad(c, text, "a finite number".into()))?;
                        values.push(T::from_f64(v));
                    }
                }
            } else {
                let v = number.ok_or_else(|| bad(c, text, "a finite number".into()))?;
                inputs.push(T::from_f64(v * options.scale));
            }
        }
    }
    let Some((fields, _)) = width else {
        return Err(Error::Empty {
            path: path.into(),
            what: "no data rows",
        });
    };
    let rows = inputs.len() / (fields - 1);
    let inputs = Tensor::new(&[rows, fields - 1], inputs).expect("rows × inputs, counted");
    let targets = match options.kind {
        TargetKind::Classes { .. } => Targets::Classes(classes),
        TargetKind::Values => Targets::Values(Tensor::new(&[rows], values).expect("one per row")),
    };
    TensorDataset::new(inputs, targets)
}

/// The 0-based position of the target column in rows of `fields` fields.
fn target_index(
    path: &Path,
    target: &TargetColumn,
    names: &[String],
    fields: usize,
) -> Result<usize> {
    let missing = |column: String| Error::NoSuchColumn {
        path: path.into(),
        column,
        columns: if names.is_empty() {
            (0..fields).map(|c| c.to_string()).collect()
        } else {
            names.to_vec()
        },
    };
    match target {
        TargetColumn::Last => Ok(fields - 1),
        TargetColumn::First => Ok(0),
        TargetColumn::Index(i) if *i < fields => Ok(*i),
        TargetColumn::Index(i) => Err(missing(i.to_string())),
        TargetColumn::Named(name) => names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| missing(format!("{name:?}"))),
    }
}
