//! Kernels over views: element-wise with broadcasting, reductions, axis operations,
//! layout changes and matrix multiply.
//!
//! Every kernel writes into a caller-provided output slice of the right length, so the
//! caller decides where buffers come from (the tape recycles them between steps).
//! Kernels named `*_acc` add into their output instead of overwriting it: backward
//! rules accumulate into gradient buffers, which is how fan-out is summed.

use crate::shape::{broadcast_strides, contiguous_strides, numel, split_at_axis};
use crate::{Float, View, for_each_block, vectorized};

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
            |at, block| {
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
            |at, block| {
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
            |at, block| {
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
            |at, block| {
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
            |at, block| {
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

/// The sum of every element: blocks of 4,096 summed like [`sum_lanes`], the blocks'
/// sums added pairwise (so the rounding error grows with the logarithm of the length,
/// not the length).
pub fn sum_all<T: Float>(x: &[T]) -> T {
    const BLOCK: usize = 4096;
    fn cascade<T: Float>(x: &[T]) -> T {
        if x.len() <= BLOCK {
            return sum_lanes(
                x,
                #[inline(always)]
                |v| v,
            );
        }
        let half = x.len().div_ceil(2 * BLOCK) * BLOCK;
        let (a, b) = x.split_at(half);
        cascade(a) + cascade(b)
    }
    vectorized(
        #[inline(always)]
        || cascade(x),
    )
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

/// Softmax along `axis`, computed stably (the maximum is subtracted first); see
/// [`softmax_lane`].
pub fn softmax_axis<T: Float>(x: View<'_, T>, axis: usize, out: &mut [T]) {
    // A closure, not the function item: LLVM called that through a shim it kept out
    // of line, compiled for the baseline instruction set.
    axis_lanes(
        x,
        axis,
        out,
        #[inline(always)]
        |x, out| softmax_lane(x, out),
    );
}

/// Log-softmax along `axis`; see [`log_softmax_lane`].
pub fn log_softmax_axis<T: Float>(x: View<'_, T>, axis: usize, out: &mut [T]) {
    axis_lanes(
        x,
        axis,
        out,
        #[inline(always)]
        |x, out| log_softmax_lane(x, out),
    );
}

/// Softmax of one contiguous lane: `e^(x − m) / Σ e^(x − m)` with `m` the largest
/// element (0 when that is not finite). The sum runs in eight lanes, added pairwise,
/// then the elements past the last full eight in order. Inlined, so that it is
/// compiled for the caller's instruction set inside [`vectorized`].
#[inline(always)]
pub fn softmax_lane<T: Float>(x: &[T], out: &mut [T]) {
    let m = finite_or_zero(lane_max(x));
    // Two passes, the exponentials then their sum: as one, LLVM vectorised it four
    // lanes wide at most, with spills.
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m).kernel_exp();
    }
    let total = sum_lanes(
        out,
        #[inline(always)]
        |e| e,
    );
    for o in out.iter_mut() {
        *o /= total;
    }
}

/// Log-softmax of one contiguous lane: `(x − m) − r` with `(m, r)` from
/// [`log_sum_exp_parts`], so that an element near the largest keeps the digits that
/// `x − (m + r)` would round away.
#[inline(always)]
pub fn log_softmax_lane<T: Float>(x: &[T], out: &mut [T]) {
    let (m, r) = log_sum_exp_parts(x);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m) - r;
    }
}

/// `ln Σ eˣ` of one contiguous lane: `m + r` with `(m, r)` from [`log_sum_exp_parts`].
#[inline(always)]
pub fn log_sum_exp<T: Float>(x: &[T]) -> T {
    let (m, r) = log_sum_exp_parts(x);
    m + r
}

/// `ln Σ eˣ` of one contiguous lane in two parts `(m, r)`, `ln Σ eˣ = m + r`: `m` is
/// the largest element and `r = ln(1 + t)`, `t` the sum of `e^(x − m)` over every
/// element but one equal to `m`. The 1 is kept out of the sum, and `ln(1 + t)` is
/// computed as such, so `r` keeps its digits when `t` is small. A confident
/// prediction's cross-entropy, `r − (x[label] − m)` for the largest logit, is then as
/// accurate as `r`: `(m + r) − x[label]` keeps only the digits of `r` above `m`'s last
/// (for logits `[30, 0, 0]` in `f64`, 1.883e-13 for 1.872e-13; in `f32`, 0 for the 6.1e-7
/// of `[20, 5, 5]`). When the largest element is not finite, `m` is 0 and
/// `r = ln Σ eˣ`. The sum runs in eight lanes like [`softmax_lane`]'s.
///
/// ```
/// use descent_tensor::kernels::log_sum_exp_parts;
/// let (m, r) = log_sum_exp_parts(&[30.0f64, 0.0, 0.0]);
/// assert_eq!(m, 30.0);
/// let t = 2.0 * (-30.0f64).exp(); // the other elements' e^(x − m), about 1.9e-13
/// let exact = t - t * t / 2.0; // ln(1 + t), to well below t's last digit
/// assert!((r - exact).abs() <= 1e-15 * exact);
/// // `m + r` would round r to 30's last digit (3.6e-15): 0.6% of r.
/// assert!(((30.0 + r) - 30.0 - exact).abs() > 1e-3 * exact);
/// ```
#[inline(always)]
pub fn log_sum_exp_parts<T: Float>(x: &[T]) -> (T, T) {
    let m = lane_max(x);
    if !m.is_finite() {
        return (T::zero(), exp_sum(x, T::zero(), false).ln());
    }
    // Each element equal to m adds exactly 1: left out of the sum and counted apart
    // (one of them is the 1 of `ln(1 + t)`), so that the small terms keep their digits.
    let rest = exp_sum(x, m, true);
    let ties: u32 = x.iter().map(|&v| u32::from(v == m)).sum();
    (
        m,
        ln_1p(T::from_f64(f64::from(ties.saturating_sub(1))) + rest),
    )
}

/// `Σ e^(x − m)`, without the elements equal to `m` when `skip_max`. The
/// exponentials of a block go into a buffer by a plain loop, then into the lanes (the
/// additions `sum_lanes` makes, in its order). With the exponential inside the
/// eight-lane loop, LLVM's vectoriser chose eight lanes in one build and four, with
/// spills, in another: cross-entropy's forward ran 3x slower.
#[inline(always)]
fn exp_sum<T: Float>(x: &[T], m: T, skip_max: bool) -> T {
    const BLOCK: usize = 256;
    let mut lanes = [T::neg_zero(); 8];
    let mut buf = [T::zero(); BLOCK];
    let full = x.len() / 8 * 8;
    let term = |v: T| {
        if skip_max && v == m {
            T::zero()
        } else {
            (v - m).kernel_exp()
        }
    };
    for block in x[..full].chunks(BLOCK) {
        let buf = &mut buf[..block.len()];
        for (e, &v) in buf.iter_mut().zip(block) {
            *e = term(v);
        }
        for c in buf.chunks_exact(8) {
            for k in 0..8 {
                lanes[k] += c[k];
            }
        }
    }
    let mut total = pairwise8(lanes);
    for &v in &x[full..] {
        total += term(v);
    }
    total
}

/// `ln(1 + t)` for `t >= 0` as `ln(u)·t/(u − 1)` with `u = 1 + t` (Goldberg, "What
/// every computer scientist should know about floating-point arithmetic", theorem 4:
/// within a few ulps when `ln` is within half of one). libm's `log1pf` cost a third of
/// a 10-class cross-entropy's forward; this costs one `ln` and a division.
#[inline(always)]
fn ln_1p<T: Float>(t: T) -> T {
    let u = T::one() + t;
    if u == T::one() {
        // `t` is below half an ulp of 1, and `ln(1 + t) = t` to within `t²/2`.
        t
    } else if u.is_infinite() {
        // Not `∞·(∞/∞)`.
        u
    } else {
        u.ln() * (t / (u - T::one()))
    }
}

/// `Σ f(x)` in eight lanes (lane `k` takes elements `k`, `k + 8`, …), added pairwise,
/// then the elements past the last full eight in order. The lanes start at −0, the
/// neutral element of addition, so under eight elements the result is the plain
/// sum's, bit for bit (`−0` for none, as Rust's `Sum`).
#[inline(always)]
pub fn sum_lanes<T: Float>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut lanes = [T::neg_zero(); 8];
    let mut xs = x.chunks_exact(8);
    for c in &mut xs {
        for k in 0..8 {
            lanes[k] += f(c[k]);
        }
    }
    let mut total = pairwise8(lanes);
    for &v in xs.remainder() {
        total += f(v);
    }
    total
}

/// [`sum_lanes`] of four rows of one length at once, each summed in the same order
/// (the same bits): four independent chains of additions instead of one.
#[inline(always)]
pub(crate) fn sum4_lanes<T: Float>(rows: [&[T]; 4]) -> [T; 4] {
    let n = rows[0].len();
    let rows = rows.map(|r| &r[..n]);
    let mut lanes = [[T::neg_zero(); 8]; 4];
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        // One row's eight lanes side by side, so that they become one vector.
        for (l, r) in lanes.iter_mut().zip(rows) {
            let c: &[T; 8] = r[i..i + 8].try_into().expect("eight lanes");
            for k in 0..8 {
                l[k] += c[k];
            }
        }
        i += 8;
    }
    finish_sums(lanes, rows, full)
}

