//! Matrix products of 2-d and batched operands (batch axes broadcast) and their
//! gradients, each matrix through [`gemm()`].

use super::{for_each_broadcast, gemm};
use crate::shape::numel;
use crate::{Float, View};
use rayon::prelude::*;

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
/// a batched product whose batch axes broadcast, in the output's order.
fn for_each_batch(a: &[usize], b: &[usize], out: &[usize], f: impl FnMut(usize, usize, usize)) {
    let ob = &out[..out.len() - 2];
    let mut f = f;
    for_each_broadcast(ob, &a[..a.len() - 2], &b[..b.len() - 2], |o, i, j| {
        f(i, j, o)
    });
}

/// The batch axes of a matrix operand's shape.
fn batch_of(shape: &[usize]) -> &[usize] {
    &shape[..shape.len() - 2]
}

/// Which operand of a batched product a call writes: its matrices are the ones
/// `product` gets to fill.
#[derive(Clone, Copy)]
enum Written {
    Out,
    A,
    B,
}

/// Runs `product(i, j, o, matrix)` for every output matrix `o` of a batched product
/// (`a`'s matrix `i`, `b`'s matrix `j`), where `matrix` is `written`'s matrix of that
/// triple (`len` elements each) and each product has `volume` multiply-adds.
///
/// The products run side by side on rayon's threads when they are many small ones
/// that together make a product worth splitting (attention's `q·kᵀ` per sample and
/// head): each runs on one thread as it would alone, so the bits are the same on any
/// number of threads. A written operand whose batch axes broadcast is summed into by
/// several products, in order: those stay on the calling thread.
#[allow(clippy::too_many_arguments)]
fn for_each_product<T: Float>(
    a: &[usize],
    b: &[usize],
    out: &[usize],
    written: Written,
    matrices: &mut [T],
    len: usize,
    volume: usize,
    product: impl Fn(usize, usize, usize, &mut [T]) + Sync,
) {
    let written_batch = match written {
        Written::Out => batch_of(out),
        Written::A => batch_of(a),
        Written::B => batch_of(b),
    };
    let count = numel(batch_of(out));
    let shares = if written_batch == batch_of(out) {
        super::gemm::batch_shares(volume, count)
    } else {
        1
    };
    if shares <= 1 {
        for_each_batch(a, b, out, |i, j, o| {
            let w = match written {
                Written::Out => o,
                Written::A => i,
                Written::B => j,
            };
            product(i, j, o, &mut matrices[w * len..(w + 1) * len]);
        });
        return;
    }
    let mut pairs = Vec::with_capacity(count);
    for_each_batch(a, b, out, |i, j, _| pairs.push((i, j)));
    let per_share = count.div_ceil(shares);
    matrices[..count * len]
        .par_chunks_mut(per_share * len)
        .zip(pairs.par_chunks(per_share))
        .enumerate()
        .for_each(|(s, (share, pairs))| {
            for (k, (m, &(i, j))) in share.chunks_mut(len).zip(pairs).enumerate() {
                product(i, j, s * per_share + k, m);
            }
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
    let (a, b) = (a.data(), b.data());
    let product = |i: usize, j: usize, _: usize, c: &mut [T]| {
        let (a, b) = (&a[i * ma..(i + 1) * ma], &b[j * mb..(j + 1) * mb]);
        gemm(a, false, b, false, m, k, n, T::zero(), c);
    };
    for_each_product(
        ash,
        bsh,
        out_shape,
        Written::Out,
        out,
        mo,
        m * k * n,
        product,
    );
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
    let (g_data, b) = (g.data(), b.data());
    let product = |_: usize, j: usize, o: usize, c: &mut [T]| {
        let (g, b) = (&g_data[o * mo..(o + 1) * mo], &b[j * mb..(j + 1) * mb]);
        gemm(g, false, b, true, m, n, k, T::one(), c);
    };
    for_each_product(
        a_shape,
        bsh,
        g.shape(),
        Written::A,
        ga,
        ma,
        m * k * n,
        product,
    );
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
    let (a, g_data) = (a.data(), g.data());
    let product = |i: usize, _: usize, o: usize, c: &mut [T]| {
        let (a, g) = (&a[i * ma..(i + 1) * ma], &g_data[o * mo..(o + 1) * mo]);
        gemm(a, true, g, false, k, m, n, T::one(), c);
    };
    for_each_product(
        ash,
        b_shape,
        g.shape(),
        Written::B,
        gb,
        mb,
        m * k * n,
        product,
    );
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
