//! # descent-tensor
//!
//! The n-dimensional arrays under the descent autodiff engine, and the kernels that
//! compute on them. This crate knows nothing of tapes or gradients: it is plain
//! numerics, so it can be read, tested and benchmarked on its own.
//!
//! - [`Tensor`] is an owned, contiguous, row-major array generic over [`Float`]
//!   (`f32`, `f64`), its shape a [`Shape`] (a `SmallVec`, inline up to four axes).
//! - [`View`] borrows a shape and a slice; kernels read views and write into
//!   caller-provided slices, so a caller can recycle buffers.
//! - Broadcasting follows NumPy ([`broadcast_shapes`]); its reverse rule, summing a
//!   gradient back over stretched axes, is [`kernels::sum_to_shape_acc`].
//! - Matrix multiply goes through the `gemm` crate, chosen by measurement (see
//!   `docs/GEMM.md`).
//! - [`bins`] keeps values a thread parks for its own later use (recycled buffers,
//!   a dropped gradient store's vectors), so a warm training loop allocates nothing.
//! - [`LineAligned`] is a global allocator a binary may install so that every large
//!   buffer starts on a 64-byte cache line, as PyTorch's CPU tensors do: the speed of
//!   loops over buffers then no longer depends on where the heap happened to put them.
//! - A tensor prints as NumPy's do, honouring a precision (`{:.3}`) and showing only
//!   the corners of one over 1,000 elements.
//!
//! ```
//! use descent_tensor::{kernels, Tensor};
//! let a = Tensor::from([[1.0, 2.0], [3.0, 4.0]]);
//! let b = Tensor::from([[5.0, 6.0], [7.0, 8.0]]);
//! let mut c = vec![0.0; 4];
//! kernels::matmul(a.view(), b.view(), &[2, 2], &mut c);
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```
#![warn(missing_docs)]

#[cfg(feature = "ndarray")]
pub use ndarray;

pub mod bins;
mod display;
mod element;
mod exp;
pub mod kernels;
mod line_alloc;
#[cfg(feature = "ndarray")]
mod ndarray_conv;
mod pool;
mod shape;
mod simd;
mod tanh;
mod tensor;
#[cfg(test)]
mod ulp;

pub use element::Float;
pub use kernels::{GemmKernels, gemm_kernels, set_gemm_kernels};
pub use line_alloc::{LINE, LINE_ALIGNED_FROM, LineAligned};
// Hidden from the docs: the buffer reuse of the tape and the gradient store.
#[doc(hidden)]
pub use pool::BufferPool;
pub use pool::RECYCLE_BYTES;
pub use shape::{
    Shape, ShapeDisplay, broadcast_shapes, broadcast_strides, contiguous_strides, numel,
    shape_fits, split_at_axis,
};
// Hidden from the docs: how kernels split work over rayon and compile for the
// processor's vectors, shared with `descent-tape`'s ops; no user calls them.
#[doc(hidden)]
pub use simd::{
    PARALLEL_MIN, PARALLEL_MIN_ON_POOL, TRANSCENDENTAL_COST, for_each_block,
    for_each_block_at_cost, for_each_weighted_block, vectorized,
};
pub use smallvec::smallvec;
pub use tensor::{Tensor, View};

/// Errors from building tensors out of user data and from reading them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// The data does not have as many elements as the shape holds.
    #[error("a tensor of shape {} needs {} elements, but {len} were given", ShapeDisplay(.shape), numel(.shape))]
    DataLength {
        /// The requested shape.
        shape: Shape,
        /// How many elements were supplied.
        len: usize,
    },
    /// The shape's non-zero extents multiply past what memory can address.
    #[error("a tensor of shape {} is too large: its extents multiply past usize::MAX", ShapeDisplay(.shape))]
    TooLarge {
        /// The requested shape.
        shape: Shape,
    },
    /// `item()` of a tensor that does not hold exactly one element.
    #[error("item: a tensor of shape {} holds {len} elements, not 1", ShapeDisplay(.shape))]
    NotOneElement {
        /// The tensor's shape.
        shape: Shape,
        /// How many elements it holds.
        len: usize,
    },
    /// Nested rows of different lengths (`Tensor::try_from(Vec<Vec<T>>)`).
    #[error("row {row} has {len} elements, but row 0 has {expected}: rows must be equally long")]
    Ragged {
        /// The first row whose length differs from row 0's.
        row: usize,
        /// Its length.
        len: usize,
        /// Row 0's length.
        expected: usize,
    },
}