/// The end of a [`sum4_lanes`]: each row's eight lanes added pairwise, then the
/// elements from `full` on, in order.
#[inline(always)]
fn finish_sums<T: Float>(lanes: [[T; 8]; 4], rows: [&[T]; 4], full: usize) -> [T; 4] {
    let mut out = [T::zero(); 4];
    for ((o, l), r) in out.iter_mut().zip(lanes).zip(rows) {
        let mut total = pairwise8(l);
        for &v in &r[full..] {
            total += v;
        }
        *o = total;
    }
    out
}

/// [`sum4_lanes`] for `f32` in explicit 256-bit vectors where the processor has AVX2:
/// LLVM vectorised the generic loop across the rows, with shuffles (100 against 50 µs
/// for the rows of [1024, 1024]). Each row's eight lanes are one register, added in
/// the same order: the same bits.
pub(crate) fn sum4_f32(rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || {
                use pulp::{Simd, cast, f32x8};
                let n = rows[0].len();
                let rows = rows.map(|r| &r[..n]);
                let full = n / 8 * 8;
                let mut lanes = [simd.splat_f32s(-0.0); 4];
                let mut i = 0;
                while i < full {
                    for (l, r) in lanes.iter_mut().zip(rows) {
                        let c: [f32; 8] = r[i..i + 8].try_into().expect("eight lanes");
                        *l = simd.add_f32s(*l, cast::<[f32; 8], f32x8>(c));
                    }
                    i += 8;
                }
                finish_sums(lanes.map(cast::<f32x8, [f32; 8]>), rows, full)
            },
        );
    }
    sum4_lanes(rows)
}

/// [`sum4_f32`] for `f64`: each row's eight lanes in two 256-bit registers.
pub(crate) fn sum4_f64(rows: [&[f64]; 4]) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || {
                use pulp::{Simd, cast, f64x4};
                let n = rows[0].len();
                let rows = rows.map(|r| &r[..n]);
                let full = n / 8 * 8;
                let load = |s: &[f64], i: usize| -> f64x4 {
                    cast::<[f64; 4], f64x4>(s[i..i + 4].try_into().expect("four lanes"))
                };
                // Lanes 0-3 and 4-7 of each row.
                let mut lanes = [[simd.splat_f64s(-0.0); 2]; 4];
                let mut i = 0;
                while i < full {
                    for ([l0, l1], r) in lanes.iter_mut().zip(rows) {
                        *l0 = simd.add_f64s(*l0, load(r, i));
                        *l1 = simd.add_f64s(*l1, load(r, i + 4));
                    }
                    i += 8;
                }
                finish_sums(lanes.map(cast::<[f64x4; 2], [f64; 8]>), rows, full)
            },
        );
    }
    sum4_lanes(rows)
}

/// `Σ a·b` summed like [`sum_lanes`].
#[inline(always)]
pub fn dot_lanes<T: Float>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::neg_zero(); 8];
    let (mut ac, mut bc) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ac).zip(&mut bc) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut total = pairwise8(lanes);
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        total += x * y;
    }
    total
}

/// The largest element, NaN skipped; −∞ for a lane with none (empty or all NaN).
#[inline(always)]
pub fn lane_max<T: Float>(x: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); 8];
    let mut xs = x.chunks_exact(8);
    for c in &mut xs {
        for k in 0..8 {
            // A comparison and a select (no NaN test): NaN is never greater.
            lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
        }
    }
    let mut m = lanes.into_iter().fold(T::neg_infinity(), |m, v| m.max(v));
    for &v in xs.remainder() {
        m = m.max(v);
    }
    m
}

