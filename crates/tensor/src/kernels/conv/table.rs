//! The table path of convolution's im2col and col2im, for short output rows: a table
//! of the plane offset each element of a patch row reads, built once per call and
//! shared by every sample and channel.

use super::ConvGeometry;
use crate::Float;

/// Output rows shorter than this take the table path of `im2col` and `col2im_acc`:
/// on an 8 × 8 or 4 × 4 image a row copy is a few elements, and the per-row work of
/// the row path (bounds, zero fills, a short copy) cost as much as the GEMM itself.
const TABLE_MAX_OW: usize = 16;

/// The table path's largest table (`kh·kw·oh·ow` entries).
const TABLE_MAX_LEN: usize = 1 << 16;

/// For a convolution with short output rows, the input position each element of a
/// channel's patch rows reads: entry `(i·kw + j)·oh·ow + oy·ow + ox` is the offset in
/// the channel's `h × w` plane of tap `(i, j)` of output `(oy, ox)`, or `u32::MAX` where
/// the tap reads padding. Shared by every sample and channel of the call. `None` for
/// wide rows (the row path copies them) or a table too large.
pub(super) fn patch_table(geom: &ConvGeometry) -> Option<Vec<u32>> {
    let l = geom.positions();
    let len = geom.kh * geom.kw * l;
    if geom.ow >= TABLE_MAX_OW || len > TABLE_MAX_LEN || geom.h * geom.w >= u32::MAX as usize {
        return None;
    }
    let [sh, sw] = geom.stride;
    let [ph, pw] = geom.padding;
    let [dh, dw] = geom.dilation;
    let mut table = Vec::with_capacity(len);
    for i in 0..geom.kh {
        for j in 0..geom.kw {
            for oy in 0..geom.oh {
                let y = (oy * sh + i * dh) as isize - ph as isize;
                for ox in 0..geom.ow {
                    let x = (ox * sw + j * dw) as isize - pw as isize;
                    let inside = y >= 0 && x >= 0 && y < geom.h as isize && x < geom.w as isize;
                    table.push(if inside {
                        (y as usize * geom.w + x as usize) as u32
                    } else {
                        u32::MAX
                    });
                }
            }
        }
    }
    Some(table)
}

/// `im2col` through a [`patch_table`]: each element read from its plane by the
/// table, zero where the table says padding.
pub(super) fn im2col_table<T: Float>(
    geom: &ConvGeometry,
    table: &[u32],
    x: &[T],
    col: &mut [T],
    ld: usize,
) {
    let (hw, l) = (geom.h * geom.w, geom.positions());
    let taps = geom.kh * geom.kw;
    let mut rows = col.chunks_mut(ld);
    for plane in x.chunks_exact(hw).take(geom.c_in / geom.groups) {
        for t in table.chunks_exact(l).take(taps) {
            let row = &mut rows.next().expect("col has cin_g·kh·kw rows")[..l];
            for (d, &k) in row.iter_mut().zip(t) {
                *d = plane.get(k as usize).copied().unwrap_or(T::zero());
            }
        }
    }
}

/// `col2im_acc` through a [`patch_table`]: the same additions in the same order
/// (channel, tap, output position), so the same bits as the row path.
pub(super) fn col2im_table_acc<T: Float>(
    geom: &ConvGeometry,
    table: &[u32],
    col: &[T],
    ld: usize,
    gx: &mut [T],
) {
    let (hw, l) = (geom.h * geom.w, geom.positions());
    let taps = geom.kh * geom.kw;
    let mut rows = col.chunks(ld);
    for plane in gx.chunks_exact_mut(hw).take(geom.c_in / geom.groups) {
        for t in table.chunks_exact(l).take(taps) {
            let row = &rows.next().expect("col has cin_g·kh·kw rows")[..l];
            for (&v, &k) in row.iter().zip(t) {
                if let Some(d) = plane.get_mut(k as usize) {
                    *d += v;
                }
            }
        }
    }
}
