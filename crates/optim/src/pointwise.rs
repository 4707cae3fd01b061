//! The element-wise forms of the tensor ops PyTorch's optimisers are written in, with
//! the roundings of its CPU kernels: `add(alpha=)`, `addcmul` and `lerp` are fused
//! multiply-adds there (one rounding), `addcdiv` is `a + (s·b)/c`. Following them makes
//! the optimisers here agree with `torch.optim` in `f64` to the last bit or so, rather
//! than to a few ulps per step.

use descent_tensor::Float;

/// `a + s·b`, rounded once: `a.add(b, alpha=s)`.
#[inline]
pub(crate) fn add_scaled<T: Float>(a: T, s: T, b: T) -> T {
    s.mul_add(b, a)
}

/// `a + s·b·c` as `fma(s·b, c, a)`: `a.addcmul(b, c, value=s)`.
#[inline]
pub(crate) fn addcmul<T: Float>(a: T, s: T, b: T, c: T) -> T {
    (s * b).mul_add(c, a)
}

/// `a + (s·b)/c`: `a.addcdiv(b, c, value=s)`.
#[inline]
pub(crate) fn addcdiv<T: Float>(a: T, s: T, b: T, c: T) -> T {
    a + s * b / c
}

/// `a + w·(b - a)`: `a.lerp(b, w)`, which for `|w| >= 0.5` computes it from the other
/// end as `b + (w - 1)·(b - a)`.
#[inline]
pub(crate) fn lerp<T: Float>(a: T, b: T, w: T) -> T {
    if w.abs() < T::from_f64(0.5) {
        w.mul_add(b - a, a)
    } else {
        (w - T::one()).mul_add(b - a, b)
    }
}
