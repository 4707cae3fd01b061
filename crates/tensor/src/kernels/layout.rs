//! Layout changes and copies: transposing axes, slicing, concatenating, gathering,
//! and walking the lanes along an axis whatever its stride.

use crate::shape::{contiguous_strides, numel, split_at_axis};
use crate::{Float, View, for_each_block, vectorized};

/// Runs `f(lane_in, lane_out)` on every lane along `axis` (copied to contiguous scratch
/// when the axis is not the last), compiled as [`vectorized`] compiles its closure
/// (mark `f` `#[inline(always)]`); contiguous lanes of large inputs in blocks across
/// rayon's pool ([`for_each_block`]).
#[inline(always)]
pub fn axis_lanes<T: Float>(
    x: View<'_, T>,
    axis: usize,
    out: &mut [T],
    f: impl Fn(&[T], &mut [T]) + Sync,
) {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 || n == 0 {
        return;
    }
    let xd = x.data();
    if inner == 1 {
        // Contiguous lanes: whole rows, in blocks on rayon's pool when large.
        for_each_block(
            out,
            n,
            #[inline(always)]
            |at, block| {
                for (dst, src) in block.chunks_exact_mut(n).zip(xd[at..].chunks_exact(n)) {
                    f(src, dst);
                }
            },
        );
        return;
    }
    let mut lane_in = vec![T::zero(); n];
    let mut lane_out = vec![T::zero(); n];
    vectorized(
        #[inline(always)]
        || {
            for o in 0..outer {
                for i in 0..inner {
                    for j in 0..n {
                        lane_in[j] = xd[(o * n + j) * inner + i];
                    }
                    f(&lane_in, &mut lane_out);
                    for j in 0..n {
                        out[(o * n + j) * inner + i] = lane_out[j];
                    }
                }
            }
        },
    );
}