#[inline(always)]
fn finite_or_zero<T: Float>(m: T) -> T {
    if m.is_finite() { m } else { T::zero() }
}

/// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
#[inline(always)]
fn pairwise8<T: Float>(l: [T; 8]) -> T {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

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

/// `c = op(a) op(b) + beta c` for row-major matrices, where `op` optionally transposes.
/// `a` is stored `[m, k]` (or `[k, m]` when `ta`), `b` is `[k, n]` (or `[n, k]`).
///
/// The multiply goes through the `gemm` crate, chosen over `matrixmultiply` by
/// measurement (`docs/GEMM.md`): 1.06–1.28× faster on one core on this project's
/// shapes, and it scales to a second core where `matrixmultiply` does not. Products of
/// a vector (`m`, `k` or `n` equal to 1) take an unpacked path here instead.
///
/// # Panics
/// If a slice is shorter than its matrix (`m·k`, `k·n`, `m·n` elements).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
) {
    gemm_on(a, ta, b, tb, m, k, n, beta, c, None);
}

/// [`gemm()`] on at most `threads` of rayon's threads (`None`: all of the current pool).
#[allow(clippy::too_many_arguments)]
fn gemm_on<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
    threads: Option<usize>,
) {
    // The raw-pointer call below relies on these: checked always, not only in debug.
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm: slices of {}, {} and {} elements for {m}x{k} times {k}x{n}",
        a.len(),
        b.len(),
        c.len()
    );
    if k == 0 {
        // An empty sum: c = beta c (exactly zero for beta = 0, even over NaN).
        for x in &mut c[..m * n] {
            *x = scale_c(*x, beta);
        }
        return;
    }
    if m == 0 || n == 0 {
        return;
    }
    if gemm_thin(a, ta, b, tb, m, k, n, beta, c) {
        return;
    }
    // Strides in elements, (row, column), of op(a) as [m, k] and op(b) as [k, n].
    let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
    // Small products never ask rayon for its pool (which would start it).
    let parallelism = if m * n * k < PARALLEL_GEMM_VOLUME {
        gemm::Parallelism::None
    } else {
        match threads.unwrap_or_else(rayon::current_num_threads) {
            0 | 1 => gemm::Parallelism::None,
            t => gemm::Parallelism::Rayon(t),
        }
    };
    // SAFETY: `gemm::gemm` reads `m·k` elements of `a` at offsets `i·a_rs + p·a_cs`
    // (i < m, p < k), `k·n` of `b` at `p·b_rs + j·b_cs`, and writes `m·n` of `c` at
    // `i·n + j`. The largest offsets are `m·k - 1`, `k·n - 1` and `m·n - 1`, within the
    // slices by the assert above; every offset fits `isize` because a slice never holds
    // more than `isize::MAX` bytes. `c` is borrowed mutably, so it aliases neither
    // `a` nor `b`. With `read_dst = false` (beta = 0) `c` is only written, so NaN in
    // it does not leak into the result, as for the empty sum above. The call is
    // exercised under Miri (`.ci/run`'s Miri step runs this module's `gemm` tests).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != T::zero(),
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            beta,
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// One product `c = op(a) op(b) + beta c` for [`gemm_pair`]; the fields are
/// [`gemm()`]'s arguments.
///
/// ```
/// use descent_tensor::kernels::Product;
/// let (a, b, mut c) = ([1.0, 2.0], [3.0, 4.0], [10.0]);
/// // [1, 2] @ [3, 4]ᵀ added into c (beta 1).
/// Product { a: &a, ta: false, b: &b, tb: false, m: 1, k: 2, n: 1, beta: 1.0, c: &mut c }
///     .compute();
/// assert_eq!(c, [21.0]);
/// ```
#[derive(Debug)]
pub struct Product<'a, T> {
    /// The left operand, `[m, k]` (or `[k, m]` when `ta`).
    pub a: &'a [T],
    /// Whether `a` is stored transposed.
    pub ta: bool,
    /// The right operand, `[k, n]` (or `[n, k]` when `tb`).
    pub b: &'a [T],
    /// Whether `b` is stored transposed.
    pub tb: bool,
    /// Rows of the result.
    pub m: usize,
    /// The summed extent.
    pub k: usize,
    /// Columns of the result.
    pub n: usize,
    /// The factor on the old contents of `c` (zero: overwrite).
    pub beta: T,
    /// The result, `[m, n]`.
    pub c: &'a mut [T],
}

impl<T: Float> Product<'_, T> {
    /// Computes the product, as [`gemm()`] does (see [`Product`] for an example).
    pub fn compute(self) {
        self.run(None);
    }

    fn run(self, threads: Option<usize>) {
        let Product {
            a,
            ta,
            b,
            tb,
            m,
            k,
            n,
            beta,
            c,
        } = self;
        gemm_on(a, ta, b, tb, m, k, n, beta, c, threads);
    }

    fn volume(&self) -> usize {
        self.m.saturating_mul(self.k).saturating_mul(self.n)
    }
}

/// Two independent products, such as the two gradients of one matrix product in
/// backward. When both are large enough to be split and rayon has at least two
/// threads, they run at the same time, each on half the threads: two whole products
/// side by side scale better on two cores than one product split in two, because
/// each needs no synchronisation inside (`docs/GEMM.md`). The results are the same
/// bits either way, as [`gemm()`]'s are on any number of threads.
///
/// ```
/// use descent_tensor::kernels::{gemm_pair, Product};
/// let (a, b) = ([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0]);
/// let (mut c, mut d) = ([0.0; 4], [0.0; 4]);
/// gemm_pair(
///     Product { a: &a, ta: false, b: &b, tb: false, m: 2, k: 2, n: 2, beta: 0.0, c: &mut c },
///     Product { a: &a, ta: true, b: &b, tb: false, m: 2, k: 2, n: 2, beta: 0.0, c: &mut d },
/// );
/// assert_eq!(c, [1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(d, [1.0, 3.0, 2.0, 4.0]);
/// ```
///
/// # Panics
/// As [`gemm()`], if a slice is shorter than its matrix.
pub fn gemm_pair<T: Float>(x: Product<'_, T>, y: Product<'_, T>) {
    // Small products never ask rayon for its pool (which would start it).
    let big = x.volume() >= PARALLEL_GEMM_VOLUME && y.volume() >= PARALLEL_GEMM_VOLUME;
    let threads = if big { rayon::current_num_threads() } else { 1 };
    if threads >= 2 {
        let half = threads / 2;
        rayon::join(|| x.run(Some(half)), || y.run(Some(threads - half)));
    } else {
        x.compute();
        y.compute();
    }
}

