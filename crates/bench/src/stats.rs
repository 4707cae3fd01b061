//! Medians and spreads, in the peers' `{"median", "min", "max", "n"}` form.

use serde::Serialize;

/// Median, minimum and maximum of a set of measurements; serialised as the peers'
/// `{"median", "min", "max", "n"}` object (NaN as `null`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Summary {
    /// Summarises `values` (which must not be empty).
    pub fn of(values: &[f64]) -> Self {
        assert!(!values.is_empty(), "nothing to summarise");
        Summary {
            median: median(values),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: values.len(),
        }
    }
}

/// The median of `values` (statistics.median: mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// `|a - b| / |b|` (or `|a - b|` when `b` is zero).
pub fn rel_err(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        (a - b).abs()
    } else {
        ((a - b) / b).abs()
    }
}
