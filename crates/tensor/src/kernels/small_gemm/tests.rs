//! The small-batch products against the textbook product, tile by tile and thread by
//! thread.

use super::*;
use crate::View;
use crate::kernels::swap_axes;
use crate::kernels::testing::{naive, wave};

/// The loops for `b` stored `[n, k]` (`tb`) or `[k, n]`: the tests run both forms
/// whichever [`choose`] would pick on this build and processor.
fn form_of(tb: bool) -> Form {
    if tb { Form::Dot } else { Form::Axpy }
}

/// The two layouts this path takes, on shapes that are multiples of no tile (rows
/// 1 to 16, sums not a multiple of eight), with NaN in an overwritten `c` and both
/// betas, in f32 and f64, against the naive product; and the layouts and shapes it
/// leaves to the `gemm` crate are refused.
#[test]
fn small_products_match_naive_in_both_layouts() {
    fn check<T: Float>(m: usize, k: usize, n: usize) {
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut bt = vec![0.0; k * n];
        swap_axes::<f64, false>(View::new(&[k, n], &b), 0, 1, &mut bt);
        let cast = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x)).collect() };
        let (a, b, bt) = (cast(&a), cast(&b), cast(&bt));
        let tol = if T::NAME == "f32" { 2e-3 } else { 1e-11 };
        for (tb, bd) in [(false, &b), (true, &bt)] {
            let mut c = vec![T::nan(); m * n];
            small_gemm_as(form_of(tb), &a, bd, m, k, n, T::zero(), &mut c, None);
            let mut acc = vec![T::from_f64(0.5); m * n];
            small_gemm_as(form_of(tb), &a, bd, m, k, n, T::one(), &mut acc, None);
            for i in 0..m * n {
                let (x, y) = (c[i].as_f64(), acc[i].as_f64());
                assert!(
                    (x - want[i]).abs() < tol,
                    "{m}x{k}x{n} tb={tb}: {x} {}",
                    want[i]
                );
                assert!(
                    (y - want[i] - 0.5).abs() < tol,
                    "{m}x{k}x{n} tb={tb} accumulate"
                );
            }
        }
    }
    for &(m, k, n) in &[
        (16, 261, 1029),
        (13, 100, 1030),
        (1, 300, 1100),
        (5, 67, 1031),
    ] {
        check::<f32>(m, k, n);
        check::<f64>(m, k, n);
    }
    let (a, b) = (vec![1f32; 65 * 512], vec![1f32; 512 * 2048]);
    let mut c = vec![0f32; 64 * 2048];
    // Taken where the processor fuses multiply-adds: an x·Wᵀ of 16 rows, of 32 rows
    // with a sum of 512 terms (64 under AVX2 kernels; but not one more, nor 17 rows
    // with 511 terms); in f64 of 8 rows, not 9. A g·W of up to 32 rows against 1024
    // columns.
    let fused = crate::simd::fused_in_hardware();
    let most = if wide_dot_rows() { 64 } else { 32 };
    for (rows, k, taken) in [(16, 512, true), (most, 512, true), (most + 1, 512, false)] {
        assert_eq!(
            small_gemm(&a, false, &b, true, rows, k, 1024, 0.0, &mut c, None),
            taken && fused,
            "{rows}x{k}"
        );
    }
    assert!(!small_gemm(
        &a, false, &b, true, 17, 511, 1024, 0.0, &mut c, None
    ));
    let (a64, b64) = (vec![1f64; 16 * 512], vec![1f64; 512 * 1024]);
    let mut c64 = vec![0f64; 16 * 1024];
    for (rows, taken) in [(8, true), (9, false)] {
        assert_eq!(
            small_gemm(
                &a64, false, &b64, true, rows, 512, 1024, 0.0, &mut c64, None
            ),
            taken && fused,
            "f64 {rows} rows"
        );
    }
    for (rows, taken) in [(16, true), (32, true), (33, false)] {
        assert_eq!(
            small_gemm(&a, false, &b, false, rows, 512, 1024, 0.0, &mut c, None),
            taken && fused,
            "g·W of {rows} rows"
        );
    }
    // A g·W whose rows of b are not a multiple of 4 KiB long (1100 columns).
    assert!(!small_gemm(
        &a, false, &b, false, 16, 512, 1100, 0.0, &mut c, None
    ));
    // A g·W narrower than 1024 columns; a transposed a; a tiny product.
    assert!(!small_gemm(
        &a, false, &b, false, 16, 512, 1000, 0.0, &mut c, None
    ));
    assert!(!small_gemm(
        &a, true, &b, false, 16, 512, 1024, 0.0, &mut c, None
    ));
    assert!(!small_gemm(
        &a, false, &b, true, 16, 8, 1024, 0.0, &mut c, None
    ));
}

