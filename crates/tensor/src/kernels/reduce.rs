//! Reductions along one axis (sum, max) and their reverse rules.

use super::sum_lanes;
use crate::shape::split_at_axis;
use crate::{Float, View, vectorized};

/// `out[o, i] = sum_j x[o, j, i]`: the sum over one axis. Over the last axis each
/// row is summed by [`sum_lanes`]; over another, in order of `j`, every `i` at once.
pub fn sum_axis<T: Float>(x: View<'_, T>, axis: usize, out: &mut [T]) {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    out.fill(T::zero());
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 || n == 0 {
        return;
    }
    let xd = x.data();
    vectorized(
        #[inline(always)]
        || {
            // On the calling thread even when large: in blocks across two threads,
            // [1024, 1024] took 187-196 µs against 129-135 on one (criterion
            // `large/sum_axis_last`); the sum waits on memory, not arithmetic.
            if inner == 1 {
                // Four rows at a time: four chains of additions in flight instead of
                // one, each row summed as `sum_lanes` sums it (the same bits).
                let mut outs = out.chunks_exact_mut(4);
                let mut rows = xd.chunks_exact(4 * n);
                for (o, four) in (&mut outs).zip(&mut rows) {
                    let (r01, r23) = four.split_at(2 * n);
                    let (r0, r1) = r01.split_at(n);
                    let (r2, r3) = r23.split_at(n);
                    o.copy_from_slice(&T::sum4([r0, r1, r2, r3]));
                }
                for (o, row) in outs
                    .into_remainder()
                    .iter_mut()
                    .zip(rows.remainder().chunks_exact(n))
                {
                    *o = sum_lanes(
                        row,
                        #[inline(always)]
                        |v| v,
                    );
                }
                return;
            }
            for (dst, block) in out.chunks_exact_mut(inner).zip(xd.chunks_exact(n * inner)) {
                for src in block.chunks_exact(inner) {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
            }
        },
    );
}

/// Adds `g` (shape of `x` with `axis` removed or kept as 1) to every slice of `out`
/// (shape of `x`) along `axis`, scaled by `scale`: the reverse rule of sum and mean.
pub fn expand_axis_acc<T: Float>(g: &[T], shape: &[usize], axis: usize, scale: T, out: &mut [T]) {
    let (outer, n, inner) = split_at_axis(shape, axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 || n == 0 {
        return;
    }
    vectorized(
        #[inline(always)]
        || {
            for (src, block) in g.chunks_exact(inner).zip(out.chunks_exact_mut(n * inner)) {
                if inner == 1 {
                    let v = src[0] * scale;
                    block.iter_mut().for_each(|d| *d += v);
                    continue;
                }
                for dst in block.chunks_exact_mut(inner) {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d += s * scale;
                    }
                }
            }
        },
    );
}

/// `out[o, i] = max_j x[o, j, i]`. NaN propagates: a slice holding NaN has max NaN.
pub fn max_axis<T: Float>(x: View<'_, T>, axis: usize, out: &mut [T]) {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 {
        return;
    }
    // A comparison and a select: once NaN, a slice's maximum stays NaN (`v > NaN` is
    // false). A NaN `v` gives `v + m`, not `v`: a select between `v` and the value
    // loaded from the destination became a masked store (`vmaskmovps`), which made
    // the max over the first axis of [1024, 1024] f32 7.6x slower (472 against 62 µs).
    #[inline(always)]
    fn keep<T: Float>(m: T, v: T) -> T {
        let larger = if v > m { v } else { m };
        if v.is_nan() { v + m } else { larger }
    }
    let xd = x.data();
    out.fill(T::neg_infinity());
    if inner == 1 {
        vectorized(
            #[inline(always)]
            || {
                for (o, row) in out.iter_mut().zip(xd.chunks_exact(n.max(1))) {
                    // 32 lanes, four vectors of `f32`: with 8, each comparison and
                    // select waited on the last ([1024, 1024] f32: 148 against 91 µs).
                    let mut lanes = [T::neg_infinity(); 32];
                    let mut xs = row.chunks_exact(32);
                    for c in &mut xs {
                        for k in 0..32 {
                            lanes[k] = keep(lanes[k], c[k]);
                        }
                    }
                    *o = lanes
                        .into_iter()
                        .chain(xs.remainder().iter().copied())
                        .fold(T::neg_infinity(), keep);
                }
            },
        );
        return;
    }
    vectorized(
        #[inline(always)]
        || {
            for (dst, block) in out
                .chunks_exact_mut(inner)
                .zip(xd.chunks_exact((n * inner).max(1)))
            {
                // Four rows a pass, in order: a quarter of the stores to `dst`, each of
                // which a later row's load can wait on when the two addresses agree in
                // their low 12 bits (rows of 4 KiB all do, or none).
                let mut fours = block.chunks_exact(4 * inner);
                for four in &mut fours {
                    let (r0, rest) = four.split_at(inner);
                    let (r1, rest) = rest.split_at(inner);
                    let (r2, r3) = rest.split_at(inner);
                    for i in 0..inner {
                        dst[i] = keep(keep(keep(keep(dst[i], r0[i]), r1[i]), r2[i]), r3[i]);
                    }
                }
                for src in fours.remainder().chunks_exact(inner) {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = keep(*d, v);
                    }
                }
            }
        },
    );
}

