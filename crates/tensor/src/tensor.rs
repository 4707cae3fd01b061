//! The owned tensor and its borrowed view.

use crate::shape::{Shape, ShapeDisplay, numel};
use crate::{Float, TensorError};
use std::fmt;

/// An owned, contiguous, row-major n-dimensional array.
///
/// A 0-d tensor (shape `[]`) holds exactly one element.
///
/// ```
/// use descent_tensor::Tensor;
/// let t = Tensor::new(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
/// assert_eq!(t.shape(), &[2, 3]);
/// assert_eq!(t.get(&[1, 0]), 4.0);
/// assert!(Tensor::<f64>::new(&[2, 2], vec![1.0]).is_err());
/// ```
#[derive(Clone, PartialEq)]
pub struct Tensor<T> {
    shape: Shape,
    data: Vec<T>,
}

impl<T: Float> Tensor<T> {
    /// A tensor of the given shape over `data` (row-major); errors if the lengths differ.
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Self, TensorError> {
        if !crate::shape_fits(shape) {
            return Err(TensorError::TooLarge {
                shape: shape.into(),
            });
        }
        if numel(shape) != data.len() {
            return Err(TensorError::DataLength {
                shape: shape.into(),
                len: data.len(),
            });
        }
        Ok(Self {
            shape: shape.into(),
            data,
        })
    }

    /// Like [`Tensor::new`], for callers that have already checked the length.
    pub(crate) fn from_parts(shape: Shape, data: Vec<T>) -> Self {
        debug_assert_eq!(numel(&shape), data.len());
        Self { shape, data }
    }

    /// A tensor filled with `value`.
    ///
    /// ```
    /// let t = descent_tensor::Tensor::full(&[2], 7.0f32);
    /// assert_eq!(t.data(), &[7.0, 7.0]);
    /// ```
    pub fn full(shape: &[usize], value: T) -> Self {
        Self::from_parts(shape.into(), vec![value; numel(shape)])
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::one())
    }

    /// A 0-d tensor holding one value.
    ///
    /// ```
    /// let t = descent_tensor::Tensor::scalar(2.5f64);
    /// assert_eq!(t.shape(), &[] as &[usize]);
    /// assert_eq!(t.item(), 2.5);
    /// ```
    pub fn scalar(value: T) -> Self {
        Self::from_parts(Shape::new(), vec![value])
    }

    /// A tensor whose element at flat index `i` is `f(i)`.
    ///
    /// ```
    /// let t = descent_tensor::Tensor::from_fn(&[3], |i| i as f64 * 2.0);
    /// assert_eq!(t.data(), &[0.0, 2.0, 4.0]);
    /// ```
    pub fn from_fn(shape: &[usize], f: impl FnMut(usize) -> T) -> Self {
        Self::from_parts(shape.into(), (0..numel(shape)).map(f).collect())
    }

    /// The extent of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element (some axis has extent 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements in row-major order, mutably.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Gives up the tensor, returning its elements.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// The single element of a one-element tensor (of any shape: `[]`, `[1]`,
    /// `[1, 1]`, ...).
    ///
    /// # Panics
    /// If the tensor does not hold exactly one element, with
    /// [`TensorError::NotOneElement`]'s message; [`Tensor::try_item`] returns it.
    #[track_caller]
    pub fn item(&self) -> T {
        self.view().item()
    }

    /// The single element of a one-element tensor, or
    /// [`TensorError::NotOneElement`].
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// assert_eq!(Tensor::from([[2.5]]).try_item(), Ok(2.5));
    /// let err = Tensor::<f64>::zeros(&[2, 3]).try_item().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "item: a tensor of shape [2, 3] holds 6 elements, not 1"
    /// );
    /// ```
    pub fn try_item(&self) -> Result<T, TensorError> {
        self.view().try_item()
    }

    /// The element at a multi-index.
    ///
    /// # Panics
    /// If the index has the wrong length or is out of bounds.
    pub fn get(&self, index: &[usize]) -> T {
        self.view().get(index)
    }

    /// A borrowed view of the whole tensor.
    pub fn view(&self) -> View<'_, T> {
        View {
            shape: &self.shape,
            data: &self.data,
        }
    }

    /// The same elements under another shape with as many elements.
    ///
    /// ```
    /// let t = descent_tensor::Tensor::<f32>::zeros(&[2, 3]).reshape(&[3, 2]).unwrap();
    /// assert_eq!(t.shape(), &[3, 2]);
    /// ```
    pub fn reshape(self, shape: &[usize]) -> Result<Self, TensorError> {
        Self::new(shape, self.data)
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(T) -> T) -> Self {
        Self::from_parts(
            self.shape.clone(),
            self.data.iter().map(|&x| f(x)).collect(),
        )
    }

    /// Converts every element to another float type.
    ///
    /// ```
    /// let t = descent_tensor::Tensor::new(&[2], vec![0.5f64, 1.5]).unwrap();
    /// assert_eq!(t.cast::<f32>().data(), &[0.5f32, 1.5]);
    /// ```
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        Tensor::from_parts(
            self.shape.clone(),
            self.data.iter().map(|x| U::from_f64(x.as_f64())).collect(),
        )
    }

    /// True when every element is finite (neither NaN nor infinite).
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }
}

