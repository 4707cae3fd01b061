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
    for_each_broadcast_row(out_shape, a_shape, b_shape, |row| {
        for k in 0..row.len {
            f(row.out + k, row.a + k * row.a_step, row.b + k * row.b_step);
        }
    });
}

/// One row (the last axis) of a broadcast: `len` elements of the output from
/// `out`, reading the operands from `a` and `b` in steps of `a_step` and `b_step`
/// (1 along the row, 0 where the operand is broadcast over it).
#[derive(Clone, Copy, Debug)]
pub struct BroadcastRow {
    /// The row's first index in the output.
    pub out: usize,
    /// The first index in `a`.
    pub a: usize,
    /// `a`'s step along the row: 1, or 0 when `a` is broadcast along it.
    pub a_step: usize,
    /// The first index in `b`.
    pub b: usize,
    /// `b`'s step along the row.
    pub b_step: usize,
    /// The row's length (the output's last extent).
    pub len: usize,
}

/// Calls `f` for every row (last axis) of `out_shape`, in order, where `a_shape` and
/// `b_shape` broadcast to `out_shape`: the index arithmetic once a row, so that the
/// caller's loop along the row runs over slices (and vectorizes).
///
/// ```
/// use descent_tensor::kernels::for_each_broadcast_row;
/// // [2, 3] times [2, 1]: each row of a against one element of b.
/// let mut rows = Vec::new();
/// for_each_broadcast_row(&[2, 3], &[2, 3], &[2, 1], |r| rows.push((r.out, r.a, r.b, r.b_step)));
/// assert_eq!(rows, [(0, 0, 0, 0), (3, 3, 1, 0)]);
/// ```
pub fn for_each_broadcast_row(
    out_shape: &[usize],
    a_shape: &[usize],
    b_shape: &[usize],
    mut f: impl FnMut(BroadcastRow),
) {
    let n = numel(out_shape);
    if n == 0 {
        return;
    }
    let nd = out_shape.len();
    if nd == 0 || (a_shape == out_shape && b_shape == out_shape) {
        f(BroadcastRow {
            out: 0,
            a: 0,
            a_step: 1,
            b: 0,
            b_step: 1,
            len: n,
        });
        return;
    }
    let sa = broadcast_strides(a_shape, out_shape);
    let sb = broadcast_strides(b_shape, out_shape);
    let inner = out_shape[nd - 1];
    let (a_step, b_step) = (sa[nd - 1], sb[nd - 1]);
    let outer = n / inner;
    let mut idx: smallvec::SmallVec<[usize; 4]> = smallvec::smallvec![0; nd];
    let (mut base_a, mut base_b) = (0usize, 0usize);
    let mut o = 0;
    for _ in 0..outer {
        f(BroadcastRow {
            out: o,
            a: base_a,
            a_step,
            b: base_b,
            b_step,
            len: inner,
        });
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
                for_each_broadcast_row(out_shape, a.shape(), b.shape(), |r| {
                    let out = &mut out[r.out..r.out + r.len];
                    // The common rows as slices, which vectorize: `[.., n] * [.., 1]`
                    // (a LayerNorm's scale by its row statistics) and its mirror.
                    match (r.a_step, r.b_step) {
                        (1, 1) => {
                            let (ad, bd) = (&ad[r.a..r.a + r.len], &bd[r.b..r.b + r.len]);
                            for ((o, &x), &y) in out.iter_mut().zip(ad).zip(bd) {
                                *o = f(x, y);
                            }
                        }
                        (1, 0) => {
                            let y = bd[r.b];
                            for (o, &x) in out.iter_mut().zip(&ad[r.a..r.a + r.len]) {
                                *o = f(x, y);
                            }
                        }
                        (0, 1) => {
                            let x = ad[r.a];
                            for (o, &y) in out.iter_mut().zip(&bd[r.b..r.b + r.len]) {
                                *o = f(x, y);
                            }
                        }
                        (sa, sb) => {
                            for (k, o) in out.iter_mut().enumerate() {
                                *o = f(ad[r.a + k * sa], bd[r.b + k * sb]);
                            }
                        }
                    }
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
        // Row by row, each element added in the order of the element-wise walk (so
        // the same bits): a row summed into one element (`[.., n]` to `[.., 1]`, a
        // LayerNorm's statistics) or added along a row of `out`.
        for_each_broadcast_row(g.shape(), g.shape(), target, |r| {
            let row = &gd[r.a..r.a + r.len];
            if r.b_step == 0 {
                let mut acc = out[r.b];
                for &x in row {
                    acc += scale * x;
                }
                out[r.b] = acc;
            } else {
                for (o, &x) in out[r.b..r.b + r.len].iter_mut().zip(row) {
                    *o += scale * x;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element of `shape` (broadcast to `out`) read at the output's flat index `o`,
    /// by NumPy's rule, without strides.
    fn naive_index(shape: &[usize], out: &[usize], mut o: usize) -> usize {
        let mut coords = vec![0; out.len()];
        for axis in (0..out.len()).rev() {
            coords[axis] = o % out[axis];
            o /= out[axis];
        }
        let lead = out.len() - shape.len();
        let mut i = 0;
        for (axis, &e) in shape.iter().enumerate() {
            i = i * e + if e == 1 { 0 } else { coords[lead + axis] };
        }
        i
    }

    /// Every kind of row the general path meets (both operands along the row, one
    /// broadcast over it, both broadcast, a 0-d operand, leading axes broadcast)
    /// gives what the broadcast rule gives element by element, and `broadcast_to`'s
    /// copy (`for_each_broadcast_row` with one operand) the same.
    #[test]
    fn broadcast_rows_match_the_rule_element_by_element() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 3, 4], &[2, 3, 1]),
            (&[2, 3, 1], &[2, 3, 4]),
            (&[2, 1, 4], &[1, 3, 4]),
            (&[2, 3, 1], &[1, 3, 1]),
            (&[3, 1], &[1, 5]),
            (&[4], &[2, 3, 4]),
            (&[], &[2, 3]),
            (&[2, 1, 1], &[2, 1, 1]),
            (&[0, 3], &[1, 3]),
        ];
        for &(sa, sb) in cases {
            let out_shape = crate::shape::broadcast_shapes(sa, sb).expect("broadcastable");
            let ad: Vec<f64> = (0..numel(sa)).map(|i| i as f64 * 0.5 + 1.0).collect();
            let bd: Vec<f64> = (0..numel(sb)).map(|i| 3.0 - i as f64 * 0.25).collect();
            let mut out = vec![f64::NAN; numel(&out_shape)];
            zip_broadcast(
                View::new(sa, &ad),
                View::new(sb, &bd),
                &out_shape,
                &mut out,
                |x, y| x * y - x,
            );
            for (o, &got) in out.iter().enumerate() {
                let (x, y) = (
                    ad[naive_index(sa, &out_shape, o)],
                    bd[naive_index(sb, &out_shape, o)],
                );
                assert_eq!(got, x * y - x, "{sa:?} with {sb:?}, element {o}");
            }
            let mut seen = vec![usize::MAX; out.len()];
            for_each_broadcast(&out_shape, sa, sb, |o, i, j| {
                assert_eq!(
                    (i, j),
                    (
                        naive_index(sa, &out_shape, o),
                        naive_index(sb, &out_shape, o)
                    )
                );
                seen[o] = o;
            });
            assert!(
                seen.iter().enumerate().all(|(o, &s)| s == o),
                "{sa:?} {sb:?}"
            );
        }
    }

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
