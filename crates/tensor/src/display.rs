//! How tensors and views print: nested brackets like NumPy's, a precision honoured,
//! large tensors summarised by their corners.

use crate::shape::{ShapeDisplay, numel};
use crate::{Float, Tensor, View};
use std::fmt;

/// The shape and element type, then the elements: `Tensor<f64>[2, 2] [[1, 2], [3, 4]]`,
/// so that shapes `[0, 3]` and `[0]` (both with no elements) are told apart.
impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{} ", T::NAME, ShapeDisplay(self.shape()))?;
        fmt::Display::fmt(&self.view(), f)
    }
}

/// As [`View`]'s: nested brackets, a precision honoured, large tensors summarised.
impl<T: Float> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.view(), f)
    }
}

impl<T: Float> fmt::Debug for View<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Nested brackets, like NumPy: `[[1, 2], [3, 4]]`; a 0-d view prints its number.
/// A precision applies to every element (`{:.3}` prints `[[1.000, 2.000], ...]`).
///
/// Above 1,000 elements only the first and last 3 along each axis are shown, `...`
/// standing for the rest, one row a line with the columns aligned, as NumPy and
/// PyTorch print them (their `threshold` and `edgeitems`):
///
/// ```
/// use descent_tensor::Tensor;
/// let t = Tensor::from_fn(&[100, 100], |i| i as f64);
/// assert_eq!(
///     t.to_string(),
///     "[[   0,    1,    2, ...,   97,   98,   99],
///  [ 100,  101,  102, ...,  197,  198,  199],
///  [ 200,  201,  202, ...,  297,  298,  299],
///  ...,
///  [9700, 9701, 9702, ..., 9797, 9798, 9799],
///  [9800, 9801, 9802, ..., 9897, 9898, 9899],
///  [9900, 9901, 9902, ..., 9997, 9998, 9999]]"
/// );
/// assert_eq!(Tensor::from([[0.5, 1.0], [1.5, 2.0]]).to_string(), "[[0.5, 1], [1.5, 2]]");
/// assert_eq!(format!("{:.2}", Tensor::from([0.5, 1.0])), "[0.50, 1.00]");
/// ```
impl<T: Float> fmt::Display for View<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precision = f.precision();
        if self.data().len() > SUMMARY_THRESHOLD {
            return summarized(f, self.shape(), self.data(), precision);
        }
        fn rec<T: Float>(
            f: &mut fmt::Formatter<'_>,
            shape: &[usize],
            data: &[T],
            precision: Option<usize>,
        ) -> fmt::Result {
            match shape.split_first() {
                None => write_element(f, data[0], precision),
                Some((&n, rest)) => {
                    let step = numel(rest);
                    write!(f, "[")?;
                    for i in 0..n {
                        if i > 0 {
                            write!(f, ", ")?;
                        }
                        rec(f, rest, &data[i * step..(i + 1) * step], precision)?;
                    }
                    write!(f, "]")
                }
            }
        }
        rec(f, self.shape(), self.data(), precision)
    }
}

/// Tensors with more elements than this print in summary: NumPy's and PyTorch's
/// threshold, so that printing a large tensor by mistake costs a few lines.
const SUMMARY_THRESHOLD: usize = 1000;

/// How many elements a summary shows at each end of every axis (NumPy's and
/// PyTorch's `edgeitems`).
const EDGE_ITEMS: usize = 3;

fn write_element<T: Float>(w: &mut impl fmt::Write, x: T, precision: Option<usize>) -> fmt::Result {
    match precision {
        Some(p) => write!(w, "{x:.p$}"),
        None => write!(w, "{x}"),
    }
}

/// The indices a summary shows along an axis of extent `n`, `None` for the `...`.
fn shown(n: usize) -> impl Iterator<Item = Option<usize>> {
    let cut = n > 2 * EDGE_ITEMS;
    let head = if cut { EDGE_ITEMS } else { n };
    let tail = if cut { n - EDGE_ITEMS } else { n };
    (0..head)
        .map(Some)
        .chain(cut.then_some(None))
        .chain((tail..n).map(Some))
}

/// Calls `f` on every element a summary shows, in order.
fn for_each_shown<T: Float>(shape: &[usize], data: &[T], f: &mut impl FnMut(T)) {
    match shape.split_first() {
        None => f(data[0]),
        Some((&n, rest)) => {
            let step = numel(rest);
            for i in shown(n).flatten() {
                for_each_shown(rest, &data[i * step..(i + 1) * step], f);
            }
        }
    }
}

