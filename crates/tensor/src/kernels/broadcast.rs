//! Element-wise kernels over operands that broadcast (NumPy's rules), and the reverse
//! rule of broadcasting: summing a gradient back over the axes that were stretched.

use super::sum_all;
use crate::shape::{broadcast_strides, numel};
use crate::{Float, View, for_each_block};

/// Calls `f(out_index, a_index, b_index)` for every element of `out_shape`, where
/// `a_shape` and `b_shape` broadcast to `out_shape`.
pub fn for_each_broadcast(
    out_shape: &[usize],
    a_shape: &[usize],
    b_shape: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let n = numel(out_shape);
    if n == 0 {
        return;
    }
    if a_shape == out_shape && b_shape == out_shape {
        for i in 0..n {
            f(i, i, i);
        }
        return;
    }
    let sa = broadcast_strides(a_shape, out_shape);
    let sb = broadcast_strides(b_shape, out_shape);
    let nd = out_shape.len();
    if nd == 0 {
        f(0, 0, 0);
        return;
    }
    let inner = out_shape[nd - 1];
    let (ia, ib) = (sa[nd - 1], sb[nd - 1]);
    let outer = n / inner;
    let mut idx: smallvec::SmallVec<[usize; 4]> = smallvec::smallvec![0; nd];
    let (mut base_a, mut base_b) = (0usize, 0usize);
    let mut o = 0;
    for _ in 0..outer {
        for j in 0..inner {
            f(o + j, base_a + j * ia, base_b + j * ib);
        }
        o += inner;
        // Advance the odometer over all axes but the last.
        let mut axis = nd - 1;
        while axis > 0 {
            axis -= 1;
            idx[axis] += 1;
            base_a += sa[axis];
            base_b += sb[axis];
            if idx[axis] < out_shape[axis] {
                break;
            }
            base_a -= sa[axis] * idx[axis];
            base_b -= sb[axis] * idx[axis];
            idx[axis] = 0;
        }
    }
}

/// `out = f(a, b)` element-wise, `a` and `b` broadcast to `out_shape`. Same shapes, a
/// scalar operand and a repeated trailing block (a bias row) run in blocks on rayon's
/// pool when large ([`for_each_block`]); other broadcasts on the calling thread. Mark
/// `f` `#[inline(always)]`.
pub fn zip_broadcast<T: Float>(
    a: View<'_, T>,
    b: View<'_, T>,
    out_shape: &[usize],
    out: &mut [T],
    f: impl Fn(T, T) -> T + Sync,
) {
    let (ad, bd) = (a.data(), b.data());
    if a.shape() == out_shape && b.shape() == out_shape {
        for_each_block(
            out,
            1,
            #[inline(always)]
            move |at, block| {
                let (ad, bd) = (&ad[at..at + block.len()], &bd[at..at + block.len()]);
                for ((o, &x), &y) in block.iter_mut().zip(ad).zip(bd) {
                    *o = f(x, y);
                }
            },
        );
    } else if bd.len() == 1 && a.shape() == out_shape {
        let y = bd[0];
        for_each_block(
            out,
            1,
            #[inline(always)]
            move |at, block| {
                for (o, &x) in block.iter_mut().zip(&ad[at..]) {
                    *o = f(x, y);
                }
            },
        );
    } else if ad.len() == 1 && b.shape() == out_shape {
        let x = ad[0];
        for_each_block(
            out,
            1,
            #[inline(always)]
            move |at, block| {
                for (o, &y) in block.iter_mut().zip(&bd[at..]) {
                    *o = f(x, y);
                }
            },
        );
    } else if a.shape() == out_shape && is_trailing_block(b.shape(), out_shape) {
        // A bias row added to every row: `[.., n] + [n]`.
        let row = bd.len();
        for_each_block(
            out,
            row,
            #[inline(always)]
            move |at, block| {
                for (orow, arow) in block.chunks_exact_mut(row).zip(ad[at..].chunks_exact(row)) {
                    for ((o, &x), &y) in orow.iter_mut().zip(arow).zip(bd) {
                        *o = f(x, y);
                    }
                }
            },
        );
    } else if b.shape() == out_shape && is_trailing_block(a.shape(), out_shape) {
        let row = ad.len();
        for_each_block(
            out,
            row,
            #[inline(always)]
            move |at, block| {
                for (orow, brow) in block.chunks_exact_mut(row).zip(bd[at..].chunks_exact(row)) {
                    for ((o, &x), &y) in orow.iter_mut().zip(ad).zip(brow) {
                        *o = f(x, y);
                    }
                }
            },
        );
    } else {
        crate::vectorized(
            #[inline(always)]
            || {
                for_each_broadcast(out_shape, a.shape(), b.shape(), |o, i, j| {
                    out[o] = f(ad[i], bd[j]);
                })
            },
        );
    }
}