impl<T: Float> From<T> for Tensor<T> {
    fn from(value: T) -> Self {
        Self::scalar(value)
    }
}

impl<T: Float> From<Vec<T>> for Tensor<T> {
    /// A 1-d tensor over the vector.
    fn from(data: Vec<T>) -> Self {
        Self::from_parts(smallvec::smallvec![data.len()], data)
    }
}

impl<T: Float> From<&[T]> for Tensor<T> {
    /// A 1-d tensor copied from the slice.
    fn from(data: &[T]) -> Self {
        Self::from(data.to_vec())
    }
}

impl<T: Float, const N: usize> From<[T; N]> for Tensor<T> {
    /// A 1-d tensor from an array.
    fn from(data: [T; N]) -> Self {
        Self::from(data.to_vec())
    }
}

impl<T: Float, const R: usize, const C: usize> From<[[T; C]; R]> for Tensor<T> {
    /// A 2-d tensor from nested arrays, rows first.
    ///
    /// ```
    /// let t = descent_tensor::Tensor::from([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
    /// assert_eq!(t.shape(), &[3, 2]);
    /// ```
    fn from(rows: [[T; C]; R]) -> Self {
        Self::from_parts(
            smallvec::smallvec![R, C],
            rows.iter().flat_map(|r| r.iter().copied()).collect(),
        )
    }
}

impl<T: Float, const D: usize, const R: usize, const C: usize> From<[[[T; C]; R]; D]>
    for Tensor<T>
{
    /// A 3-d tensor from nested arrays, outermost axis first.
    ///
    /// ```
    /// let t = descent_tensor::Tensor::from([[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]]);
    /// assert_eq!(t.shape(), &[3, 1, 2]);
    /// assert_eq!(t.get(&[2, 0, 1]), 6.0);
    /// ```
    fn from(blocks: [[[T; C]; R]; D]) -> Self {
        Self::from_parts(
            smallvec::smallvec![D, R, C],
            blocks.iter().flatten().flatten().copied().collect(),
        )
    }
}

impl<T: Float> TryFrom<Vec<Vec<T>>> for Tensor<T> {
    type Error = TensorError;

    /// A 2-d tensor from rows of equal length (`[rows, columns]`); an error names the
    /// first row whose length differs from the first row's. No rows give shape `[0, 0]`.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let t = Tensor::try_from(vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]).unwrap();
    /// assert_eq!(t.shape(), &[2, 3]);
    /// let err = Tensor::try_from(vec![vec![1.0, 2.0], vec![3.0]]).unwrap_err();
    /// assert_eq!(err.to_string(), "row 1 has 1 elements, but row 0 has 2: rows must be equally long");
    /// ```
    fn try_from(rows: Vec<Vec<T>>) -> Result<Self, TensorError> {
        let columns = rows.first().map_or(0, Vec::len);
        if let Some((row, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != columns) {
            return Err(TensorError::Ragged {
                row,
                len: r.len(),
                expected: columns,
            });
        }
        let shape = [rows.len(), columns];
        Ok(Self::from_parts(
            shape[..].into(),
            rows.into_iter().flatten().collect(),
        ))
    }
}

impl<T: Float> From<Tensor<T>> for Vec<T> {
    fn from(t: Tensor<T>) -> Self {
        t.data
    }
}

/// The shape and element type, then the elements: `Tensor<f64>[2, 2] [[1, 2], [3, 4]]`,
/// so that shapes `[0, 3]` and `[0]` (both with no elements) are told apart.
impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{} ", T::NAME, ShapeDisplay(&self.shape))?;
        fmt::Display::fmt(&self.view(), f)
    }
}