/// Below this many multiply-adds (`m·n·k`) a product runs on one thread: splitting a
/// smaller one costs more in rayon's overhead than it saves.
const PARALLEL_GEMM_VOLUME: usize = 1 << 20;

#[inline(always)]
fn scale_c<T: Float>(x: T, beta: T) -> T {
    if beta == T::zero() {
        T::zero()
    } else {
        x * beta
    }
}

#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += *x * *y;
    }
    s
}

/// [`dot`] of four rows with one vector, each summed exactly as `dot` sums it.
#[inline(always)]
pub(crate) fn dot4<T: Float>(rows: [&[T]; 4], v: &[T]) -> [T; 4] {
    let n = v.len();
    let [r0, r1, r2, r3] = rows.map(|r| &r[..n]);
    let mut l0 = [T::zero(); 8];
    let mut l1 = [T::zero(); 8];
    let mut l2 = [T::zero(); 8];
    let mut l3 = [T::zero(); 8];
    let eight = |s: &[T], i: usize| -> [T; 8] { s[i..i + 8].try_into().expect("eight") };
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        let x = eight(v, i);
        let (a0, a1, a2, a3) = (eight(r0, i), eight(r1, i), eight(r2, i), eight(r3, i));
        // One row's eight lanes side by side, so that they become one vector (with the
        // rows interleaved, LLVM packed one lane of four rows instead, with shuffles).
        for (l, a) in [(&mut l0, a0), (&mut l1, a1), (&mut l2, a2), (&mut l3, a3)] {
            for k in 0..8 {
                l[k] += a[k] * x[k];
            }
        }
        i += 8;
    }
    finish_rows([l0, l1, l2, l3], [r0, r1, r2, r3], v, full)
}

/// The end of a [`dot4`]: each row's eight lanes added pairwise, then the elements
/// from `full` on, in order.
#[inline(always)]
fn finish_rows<T: Float>(lanes: [[T; 8]; 4], rows: [&[T]; 4], v: &[T], full: usize) -> [T; 4] {
    let mut out = [T::zero(); 4];
    for ((o, l), r) in out.iter_mut().zip(lanes).zip(rows) {
        let mut s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        for (x, y) in r[full..].iter().zip(&v[full..]) {
            s += *x * *y;
        }
        *o = s;
    }
    out
}

/// [`dot4`] for `f32` in explicit 256-bit vectors where the processor has AVX2. LLVM
/// vectorises the generic loop across rows (lane `k` of the four rows in one register,
/// with shuffles) instead of along them; written out, each row's eight lanes are one
/// register, multiplied and added in the same order as [`dot4`]: the same bits.
pub(crate) fn dot4_f32(rows: [&[f32]; 4], v: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || dot4_f32_v3(simd, rows, v),
        );
    }
    dot4(rows, v)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot4_f32_v3(simd: pulp::x86::V3, rows: [&[f32]; 4], v: &[f32]) -> [f32; 4] {
    use pulp::{Simd, cast, f32x8};
    let n = v.len();
    let rows = rows.map(|r| &r[..n]);
    let load = |s: &[f32], i: usize| -> f32x8 {
        cast::<[f32; 8], f32x8>(s[i..i + 8].try_into().expect("eight lanes"))
    };
    let full = n / 8 * 8;
    let mut lanes = [simd.splat_f32s(0.0); 4];
    let mut i = 0;
    while i < full {
        let x = load(v, i);
        for (l, r) in lanes.iter_mut().zip(rows) {
            *l = simd.add_f32s(*l, simd.mul_f32s(load(r, i), x));
        }
        i += 8;
    }
    finish_rows(lanes.map(cast::<f32x8, [f32; 8]>), rows, v, full)
}

/// [`dot4_f32`] for `f64`: each row's eight lanes in two 256-bit registers.
pub(crate) fn dot4_f64(rows: [&[f64]; 4], v: &[f64]) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || dot4_f64_v3(simd, rows, v),
        );
    }
    dot4(rows, v)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot4_f64_v3(simd: pulp::x86::V3, rows: [&[f64]; 4], v: &[f64]) -> [f64; 4] {
    use pulp::{Simd, cast, f64x4};
    let n = v.len();
    let rows = rows.map(|r| &r[..n]);
    let load = |s: &[f64], i: usize| -> f64x4 {
        cast::<[f64; 4], f64x4>(s[i..i + 4].try_into().expect("four lanes"))
    };
    let full = n / 8 * 8;
    // Lanes 0-3 and 4-7 of each row.
    let mut lanes = [[simd.splat_f64s(0.0); 2]; 4];
    let mut i = 0;
    while i < full {
        let (x0, x1) = (load(v, i), load(v, i + 4));
        for ([l0, l1], r) in lanes.iter_mut().zip(rows) {
            *l0 = simd.add_f64s(*l0, simd.mul_f64s(load(r, i), x0));
            *l1 = simd.add_f64s(*l1, simd.mul_f64s(load(r, i + 4), x1));
        }
        i += 8;
    }
    finish_rows(lanes.map(cast::<[f64x4; 2], [f64; 8]>), rows, v, full)
}

/// Matrix-vector and outer products without packing (matrixmultiply packs both
/// operands on every call, which dominates for a vector operand).
#[allow(clippy::too_many_arguments)]
fn gemm_thin<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
) -> bool {
    if n != 1 && k != 1 && m != 1 {
        return false;
    }
    crate::vectorized(
        #[inline(always)]
        || thin_products(a, ta, b, tb, m, k, n, beta, c),
    );
    true
}

