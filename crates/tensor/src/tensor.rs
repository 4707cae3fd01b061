//! The owned tensor and its borrowed view.

use crate::shape::{Shape, ShapeDisplay, numel};
use crate::{Float, TensorError};

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

impl<T: Float, const N: usize, const D: usize, const R: usize, const C: usize>
    From<[[[[T; C]; R]; D]; N]> for Tensor<T>
{
    /// A 4-d tensor from nested arrays, outermost axis first (an image batch
    /// `[n, c, h, w]`, a convolution weight `[c_out, c_in, kh, kw]`).
    ///
    /// ```
    /// let t = descent_tensor::Tensor::from([[[[1.0, 2.0], [3.0, 4.0]]]]);
    /// assert_eq!(t.shape(), &[1, 1, 2, 2]);
    /// assert_eq!(t.get(&[0, 0, 1, 0]), 3.0);
    /// ```
    fn from(images: [[[[T; C]; R]; D]; N]) -> Self {
        Self::from_parts(
            smallvec::smallvec![N, D, R, C],
            images
                .iter()
                .flatten()
                .flatten()
                .flatten()
                .copied()
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
