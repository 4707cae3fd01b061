//! Kernels over views: element-wise with broadcasting, reductions, axis operations,
//! layout changes and matrix multiply.
//!
//! Every kernel writes into a caller-provided output slice of the right length, so the
//! caller decides where buffers come from (the tape recycles them between steps).
//! Kernels named `*_acc` add into their output instead of overwriting it: backward
//! rules accumulate into gradient buffers, which is how fan-out is summed.
//!
//! One file per idea, every kernel re-exported here (`kernels::gemm`, not
//! `kernels::gemm::gemm`):
//! - `broadcast`: element-wise over broadcast operands, and summing back over them;
//! - `reduce`: sum and max along an axis, and their reverse rules;
//! - `softmax`: softmax, log-softmax and log-sum-exp;
//! - `layout`: transposes, slices, concatenation, gather, and lanes along an axis;
//! - `gemm`: matrix products through the `gemm` crate, and unpacked loops for a vector;
//! - `gemm_kernels`: which of that crate's kernel sets (AVX2, AVX-512) runs a product,
//!   and the call into it;
//! - `small_gemm`: products of a small batch against a wide layer (`x·Wᵀ`, `g·W`, and
//!   the weight gradient `gᵀ·x`) in our own vector loops, where they beat the crate;
//! - `matmul`: 2-d and batched matrix products and their gradients;
//! - `conv`: convolution by im2col and GEMM, and its two backward products;
//! - `pool`: max and average pooling and their reverse rules;
//! - `sum`: sums and dot products in eight lanes, the order every kernel shares.

mod broadcast;
mod conv;
mod gemm;
mod gemm_kernels;
mod layout;
mod matmul;
mod pool;
mod reduce;
mod small_gemm;
mod softmax;
mod sum;
#[cfg(test)]
mod testing;

pub use self::gemm::{PARALLEL_GEMM_VOLUME, gemm};
pub(crate) use self::gemm_kernels::loops_use_avx512;
pub use self::gemm_kernels::{GemmKernels, gemm_kernels, set_gemm_kernels};
pub(crate) use self::small_gemm::Lanes;
pub use broadcast::sum_to_shape_acc;
pub use conv::{ConvGeometry, ConvGeometryError, WEIGHT_CHUNKS, conv2d, conv2d_backward_acc};
pub use layout::{
    concat, gather, gather_backward_acc, slice_axis, slice_axis_backward_acc, swap_axes,
};
pub use matmul::{matmul, matmul_backward_lhs_acc, matmul_backward_rhs_acc, matmul_shape};
pub use pool::{
    PoolGeometry, PoolGeometryError, avg_pool2d, avg_pool2d_backward_acc, max_pool2d,
    max_pool2d_backward_acc, max_pool2d_values,
};
pub use reduce::{expand_axis_acc, max_axis, max_axis_backward_acc, sum_axis};
pub use softmax::{log_softmax_axis, softmax_axis};
pub use sum::sum_all;

// Hidden from the docs: the pieces the tape's ops build their kernels from (lanes,
// broadcast loops, paired products); public only because `descent-tape` calls them.
#[doc(hidden)]
pub use self::gemm::{Product, gemm_packed, gemm_pair};
#[doc(hidden)]
pub use broadcast::{
    BroadcastRow, for_each_broadcast, for_each_broadcast_row, sum_to_shape_scaled_acc,
    zip_broadcast,
};
#[doc(hidden)]
pub use layout::{axis_lanes, axis_lanes2_acc};
#[doc(hidden)]
pub use softmax::{lane_max, log_softmax_lane, log_sum_exp, log_sum_exp_parts, softmax_lane};
#[doc(hidden)]
pub use sum::{dot_lanes, sum_lanes};

pub(crate) use sum::{dot4, dot4_f32, dot4_f64, sum4_f32, sum4_f64, sum4_lanes};