/// Whether `small` broadcasts to `full` by repeating one contiguous non-empty block:
/// after its leading 1s, `small` is a suffix of `full` (`[n]` or `[1, n]` against
/// `[m, n]`).
fn is_trailing_block(small: &[usize], full: &[usize]) -> bool {
    let lead = small.iter().take_while(|&&e| e == 1).count();
    let rest = &small[lead..];
    rest.len() <= full.len() && full.ends_with(rest) && numel(rest) > 0
}

/// Adds `g` (of a broadcast shape) into `out` (of shape `target`), summing over the
/// axes that broadcasting stretched: the reverse rule of broadcasting.
///
/// ```
/// use descent_tensor::{kernels, View};
/// let g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let mut bias = [0.0; 3];
/// kernels::sum_to_shape_acc(View::new(&[2, 3], &g), &[3], &mut bias);
/// assert_eq!(bias, [5.0, 7.0, 9.0]);
/// ```
pub fn sum_to_shape_acc<T: Float>(g: View<'_, T>, target: &[usize], out: &mut [T]) {
    sum_to_shape_scaled_acc(g, target, T::one(), out);
}

/// [`sum_to_shape_acc`] of `scale · g`: the reverse rule of broadcasting for an operand
/// whose partial derivative is the constant `scale` (1 for `+`, -1 for the right side
/// of `-`).
pub fn sum_to_shape_scaled_acc<T: Float>(
    g: View<'_, T>,
    target: &[usize],
    scale: T,
    out: &mut [T],
) {
    crate::vectorized(
        #[inline(always)]
        || sum_to_shape_loops(g, target, scale, out),
    )
}

/// [`sum_to_shape_scaled_acc`]'s loops, inlined into its vectorised closure.
#[inline(always)]
fn sum_to_shape_loops<T: Float>(g: View<'_, T>, target: &[usize], scale: T, out: &mut [T]) {
    let gd = g.data();
    if out.is_empty() {
        // A target with no elements receives nothing (and has no rows to chunk by).
        return;
    }
    if g.shape() == target {
        for (o, &x) in out.iter_mut().zip(gd) {
            *o += scale * x;
        }
    } else if out.len() == 1 {
        out[0] += scale * sum_all(gd);
    } else if g.shape().ends_with(target) {
        // A trailing-axes operand (a bias): add up the rows.
        for row in gd.chunks_exact(out.len()) {
            for (o, &x) in out.iter_mut().zip(row) {
                *o += scale * x;
            }
        }
    } else {
        for_each_broadcast(g.shape(), g.shape(), target, |_, i, j| {
            out[j] += scale * gd[i];
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_to_shape_reverses_broadcast() {
        // g of shape [2, 3] summed back to [2, 1].
        let g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [0.0; 2];
        sum_to_shape_acc(View::new(&[2, 3], &g), &[2, 1], &mut out);
        assert_eq!(out, [6.0, 15.0]);
        let mut all = [0.0; 1];
        sum_to_shape_acc(View::new(&[2, 3], &g), &[], &mut all);
        assert_eq!(all, [21.0]);
    }
}