/// [`gemm_thin`]'s loops, inlined into its vectorised closure; `m`, `k` or `n` is 1.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn thin_products<T: Float>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    beta: T,
    c: &mut [T],
) {
    if n == 1 {
        let bv = &b[..k];
        if !ta {
            // Four rows at a time share each load of the vector and keep four times
            // as many independent sums in flight; each row's sum is `dot`'s, bit for
            // bit.
            let mut rows = a[..m * k].chunks_exact(4 * k);
            let mut out = c[..m].chunks_exact_mut(4);
            for (block, ci) in (&mut rows).zip(&mut out) {
                let (r01, r23) = block.split_at(2 * k);
                let (r0, r1) = r01.split_at(k);
                let (r2, r3) = r23.split_at(k);
                let d = T::dot4([r0, r1, r2, r3], bv);
                for (x, d) in ci.iter_mut().zip(d) {
                    *x = scale_c(*x, beta) + d;
                }
            }
            let done = m / 4 * 4;
            for i in done..m {
                let d = dot(&a[i * k..(i + 1) * k], bv);
                c[i] = scale_c(c[i], beta) + d;
            }
        } else {
            for x in &mut c[..m] {
                *x = scale_c(*x, beta);
            }
            for (p, &bp) in bv.iter().enumerate() {
                for (x, &y) in c[..m].iter_mut().zip(&a[p * m..(p + 1) * m]) {
                    *x += y * bp;
                }
            }
        }
    } else if k == 1 {
        let bv = &b[..n];
        for (i, &ai) in a[..m].iter().enumerate() {
            for (x, &y) in c[i * n..(i + 1) * n].iter_mut().zip(bv) {
                *x = scale_c(*x, beta) + ai * y;
            }
        }
    } else {
        let av = &a[..k];
        if !tb {
            for x in &mut c[..n] {
                *x = scale_c(*x, beta);
            }
            for (p, &ap) in av.iter().enumerate() {
                for (x, &y) in c[..n].iter_mut().zip(&b[p * n..(p + 1) * n]) {
                    *x += ap * y;
                }
            }
        } else {
            for j in 0..n {
                let d = dot(&b[j * k..(j + 1) * k], av);
                c[j] = scale_c(c[j], beta) + d;
            }
        }
    }
}

/// The output shape of `a @ b` for `a: [..., m, k]`, `b: [..., k, n]` (batch axes
/// broadcast), or `None` when the shapes do not multiply.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Option<crate::Shape> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    if k != k2 {
        return None;
    }
    let mut out = crate::broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2])?;
    out.push(m);
    out.push(n);
    Some(out)
}

/// Calls `f(a_offset, b_offset, out_offset)` (in matrices) for every output matrix of
/// a batched product whose batch axes broadcast.
fn for_each_batch(a: &[usize], b: &[usize], out: &[usize], f: impl FnMut(usize, usize, usize)) {
    let ob = &out[..out.len() - 2];
    let mut f = f;
    for_each_broadcast(ob, &a[..a.len() - 2], &b[..b.len() - 2], |o, i, j| {
        f(i, j, o)
    });
}

/// `out = a @ b` (2-d or batched; see [`matmul_shape`]).
pub fn matmul<T: Float>(a: View<'_, T>, b: View<'_, T>, out_shape: &[usize], out: &mut [T]) {
    let (ash, bsh) = (a.shape(), b.shape());
    let (m, k, n) = (ash[ash.len() - 2], ash[ash.len() - 1], bsh[bsh.len() - 1]);
    // Empty products are settled without walking the batch, whose extent may be huge
    // when every matrix in it is empty.
    if out.is_empty() {
        return;
    }
    if k == 0 {
        out.fill(T::zero());
        return;
    }
    if bsh.len() == 2 {
        // [batch..., m, k] @ [k, n] is one [batch*m, k] @ [k, n] product.
        let rows = numel(&ash[..ash.len() - 1]);
        gemm(a.data(), false, b.data(), false, rows, k, n, T::zero(), out);
        return;
    }
    let (ma, mb, mo) = (m * k, k * n, m * n);
    for_each_batch(ash, bsh, out_shape, |i, j, o| {
        gemm(
            &a.data()[i * ma..(i + 1) * ma],
            false,
            &b.data()[j * mb..(j + 1) * mb],
            false,
            m,
            k,
            n,
            T::zero(),
            &mut out[o * mo..(o + 1) * mo],
        );
    });
}

/// Adds `g @ bᵀ` into `ga`: the gradient of `a @ b` with respect to `a`. Broadcast batch
/// axes of `a` are summed, because every product adds into the matrix it read.
pub fn matmul_backward_lhs_acc<T: Float>(
    g: View<'_, T>,
    b: View<'_, T>,
    a_shape: &[usize],
    ga: &mut [T],
) {
    let bsh = b.shape();
    let (m, k) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1]);
    if ga.is_empty() || g.is_empty() {
        // Nothing to add (an empty gradient contributes zero).
        return;
    }
    let n = bsh[bsh.len() - 1];
    // Rows are counted from the shapes, not as numel / k, which divides by zero for an
    // empty operand.
    let rows = numel(&a_shape[..a_shape.len() - 1]);
    if bsh.len() == 2 && numel(&g.shape()[..g.ndim() - 1]) == rows {
        gemm(g.data(), false, b.data(), true, rows, n, k, T::one(), ga);
        return;
    }
    let (ma, mb, mo) = (m * k, k * n, m * n);
    for_each_batch(a_shape, bsh, g.shape(), |i, j, o| {
        gemm(
            &g.data()[o * mo..(o + 1) * mo],
            false,
            &b.data()[j * mb..(j + 1) * mb],
            true,
            m,
            n,
            k,
            T::one(),
            &mut ga[i * ma..(i + 1) * ma],
        );
    });
}

