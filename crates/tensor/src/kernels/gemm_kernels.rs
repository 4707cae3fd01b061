//! Which of the `gemm` crate's kernel sets runs a product, AVX2 or AVX-512, and the
//! call into it.
//!
//! The crate, built with AVX-512 kernels, runs them wherever the processor has
//! AVX-512F, with no way to choose. Measured, they are not always faster: on AMD Zen 4
//! (which splits a 512-bit operation in two) a product with a transposed right operand
//! was 1.7x slower and the others a few percent faster (`docs/GEMM.md`), and on an
//! Intel Xeon some layouts lose too (`docs/PERFORMANCE.md`, "AVX-512 by processor").
//! So descent builds both sets and picks one per product here: the crate's own entry
//! for AVX-512, and its AVX2 kernels instantiated below for the rest.

use crate::Float;
use gemm_common::Parallelism;
use std::any::TypeId;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which kernels run the matrix products of every thread, set by [`set_gemm_kernels`].
///
/// The kernel sets block their sums differently, so a product's last bits depend on
/// the set (never on the number of threads). [`GemmKernels::Avx2`] gives the same bits
/// on every x86-64 processor with AVX2 and FMA.
///
/// ```standalone_crate
/// // (Its own process: the setting is the whole program's.)
/// use descent_tensor::{GemmKernels, gemm_kernels, set_gemm_kernels};
/// let before = gemm_kernels();
/// // The same bits on every x86-64 processor with AVX2 and FMA, from here on.
/// set_gemm_kernels(GemmKernels::Avx2);
/// assert_eq!(gemm_kernels(), GemmKernels::Avx2);
/// set_gemm_kernels(before);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmKernels {
    /// AVX-512 on Intel processors that have it, except for the products where it
    /// measured slower there; AVX2 elsewhere (AMD included: measured on Zen 4). The
    /// default, unless the `avx512` feature is on.
    #[cfg_attr(not(feature = "avx512"), default)]
    ByProcessor,
    /// AVX2 and FMA for every product, on any processor that has them (else what the
    /// processor has).
    Avx2,
    /// AVX-512 for every product, on any processor with AVX-512F (else AVX2). The
    /// default with the `avx512` feature.
    #[cfg_attr(feature = "avx512", default)]
    Avx512,
}

/// The setting: `0` unset (the default), else `1 +` the variant's index.
static SETTING: AtomicU8 = AtomicU8::new(0);

/// Chooses the kernels of every matrix product from now on, on every thread (see
/// [`GemmKernels`] for an example). Products already running finish on the kernels
/// they started with.
pub fn set_gemm_kernels(kernels: GemmKernels) {
    let code = match kernels {
        GemmKernels::ByProcessor => 1,
        GemmKernels::Avx2 => 2,
        GemmKernels::Avx512 => 3,
    };
    SETTING.store(code, Ordering::Relaxed);
}

/// The kernels [`set_gemm_kernels`] last chose, or the default.
///
/// ```
/// use descent_tensor::{GemmKernels, gemm_kernels};
/// // `GemmKernels::default()` unless a program chose otherwise.
/// let kernels: GemmKernels = gemm_kernels();
/// println!("matrix products run on {kernels:?}");
/// ```
pub fn gemm_kernels() -> GemmKernels {
    match SETTING.load(Ordering::Relaxed) {
        1 => GemmKernels::ByProcessor,
        2 => GemmKernels::Avx2,
        3 => GemmKernels::Avx512,
        _ => GemmKernels::default(),
    }
}

/// What the processor offers, read once.
#[derive(Clone, Copy, Debug)]
struct Processor {
    avx512: bool,
    fma: bool,
    amd: bool,
}

