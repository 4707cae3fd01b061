//! The element types a tensor can hold.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A floating-point element type: `f32` or `f64`.
///
/// Everything numeric in descent is generic over this trait. Gradient checks run in
/// `f64`; training usually runs in `f32`.
///
/// ```
/// use descent_tensor::Float;
/// fn half<T: Float>(x: T) -> T { x * T::from_f64(0.5) }
/// assert_eq!(half(3.0f32), 1.5);
/// assert_eq!(half(3.0f64).as_f64(), 1.5);
/// ```
pub trait Float:
    num_traits::Float
    + num_traits::FloatConst
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + crate::kernels::Lanes
    + 'static
{
    /// The type's name as Rust spells it (`"f32"`, `"f64"`).
    const NAME: &'static str;
    /// A zero that lives for the whole program, for a lookup that hands out a
    /// reference to a zero it does not store.
    ///
    /// ```
    /// use descent_tensor::Float;
    /// let zero: &'static f64 = f64::ZERO_REF;
    /// assert_eq!(*zero, 0.0);
    /// ```
    const ZERO_REF: &'static Self;
    /// Converts from `f64`, rounding to nearest where the type is narrower.
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` exactly.
    fn as_f64(self) -> f64;

    /// Writes `tanh` of each element of `input` to `out`.
    ///
    /// The default maps the scalar `tanh` (libm). `f32` overrides it with a
    /// branch-free version that vectorises, within 1 ulp of the correctly rounded
    /// result; `f64` keeps libm, so gradient checks see the same numbers as scalar
    /// nodes.
    ///
    /// ```
    /// use descent_tensor::Float;
    /// let mut out = [0.0f32; 3];
    /// f32::tanh_slice(&[-0.0, 0.5, f32::INFINITY], &mut out);
    /// assert_eq!(out[0].to_bits(), (-0.0f32).to_bits());
    /// assert!((out[1] - 0.5f32.tanh()).abs() <= 2.0 * f32::EPSILON);
    /// assert_eq!(out[2], 1.0);
    /// ```
    ///
    /// # Panics
    /// If the lengths differ.
    fn tanh_slice(input: &[Self], out: &mut [Self]) {
        assert_eq!(input.len(), out.len(), "tanh_slice: length mismatch");
        for (o, &v) in out.iter_mut().zip(input) {
            *o = v.tanh();
        }
    }

    /// `eˣ` as descent's kernels compute it, in a form a loop over a slice can
    /// vectorise where the type has one. `f32` uses a branch-free version within 1 ulp
    /// of the correctly rounded result (subnormal results, `±∞` and NaN included);
    /// `f64` keeps libm, so gradient checks see the same numbers as scalar code.
    ///
    /// ```
    /// use descent_tensor::Float;
    /// assert_eq!(0.0f32.kernel_exp(), 1.0);
    /// assert!((1.0f32.kernel_exp() - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
    /// assert_eq!(f32::NEG_INFINITY.kernel_exp(), 0.0);
    /// assert_eq!(1.0f64.kernel_exp(), 1.0f64.exp());
    /// ```
    #[inline(always)]
    fn kernel_exp(self) -> Self {
        self.exp()
    }

    /// `tanh x` as descent's kernels compute it: the element-wise form of
    /// [`Float::tanh_slice`] (branch-free within 1 ulp for `f32`, libm for `f64`), for
    /// loops that need tanh inside a larger expression (GELU).
    ///
    /// ```
    /// use descent_tensor::Float;
    /// let mut out = [0.0f32];
    /// f32::tanh_slice(&[0.3], &mut out);
    /// assert_eq!(0.3f32.kernel_tanh(), out[0]);
    /// assert_eq!(0.3f64.kernel_tanh(), 0.3f64.tanh());
    /// ```
    #[inline(always)]
    fn kernel_tanh(self) -> Self {
        self.tanh()
    }

    // `dot4` and `sum4` are hidden from the docs: the inner loops of the kernels,
    // on the trait only so that `f32` and `f64` can bring explicit vectors.
    /// The dot products of four rows with one vector (the kernel of a matrix-vector
    /// product). Each row is summed in eight lanes, lane `k` taking elements `k`,
    /// `k + 8`, …; the lanes are added pairwise, then the elements past the last full
    /// eight in order. Every implementation gives these bits; `f32` and `f64` use
    /// explicit AVX2 vectors where the processor has them. Rows may be longer than
    /// `v`: their first `v.len()` elements are used.
    ///
    /// ```
    /// use descent_tensor::Float;
    /// let v = [1.0f32, 2.0, 3.0];
    /// let rows: [&[f32]; 4] = [&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[1.0, 1.0, 1.0], &[2.0; 3]];
    /// assert_eq!(f32::dot4(rows, &v), [1.0, 2.0, 6.0, 12.0]);
    /// ```
    ///
    /// # Panics
    /// If a row is shorter than `v`.
    #[doc(hidden)]
    #[inline(always)]
    fn dot4(rows: [&[Self]; 4], v: &[Self]) -> [Self; 4] {
        crate::kernels::dot4(rows, v)
    }

    /// The sums of four rows of one length, each summed as
    /// [`kernels::sum_lanes`](crate::kernels::sum_lanes) sums it (the same bits); the
    /// four run side by side, where the processor allows, in explicit vectors.
    ///
    /// ```
    /// use descent_tensor::Float;
    /// let rows: [&[f64]; 4] = [&[1.0, 2.0, 3.0], &[0.0; 3], &[-1.0, 1.0, 0.5], &[4.0; 3]];
    /// assert_eq!(f64::sum4(rows), [6.0, 0.0, 0.5, 12.0]);
    /// ```
    ///
    /// # Panics
    /// If a row is shorter than the first.
    #[doc(hidden)]
    #[inline(always)]
    fn sum4(rows: [&[Self]; 4]) -> [Self; 4] {
        crate::kernels::sum4_lanes(rows)
    }
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    const ZERO_REF: &'static Self = &0.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn tanh_slice(input: &[Self], out: &mut [Self]) {
        crate::tanh::tanh_f32_slice(input, out);
    }
    #[inline(always)]
    fn kernel_exp(self) -> Self {
        crate::exp::exp_f32(self)
    }
    #[inline(always)]
    fn kernel_tanh(self) -> Self {
        crate::tanh::tanh_f32(self)
    }
    #[inline]
    fn dot4(rows: [&[Self]; 4], v: &[Self]) -> [Self; 4] {
        crate::kernels::dot4_f32(rows, v)
    }
    #[inline]
    fn sum4(rows: [&[Self]; 4]) -> [Self; 4] {
        crate::kernels::sum4_f32(rows)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    const ZERO_REF: &'static Self = &0.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline]
    fn dot4(rows: [&[Self]; 4], v: &[Self]) -> [Self; 4] {
        crate::kernels::dot4_f64(rows, v)
    }
    #[inline]
    fn sum4(rows: [&[Self]; 4]) -> [Self; 4] {
        crate::kernels::sum4_f64(rows)
    }
}
