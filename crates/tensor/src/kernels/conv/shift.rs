//! The shifted-plane path of convolution's im2col: with unit strides and output rows
//! as wide as the input's (a "same" convolution), a patch row is the channel's plane
//! shifted by one offset, so it is one copy and a few zeros.

use super::{ConvGeometry, valid};
use crate::Float;

/// `im2col` for unit strides and `ow == w`, or `false` (nothing written) for any other
/// geometry. Tap `(i, j)`'s row reads plane element `d + shift` for output position `d`,
/// with `shift = (i·dh - ph)·w + j·dw - pw`: one copy of the rows whose taps fall inside
/// the image, then zeros over the rows and columns that read padding (the copy's
/// values there wrapped around from the neighbouring row). The values are the row
/// path's, copied elsewhere from; on W7-like 28 × 28 planes the row path made 28
/// short copies and fills per tap.
pub(super) fn im2col_shifted<T: Float>(
    geom: &ConvGeometry,
    x: &[T],
    col: &mut [T],
    ld: usize,
) -> bool {
    let (h, w, oh, ow) = (geom.h, geom.w, geom.oh, geom.ow);
    if geom.stride != [1, 1] || ow != w || w == 0 {
        return false;
    }
    let [ph, pw] = geom.padding;
    let [dh, dw] = geom.dilation;
    let (hw, l) = (h * w, oh * ow);
    let mut rows = col.chunks_mut(ld);
    for plane in x.chunks_exact(hw).take(geom.c_in / geom.groups) {
        for i in 0..geom.kh {
            let y_off = (i * dh) as isize - ph as isize;
            // Output rows whose tap row `oy + y_off` is inside the image.
            let oy_lo = y_off.min(0).unsigned_abs().min(oh);
            let oy_hi = (h as isize - y_off).clamp(oy_lo as isize, oh as isize) as usize;
            for j in 0..geom.kw {
                let row = &mut rows.next().expect("col has cin_g·kh·kw rows")[..l];
                let x_off = (j * dw) as isize - pw as isize;
                let (lo, hi) = valid(x_off, 1, w, ow);
                let shift = y_off * w as isize + x_off;
                let (start, end) = (oy_lo * ow, oy_hi * ow);
                // The part of `start..end` whose source lies inside the plane.
                let from = (-shift).clamp(start as isize, end as isize) as usize;
                let to = (hw as isize - shift).clamp(from as isize, end as isize) as usize;
                row[..from].fill(T::zero());
                if to > from {
                    let src = (from as isize + shift) as usize;
                    row[from..to].copy_from_slice(&plane[src..src + (to - from)]);
                }
                row[to..].fill(T::zero());
                if lo > 0 || hi < ow {
                    for out in row[start..end].chunks_exact_mut(ow) {
                        out[..lo].fill(T::zero());
                        out[hi..].fill(T::zero());
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::im2col_rows;
    use super::*;

    /// Every same-width geometry of a few sizes, kernels, paddings and dilations (with
    /// groups): the shifted path writes the row path's values, bit for bit, and
    /// refuses the geometries it does not take.
    #[test]
    fn shifted_planes_match_the_row_path() {
        let mut taken = 0;
        for (h, w) in [(1, 1), (3, 5), (6, 4), (17, 16), (28, 28)] {
            for (kh, kw) in [(1, 1), (3, 3), (2, 5), (5, 1)] {
                for (ph, pw) in [(0, 0), (1, 1), (2, 0), (0, 3), (4, 4)] {
                    for (dh, dw) in [(1, 1), (2, 1), (1, 3)] {
                        for stride in [[1, 1], [1, 2], [2, 1]] {
                            let Ok(geom) = ConvGeometry::new(
                                [2, 4, h, w],
                                [4, 2, kh, kw],
                                stride,
                                [ph, pw],
                                [dh, dw],
                                2,
                            ) else {
                                continue;
                            };
                            let x: Vec<f64> = (0..4 * h * w)
                                .map(|k| (k as f64 * 0.37).sin() + 1.5)
                                .collect();
                            let (l, patch) = (geom.positions(), geom.patch());
                            // Two samples side by side, as a block lays them out.
                            let ld = 2 * l + 3;
                            let (mut want, mut got) =
                                (vec![f64::NAN; patch * ld], vec![f64::NAN; patch * ld]);
                            im2col_rows(&geom, &x[..2 * h * w], &mut want[l..], ld);
                            let ok = im2col_shifted(&geom, &x[..2 * h * w], &mut got[l..], ld);
                            assert_eq!(ok, stride == [1, 1] && geom.ow == w, "{geom:?}");
                            if ok {
                                taken += 1;
                                let bits =
                                    |v: &[f64]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
                                assert_eq!(bits(&got), bits(&want), "{geom:?}");
                            }
                        }
                    }
                }
            }
        }
        assert!(taken > 40, "only {taken} geometries took the shifted path");
    }
}