/// As [`View`]'s: nested brackets, a precision honoured, large tensors summarised.
impl<T: Float> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.view(), f)
    }
}

/// A borrowed, contiguous, row-major view: a shape and the elements behind it.
///
/// Kernels read views, so a scalar stored inline (shape `[]`, one element) and a tensor
/// in an arena are read the same way.
///
/// ```
/// use descent_tensor::View;
/// let v = View::new(&[2], &[1.0f64, 2.0]);
/// assert_eq!(v.to_tensor().data(), &[1.0, 2.0]);
/// ```
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    shape: &'a [usize],
    data: &'a [T],
}

impl<'a, T: Float> View<'a, T> {
    /// A view of `data` with `shape`.
    ///
    /// # Panics
    /// If the shape does not hold `data.len()` elements.
    pub fn new(shape: &'a [usize], data: &'a [T]) -> Self {
        assert!(
            numel(shape) == data.len(),
            "View::new: a view of shape {} needs {} elements, but {} were given",
            ShapeDisplay(shape),
            numel(shape),
            data.len()
        );
        Self { shape, data }
    }

    /// A 0-d view of one element.
    pub fn scalar(value: &'a T) -> Self {
        Self {
            shape: &[],
            data: std::slice::from_ref(value),
        }
    }

    /// The extent of each axis.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the view holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The single element of a one-element view.
    ///
    /// # Panics
    /// If the view does not hold exactly one element, with
    /// [`TensorError::NotOneElement`]'s message; [`View::try_item`] returns it.
    #[inline]
    #[track_caller]
    pub fn item(&self) -> T {
        match self.try_item() {
            Ok(x) => x,
            Err(e) => fail(e),
        }
    }

    /// The single element of a one-element view, or [`TensorError::NotOneElement`]
    /// (see [`Tensor::try_item`] for an example).
    #[inline]
    pub fn try_item(&self) -> Result<T, TensorError> {
        match self.data {
            [x] => Ok(*x),
            _ => Err(TensorError::NotOneElement {
                shape: self.shape.into(),
                len: self.data.len(),
            }),
        }
    }

    /// The element at a multi-index.
    ///
    /// # Panics
    /// If the index has the wrong length or is out of bounds.
    pub fn get(&self, index: &[usize]) -> T {
        assert!(
            index.len() == self.shape.len(),
            "get: index {:?} has {} axes, but the tensor of shape {} has {}",
            index,
            index.len(),
            ShapeDisplay(self.shape),
            self.shape.len()
        );
        let mut flat = 0;
        for (&i, &d) in index.iter().zip(self.shape) {
            assert!(
                i < d,
                "get: index {:?} out of bounds for shape {}",
                index,
                ShapeDisplay(self.shape)
            );
            flat = flat * d + i;
        }
        self.data[flat]
    }

    /// Copies the view into an owned tensor.
    pub fn to_tensor(&self) -> Tensor<T> {
        Tensor::from_parts(self.shape.into(), self.data.to_vec())
    }
}

/// Panics with an error's message: out of line, so that the panicking forms stay
/// small enough to inline.
#[cold]
#[inline(never)]
#[track_caller]
fn fail(e: TensorError) -> ! {
    panic!("{e}")
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
        if self.data.len() > SUMMARY_THRESHOLD {
            return summarized(f, self.shape, self.data, precision);
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
        rec(f, self.shape, self.data, precision)
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

    #[test]
    #[should_panic(expected = "item: a tensor of shape [2, 3] holds 6 elements, not 1")]
    fn item_of_many_elements_names_the_op_shape_and_count() {
        Tensor::<f32>::zeros(&[2, 3]).item();
    }

    #[test]
    fn try_item_reads_any_one_element_shape_and_refuses_others() {
        for shape in [&[][..], &[1], &[1, 1, 1]] {
            assert_eq!(Tensor::full(shape, 4.0f64).try_item(), Ok(4.0));
        }
        let err = Tensor::<f64>::zeros(&[0]).view().try_item().unwrap_err();
        assert_eq!(
            err,
            TensorError::NotOneElement {
                shape: smallvec::smallvec![0],
                len: 0
            }
        );
        // The panic carries the error's message alone, no `left == right`.
        let panic = std::panic::catch_unwind(|| Tensor::<f64>::zeros(&[2, 3]).view().item());
        let message = panic.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(
            *message,
            "item: a tensor of shape [2, 3] holds 6 elements, not 1"
        );
    }
}
