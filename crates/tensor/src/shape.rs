//! Shapes, strides and NumPy broadcasting.

use smallvec::SmallVec;
use std::fmt;

/// The extent of each axis, outermost first. Up to four axes live inline.
pub type Shape = SmallVec<[usize; 4]>;

/// Number of elements a shape holds (1 for the 0-d shape `[]`). A count past
/// `usize::MAX` saturates there (no buffer has that many elements, so a length check
/// against it fails instead of overflowing); any zero extent still gives 0.
///
/// ```
/// assert_eq!(descent_tensor::numel(&[2, 3, 4]), 24);
/// assert_eq!(descent_tensor::numel(&[]), 1);
/// assert_eq!(descent_tensor::numel(&[1 << 32, 1 << 32]), usize::MAX);
/// assert_eq!(descent_tensor::numel(&[1 << 32, 1 << 32, 0]), 0);
/// ```
pub fn numel(shape: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    shape.iter().fold(1, |n, &e| n.saturating_mul(e))
}

/// True when the product of the shape's non-zero extents fits in a `usize`. A shape
/// that fails this is refused wherever a shape is created (`Tensor::new`, reshape,
/// broadcast, gather), even when a zero extent makes it empty, because a reduction
/// over its zero axis would leave a shape with more elements than memory can address.
///
/// ```
/// use descent_tensor::shape_fits;
/// assert!(shape_fits(&[2, 3, 0]));
/// assert!(!shape_fits(&[1 << 63, 1 << 63, 0]));
/// ```
pub fn shape_fits(shape: &[usize]) -> bool {
    shape
        .iter()
        .filter(|&&e| e != 0)
        .try_fold(1usize, |n, &e| n.checked_mul(e))
        .is_some()
}

/// Row-major strides of a contiguous tensor of this shape, in elements.
///
/// ```
/// assert_eq!(descent_tensor::contiguous_strides(&[2, 3, 4]).as_slice(), &[12, 4, 1]);
/// ```
pub fn contiguous_strides(shape: &[usize]) -> Shape {
    let mut strides: Shape = smallvec::smallvec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

/// The shape two shapes broadcast to under NumPy's rules, or `None` if they do not.
///
/// Axes are aligned from the right; an axis of extent 1 (or a missing axis) stretches.
///
/// ```
/// use descent_tensor::broadcast_shapes;
/// assert_eq!(broadcast_shapes(&[4, 1, 3], &[5, 1]).unwrap().as_slice(), &[4, 5, 3]);
/// assert!(broadcast_shapes(&[2, 3], &[4]).is_none());
/// ```
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let n = a.len().max(b.len());
    let mut out: Shape = smallvec::smallvec![0; n];
    for i in 0..n {
        let da = if i < n - a.len() {
            1
        } else {
            a[i - (n - a.len())]
        };
        let db = if i < n - b.len() {
            1
        } else {
            b[i - (n - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides that read a tensor of shape `from` as if it had the (broadcast) shape `to`:
/// stretched and missing axes get stride 0. `from` must broadcast to `to`.
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Shape {
    debug_assert!(from.len() <= to.len());
    let own = contiguous_strides(from);
    let offset = to.len() - from.len();
    let mut strides: Shape = smallvec::smallvec![0; to.len()];
    for (i, s) in strides.iter_mut().enumerate().skip(offset) {
        let d = from[i - offset];
        *s = if d == 1 && to[i] != 1 {
            0
        } else {
            own[i - offset]
        };
    }
    strides
}

/// Splits a shape around `axis` into (outer, extent, inner) element counts, so that an
/// axis operation can treat any tensor as a contiguous `[outer, extent, inner]` block.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// Displays a shape as `[2, 3]`, the form every error message uses.
#[derive(Clone, Copy)]
pub struct ShapeDisplay<'a>(pub &'a [usize]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(broadcast_shapes(&[], &[3]).unwrap().as_slice(), &[3]);
        assert_eq!(
            broadcast_shapes(&[2, 1], &[1, 3]).unwrap().as_slice(),
            &[2, 3]
        );
        assert_eq!(broadcast_shapes(&[1], &[0]).unwrap().as_slice(), &[0]);
        assert!(broadcast_shapes(&[3], &[4]).is_none());
    }

    #[test]
    fn broadcast_strides_zero_stretched_axes() {
        assert_eq!(broadcast_strides(&[3], &[2, 3]).as_slice(), &[0, 1]);
        assert_eq!(broadcast_strides(&[2, 1], &[2, 3]).as_slice(), &[1, 0]);
    }
}
