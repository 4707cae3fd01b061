//! The few vector operations the small-batch products need, for `f32` and `f64`,
//! through `pulp`.

/// The vector operations of `dot_product` and `axpy_product` for `f32` and `f64`,
/// through `pulp` (a supertrait of [`Float`](crate::Float), unnameable outside `small_gemm`).
pub trait Lanes: Sized + Copy {
    /// A vector of `S` of this type.
    type Vector<S: pulp::Simd>: Copy;
    /// Elements in a [`Lanes::Vector`].
    fn lanes<S: pulp::Simd>() -> usize;
    /// `x` in every lane.
    fn splat<S: pulp::Simd>(simd: S, x: Self) -> Self::Vector<S>;
    /// `a·b + c` lane by lane, rounded once.
    fn fused_mul_add<S: pulp::Simd>(
        simd: S,
        a: Self::Vector<S>,
        b: Self::Vector<S>,
        c: Self::Vector<S>,
    ) -> Self::Vector<S>;
    /// `a·b` lane by lane.
    fn mul_lanes<S: pulp::Simd>(simd: S, a: Self::Vector<S>, b: Self::Vector<S>)
    -> Self::Vector<S>;
    /// `x` as whole vectors and the elements after them.
    fn vectors<S: pulp::Simd>(x: &[Self]) -> (&[Self::Vector<S>], &[Self]);
    /// [`Lanes::vectors`] of a mutable slice.
    fn vectors_mut<S: pulp::Simd>(x: &mut [Self]) -> (&mut [Self::Vector<S>], &mut [Self]);
    /// `x` (shorter than a vector) followed by zeros.
    fn partial_load<S: pulp::Simd>(simd: S, x: &[Self]) -> Self::Vector<S>;
    /// Stores the first `x.len()` lanes of `v` (fewer than a vector's) into `x`.
    fn partial_store<S: pulp::Simd>(simd: S, x: &mut [Self], v: Self::Vector<S>);
    /// This thread's scratch buffer, taken out of its slot (so nothing else sees it
    /// until [`Lanes::keep_scratch`] puts it back), with at least `len` elements.
    fn take_scratch(len: usize) -> Vec<Self>;
    /// Puts a buffer from [`Lanes::take_scratch`] back for this thread's next product.
    fn keep_scratch(scratch: Vec<Self>);
    /// The sum of the lanes, in `pulp`'s order.
    fn reduce_sum<S: pulp::Simd>(simd: S, x: Self::Vector<S>) -> Self;
}

/// [`Lanes`] for one element type, `pulp`'s operations on its vectors by name, and its
/// thread's scratch buffer in the slot `$scratch`.
macro_rules! lanes {
    ($t:ty, $scratch:ident, $vec:ident, $lanes:ident, $splat:ident, $mul_add:ident, $mul:ident, $as_simd:ident,
     $as_mut_simd:ident, $partial_load:ident, $partial_store:ident, $reduce_sum:ident) => {
        thread_local! {
            static $scratch: std::cell::Cell<Vec<$t>> = const { std::cell::Cell::new(Vec::new()) };
        }

        impl Lanes for $t {
            type Vector<S: pulp::Simd> = S::$vec;
            #[inline(always)]
            fn lanes<S: pulp::Simd>() -> usize {
                S::$lanes
            }
            #[inline(always)]
            fn splat<S: pulp::Simd>(simd: S, x: $t) -> S::$vec {
                simd.$splat(x)
            }
            #[inline(always)]
            fn fused_mul_add<S: pulp::Simd>(
                simd: S,
                a: S::$vec,
                b: S::$vec,
                c: S::$vec,
            ) -> S::$vec {
                simd.$mul_add(a, b, c)
            }
            #[inline(always)]
            fn mul_lanes<S: pulp::Simd>(simd: S, a: S::$vec, b: S::$vec) -> S::$vec {
                simd.$mul(a, b)
            }
            #[inline(always)]
            fn vectors<S: pulp::Simd>(x: &[$t]) -> (&[S::$vec], &[$t]) {
                S::$as_simd(x)
            }
            #[inline(always)]
            fn vectors_mut<S: pulp::Simd>(x: &mut [$t]) -> (&mut [S::$vec], &mut [$t]) {
                S::$as_mut_simd(x)
            }
            #[inline(always)]
            fn partial_load<S: pulp::Simd>(simd: S, x: &[$t]) -> S::$vec {
                simd.$partial_load(x)
            }
            #[inline(always)]
            fn partial_store<S: pulp::Simd>(simd: S, x: &mut [$t], v: S::$vec) {
                simd.$partial_store(x, v)
            }
            fn take_scratch(len: usize) -> Vec<$t> {
                let mut scratch = $scratch.take();
                if scratch.len() < len {
                    scratch.resize(len, 0.0);
                }
                scratch
            }
            fn keep_scratch(scratch: Vec<$t>) {
                $scratch.set(scratch);
            }
            #[inline(always)]
            fn reduce_sum<S: pulp::Simd>(simd: S, x: S::$vec) -> $t {
                simd.$reduce_sum(x)
            }
        }
    };
}

lanes!(
    f32,
    SCRATCH_F32,
    f32s,
    F32_LANES,
    splat_f32s,
    mul_add_f32s,
    mul_f32s,
    as_simd_f32s,
    as_mut_simd_f32s,
    partial_load_f32s,
    partial_store_f32s,
    reduce_sum_f32s
);
lanes!(
    f64,
    SCRATCH_F64,
    f64s,
    F64_LANES,
    splat_f64s,
    mul_add_f64s,
    mul_f64s,
    as_simd_f64s,
    as_mut_simd_f64s,
    partial_load_f64s,
    partial_store_f64s,
    reduce_sum_f64s
);