/// Adds `aᵀ @ g` into `gb`: the gradient of `a @ b` with respect to `b`.
pub fn matmul_backward_rhs_acc<T: Float>(
    a: View<'_, T>,
    g: View<'_, T>,
    b_shape: &[usize],
    gb: &mut [T],
) {
    let ash = a.shape();
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    if gb.is_empty() || g.is_empty() {
        return;
    }
    let n = b_shape[b_shape.len() - 1];
    if b_shape.len() == 2 {
        let rows = numel(&ash[..ash.len() - 1]);
        gemm(a.data(), true, g.data(), false, k, rows, n, T::one(), gb);
        return;
    }
    let (ma, mb, mo) = (m * k, k * n, m * n);
    for_each_batch(ash, b_shape, g.shape(), |i, j, o| {
        gemm(
            &a.data()[i * ma..(i + 1) * ma],
            true,
            &g.data()[o * mo..(o + 1) * mo],
            false,
            k,
            m,
            n,
            T::one(),
            &mut gb[j * mb..(j + 1) * mb],
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_with_transposes() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.7).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![f64::NAN; m * n];
        gemm(&a, false, &b, false, m, k, n, 0.0, &mut c);
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // aᵀ stored as [k, m]; bᵀ stored as [n, k].
        let mut at = vec![0.0; m * k];
        swap_axes::<f64, false>(View::new(&[m, k], &a), 0, 1, &mut at);
        let mut bt = vec![0.0; k * n];
        swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
        let mut c2 = vec![1.0; m * n];
        gemm(&at, true, &bt, true, m, k, n, 1.0, &mut c2);
        for (x, y) in c2.iter().zip(&want) {
            assert!((x - (y + 1.0)).abs() < 1e-12);
        }
    }

    /// Every layout the backward rules use (either operand transposed, overwrite and
    /// accumulate) on shapes that are not multiples of any tile, in both element
    /// types, against the naive product; slices longer than the matrices are fine.
    /// Small enough to run under Miri, which checks the raw-pointer call in `gemm`.
    #[test]
    fn gemm_layouts_match_naive() {
        fn check<T: Float>(m: usize, k: usize, n: usize) {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
            let want = naive(&a, &b, m, k, n);
            let mut at = vec![0.0; m * k];
            swap_axes::<f64, false>(View::new(&[m, k], &a), 0, 1, &mut at);
            let mut bt = vec![0.0; k * n];
            swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
            let cast = |v: &[f64]| -> Vec<T> {
                let mut out: Vec<T> = v.iter().map(|&x| T::from_f64(x)).collect();
                out.push(T::from_f64(99.0));
                out
            };
            let tol = if T::NAME == "f32" { 1e-4 } else { 1e-12 };
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let ad = cast(if ta { &at } else { &a });
                let bd = cast(if tb { &bt } else { &b });
                let mut c = vec![T::nan(); m * n + 1];
                gemm(&ad, ta, &bd, tb, m, k, n, T::zero(), &mut c);
                let mut acc = vec![T::from_f64(0.5); m * n];
                gemm(&ad, ta, &bd, tb, m, k, n, T::one(), &mut acc);
                for i in 0..m * n {
                    let (x, y) = (c[i].as_f64(), acc[i].as_f64());
                    assert!((x - want[i]).abs() < tol, "{m}x{k}x{n} ta={ta} tb={tb}");
                    assert!((y - want[i] - 0.5).abs() < tol, "{m}x{k}x{n} accumulate");
                }
                assert!(c[m * n].is_nan(), "{m}x{k}x{n}: wrote past the matrix");
            }
        }
        for &(m, k, n) in &[(2, 2, 2), (5, 7, 3), (3, 17, 9), (17, 9, 33), (9, 33, 2)] {
            check::<f32>(m, k, n);
            check::<f64>(m, k, n);
        }
    }

    #[test]
    fn matrix_vector_rows_in_blocks_of_four_sum_as_one_row_does() {
        // Every row of a matrix-vector product must be `dot`'s sum bit for bit, in a
        // block of four rows or in the tail, whatever the length (tails of 8 too).
        for m in 1..=9 {
            for k in [1, 7, 8, 13, 64, 67] {
                let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
                let v: Vec<f32> = (0..k).map(|i| (i as f32 * 0.71).cos()).collect();
                for beta in [0.0, 1.0, 0.5] {
                    let old: Vec<f32> = (0..m).map(|i| i as f32 - 2.5).collect();
                    let mut c = old.clone();
                    gemm(&a, false, &v, false, m, k, 1, beta, &mut c);
                    for i in 0..m {
                        let want = scale_c(old[i], beta) + dot(&a[i * k..(i + 1) * k], &v);
                        assert_eq!(c[i].to_bits(), want.to_bits(), "m {m} k {k} row {i}");
                    }
                }
            }
        }
    }

    /// `fast` (a `dot4` in explicit vectors) against the generic loop and `dot`, bit for
    /// bit, with magnitudes spread over many binades so that any change in the order of
    /// the additions changes bits. On a processor with AVX2 this runs the explicit
    /// vectors; elsewhere both sides are the generic loop.
    fn explicit_dot4_is_the_generic_sum<T: Float>(fast: fn([&[T]; 4], &[T]) -> [T; 4]) {
        let value =
            |i: usize| T::from_f64(((i as f64 * 0.37).sin() * 1e3).powi((i % 5) as i32 - 2));
        for n in [0, 1, 7, 8, 9, 16, 31, 64, 100, 129] {
            let rows: Vec<Vec<T>> = (0..4)
                .map(|r| (0..n + r).map(|i| value(i * 4 + r)).collect())
                .collect();
            let v: Vec<T> = (0..n).map(|i| value(i + 1000)).collect();
            let rows = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
            let got = fast(rows, &v);
            let generic = dot4::<T>(rows, &v);
            for r in 0..4 {
                assert_eq!(
                    got[r].as_f64().to_bits(),
                    generic[r].as_f64().to_bits(),
                    "n {n}"
                );
                let one = dot(&rows[r][..n], &v);
                assert_eq!(got[r].as_f64().to_bits(), one.as_f64().to_bits(), "n {n}");
            }
        }
        let (inf, zero, one) = ([T::infinity(); 8], [T::zero(); 8], [T::one(); 8]);
        let v = [1.0, -1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0].map(T::from_f64);
        let out = fast([&inf, &zero, &inf, &one], &v);
        assert!(out[0].is_nan() && out[1] == T::zero() && out[2].is_nan());
        assert_eq!(out[3], T::from_f64(5.0));
    }

    #[test]
    fn f32_dot4_in_vectors_is_the_generic_sum() {
        explicit_dot4_is_the_generic_sum::<f32>(dot4_f32);
    }

    #[test]
    fn f64_dot4_in_vectors_is_the_generic_sum() {
        explicit_dot4_is_the_generic_sum::<f64>(dot4_f64);
    }

    #[test]
    #[should_panic(expected = "gemm: slices of 5, 6 and 4 elements for 2x3 times 3x2")]
    fn gemm_refuses_short_slices() {
        let mut c = [0.0f32; 4];
        gemm(&[1.0; 5], false, &[1.0; 6], false, 2, 3, 2, 0.0, &mut c);
    }

    /// The unpacked paths for a vector operand (m, k or n equal to 1), with every
    /// transpose and both betas, against the naive product.
    #[test]
    fn thin_products_match_naive() {
        for &(m, k, n) in &[
            (1, 5, 3),
            (4, 5, 1),
            (4, 1, 3),
            (1, 1, 3),
            (1, 9, 1),
            (3, 1, 1),
            (1, 17, 2),
            (19, 1, 2),
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
            let want = naive(&a, &b, m, k, n);
            let mut at = vec![0.0; m * k];
            swap_axes::<f64, false>(View::new(&[m, k], &a), 0, 1, &mut at);
            let mut bt = vec![0.0; k * n];
            swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let ad = if ta { &at } else { &a };
                let bd = if tb { &bt } else { &b };
                let mut c = vec![f64::NAN; m * n];
                gemm(ad, ta, bd, tb, m, k, n, 0.0, &mut c);
                let mut acc = vec![1.0; m * n];
                gemm(ad, ta, bd, tb, m, k, n, 1.0, &mut acc);
                for i in 0..m * n {
                    assert!(
                        (c[i] - want[i]).abs() < 1e-12,
                        "{m}x{k}x{n} ta={ta} tb={tb}"
                    );
                    assert!(
                        (acc[i] - want[i] - 1.0).abs() < 1e-12,
                        "{m}x{k}x{n} accumulate"
                    );
                }
            }
        }
    }

    /// A product run on several threads gives the same bits as on one (`gemm` splits
    /// the output, never the sum over `k`), with and without transposed operands.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "too large for Miri; gemm_layouts_match_naive covers the call"
    )]
    fn split_products_match_one_thread_bit_for_bit() {
        for &(m, k, n) in &[
            (256, 96, 48),
            (40, 96, 300),
            (130, 64, 129),
            (512, 40, 64),
            (128, 784, 512),
            (784, 128, 512),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i as f32) * 0.71).cos()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut c = vec![0.5f32; m * n];
                    pool.install(|| gemm(&a, ta, &b, tb, m, k, n, 1.0, &mut c));
                    c
                };
                let one = run(1);
                for threads in [2, 3, 4, 8] {
                    let many = run(threads);
                    assert!(
                        one.iter()
                            .zip(&many)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m}x{k}x{n} ta={ta} tb={tb} on {threads} threads"
                    );
                }
            }
        }
    }

    #[test]
    fn batched_matmul_broadcasts_batch_axes() {
        let a: Vec<f64> = (0..2 * 2 * 3).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..3 * 2).map(|i| (i as f64) - 2.0).collect();
        let out_shape = matmul_shape(&[2, 2, 3], &[1, 3, 2]).unwrap();
        assert_eq!(out_shape.as_slice(), &[2, 2, 2]);
        let mut out = vec![0.0; 8];
        matmul(
            View::new(&[2, 2, 3], &a),
            View::new(&[1, 3, 2], &b),
            &out_shape,
            &mut out,
        );
        let want0 = naive(&a[..6], &b, 2, 3, 2);
        let want1 = naive(&a[6..], &b, 2, 3, 2);
        assert_eq!(&out[..4], want0.as_slice());
        assert_eq!(&out[4..], want1.as_slice());
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
    fn softmax_is_stable_for_large_inputs() {
        let x = [1000.0, 1001.0, 1002.0];
        let mut out = [0.0; 3];
        softmax_axis(View::new(&[3], &x), 0, &mut out);
        let total: f64 = out.iter().sum();
        assert!((total - 1.0).abs() < 1e-15);
        assert!(out[2] > out[1] && out[1] > out[0]);
    }

    /// Shapes for the axis kernels: lanes shorter and longer than eight and than a
    /// transpose tile, with the axis first, inside and last.
    const AXIS_SHAPES: &[&[usize]] = &[
        &[7],
        &[19],
        &[3, 5],
        &[4, 17],
        &[33, 6],
        &[2, 9, 3],
        &[3, 1, 20],
        &[2, 3, 4, 5],
        &[40, 37],
    ];

    fn values(n: usize, seed: f64) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64 + seed) * 0.73).sin() * 3.0)
            .collect()
    }

    /// `x[o, j, i]` of a shape split at `axis`, as a closure.
    fn at<'a>(
        x: &'a [f64],
        shape: &[usize],
        axis: usize,
    ) -> impl Fn(usize, usize, usize) -> f64 + 'a {
        let (_, n, inner) = split_at_axis(shape, axis);
        move |o, j, i| x[(o * n + j) * inner + i]
    }

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

    /// Four rows summed side by side give each row's `sum_lanes` bit for bit, in the
    /// explicit vectors and the generic loop; and `sum_axis` over the last axis with
    /// a row count that is not a multiple of four.
    #[test]
    fn sum4_is_sum_lanes_bit_for_bit() {
        fn check<T: Float>() {
            for n in [0, 1, 7, 8, 9, 16, 31, 100] {
                // Magnitudes far apart, so that any change of order changes the bits.
                let rows: Vec<Vec<T>> = (0..4)
                    .map(|r| {
                        (0..n)
                            .map(|i| {
                                let e = ((i * 7 + r * 3) % 11) as i32 - 5;
                                T::from_f64((1.0 + 0.1 * i as f64) * 10f64.powi(e))
                            })
                            .collect()
                    })
                    .collect();
                let four = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
                let bits = |v: T| v.as_f64().to_bits();
                let want = four.map(|r| bits(sum_lanes(r, |v| v)));
                assert_eq!(T::sum4(four).map(bits), want, "{} n = {n}", T::NAME);
                assert_eq!(sum4_lanes(four).map(bits), want, "{} n = {n}", T::NAME);
                if n == 0 {
                    // `sum_axis` gives an empty sum +0 before any loop runs.
                    continue;
                }
                // Seven rows: one group of four, then three alone.
                let x: Vec<T> = [rows.concat(), rows[..3].concat()].concat();
                let mut out = vec![T::nan(); 7];
                sum_axis(View::new(&[7, n], &x), 1, &mut out);
                let got: Vec<u64> = out.iter().map(|&v| bits(v)).collect();
                assert_eq!(got, [&want[..], &want[..3]].concat(), "{} n = {n}", T::NAME);
            }
            // A row of −0 sums to −0, as `sum_lanes` has it.
            let z = [T::neg_zero(); 9];
            assert!(
                T::sum4([&z, &z, &z, &z])
                    .iter()
                    .all(|v| v.is_sign_negative())
            );
        }
        check::<f32>();
        check::<f64>();
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

    #[test]
    fn softmax_lanes_match_f64_along_every_axis() {
        for &shape in AXIS_SHAPES {
            let x = values(numel(shape), 2.0);
            let xf: Vec<f32> = x.iter().map(|&v| v as f32 * 10.0).collect();
            for axis in 0..shape.len() {
                let (outer, n, inner) = split_at_axis(shape, axis);
                let mut sm = vec![0.0f32; x.len()];
                let mut lsm = vec![0.0f32; x.len()];
                softmax_axis(View::new(shape, &xf), axis, &mut sm);
                log_softmax_axis(View::new(shape, &xf), axis, &mut lsm);
                for o in 0..outer {
                    for i in 0..inner {
                        let k = |j: usize| (o * n + j) * inner + i;
                        let lse = (0..n).map(|j| f64::from(xf[k(j)]).exp()).sum::<f64>().ln();
                        for j in 0..n {
                            let want = f64::from(xf[k(j)]) - lse;
                            let (s, l) = (f64::from(sm[k(j)]), f64::from(lsm[k(j)]));
                            assert!(
                                (s - want.exp()).abs() <= 1e-5 * want.exp() + 1e-40,
                                "{shape:?} {s} vs {}",
                                want.exp()
                            );
                            assert!((l - want).abs() <= 1e-5 * want.abs().max(1.0), "{shape:?}");
                        }
                    }
                }
            }
        }
    }

    /// `ln(1 + Σ e^(x − m))`, the sum over every element but the first largest, in
    /// `f64`, for `f32` rows: the `r` of `log_sum_exp_parts`.
    fn rest_f64(x: &[f32]) -> f64 {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let j = x.iter().position(|&v| v == m).unwrap();
        let t: f64 = (x.iter().enumerate())
            .filter(|&(i, _)| i != j)
            .map(|(_, &v)| (f64::from(v) - f64::from(m)).exp())
            .sum();
        t.ln_1p()
    }

    #[test]
    fn ln_1p_is_within_a_few_ulps_of_libm() {
        // t from 1e-30 to 1e30, denser near the range where 1 + t rounds.
        let ts = (0..4000).map(|i| 10f64.powf(-30.0 + i as f64 * 0.015));
        for t in ts.chain([0.0, 1e-300, f64::MIN_POSITIVE]) {
            let (got, want) = (ln_1p(t), t.ln_1p());
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want,
                "f64 {t}: {got} vs {want}"
            );
            let t32 = t as f32;
            let (got, want) = (f64::from(ln_1p(t32)), f64::from(t32).ln_1p());
            let tol = 4.0 * f64::from(f32::EPSILON) * want + 1e-45;
            assert!((got - want).abs() <= tol, "f32 {t32}: {got} vs {want}");
        }
        assert_eq!(ln_1p(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln_1p(f32::MAX), f32::MAX.ln_1p());
        assert!(ln_1p(f64::NAN).is_nan());
    }

    #[test]
    fn log_sum_exp_keeps_the_digits_of_a_dominant_element() {
        // A dominant element at every kind of position: the first, inside the first
        // eight, in the tail past the last full eight, in the second block of 256, and
        // twice (the second copy counts, so r is near ln 2).
        for n in [1, 3, 8, 9, 17, 300, 513] {
            for j in [0, n / 2, n - 1] {
                for repeat in [false, true] {
                    let mut x: Vec<f32> = (0..n)
                        .map(|i| (i as f32 * 0.37).sin() * 3.0 - 12.0)
                        .collect();
                    x[j] = 9.0;
                    if repeat && n > 1 {
                        x[(j + 1) % n] = 9.0;
                    }
                    let (m, r) = log_sum_exp_parts(&x);
                    assert_eq!(m, 9.0);
                    let want = rest_f64(&x);
                    assert!(
                        (f64::from(r) - want).abs() <= 2e-6 * want + 1e-45,
                        "n {n} j {j} repeat {repeat}: {r} vs {want}"
                    );
                    // The log-softmax of the largest element is −r, to the same digits.
                    let mut out = vec![0.0f32; n];
                    log_softmax_lane(&x, &mut out);
                    assert_eq!(out[j], -r);
                }
            }
        }
        // The rows of the report that found the loss: an f32 loss of 6.1e-7 came out 0.
        for (x, want) in [
            ([20.0f32, 5.0, 5.0], 6.118e-7),
            ([200.0, 180.0, 185.0], 3.080e-7),
        ] {
            let (m, r) = log_sum_exp_parts(&x);
            assert_eq!(m, x[0]);
            assert!((f64::from(r) - want).abs() < 1e-3 * want, "{x:?}: {r}");
            assert!(
                (f64::from(r) - rest_f64(&x)).abs() < 1e-6 * want,
                "{x:?}: {r}"
            );
        }
        // Not finite: m is 0 and r the whole log-sum; a NaN makes r NaN.
        assert_eq!(
            log_sum_exp_parts(&[f32::INFINITY, 0.0]),
            (0.0, f32::INFINITY)
        );
        assert_eq!(
            log_sum_exp_parts::<f32>(&[f32::NEG_INFINITY; 3]).1,
            f32::NEG_INFINITY
        );
        assert!(log_sum_exp_parts(&[1.0f32, f32::NAN]).1.is_nan());
        assert_eq!(log_sum_exp_parts(&[4.0f64, f64::NEG_INFINITY]), (4.0, 0.0));
    }

    #[test]
    fn sums_in_lanes_keep_the_plain_sum_below_eight_and_are_accurate_above() {
        for n in 0..8 {
            let x: Vec<f32> = (0..n).map(|i| 0.1 + i as f32 * 0.37).collect();
            let plain: f32 = x.iter().copied().sum();
            assert_eq!(sum_lanes(&x, |v| v).to_bits(), plain.to_bits(), "n = {n}");
            assert_eq!(sum_all(&x).to_bits(), plain.to_bits(), "n = {n}");
        }
        assert!(sum_all::<f32>(&[-0.0, -0.0]).is_sign_negative());
        // A million values near 1: the plain f32 sum drifts, the cascade does not.
        let x: Vec<f32> = (0..1_000_003).map(|i| 1.0 + (i % 7) as f32 * 0.1).collect();
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let got = f64::from(sum_all(&x));
        assert!((got - exact).abs() / exact < 1e-6, "{got} vs {exact}");
        let mut lanes_dot = dot_lanes(&x[..100], &x[..100]);
        lanes_dot -= x[..100].iter().map(|v| v * v).sum::<f32>();
        assert!(lanes_dot.abs() < 1e-3);
    }
}