/// The reverse rule of [`max_axis`]: each slice's gradient goes to the first position
/// holding the maximum (PyTorch's `max(dim)` picks one index the same way).
pub fn max_axis_backward_acc<T: Float>(
    x: View<'_, T>,
    axis: usize,
    max: &[T],
    g: &[T],
    out: &mut [T],
) {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    // Nothing to compute when the blocks are empty; returning also keeps a huge outer
    // extent over an empty axis (a zero-element tensor) from looping for nothing.
    if outer == 0 || inner == 0 || n == 0 {
        return;
    }
    #[inline(always)]
    fn holds<T: Float>(v: T, m: T) -> bool {
        // `|` and `&`, not `||` and `&&`: no branch in the vectorised loop.
        (v == m) | (m.is_nan() & v.is_nan())
    }
    let xd = x.data();
    for o in 0..outer {
        let block = &xd[o * n * inner..(o + 1) * n * inner];
        let dst = &mut out[o * n * inner..(o + 1) * n * inner];
        let (m, gs) = (
            &max[o * inner..(o + 1) * inner],
            &g[o * inner..(o + 1) * inner],
        );
        if inner == 1 {
            // Whole chunks tested at once (vectorised), then the one that holds it
            // searched: an element-by-element search of a 1,024-long row cost about
            // 0.3 ns an element.
            const CHUNK: usize = 32;
            let m = m[0];
            let j = vectorized(
                #[inline(always)]
                || {
                    let mut chunks = block.chunks_exact(CHUNK);
                    let at = chunks
                        .position(|c| c.iter().fold(false, |any, &v| any | holds(v, m)))
                        .map(|c| c * CHUNK)
                        .unwrap_or(block.len() - chunks.remainder().len());
                    block[at..]
                        .iter()
                        .position(|&v| holds(v, m))
                        .map(|j| at + j)
                },
            );
            // A maximum not found (a stale `max`) goes to position 0, as before.
            dst[j.unwrap_or(0)] += gs[0];
            continue;
        }
        // Slices `c..c + COLS` at a time, down every row: their first rows holding the
        // maximum stay in registers. A running minimum kept in memory, or a flag and a
        // select on the destination, became masked stores (`vpmaskmovd`, slow on this
        // machine): [1024, 1024] f32 over the first axis took 885 µs that way.
        const COLS: usize = 32;
        let mut c = 0;
        if n < u32::MAX as usize {
            while c + COLS <= inner {
                let mc: &[T; COLS] = m[c..c + COLS].try_into().expect("COLS long");
                let first = vectorized(
                    #[inline(always)]
                    || {
                        let mut first = [u32::MAX; COLS];
                        for (j, row) in block.chunks_exact(inner).enumerate() {
                            let row: &[T; COLS] = row[c..c + COLS].try_into().expect("COLS long");
                            for k in 0..COLS {
                                let hit = holds(row[k], mc[k]);
                                first[k] = first[k].min(if hit { j as u32 } else { u32::MAX });
                            }
                        }
                        first
                    },
                );
                for (k, &f) in first.iter().enumerate() {
                    // A maximum not found (a stale `max`) goes to position 0, as before.
                    let j = if f == u32::MAX { 0 } else { f as usize };
                    dst[j * inner + c + k] += gs[c + k];
                }
                c += COLS;
            }
        }
        for i in c..inner {
            let j = (0..n)
                .position(|j| holds(block[j * inner + i], m[i]))
                .unwrap_or(0);
            dst[j * inner + i] += gs[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{AXIS_SHAPES, at, values};
    use crate::shape::numel;

    #[test]
    fn axis_reductions_match_naive_loops() {
        for &shape in AXIS_SHAPES {
            let x = values(numel(shape), shape.len() as f64);
            for axis in 0..shape.len() {
                let (outer, n, inner) = split_at_axis(shape, axis);
                let get = at(&x, shape, axis);
                let mut sum = vec![f64::NAN; outer * inner];
                let mut max = vec![f64::NAN; outer * inner];
                sum_axis(View::new(shape, &x), axis, &mut sum);
                max_axis(View::new(shape, &x), axis, &mut max);
                for o in 0..outer {
                    for i in 0..inner {
                        let want: f64 = (0..n).map(|j| get(o, j, i)).sum();
                        let got = sum[o * inner + i];
                        assert!((got - want).abs() < 1e-12, "sum {shape:?} axis {axis}");
                        let want = (0..n)
                            .map(|j| get(o, j, i))
                            .fold(f64::NEG_INFINITY, f64::max);
                        assert_eq!(max[o * inner + i], want, "max {shape:?} axis {axis}");
                    }
                }
                // Backward of sum (scaled) and of max, added onto ones.
                let g = values(outer * inner, 5.0);
                let mut gx = vec![1.0; x.len()];
                expand_axis_acc(&g, shape, axis, 0.5, &mut gx);
                let mut gm = vec![1.0; x.len()];
                max_axis_backward_acc(View::new(shape, &x), axis, &max, &g, &mut gm);
                let (_, _, inner_) = (outer, n, inner);
                for o in 0..outer {
                    for i in 0..inner_ {
                        let first = (0..n)
                            .find(|&j| get(o, j, i) == max[o * inner + i])
                            .unwrap();
                        for j in 0..n {
                            let k = (o * n + j) * inner + i;
                            assert_eq!(gx[k], 1.0 + g[o * inner + i] * 0.5, "sum back {shape:?}");
                            let want = if j == first {
                                1.0 + g[o * inner + i]
                            } else {
                                1.0
                            };
                            assert_eq!(gm[k], want, "max back {shape:?} axis {axis}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn max_axis_propagates_nan_and_backward_picks_the_first_maximum() {
        // Rows of 11 (shorter than a chunk of lanes; `max_axis_matches_a_plain_search_on_
        // chunked_shapes` has whole chunks): NaN first, NaN last, a tie, all -inf.
        let mut x = vec![0.0f32; 44];
        x[3] = f32::NAN;
        x[11 + 10] = f32::NAN;
        x[22 + 2] = 5.0;
        x[22 + 9] = 5.0;
        x[33..44].fill(f32::NEG_INFINITY);
        let mut m = [0.0f32; 4];
        max_axis(View::new(&[4, 11], &x), 1, &mut m);
        assert!(m[0].is_nan() && m[1].is_nan());
        assert_eq!(m[2..], [5.0, f32::NEG_INFINITY]);
        let mut g = vec![0.0f32; 44];
        max_axis_backward_acc(View::new(&[4, 11], &x), 1, &m, &[1.0; 4], &mut g);
        assert_eq!(
            (g[3], g[21], g[24], g[31], g[33]),
            (1.0, 1.0, 1.0, 0.0, 1.0)
        );
        assert_eq!(g.iter().sum::<f32>(), 4.0);
        // The same down a column.
        let mut col = vec![0.0f32; 12];
        col[2 * 3 + 1] = f32::NAN;
        let mut m = [0.0f32; 3];
        max_axis(View::new(&[4, 3], &col), 0, &mut m);
        assert_eq!((m[0], m[1].is_nan(), m[2]), (0.0, true, 0.0));
    }

    /// Max and its reverse rule against a plain search, on shapes that take the
    /// chunked paths (rows of whole 32-element chunks and a tail, 32-slice column
    /// blocks and a remainder), with ties, NaN and all-−∞ slices.
    #[test]
    fn max_axis_matches_a_plain_search_on_chunked_shapes() {
        fn check<T: Float>() {
            let cases: [(&[usize], usize); 5] = [
                (&[4, 100], 1),
                (&[100, 3], 0),
                (&[9, 75], 0),
                (&[2, 40, 33], 1),
                (&[3, 64, 1], 1),
            ];
            for (shape, axis) in cases {
                let len = numel(shape);
                // Few distinct values, so ties are common; NaN and −∞ sprinkled in.
                let mut x: Vec<T> = (0..len)
                    .map(|i| T::from_f64(((i * 37) % 7) as f64))
                    .collect();
                for i in (5..len).step_by(97) {
                    x[i] = T::nan();
                }
                for i in (11..len).step_by(89) {
                    x[i] = T::neg_infinity();
                }
                let (outer, n, inner) = split_at_axis(shape, axis);
                // One slice all −∞, so its maximum is −∞ and sits at its first row.
                for j in 0..n {
                    x[j * inner] = T::neg_infinity();
                }
                let mut m = vec![T::zero(); outer * inner];
                max_axis(View::new(shape, &x), axis, &mut m);
                let g: Vec<T> = (0..m.len()).map(|i| T::from_f64(1.0 + i as f64)).collect();
                let mut grad = vec![T::from_f64(0.5); len];
                max_axis_backward_acc(View::new(shape, &x), axis, &m, &g, &mut grad);
                let mut want_grad = vec![T::from_f64(0.5); len];
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |j: usize| (o * n + j) * inner + i;
                        let mut want = T::neg_infinity();
                        for j in 0..n {
                            let v = x[at(j)];
                            if want.is_nan() || v.is_nan() {
                                want = T::nan();
                            } else if v > want {
                                want = v;
                            }
                        }
                        let got = m[o * inner + i];
                        assert!(
                            got == want || (got.is_nan() && want.is_nan()),
                            "{shape:?} axis {axis} slice ({o}, {i}): {got:?} vs {want:?}"
                        );
                        let first = (0..n)
                            .find(|&j| x[at(j)] == want || (want.is_nan() && x[at(j)].is_nan()))
                            .expect("the maximum is an element");
                        want_grad[at(first)] += g[o * inner + i];
                    }
                }
                assert_eq!(grad, want_grad, "{shape:?} axis {axis}");
            }
        }
        check::<f32>();
        check::<f64>();
    }
}
