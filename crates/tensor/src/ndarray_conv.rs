//! Conversions to and from `ndarray` arrays (feature `ndarray`).

use crate::{Float, Tensor};
use ndarray::{ArrayD, IxDyn};

impl<T: Float> From<ArrayD<T>> for Tensor<T> {
    /// The array's elements in row-major (logical) order, whatever its memory layout.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    /// let t = Tensor::from(a.t().to_owned()); // a transposed (column-major) array
    /// assert_eq!(t.shape(), &[2, 2]);
    /// assert_eq!(t.data(), &[1.0, 3.0, 2.0, 4.0]);
    /// ```
    fn from(a: ArrayD<T>) -> Self {
        let shape = a.shape().to_vec();
        let data: Vec<T> = a.iter().copied().collect();
        Tensor::new(&shape, data).expect("an array holds as many elements as its shape")
    }
}

impl<T: Float> From<&Tensor<T>> for ArrayD<T> {
    /// A standard-layout array with the tensor's shape and a copy of its elements.
    ///
    /// ```
    /// use descent_tensor::Tensor;
    /// let t = Tensor::from([[1.0f32, 2.0], [3.0, 4.0]]);
    /// let a = ndarray::ArrayD::from(&t);
    /// assert_eq!(a[[1, 0]], 3.0);
    /// assert_eq!(Tensor::from(a), t);
    /// ```
    fn from(t: &Tensor<T>) -> Self {
        ArrayD::from_shape_vec(IxDyn(t.shape()), t.data().to_vec())
            .expect("a tensor holds as many elements as its shape")
    }
}