/// An element of `x·Wᵀ` is the same bits whichever tile computes it: the whole
/// product (full tiles, and the narrower ones of the edges) against each row of
/// `a` times each row of `b` alone (a 1 × 1 tile), in f32 and f64, with sums that
/// end in a partial vector and one that does not.
#[test]
fn dot_elements_do_not_depend_on_the_tile() {
    fn check<T: Float>(m: usize, k: usize, n: usize) {
        let (a, b) = (
            wave::<T>(m * k, 0.37, f64::sin),
            wave::<T>(n * k, 0.71, f64::cos),
        );
        let mut whole = vec![T::zero(); m * n];
        small_gemm_as(Form::Dot, &a, &b, m, k, n, T::zero(), &mut whole, Some(1));
        for i in 0..m {
            for j in 0..n {
                let mut one = [T::zero()];
                let (a, b) = (&a[i * k..(i + 1) * k], &b[j * k..(j + 1) * k]);
                small_gemm_as(Form::Dot, a, b, 1, k, 1, T::zero(), &mut one, Some(1));
                assert_eq!(
                    one[0].as_f64().to_bits(),
                    whole[i * n + j].as_f64().to_bits(),
                    "{} {m}x{k}x{n} at ({i}, {j})",
                    T::NAME
                );
            }
        }
    }
    for &(m, k, n) in &[(7, 300, 11), (5, 64, 9), (3, 5, 6)] {
        check::<f32>(m, k, n);
        check::<f64>(m, k, n);
    }
}

/// An element of `g·W` is the same bits in any tile: the whole product (packed
/// strips of whole tiles, then the edge's one-vector tiles and partial vector)
/// against each row of `a` times each column of `b` alone (a partial vector of one
/// lane, unpacked), in f32 and f64, with sums over several blocks of `axpy::AXPY_KC`
/// terms and both betas.
#[test]
fn axpy_elements_do_not_depend_on_the_tile() {
    fn check<T: Float>(m: usize, k: usize, n: usize, beta: T) {
        let (a, b) = (
            wave::<T>(m * k, 0.37, f64::sin),
            wave::<T>(k * n, 0.71, f64::cos),
        );
        let c0: Vec<T> = (0..m * n).map(|i| T::from_f64((i as f64).sqrt())).collect();
        let mut whole = c0.clone();
        small_gemm_as(Form::Axpy, &a, &b, m, k, n, beta, &mut whole, Some(1));
        for i in 0..m {
            for j in 0..n {
                let column: Vec<T> = (0..k).map(|p| b[p * n + j]).collect();
                let mut one = [c0[i * n + j]];
                let a = &a[i * k..(i + 1) * k];
                small_gemm_as(Form::Axpy, a, &column, 1, k, 1, beta, &mut one, Some(1));
                assert_eq!(
                    one[0].as_f64().to_bits(),
                    whole[i * n + j].as_f64().to_bits(),
                    "{} {m}x{k}x{n} at ({i}, {j})",
                    T::NAME
                );
            }
        }
    }
    // Edges of 6 columns; 11 (one whole vector of 8 and 3) or 27 (16 and 11) for f32;
    // 3 for f64 on AVX2.
    for &(m, k, n) in &[(6, 600, 70), (1, 129, 33), (9, 260, 91)] {
        check::<f32>(m, k, n, 0.0);
        check::<f32>(m, k, n, 1.0);
        check::<f64>(m, k, n, 0.0);
        check::<f64>(m, k, n, 1.0);
    }
}

