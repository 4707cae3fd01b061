//! The first-order backward of a product whose operands broadcast, over rows.

use super::super::{BackwardCtx, GradSink};
use descent_tensor::{Float, kernels};

/// Backward of a product whose operands broadcast (`[.., n] * [.., 1]`, a LayerNorm's
/// scale by its row statistics): `g` times the other operand, row by row over slices,
/// added in the order of the general walk (so the same bits).
pub(super) fn backward<T: Float, S: GradSink<T>>(cx: &BackwardCtx<'_, T>, sink: &mut S) {
    let (a, b) = (cx.input(0), cx.input(1));
    let (g, ad, bd) = (cx.g.data(), a.data(), b.data());
    for side in 0..2 {
        if !cx.needs(side) {
            continue;
        }
        let grad = sink.grad_mut(cx.parent(side));
        descent_tensor::vectorized(
            #[inline(always)]
            || {
                kernels::for_each_broadcast_row(cx.out.shape(), a.shape(), b.shape(), |r| {
                    let g = &g[r.out..r.out + r.len];
                    let (own, own_step, other, other_step, od) = if side == 0 {
                        (r.a, r.a_step, r.b, r.b_step, bd)
                    } else {
                        (r.b, r.b_step, r.a, r.a_step, ad)
                    };
                    match (own_step, other_step) {
                        (1, 1) => {
                            let od = &od[other..other + r.len];
                            for ((d, &g), &o) in grad[own..own + r.len].iter_mut().zip(g).zip(od) {
                                *d += g * o;
                            }
                        }
                        (1, 0) => {
                            let o = od[other];
                            for (d, &g) in grad[own..own + r.len].iter_mut().zip(g) {
                                *d += g * o;
                            }
                        }
                        (0, 1) => {
                            let mut acc = grad[own];
                            for (&g, &o) in g.iter().zip(&od[other..other + r.len]) {
                                acc += g * o;
                            }
                            grad[own] = acc;
                        }
                        (own_step, other_step) => {
                            for (k, &g) in g.iter().enumerate() {
                                grad[own + k * own_step] += g * od[other + k * other_step];
                            }
                        }
                    }
                });
            },
        );
    }
}