/// Like [`axis_lanes`] for two inputs of the same shape; `f` adds into its output
/// lane, which is `out`'s own lane when the axis is the last.
#[inline(always)]
pub fn axis_lanes2_acc<T: Float>(
    shape: &[usize],
    a: &[T],
    b: &[T],
    axis: usize,
    out: &mut [T],
    f: impl Fn(&[T], &[T], &mut [T]) + Sync,
) {
    let (outer, n, inner) = split_at_axis(shape, axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 || n == 0 {
        return;
    }
    if inner == 1 {
        for_each_block(
            out,
            n,
            #[inline(always)]
            |at, block| {
                for ((lo, la), lb) in block
                    .chunks_exact_mut(n)
                    .zip(a[at..].chunks_exact(n))
                    .zip(b[at..].chunks_exact(n))
                {
                    f(la, lb, lo);
                }
            },
        );
        return;
    }
    let mut la = vec![T::zero(); n];
    let mut lb = vec![T::zero(); n];
    let mut lo = vec![T::zero(); n];
    for o in 0..outer {
        for i in 0..inner {
            for j in 0..n {
                let k = (o * n + j) * inner + i;
                la[j] = a[k];
                lb[j] = b[k];
                lo[j] = out[k];
            }
            f(&la, &lb, &mut lo);
            for j in 0..n {
                out[(o * n + j) * inner + i] = lo[j];
            }
        }
    }
}

/// Swaps two axes: `out` has `x`'s shape with extents `a` and `b` exchanged.
/// `ACC` adds into `out` instead of overwriting it.
///
/// With `a < b`, `x` is `[outer, A, mid, B, inner]` and `out` is
/// `[outer, B, mid, A, inner]`: runs of `inner` elements move whole; single elements
/// (`inner = 1`) move in `TILE × TILE` tiles, so that both sides are read and written
/// a cache line at a time (element by element in `out`'s order, every read of a large
/// matrix's transpose missed the cache).
pub fn swap_axes<T: Float, const ACC: bool>(x: View<'_, T>, a: usize, b: usize, out: &mut [T]) {
    // Measured on [1024, 1024] f32 (`large/transpose`): 8 took 0.90 ms, 16 1.5 ms,
    // 32 2.6 ms; a tile's rows, 4 KiB apart, compete for the same cache sets.
    const TILE: usize = 8;
    let shape = x.shape();
    let (a, b) = (a.min(b), a.max(b));
    if numel(shape) == 0 {
        return;
    }
    if a == b {
        let out = &mut out[..x.data().len()];
        if ACC {
            out.iter_mut().zip(x.data()).for_each(|(o, &v)| *o += v);
        } else {
            out.copy_from_slice(x.data());
        }
        return;
    }
    let outer: usize = shape[..a].iter().product();
    let (ea, eb) = (shape[a], shape[b]);
    let mid: usize = shape[a + 1..b].iter().product();
    let inner: usize = shape[b + 1..].iter().product();
    let xd = x.data();
    vectorized(
        #[inline(always)]
        || {
            for o in 0..outer {
                for m in 0..mid {
                    // Run (ia, ib) starts at src(ia, ib) in x and dst(ib, ia) in out.
                    let src =
                        |ia: usize, ib: usize| ((((o * ea + ia) * mid + m) * eb) + ib) * inner;
                    let dst =
                        |ib: usize, ia: usize| ((((o * eb + ib) * mid + m) * ea) + ia) * inner;
                    if inner == 1 {
                        // Single elements: a strided 2-D transpose, one row of a tile
                        // written as a slice (a call to `copy_from_slice` per element
                        // cost more than the copy).
                        let (s_row, d_row) = (mid * eb, mid * ea);
                        let (s0, d0) = (src(0, 0), dst(0, 0));
                        for ib0 in (0..eb).step_by(TILE) {
                            for ia0 in (0..ea).step_by(TILE) {
                                let ia_end = (ia0 + TILE).min(ea);
                                for ib in ib0..(ib0 + TILE).min(eb) {
                                    let row =
                                        &mut out[d0 + ib * d_row + ia0..d0 + ib * d_row + ia_end];
                                    for (k, t) in row.iter_mut().enumerate() {
                                        let v = xd[s0 + (ia0 + k) * s_row + ib];
                                        *t = if ACC { *t + v } else { v };
                                    }
                                }
                            }
                        }
                        continue;
                    }
                    for ib in 0..eb {
                        for ia in 0..ea {
                            let from = &xd[src(ia, ib)..src(ia, ib) + inner];
                            let to = &mut out[dst(ib, ia)..dst(ib, ia) + inner];
                            if ACC {
                                for (t, &f) in to.iter_mut().zip(from) {
                                    *t += f;
                                }
                            } else {
                                to.copy_from_slice(from);
                            }
                        }
                    }
                }
            }
        },
    );
}

/// Copies `x[.., start..end, ..]` (along `axis`) into `out`.
pub fn slice_axis<T: Float>(x: View<'_, T>, axis: usize, start: usize, end: usize, out: &mut [T]) {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 {
        return;
    }
    let len = (end - start) * inner;
    if len == 0 {
        return;
    }
    let xd = x.data();
    for o in 0..outer {
        let src = &xd[(o * n + start) * inner..(o * n + start) * inner + len];
        out[o * len..(o + 1) * len].copy_from_slice(src);
    }
}