/// Any number of threads gives the bits of one: the blocks split the columns of
/// `c`, and every element is summed by the same operations in any block. Called on a
/// thread of the pool, as a training loop inside `pool.install` calls it, where smaller
/// products are split than from outside.
#[test]
fn split_small_products_match_one_thread_bit_for_bit() {
    // The first four above PARALLEL_GEMM_VOLUME (2^22), the last two above only the
    // volume split on the pool (2^21). The third: few column tiles of `x·Wᵀ`; the
    // fourth and last, a gᵀ·x split by rows (`a` read as [k, m]). A pool shares a
    // product among at most `volume / 2^20` threads (`sharing_threads`): the 7-thread
    // pool runs 2 to 7 shares here, 7 only for the fourth.
    for &(m, k, n) in &[
        (16, 300, 1100),
        (7, 600, 1031),
        (16, 26_300, 10),
        (1030, 32, 300),
        (16, 256, 600),
        (700, 32, 100),
    ] {
        let volume = m * k * n;
        assert!(
            volume >= super::super::gemm::SPLIT_VOLUME_ON_POOL,
            "{volume}"
        );
        let a: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i as f32) * 0.71).cos()).collect();
        let forms = [
            (Form::Axpy, n >= AXPY_MIN_COLS),
            (Form::Dot, true),
            (Form::Outer, k <= OUTER_MAX_K),
        ];
        for (form, _) in forms.into_iter().filter(|&(_, fits)| fits) {
            let run = |threads: usize| {
                let mut c = vec![0.5f32; m * n];
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| small_gemm_as(form, &a, &b, m, k, n, 1.0, &mut c, None));
                c
            };
            let one = run(1);
            for threads in [2, 3, 4, 7] {
                let many = run(threads);
                assert!(
                    one.iter()
                        .zip(&many)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n} {form:?} on {threads} threads"
                );
            }
        }
    }
}

/// `gᵀ·x` ([`Form::Outer`], `a` stored `[k, m]`) against the naive product, on rows
/// that are not a multiple of the tile's, columns with and without an edge, a sum of
/// one term, NaN in an overwritten `c` and both betas, in f32 and f64, one thread and
/// the pool; each element is the bits of the same chain computed alone (a 1 × 1
/// [`Form::Axpy`] product); and which shapes [`small_gemm`] gives it.
#[test]
fn outer_products_match_naive_and_the_lone_chain() {
    fn check<T: Float>(m: usize, k: usize, n: usize) {
        let (at, b) = (
            wave::<T>(k * m, 0.37, f64::sin),
            wave::<T>(k * n, 0.71, f64::cos),
        );
        let a64: Vec<f64> = (0..m * k)
            .map(|e| at[(e % k) * m + e / k].as_f64())
            .collect();
        let b64: Vec<f64> = b.iter().map(|x| x.as_f64()).collect();
        let want = naive(&a64, &b64, m, k, n);
        let tol = if T::NAME == "f32" { 1e-4 } else { 1e-12 };
        for threads in [Some(1), None] {
            let mut c = vec![T::nan(); m * n];
            small_gemm_as(Form::Outer, &at, &b, m, k, n, T::zero(), &mut c, threads);
            let c0: Vec<T> = (0..m * n).map(|e| T::from_f64((e as f64).sqrt())).collect();
            let mut acc = c0.clone();
            small_gemm_as(Form::Outer, &at, &b, m, k, n, T::one(), &mut acc, threads);
            for i in 0..m {
                for j in 0..n {
                    let e = i * n + j;
                    let x = c[e].as_f64();
                    assert!(
                        (x - want[e]).abs() < tol,
                        "{m}x{k}x{n} at ({i}, {j}): {x} {}",
                        want[e]
                    );
                    let row: Vec<T> = (0..k).map(|p| at[p * m + i]).collect();
                    let column: Vec<T> = (0..k).map(|p| b[p * n + j]).collect();
                    let mut one = [c0[e]];
                    small_gemm_as(
                        Form::Axpy,
                        &row,
                        &column,
                        1,
                        k,
                        1,
                        T::one(),
                        &mut one,
                        Some(1),
                    );
                    assert_eq!(
                        one[0].as_f64().to_bits(),
                        acc[e].as_f64().to_bits(),
                        "{m}x{k}x{n} at ({i}, {j})"
                    );
                }
            }
        }
    }
    for &(m, k, n) in &[(13, 7, 300), (66, 32, 1031), (1, 16, 257), (6, 1, 260)] {
        check::<f32>(m, k, n);
        check::<f64>(m, k, n);
    }
    let fused = crate::simd::fused_in_hardware();
    let (a, b) = (vec![1f32; 64 * 2048], vec![1f32; 64 * 2048]);
    let mut c = vec![0f32; 2048 * 2048];
    // A batch of up to 32 against 256 columns or more.
    for (m, k, n, taken) in [
        (2048, 16, 2048, true),
        (1024, 32, 256, true),
        (1024, 33, 256, false),
        (1024, 32, 255, false),
    ] {
        assert_eq!(
            small_gemm(&a, true, &b, false, m, k, n, 1.0, &mut c, None),
            taken && fused,
            "gᵀ·x {m}x{k}x{n}"
        );
    }
}
