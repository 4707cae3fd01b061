//! The first-order backward of an element-wise binary op over rows of its broadcast.

use super::super::{BackwardCtx, GradSink};
use descent_tensor::{Float, kernels};

/// Backward of an element-wise binary op whose partials are `partials(a, b, y)`:
/// `g` times the operand's partial, row by row over slices (`[.., n] / [.., 1]`, a
/// LayerNorm's division by its row statistics), added in the order of a walk element
/// by element, so the bits are those of that walk. A constant `op` folds `partials`'
/// match away: the loops compile once per op.
pub(super) fn backward<T: Float, S: GradSink<T>>(
    cx: &BackwardCtx<'_, T>,
    sink: &mut S,
    partials: impl Fn(T, T, T) -> (T, T) + Copy,
) {
    for side in 0..2 {
        if !cx.needs(side) {
            continue;
        }
        let grad = sink.grad_mut(cx.parent(side));
        if side == 0 {
            rows::<T, 0>(cx, grad, partials);
        } else {
            rows::<T, 1>(cx, grad, partials);
        }
    }
}

/// Adds operand `SIDE`'s share of `g` into its gradient `grad`.
fn rows<T: Float, const SIDE: usize>(
    cx: &BackwardCtx<'_, T>,
    grad: &mut [T],
    partials: impl Fn(T, T, T) -> (T, T) + Copy,
) {
    let (a, b) = (cx.input(0), cx.input(1));
    let (g, y, ad, bd) = (cx.g.data(), cx.out.data(), a.data(), b.data());
    let share = |a: T, b: T, y: T, g: T| {
        let (da, db) = partials(a, b, y);
        g * if SIDE == 0 { da } else { db }
    };
    descent_tensor::vectorized(
        #[inline(always)]
        || {
            kernels::for_each_broadcast_row(cx.out.shape(), a.shape(), b.shape(), |r| {
                let (g, y) = (&g[r.out..r.out + r.len], &y[r.out..r.out + r.len]);
                let own = if SIDE == 0 { r.a } else { r.b };
                match (r.a_step, r.b_step) {
                    (1, 1) => {
                        let (ad, bd) = (&ad[r.a..r.a + r.len], &bd[r.b..r.b + r.len]);
                        let grad = &mut grad[own..own + r.len];
                        for k in 0..r.len {
                            grad[k] += share(ad[k], bd[k], y[k], g[k]);
                        }
                    }
                    (1, 0) => {
                        let (ad, b) = (&ad[r.a..r.a + r.len], bd[r.b]);
                        if SIDE == 0 {
                            let grad = &mut grad[own..own + r.len];
                            for k in 0..r.len {
                                grad[k] += share(ad[k], b, y[k], g[k]);
                            }
                        } else {
                            let mut acc = grad[own];
                            for k in 0..r.len {
                                acc += share(ad[k], b, y[k], g[k]);
                            }
                            grad[own] = acc;
                        }
                    }
                    (0, 1) => {
                        let (a, bd) = (ad[r.a], &bd[r.b..r.b + r.len]);
                        if SIDE == 1 {
                            let grad = &mut grad[own..own + r.len];
                            for k in 0..r.len {
                                grad[k] += share(a, bd[k], y[k], g[k]);
                            }
                        } else {
                            let mut acc = grad[own];
                            for k in 0..r.len {
                                acc += share(a, bd[k], y[k], g[k]);
                            }
                            grad[own] = acc;
                        }
                    }
                    (a_step, b_step) => {
                        let own_step = if SIDE == 0 { a_step } else { b_step };
                        for k in 0..r.len {
                            let (a, b) = (ad[r.a + k * a_step], bd[r.b + k * b_step]);
                            grad[own + k * own_step] += share(a, b, y[k], g[k]);
                        }
                    }
                }
            });
        },
    );
}