/// Adds `g` (the shape of a slice `start..end` along `axis` of `shape`) into the
/// matching positions of `out` (of `shape`): the reverse rule of slicing.
pub fn slice_axis_backward_acc<T: Float>(
    g: &[T],
    shape: &[usize],
    axis: usize,
    start: usize,
    end: usize,
    out: &mut [T],
) {
    let (outer, n, inner) = split_at_axis(shape, axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 {
        return;
    }
    let len = (end - start) * inner;
    if len == 0 {
        return;
    }
    for o in 0..outer {
        let dst = &mut out[(o * n + start) * inner..(o * n + start) * inner + len];
        for (d, &s) in dst.iter_mut().zip(&g[o * len..(o + 1) * len]) {
            *d += s;
        }
    }
}

/// Concatenates views along `axis` (all other extents equal) into `out`.
pub fn concat<T: Float>(parts: &[View<'_, T>], axis: usize, out: &mut [T]) {
    let Some(first) = parts.first() else { return };
    let (outer, _, inner) = split_at_axis(first.shape(), axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 {
        return;
    }
    let total: usize = parts.iter().map(|p| p.shape()[axis]).sum();
    let mut offset = 0;
    for p in parts {
        let len = p.shape()[axis] * inner;
        if len == 0 {
            continue;
        }
        for o in 0..outer {
            let dst = (o * total) * inner + offset;
            out[dst..dst + len].copy_from_slice(&p.data()[o * len..(o + 1) * len]);
        }
        offset += len;
    }
}

/// `out[..., i, ...] = x[..., index[..., i, ...], ...]` along `axis`, where `index` has
/// the same number of axes as `x` and the output has `index_shape` (PyTorch's `gather`).
/// Indices must already be checked against `x`'s extent.
pub fn gather<T: Float>(
    x: View<'_, T>,
    axis: usize,
    index: &[usize],
    index_shape: &[usize],
    out: &mut [T],
) {
    let xs = contiguous_strides(x.shape());
    let xd = x.data();
    for_each_gather(index_shape, axis, &xs, index, |o, src| out[o] = xd[src]);
}

/// The reverse rule of [`gather`]: scatter-adds `g` (of `index_shape`) into `out`
/// (of `x_shape`); repeated indices accumulate.
pub fn gather_backward_acc<T: Float>(
    g: &[T],
    x_shape: &[usize],
    axis: usize,
    index: &[usize],
    index_shape: &[usize],
    out: &mut [T],
) {
    let xs = contiguous_strides(x_shape);
    for_each_gather(index_shape, axis, &xs, index, |o, dst| out[dst] += g[o]);
}

fn for_each_gather(
    index_shape: &[usize],
    axis: usize,
    x_strides: &[usize],
    index: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    let nd = index_shape.len();
    let mut idx: smallvec::SmallVec<[usize; 4]> = smallvec::smallvec![0; nd];
    for (o, &k) in index.iter().enumerate() {
        let mut src = 0;
        for d in 0..nd {
            src += x_strides[d] * if d == axis { k } else { idx[d] };
        }
        f(o, src);
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            if idx[d] < index_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{AXIS_SHAPES, values};

    #[test]
    fn swap_axes_transposes_3d() {
        let x: Vec<f64> = (0..24).map(|i| i as f64).collect();
        let mut out = vec![0.0; 24];
        swap_axes::<f64, false>(View::new(&[2, 3, 4], &x), 0, 2, &mut out);
        // out[k, j, i] = x[i, j, k]; out shape [4, 3, 2].
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    assert_eq!(out[k * 6 + j * 2 + i], x[i * 12 + j * 4 + k]);
                }
            }
        }
    }

    #[test]
    fn swap_axes_matches_index_arithmetic() {
        for &shape in AXIS_SHAPES {
            let x = values(numel(shape), 1.0);
            let nd = shape.len();
            for a in 0..nd {
                for b in 0..nd {
                    let mut out_shape = shape.to_vec();
                    out_shape.swap(a, b);
                    let mut out = vec![f64::NAN; x.len()];
                    swap_axes::<f64, false>(View::new(shape, &x), a, b, &mut out);
                    let mut acc = vec![1.0; x.len()];
                    swap_axes::<f64, true>(View::new(shape, &x), a, b, &mut acc);
                    let out_strides = contiguous_strides(&out_shape);
                    let strides = contiguous_strides(shape);
                    for (flat, &v) in x.iter().enumerate() {
                        // x's multi-index, with a and b exchanged, is out's.
                        let mut idx: Vec<usize> = strides
                            .iter()
                            .zip(shape)
                            .map(|(&s, &e)| flat / s % e)
                            .collect();
                        idx.swap(a, b);
                        let k: usize = idx.iter().zip(&out_strides).map(|(i, s)| i * s).sum();
                        assert_eq!(out[k], v, "{shape:?} swap {a} {b}");
                        assert_eq!(acc[k], 1.0 + v, "{shape:?} swap {a} {b} acc");
                    }
                }
            }
        }
    }
}
