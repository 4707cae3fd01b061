//! Matrix products of 2-d and batched operands (batch axes broadcast) and their
//! gradients, each matrix through [`gemm()`].

use super::{for_each_broadcast, gemm};
use crate::shape::numel;
use crate::{Float, View};

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
    use crate::kernels::testing::naive;

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
}