fn processor() -> Processor {
    static PROCESSOR: OnceLock<Processor> = OnceLock::new();
    *PROCESSOR.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Processor {
    // The vendor string of CPUID leaf 0, in EBX, EDX, ECX order (Miri, which cannot
    // run the instruction, reports no AVX-512 anyway).
    let amd = !cfg!(miri) && {
        let leaf = std::arch::x86_64::__cpuid(0);
        [leaf.ebx, leaf.edx, leaf.ecx]
            == [b"Auth", b"enti", b"cAMD"].map(|b| u32::from_le_bytes(*b))
    };
    Processor {
        avx512: std::arch::is_x86_feature_detected!("avx512f"),
        fma: std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("avx2"),
        amd,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Processor {
    Processor {
        avx512: false,
        fma: false,
        amd: false,
    }
}

/// Whether `op(a)[m, k] op(b)[k, n]` in `T` (`b` stored `[n, k]` when `tb`) runs on
/// the AVX-512 kernels, under the current setting on this processor.
pub(crate) fn uses_avx512<T: Float>(ta: bool, tb: bool, m: usize, k: usize, n: usize) -> bool {
    let kernels = gemm_kernels();
    avx512_under(kernels)
        && !(kernels == GemmKernels::ByProcessor && avx2_measured_faster::<T>(ta, tb, m, k, n))
}

/// Whether the project's own loops ([`vectorized`](crate::vectorized)) run on AVX-512:
/// where the processor has it and the setting would run products on it (on Intel for
/// [`GemmKernels::ByProcessor`]). Their results are the same bits either way.
pub(crate) fn loops_use_avx512() -> bool {
    avx512_under(gemm_kernels())
}

/// Whether `kernels` lets anything run on AVX-512 on this processor.
fn avx512_under(kernels: GemmKernels) -> bool {
    let p = processor();
    p.avx512
        && match kernels {
            GemmKernels::Avx2 => false,
            GemmKernels::Avx512 => true,
            GemmKernels::ByProcessor => !p.amd,
        }
}

/// On an Intel Xeon with AVX-512 (the project's machine), the products where the AVX2
/// kernels measured faster than the AVX-512 ones: an `f32` `x·Wᵀ` (`b` transposed) of
/// fewer than 64 rows whose sum runs over a multiple of 512 elements (a row stride of a
/// multiple of 2 KiB), 1.2-1.5x slower on AVX-512 at 17-32 rows (1024x1024: 1,054
/// against 1,333 µs at 32 rows). Every other layer shape measured (batch 8-512, widths
/// 64-4096, both other layouts, `f64`) ran 0.4-1.0x the AVX2 time on AVX-512, most of
/// them 0.5-0.8x (`gemm_kernels_calls`; `docs/PERFORMANCE.md`, "AVX-512 by processor").
fn avx2_measured_faster<T: Float>(ta: bool, tb: bool, m: usize, k: usize, _n: usize) -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>() && !ta && tb && m < 64 && k.is_multiple_of(512)
}

/// The `gemm` crate's AVX2 kernels for `f32` and `f64`, instantiated as the crate
/// instantiates them for its own dispatch (`gemm_common::gemm_def!`), which offers no
/// way to choose them where the processor has AVX-512.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use gemm_common::Parallelism;
    use gemm_common::gemm::gemm_basic_generic;
    use gemm_common::simd::{MixedSimd, V3};

    macro_rules! avx2_gemm {
        ($name: ident, $t: ty, $ukr: path, $lanes: expr) => {
            /// The crate's `gemm_basic` for these kernels, with its signature (what
            /// `get_gemm_fn` returns): arguments as after the crate's transposition
            /// to a column-major destination.
            ///
            /// # Safety
            /// The processor has AVX2 and FMA, and the pointers and strides satisfy
            /// `gemm_common::gemm::gemm_basic_generic`'s contract.
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name(
                m: usize,
                n: usize,
                k: usize,
                dst: *mut $t,
                dst_cs: isize,
                dst_rs: isize,
                read_dst: bool,
                lhs: *const $t,
                lhs_cs: isize,
                lhs_rs: isize,
                rhs: *const $t,
                rhs_cs: isize,
                rhs_rs: isize,
                alpha: $t,
                beta: $t,
                conj_dst: bool,
                conj_lhs: bool,
                conj_rhs: bool,
                parallelism: Parallelism,
            ) {
                use $ukr as ukr;
                let simd = <V3 as MixedSimd<$t, $t, $t, $t>>::try_new()
                    .expect("the caller checked AVX2 and FMA");
                // SAFETY: forwarded from this function's contract; the kernels and
                // their dimensions are the crate's own for `V3`, as in `gemm_def!`.
                unsafe {
                    gemm_basic_generic::<
                        _,
                        $t,
                        $lanes,
                        { ukr::MR_DIV_N * $lanes },
                        { ukr::NR },
                        { ukr::MR_DIV_N },
                        { ukr::H_M },
                        { ukr::H_N },
                    >(
                        simd,
                        m,
                        n,
                        k,
                        dst,
                        dst_cs,
                        dst_rs,
                        read_dst,
                        lhs,
                        lhs_cs,
                        lhs_rs,
                        rhs,
                        rhs_cs,
                        rhs_rs,
                        alpha,
                        beta,
                        conj_dst,
                        conj_lhs,
                        conj_rhs,
                        |a, b, c| a * b + c,
                        &ukr::UKR,
                        &ukr::H_UKR,
                        false,
                        parallelism,
                    )
                }
            }
        };
    }

    avx2_gemm!(gemm_f32, f32, gemm_f32::microkernel::fma::f32, 8);
    avx2_gemm!(gemm_f64, f64, gemm_f64::microkernel::fma::f64, 4);
}

/// `dst[m, n] = alpha·dst + beta·lhs[m, k]·rhs[k, n]` with the strides in elements, as
/// the `gemm` crate's `gemm` (no conjugation), on the AVX-512 kernels when `avx512`
/// and the processor has them, else on AVX2 where it has those.
///
/// # Safety
/// As the `gemm` crate's `gemm`: `lhs`, `rhs` valid for reads and `dst` for reads (when
/// `read_dst`) and writes at every offset the dimensions and strides reach, all
/// strides non-negative, `dst` aliasing neither operand.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm<T: Float>(
    avx512: bool,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const T,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const T,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: T,
    beta: T,
    parallelism: Parallelism,
) {
    debug_assert!(dst_cs >= 0 && dst_rs >= 0 && lhs_cs >= 0 && lhs_rs >= 0);
    debug_assert!(rhs_cs >= 0 && rhs_rs >= 0);
    // The crate's kernels want a column-major destination: a row-major one is the
    // transposed product, with the operands swapped (as the crate's `gemm` does).
    let (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) = if dst_cs < dst_rs {
        (
            n, m, dst_rs, dst_cs, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs,
        )
    } else {
        (
            m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs,
        )
    };
    // The crate's entry picks AVX-512 where the processor has it, else AVX2, else
    // portable code; descent's AVX2 instantiation replaces it where AVX2 is wanted.
    let crate_entry = avx512 || !processor().fma;
    macro_rules! call {
        ($t: ty, $crate_fn: expr, $avx2_fn: ident) => {{
            #[cfg(target_arch = "x86_64")]
            let multiply = if crate_entry {
                $crate_fn
            } else {
                avx2::$avx2_fn
            };
            #[cfg(not(target_arch = "x86_64"))]
            let multiply = $crate_fn;
            // SAFETY: `T` is `$t` (checked by the caller's `TypeId`), so the casts
            // change no value, and the rest is this function's contract; the AVX2
            // kernels run only where `processor()` found AVX2 and FMA.
            unsafe {
                multiply(
                    m,
                    n,
                    k,
                    dst as *mut $t,
                    dst_cs,
                    dst_rs,
                    read_dst,
                    lhs as *const $t,
                    lhs_cs,
                    lhs_rs,
                    rhs as *const $t,
                    rhs_cs,
                    rhs_rs,
                    *(&alpha as *const T as *const $t),
                    *(&beta as *const T as *const $t),
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        }};
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        call!(f32, gemm_f32::gemm::f32::get_gemm_fn(), gemm_f32)
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        call!(f64, gemm_f64::gemm::f64::get_gemm_fn(), gemm_f64)
    } else {
        unreachable!("descent's floats are f32 and f64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::naive;

    /// `c = op(a) op(b) + beta c`, row-major, on the kernels `avx512` asks for.
    #[allow(clippy::too_many_arguments)]
    fn product<T: Float>(
        avx512: bool,
        a: &[T],
        ta: bool,
        b: &[T],
        tb: bool,
        (m, k, n): (usize, usize, usize),
        beta: T,
        c: &mut [T],
        parallelism: Parallelism,
    ) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
        let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
        // SAFETY: the slices hold the matrices the strides reach (asserted above), and
        // `c` is borrowed mutably, apart from `a` and `b`.
        unsafe {
            gemm(
                avx512,
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
                parallelism,
            )
        }
    }

    fn transpose(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        (0..cols)
            .flat_map(|j| (0..rows).map(move |i| x[i * cols + j]))
            .collect()
    }

    fn check<T: Float>(avx512: bool, (m, k, n): (usize, usize, usize), tol: f64) {
        let a: Vec<f64> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f64 - 6.0) / 8.0)
            .collect();
        let b: Vec<f64> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f64 - 5.0) / 4.0)
            .collect();
        let old: Vec<f64> = (0..m * n).map(|i| (i % 3) as f64 - 1.0).collect();
        let want = naive(&a, &b, m, k, n);
        let cast = |v: &[f64]| v.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>();
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a_in = if ta { transpose(&a, m, k) } else { a.clone() };
            let b_in = if tb { transpose(&b, k, n) } else { b.clone() };
            for beta in [0.0, 1.0] {
                // Under Miri, one thread: rayon's deques are checked in `gemm.rs`'s tests.
                let split = [Parallelism::None, Parallelism::Rayon(2)];
                for &parallelism in &split[..if cfg!(miri) { 1 } else { 2 }] {
                    // NaN in an overwritten `c` must not reach the result.
                    let mut c = if beta == 0.0 {
                        vec![T::nan(); m * n]
                    } else {
                        cast(&old)
                    };
                    let (ai, bi) = (cast(&a_in), cast(&b_in));
                    let dims = (m, k, n);
                    product(
                        avx512,
                        &ai,
                        ta,
                        &bi,
                        tb,
                        dims,
                        T::from_f64(beta),
                        &mut c,
                        parallelism,
                    );
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let w = w + beta * old[i];
                        let err = (got.as_f64() - w).abs();
                        assert!(
                            err <= tol * (1.0 + w.abs()),
                            "{} avx512={avx512} {m}x{k}x{n} ta={ta} tb={tb} beta={beta}: \
                             [{i}] {} against {w}",
                            T::NAME,
                            got.as_f64()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_on_either_kernel_set_matches_the_textbook_product() {
        // Without AVX-512F on the processor, `true` runs the crate's own choice: AVX2,
        // or portable code.
        for avx512 in [false, true] {
            let shapes = [
                (1, 1, 1),
                (3, 5, 2),
                (17, 33, 9),
                (48, 64, 40),
                (65, 130, 70),
            ];
            // Miri runs the smaller shapes only (an interpreter: minutes for the rest).
            for &dims in &shapes[..if cfg!(miri) { 3 } else { 5 }] {
                check::<f32>(avx512, dims, 1e-5);
                check::<f64>(avx512, dims, 1e-12);
            }
        }
    }

    #[test]
    fn avx2_is_chosen_only_where_it_measured_faster() {
        assert!(avx2_measured_faster::<f32>(false, true, 32, 1024, 1024));
        assert!(avx2_measured_faster::<f32>(false, true, 63, 512, 2048));
        assert!(avx2_measured_faster::<f32>(false, true, 17, 4096, 1024));
        assert!(!avx2_measured_faster::<f32>(false, true, 64, 1024, 1024));
        assert!(!avx2_measured_faster::<f32>(false, true, 32, 784, 512));
        assert!(!avx2_measured_faster::<f32>(false, true, 32, 1000, 1024));
        assert!(!avx2_measured_faster::<f64>(false, true, 32, 1024, 1024));
        assert!(!avx2_measured_faster::<f32>(false, false, 32, 1024, 1024));
        assert!(!avx2_measured_faster::<f32>(true, false, 32, 1024, 1024));
    }

    #[test]
    fn a_processor_without_avx512_never_runs_it() {
        let p = processor();
        // The default setting, read without changing it (other tests run beside).
        let asked = uses_avx512::<f32>(false, false, 128, 256, 256);
        assert!(p.avx512 || !asked, "{p:?}");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(p.avx512, std::arch::is_x86_feature_detected!("avx512f"));
    }
}