/// The summary of a large tensor: every shown element right-aligned to the widest,
/// rows on lines of their own, a blank line between blocks of two or more axes.
fn summarized<T: Float>(
    f: &mut fmt::Formatter<'_>,
    shape: &[usize],
    data: &[T],
    precision: Option<usize>,
) -> fmt::Result {
    let mut text = String::new();
    let mut width = 0;
    for_each_shown(shape, data, &mut |x| {
        text.clear();
        // Writing to a `String` cannot fail.
        let _ = write_element(&mut text, x, precision);
        width = width.max(text.chars().count());
    });
    fn block<T: Float>(
        f: &mut fmt::Formatter<'_>,
        shape: &[usize],
        data: &[T],
        depth: usize,
        width: usize,
        precision: Option<usize>,
        text: &mut String,
    ) -> fmt::Result {
        let Some((&n, rest)) = shape.split_first() else {
            text.clear();
            write_element(text, data[0], precision)?;
            return write!(f, "{text:>width$}");
        };
        let step = numel(rest);
        f.write_str("[")?;
        for (k, i) in shown(n).enumerate() {
            if k > 0 {
                f.write_str(",")?;
                if rest.is_empty() {
                    f.write_str(" ")?;
                } else {
                    for _ in 0..rest.len() {
                        f.write_str("\n")?;
                    }
                    write!(f, "{:1$}", "", depth + 1)?;
                }
            }
            match i {
                Some(i) => block(
                    f,
                    rest,
                    &data[i * step..(i + 1) * step],
                    depth + 1,
                    width,
                    precision,
                    text,
                )?,
                None => f.write_str("...")?,
            }
        }
        f.write_str("]")
    }
    block(f, shape, data, 0, width, precision, &mut text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_type_and_shape_so_empty_tensors_differ() {
        let t = Tensor::from([[1.0f64, 2.0], [3.0, 4.0]]);
        assert_eq!(format!("{t:?}"), "Tensor<f64>[2, 2] [[1, 2], [3, 4]]");
        let a = Tensor::<f32>::zeros(&[0, 3]);
        let b = Tensor::<f32>::zeros(&[0]);
        assert_ne!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(format!("{t}"), "[[1, 2], [3, 4]]");
    }

    #[test]
    fn a_precision_applies_to_every_element() {
        let t = Tensor::from([[1.0f64, -2.5], [1.0 / 3.0, 1e-4]]);
        assert_eq!(format!("{t:.3}"), "[[1.000, -2.500], [0.333, 0.000]]");
        assert_eq!(format!("{:.1}", t.view()), "[[1.0, -2.5], [0.3, 0.0]]");
        assert_eq!(
            format!("{:.2?}", Tensor::from([0.5f32])),
            "Tensor<f32>[1] [0.50]"
        );
        let big = Tensor::from_fn(&[2000], |i| i as f64 / 7.0);
        assert_eq!(
            format!("{big:.2}"),
            "[  0.00,   0.14,   0.29, ..., 285.29, 285.43, 285.57]"
        );
    }

    #[test]
    fn small_tensors_print_in_full_on_one_line() {
        // 1,000 elements is the most printed in full.
        let t = Tensor::from_fn(&[10, 100], |i| (i % 10) as f32);
        let text = t.to_string();
        assert_eq!(text.matches(", ").count(), 999);
        assert!(!text.contains("...") && !text.contains('\n'));
        assert_eq!(
            format!("{}", Tensor::from([1.0f64, 2.5, -3.0])),
            "[1, 2.5, -3]"
        );
        assert_eq!(Tensor::scalar(0.25f64).to_string(), "0.25");
        assert_eq!(format!("{:.3}", Tensor::scalar(2.0f32)), "2.000");
        assert_eq!(Tensor::<f64>::zeros(&[0, 3]).to_string(), "[]");
        let cube = Tensor::from([[[1.0f64, 2.0]], [[3.0, 4.0]]]);
        assert_eq!(cube.to_string(), "[[[1, 2]], [[3, 4]]]");
    }

    #[test]
    fn a_100_by_100_tensor_prints_its_corners_in_a_few_lines() {
        let t = Tensor::from_fn(&[100, 100], |i| i as f32 * 0.5);
        let text = t.to_string();
        // In full it took 30,200 characters.
        assert_eq!(text.len(), 341, "{text}");
        assert_eq!(
            text,
            "[[     0,    0.5,      1, ...,   48.5,     49,   49.5],
 [    50,   50.5,     51, ...,   98.5,     99,   99.5],
 [   100,  100.5,    101, ...,  148.5,    149,  149.5],
 ...,
 [  4850, 4850.5,   4851, ..., 4898.5,   4899, 4899.5],
 [  4900, 4900.5,   4901, ..., 4948.5,   4949, 4949.5],
 [  4950, 4950.5,   4951, ..., 4998.5,   4999, 4999.5]]"
        );
    }

    #[test]
    fn one_element_past_the_threshold_is_summarised() {
        let line = Tensor::from_fn(&[1001], |i| i as f64);
        assert_eq!(
            line.to_string(),
            "[   0,    1,    2, ...,  998,  999, 1000]"
        );
        let t = Tensor::from_fn(&[7, 143], |i| (i % 1000) as f64);
        assert_eq!(
            t.to_string(),
            "[[  0,   1,   2, ..., 140, 141, 142],
 [143, 144, 145, ..., 283, 284, 285],
 [286, 287, 288, ..., 426, 427, 428],
 ...,
 [572, 573, 574, ..., 712, 713, 714],
 [715, 716, 717, ..., 855, 856, 857],
 [858, 859, 860, ..., 998, 999,   0]]"
        );
    }

    #[test]
    fn a_summarised_3d_tensor_separates_its_blocks_by_a_blank_line() {
        let t = Tensor::from_fn(&[2, 2, 300], |i| i as f64);
        assert_eq!(
            t.to_string(),
            "[[[   0,    1,    2, ...,  297,  298,  299],
  [ 300,  301,  302, ...,  597,  598,  599]],

 [[ 600,  601,  602, ...,  897,  898,  899],
  [ 900,  901,  902, ..., 1197, 1198, 1199]]]"
        );
        let deep = Tensor::from_fn(&[8, 8, 8, 8], |i| (i % 10) as f64);
        let text = deep.to_string();
        assert!(text.starts_with("[[[[0, 1, 2, ..., 5, 6, 7],\n   [8, 9, 0, ..., 3, 4, 5],"));
        assert_eq!(
            text.matches("...").count(),
            1 + 6 * (1 + 6 * (1 + 6)),
            "{text}"
        );
    }
}
