//! Convolution over two spatial axes (one-axis convolution is the case `h = 1`) by
//! im2col and the project's GEMM, with its two backward products.
//!
//! For each sample and each group the input patches are unrolled into a matrix
//! `col [cin_g·kh·kw, oh·ow]` (zero where a patch reaches into the padding), so that
//! - forward is `out[b, g] = W[g] @ col (+ bias)` with `W[g]` the group's weights as
//!   `[cout_g, cin_g·kh·kw]` (PyTorch's weight layout, read in place);
//! - the input gradient is `col2im(W[g]ᵀ @ gout[b, g])`: the transposed convolution,
//!   each column of the product added back to the input positions its patch read;
//! - the weight gradient is `Σ_b gout[b, g] @ colᵀ`, and the bias gradient the sum of
//!   `gout` over samples and positions.
//!
//! Samples are independent, so forward and the input gradient are split across
//! rayon's pool by sample. The weight gradient is a sum over samples: it is taken over
//! a fixed split of the batch into [`WEIGHT_CHUNKS`] consecutive runs, each summed in
//! sample order, and the runs' sums are added in run order. The split depends on the
//! batch size only, so the result is the same bits on any number of threads.

mod shift;
mod table;

use super::gemm::gemm;
use super::sum::sum_lanes;
use crate::Float;
use rayon::prelude::*;
use shift::im2col_shifted;
use table::{col2im_table_acc, im2col_table, patch_table};

/// The sizes and options of one convolution: `x [n, c_in, h, w]` convolved with
/// `weight [c_out, c_in / groups, kh, kw]` gives `out [n, c_out, oh, ow]`, where
/// `oh = (h + 2·padding₀ - dilation₀·(kh - 1) - 1) / stride₀ + 1` and likewise `ow`
/// (PyTorch's `torch.nn.functional.conv2d`).
///
/// ```
/// use descent_tensor::kernels::ConvGeometry;
/// let g = ConvGeometry::new([2, 3, 8, 8], [4, 3, 3, 3], [2, 2], [1, 1], [1, 1], 1).unwrap();
/// assert_eq!(g.out_shape(), [2, 4, 4, 4]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Samples.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Step between windows, (height, width).
    pub stride: [usize; 2],
    /// Zeros added on each side, (height, width).
    pub padding: [usize; 2],
    /// Step between kernel taps, (height, width).
    pub dilation: [usize; 2],
    /// Channel groups: each group of `c_out / groups` outputs sees `c_in / groups` inputs.
    pub groups: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

/// Why a convolution's sizes do not fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConvGeometryError {
    /// A stride or dilation is zero, or groups is zero.
    Zero(&'static str),
    /// The weight's input channels times groups is not the input's channel count.
    Channels {
        /// Input channels.
        c_in: usize,
        /// The weight's input channels per group.
        per_group: usize,
        /// Groups.
        groups: usize,
    },
    /// The output channels do not divide into groups.
    Groups {
        /// Output channels.
        c_out: usize,
        /// Groups.
        groups: usize,
    },
    /// The dilated kernel is larger than the padded input along an axis.
    Kernel {
        /// The axis (0 height, 1 width).
        axis: usize,
        /// The dilated kernel's extent.
        extent: usize,
        /// The padded input's extent.
        padded: usize,
    },
}

impl std::fmt::Display for ConvGeometryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvGeometryError::Zero(what) => write!(f, "{what} must be at least 1"),
            ConvGeometryError::Channels {
                c_in,
                per_group,
                groups,
            } => write!(
                f,
                "the input has {c_in} channels but the weight expects {per_group} per group × {groups} groups = {}",
                per_group * groups
            ),
            ConvGeometryError::Groups { c_out, groups } => write!(
                f,
                "groups = {groups} must divide the {c_out} output channels (and the input channels)"
            ),
            ConvGeometryError::Kernel {
                axis,
                extent,
                padded,
            } => write!(
                f,
                "the dilated kernel ({extent}) is larger than the padded input ({padded}) along spatial axis {axis}"
            ),
        }
    }
}

/// The output extent of a window of `k` taps `dilation` apart, moved by `stride` over
/// `len` elements with `pad` zeros on each side; `None` when the window does not fit.
pub(crate) fn window_out(
    len: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Option<usize> {
    let extent = dilation * (k - 1) + 1;
    let padded = len + 2 * pad;
    (padded >= extent).then(|| (padded - extent) / stride + 1)
}

impl ConvGeometry {
    /// The geometry of `x` (`[n, c_in, h, w]`) convolved with `weight`
    /// (`[c_out, c_in / groups, kh, kw]`), or why the two do not fit.
    pub fn new(
        x: [usize; 4],
        weight: [usize; 4],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Result<Self, ConvGeometryError> {
        let [n, c_in, h, w] = x;
        let [c_out, per_group, kh, kw] = weight;
        if stride.contains(&0) {
            return Err(ConvGeometryError::Zero("stride"));
        }
        if dilation.contains(&0) {
            return Err(ConvGeometryError::Zero("dilation"));
        }
        if groups == 0 {
            return Err(ConvGeometryError::Zero("groups"));
        }
        if kh == 0 || kw == 0 {
            return Err(ConvGeometryError::Zero("the kernel size"));
        }
        if !c_out.is_multiple_of(groups) || !c_in.is_multiple_of(groups) {
            return Err(ConvGeometryError::Groups { c_out, groups });
        }
        if per_group * groups != c_in {
            return Err(ConvGeometryError::Channels {
                c_in,
                per_group,
                groups,
            });
        }
        let mut out = [0; 2];
        for (axis, (len, k)) in [(h, kh), (w, kw)].into_iter().enumerate() {
            out[axis] = window_out(len, k, stride[axis], padding[axis], dilation[axis]).ok_or(
                ConvGeometryError::Kernel {
                    axis,
                    extent: dilation[axis] * (k - 1) + 1,
                    padded: len + 2 * padding[axis],
                },
            )?;
        }
        Ok(ConvGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            padding,
            dilation,
            groups,
            oh: out[0],
            ow: out[1],
        })
    }

    /// `[n, c_out, oh, ow]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.oh, self.ow]
    }

    /// Rows of a group's patch matrix: `c_in / groups · kh · kw`.
    fn patch(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// Output positions per channel: `oh · ow`.
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Whether the patch matrix is the input itself (a 1×1 kernel, stride 1, no
    /// padding): im2col and col2im are then copies, and are skipped.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Multiply-adds of one sample's forward product, to decide whether to split.
    fn sample_volume(&self) -> usize {
        self.c_out * self.patch() * self.positions()
    }
}

/// Below this many multiply-adds in the whole batch a convolution runs on the calling
/// thread; above it, samples are spread over rayon's pool.
const PARALLEL_VOLUME: usize = 1 << 20;

/// The weight gradient sums samples in at most this many consecutive runs.
pub const WEIGHT_CHUNKS: usize = 8;

fn parallel(geom: &ConvGeometry) -> bool {
    geom.n > 1
        && geom.sample_volume().saturating_mul(geom.n) >= PARALLEL_VOLUME
        && rayon::current_num_threads() > 1
}

/// `dst.copy_from_slice(src)` for rows of a few dozen elements: eight at a time as
/// fixed-size arrays, which compile to vector moves in place, where `copy_from_slice`
/// calls `memmove` (a quarter of im2col's time went to those calls on 28-wide rows).
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[T; 8] = s.try_into().expect("chunks of 8");
        let d: &mut [T; 8] = d.try_into().expect("chunks of 8");
        *d = *s;
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// The outputs `lo..hi` whose tap `x0 + ox·stride` falls inside `0..w` (the others
/// read padding), clipped to `0..ow`; `lo == hi` when none does.
fn valid(x0: isize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
    let lo = if x0 >= 0 {
        0
    } else {
        (x0.unsigned_abs()).div_ceil(stride)
    };
    let hi = if x0 >= w as isize {
        0
    } else {
        ((w as isize - x0 - 1) as usize / stride + 1).min(ow)
    };
    let lo = lo.min(ow);
    (lo, hi.max(lo))
}

/// Unrolls the patches of one group of one sample: `x` is the group's channels
/// `[cin_g, h, w]`; row `r` of the patch matrix (`oh·ow` elements) goes to
/// `col[r·ld..]`, so that the samples of a block sit side by side in one matrix
/// `[cin_g·kh·kw, ld]` (`ld = samples · oh·ow`, `col` starting at the sample's column).
fn im2col<T: Float>(geom: &ConvGeometry, table: Option<&[u32]>, x: &[T], col: &mut [T], ld: usize) {
    if let Some(table) = table {
        return im2col_table(geom, table, x, col, ld);
    }
    if !im2col_shifted(geom, x, col, ld) {
        im2col_rows(geom, x, col, ld);
    }
}

/// [`im2col`] a row of the output at a time: any geometry.
fn im2col_rows<T: Float>(geom: &ConvGeometry, x: &[T], col: &mut [T], ld: usize) {
    let (h, w, oh, ow) = (geom.h, geom.w, geom.oh, geom.ow);
    let [sh, sw] = geom.stride;
    let [ph, pw] = geom.padding;
    let [dh, dw] = geom.dilation;
    let cin_g = geom.c_in / geom.groups;
    let mut rows = col.chunks_mut(ld);
    for c in 0..cin_g {
        let plane = &x[c * h * w..(c + 1) * h * w];
        for i in 0..geom.kh {
            for j in 0..geom.kw {
                let row = &mut rows.next().expect("col has cin_g·kh·kw rows")[..oh * ow];
                let x0 = (j * dw) as isize - pw as isize;
                let (lo, hi) = valid(x0, sw, w, ow);
                let first = if lo < hi {
                    (x0 + (lo * sw) as isize) as usize
                } else {
                    0
                };
                for oy in 0..oh {
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    let y = (oy * sh + i * dh) as isize - ph as isize;
                    if y < 0 || y >= h as isize {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &plane[y as usize * w..(y as usize + 1) * w];
                    dst[..lo].fill(T::zero());
                    dst[hi..].fill(T::zero());
                    if sw == 1 {
                        copy_short(&mut dst[lo..hi], &src[first..first + hi - lo]);
                    } else {
                        for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[first + k * sw];
                        }
                    }
                }
            }
        }
    }
}

/// The reverse of [`im2col`] (rows `ld` apart in `col`): adds each element of `col` to
/// the input position it was read from (elements read from the padding are dropped).
fn col2im_acc<T: Float>(
    geom: &ConvGeometry,
    table: Option<&[u32]>,
    col: &[T],
    ld: usize,
    gx: &mut [T],
) {
    if let Some(table) = table {
        return col2im_table_acc(geom, table, col, ld, gx);
    }
    let (h, w, oh, ow) = (geom.h, geom.w, geom.oh, geom.ow);
    let [sh, sw] = geom.stride;
    let [ph, pw] = geom.padding;
    let [dh, dw] = geom.dilation;
    let cin_g = geom.c_in / geom.groups;
    let mut rows = col.chunks(ld);
    for c in 0..cin_g {
        let plane = &mut gx[c * h * w..(c + 1) * h * w];
        for i in 0..geom.kh {
            for j in 0..geom.kw {
                let row = &rows.next().expect("col has cin_g·kh·kw rows")[..oh * ow];
                let x0 = (j * dw) as isize - pw as isize;
                let (lo, hi) = valid(x0, sw, w, ow);
                let first = if lo < hi {
                    (x0 + (lo * sw) as isize) as usize
                } else {
                    0
                };
                for oy in 0..oh {
                    let y = (oy * sh + i * dh) as isize - ph as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[y as usize * w..(y as usize + 1) * w];
                    let src = &row[oy * ow..(oy + 1) * ow];
                    if sw == 1 {
                        let d = &mut dst[first..first + hi - lo];
                        for (d, &s) in d.iter_mut().zip(&src[lo..hi]) {
                            *d += s;
                        }
                    } else {
                        for (k, &s) in src[lo..hi].iter().enumerate() {
                            dst[first + k * sw] += s;
                        }
                    }
                }
            }
        }
    }
}

/// Forward: `out [n, c_out, oh, ow] = conv(x [n, c_in, h, w], weight) + bias`.
///
/// ```
/// use descent_tensor::kernels::{ConvGeometry, conv2d};
/// // One 2×2 input, a 2×2 kernel of ones: the output is the sum, plus the bias.
/// let g = ConvGeometry::new([1, 1, 2, 2], [1, 1, 2, 2], [1, 1], [0, 0], [1, 1], 1).unwrap();
/// let mut out = [0.0];
/// conv2d(&g, &[1.0, 2.0, 3.0, 4.0], &[1.0; 4], Some(&[0.5]), &mut out);
/// assert_eq!(out, [10.5]);
/// ```
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn conv2d<T: Float>(
    geom: &ConvGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let (in_len, out_len) = (geom.c_in * geom.h * geom.w, geom.c_out * geom.positions());
    assert_eq!(x.len(), geom.n * in_len, "conv2d: input length");
    assert_eq!(
        weight.len(),
        geom.c_out * geom.patch(),
        "conv2d: weight length"
    );
    assert_eq!(out.len(), geom.n * out_len, "conv2d: output length");
    if out_len == 0 {
        return;
    }
    // Runs of consecutive samples (as the backward's), each in blocks of samples
    // multiplied at once; both depend on the geometry only.
    let run = geom.n.div_ceil(WEIGHT_CHUNKS).max(1);
    let block = block_samples(geom, run);
    let table = patch_table(geom);
    let table = table.as_deref();
    let work = |bufs: &mut (Vec<T>, Vec<T>), (xr, or): (&[T], &mut [T])| {
        for (xb, ob) in xr
            .chunks(block * in_len.max(1))
            .zip(or.chunks_mut(block * out_len))
        {
            conv_block(geom, table, xb, weight, bias, ob, bufs);
        }
    };
    if parallel(geom) {
        x.par_chunks(run * in_len.max(1))
            .zip(out.par_chunks_mut(run * out_len))
            .for_each_init(|| (Vec::new(), Vec::new()), work);
    } else {
        let mut bufs = (Vec::new(), Vec::new());
        for pair in x
            .chunks(run * in_len.max(1))
            .zip(out.chunks_mut(run * out_len))
        {
            work(&mut bufs, pair);
        }
    }
}

/// Columns a block's products aim for: samples are multiplied together until their
/// output positions reach this many, so that a small image (8 × 8, or 4 × 4 after a
/// pooling) still gives the GEMM a wide right operand instead of one of 16 columns.
const BLOCK_COLUMNS: usize = 512;

/// Samples per block: enough for [`BLOCK_COLUMNS`] output positions, at most a run.
fn block_samples(geom: &ConvGeometry, run: usize) -> usize {
    BLOCK_COLUMNS
        .div_ceil(geom.positions().max(1))
        .clamp(1, run.max(1))
}

/// Forward of a block of `s` samples (`x` and `out` hold theirs), group by group: the
/// samples' patch matrices side by side in `col [patch, s·l]`, one product
/// `W[g] [cout_g, patch] @ col` into `prod [cout_g, s·l]`, then each sample's rows
/// copied out (plus the bias).
fn conv_block<T: Float>(
    geom: &ConvGeometry,
    table: Option<&[u32]>,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
    (col, prod): &mut (Vec<T>, Vec<T>),
) {
    let (patch, l) = (geom.patch(), geom.positions());
    let (cin_g, cout_g) = (geom.c_in / geom.groups, geom.c_out / geom.groups);
    let (in_len, out_len) = (geom.c_in * geom.h * geom.w, geom.c_out * l);
    let in_g = cin_g * geom.h * geom.w;
    let samples = out.len() / out_len;
    let ld = samples * l;
    for g in 0..geom.groups {
        let colg: &[T] = if samples == 1 && geom.is_pointwise() {
            &x[g * in_g..(g + 1) * in_g]
        } else {
            col.resize(patch * ld, T::zero());
            for s in 0..samples {
                let xs = &x[s * in_len + g * in_g..s * in_len + (g + 1) * in_g];
                im2col(geom, table, xs, &mut col[s * l..], ld);
            }
            col
        };
        let wg = &weight[g * cout_g * patch..(g + 1) * cout_g * patch];
        prod.resize(cout_g * ld, T::zero());
        gemm(wg, false, colg, false, cout_g, patch, ld, T::zero(), prod);
        for s in 0..samples {
            for co in 0..cout_g {
                let c = g * cout_g + co;
                let dst = &mut out[s * out_len + c * l..s * out_len + (c + 1) * l];
                let src = &prod[co * ld + s * l..co * ld + (s + 1) * l];
                match bias {
                    Some(bias) => {
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d = bias[c] + v;
                        }
                    }
                    None => dst.copy_from_slice(src),
                }
            }
        }
    }
}

/// Backward: adds the input gradient to `gx` and the weight and bias gradients to `gw`
/// and `gb` (each only when asked), from the output gradient `gout`.
///
/// Each product reads only the operand it needs: the input gradient (the transposed
/// convolution of `gout` with the weight) is asked as `Some((weight, gx))`, the weight
/// gradient (the correlation of the input with `gout`) as `Some((x, gw))`. So the
/// transposed convolution and the correlation run on their own, with no dummy operand,
/// as the recorded ops `conv_input_grad` and `conv_weight_grad` of descent-tape do.
///
/// The weight and bias gradients are sums over the batch, taken in a split that
/// depends on the batch size only (see the module's doc): the same bits on any number
/// of threads.
///
/// ```
/// use descent_tensor::kernels::{ConvGeometry, conv2d_backward_acc};
/// let g = ConvGeometry::new([1, 1, 2, 2], [1, 1, 2, 2], [1, 1], [0, 0], [1, 1], 1).unwrap();
/// let (x, w) = ([1.0, 2.0, 3.0, 4.0], [0.5, 0.0, 0.0, -1.0]);
/// let (mut gx, mut gw, mut gb) = ([0.0; 4], [0.0; 4], [0.0]);
/// conv2d_backward_acc(&g, &[2.0], Some((&w, &mut gx)), Some((&x, &mut gw)), Some(&mut gb));
/// assert_eq!(gx, [1.0, 0.0, 0.0, -2.0]); // gout · w
/// assert_eq!(gw, [2.0, 4.0, 6.0, 8.0]); // gout · x
/// assert_eq!(gb, [2.0]);
/// ```
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn conv2d_backward_acc<T: Float>(
    geom: &ConvGeometry,
    gout: &[T],
    input_grad: Option<(&[T], &mut [T])>,
    weight_grad: Option<(&[T], &mut [T])>,
    gb: Option<&mut [T]>,
) {
    let (in_len, l) = (geom.c_in * geom.h * geom.w, geom.positions());
    let out_len = geom.c_out * l;
    let w_len = geom.c_out * geom.patch();
    let (weight, gx) = input_grad.unzip();
    let (x, gw) = weight_grad.unzip();
    if let Some(x) = x {
        assert_eq!(x.len(), geom.n * in_len, "conv2d backward: input length");
    }
    if let Some(weight) = weight {
        assert_eq!(weight.len(), w_len, "conv2d backward: weight length");
    }
    if let Some(gx) = gx.as_deref() {
        assert_eq!(
            gx.len(),
            geom.n * in_len,
            "conv2d backward: input gradient length"
        );
    }
    if let Some(gw) = gw.as_deref() {
        assert_eq!(gw.len(), w_len, "conv2d backward: weight gradient length");
    }
    assert_eq!(
        gout.len(),
        geom.n * out_len,
        "conv2d backward: gradient length"
    );
    if let Some(gb) = gb {
        for b in 0..geom.n {
            for (co, acc) in gb.iter_mut().enumerate() {
                let row = &gout[b * out_len + co * l..b * out_len + (co + 1) * l];
                *acc += sum_lanes(row, |v| v);
            }
        }
    }
    if out_len == 0 || in_len == 0 {
        return;
    }
    let want_w = gw.is_some();
    // Runs of consecutive samples: the unit of work and of the weight-gradient sum.
    let run = geom.n.div_ceil(WEIGHT_CHUNKS).max(1);
    let runs = geom.n.div_ceil(run);
    let block = block_samples(geom, run);
    let table = patch_table(geom);
    let table = table.as_deref();
    let work = |r: usize, gx_run: Option<&mut [T]>| -> Vec<T> {
        let mut partial = if want_w {
            vec![T::zero(); w_len]
        } else {
            Vec::new()
        };
        let mut bufs = (Vec::new(), Vec::new(), Vec::new());
        let samples = r * run..((r + 1) * run).min(geom.n);
        let mut gx_run = gx_run;
        for (k, first) in samples.clone().step_by(block).enumerate() {
            let last = (first + block).min(samples.end);
            let k0 = k * block;
            let gxb = gx_run
                .as_deref_mut()
                .map(|s| &mut s[k0 * in_len..(k0 + last - first) * in_len]);
            backward_block(
                geom,
                table,
                x.map(|x| &x[first * in_len..last * in_len]),
                weight,
                &gout[first * out_len..last * out_len],
                gxb,
                want_w.then_some(&mut partial[..]),
                &mut bufs,
            );
        }
        partial
    };
    let partials: Vec<Vec<T>> = match gx {
        Some(gx) => {
            let chunks = gx.chunks_mut(run * in_len);
            if parallel(geom) {
                chunks
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .enumerate()
                    .map(|(r, c)| work(r, Some(c)))
                    .collect()
            } else {
                chunks.enumerate().map(|(r, c)| work(r, Some(c))).collect()
            }
        }
        None if want_w => {
            if parallel(geom) {
                (0..runs).into_par_iter().map(|r| work(r, None)).collect()
            } else {
                (0..runs).map(|r| work(r, None)).collect()
            }
        }
        None => Vec::new(),
    };
    if let Some(gw) = gw {
        for p in &partials {
            for (d, &s) in gw.iter_mut().zip(p) {
                *d += s;
            }
        }
    }
}

/// Backward of a block of samples (`x`, `gout` and `gx` hold theirs), group by group:
/// the samples' output gradients side by side in `go [cout_g, s·l]`, then
/// `gW[g] += go @ colᵀ` (one product over the block) and `gcol = W[g]ᵀ @ go`, each
/// sample's columns of `gcol` added back into its input gradient (col2im).
/// `bufs`: the patch matrix, `gcol` and `go`, kept between blocks.
#[allow(clippy::too_many_arguments)]
fn backward_block<T: Float>(
    geom: &ConvGeometry,
    table: Option<&[u32]>,
    x: Option<&[T]>,
    weight: Option<&[T]>,
    gout: &[T],
    mut gx: Option<&mut [T]>,
    mut gw: Option<&mut [T]>,
    bufs: &mut (Vec<T>, Vec<T>, Vec<T>),
) {
    let (col, gcol, go) = bufs;
    let (patch, l) = (geom.patch(), geom.positions());
    let (cin_g, cout_g) = (geom.c_in / geom.groups, geom.c_out / geom.groups);
    let (in_len, out_len) = (geom.c_in * geom.h * geom.w, geom.c_out * l);
    let in_g = cin_g * geom.h * geom.w;
    let samples = gout.len() / out_len;
    let ld = samples * l;
    for g in 0..geom.groups {
        let go: &[T] = if samples == 1 {
            &gout[g * cout_g * l..(g + 1) * cout_g * l]
        } else {
            go.resize(cout_g * ld, T::zero());
            for s in 0..samples {
                for co in 0..cout_g {
                    let c = g * cout_g + co;
                    go[co * ld + s * l..co * ld + (s + 1) * l]
                        .copy_from_slice(&gout[s * out_len + c * l..s * out_len + (c + 1) * l]);
                }
            }
            go
        };
        if let (Some(gw), Some(x)) = (gw.as_deref_mut(), x) {
            let colg: &[T] = if samples == 1 && geom.is_pointwise() {
                &x[g * in_g..(g + 1) * in_g]
            } else {
                col.resize(patch * ld, T::zero());
                for s in 0..samples {
                    let xs = &x[s * in_len + g * in_g..s * in_len + (g + 1) * in_g];
                    im2col(geom, table, xs, &mut col[s * l..], ld);
                }
                col
            };
            // gW[g] += go [cout_g, s·l] @ colᵀ [s·l, patch]
            let gwg = &mut gw[g * cout_g * patch..(g + 1) * cout_g * patch];
            gemm(go, false, colg, true, cout_g, ld, patch, T::one(), gwg);
        }
        if let (Some(gx), Some(weight)) = (gx.as_deref_mut(), weight) {
            let wg = &weight[g * cout_g * patch..(g + 1) * cout_g * patch];
            if samples == 1 && geom.is_pointwise() {
                // The patch matrix is the input: the product adds into it directly.
                let gxg = &mut gx[g * in_g..(g + 1) * in_g];
                gemm(wg, true, go, false, patch, cout_g, l, T::one(), gxg);
            } else {
                gcol.resize(patch * ld, T::zero());
                gemm(wg, true, go, false, patch, cout_g, ld, T::zero(), gcol);
                for s in 0..samples {
                    let gxs = &mut gx[s * in_len + g * in_g..s * in_len + (g + 1) * in_g];
                    col2im_acc(geom, table, &gcol[s * l..], ld, gxs);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output element at a time.
    fn naive(geom: &ConvGeometry, x: &[f64], w: &[f64], bias: &[f64]) -> Vec<f64> {
        let g = geom;
        let (cin_g, cout_g) = (g.c_in / g.groups, g.c_out / g.groups);
        let mut out = vec![0.0; g.n * g.c_out * g.oh * g.ow];
        for b in 0..g.n {
            for co in 0..g.c_out {
                let grp = co / cout_g;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut s = bias[co];
                        for ci in 0..cin_g {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let y = (oy * g.stride[0] + i * g.dilation[0]) as isize
                                        - g.padding[0] as isize;
                                    let xx = (ox * g.stride[1] + j * g.dilation[1]) as isize
                                        - g.padding[1] as isize;
                                    if y < 0 || xx < 0 || y >= g.h as isize || xx >= g.w as isize {
                                        continue;
                                    }
                                    let c = grp * cin_g + ci;
                                    s += x
                                        [((b * g.c_in + c) * g.h + y as usize) * g.w + xx as usize]
                                        * w[((co * cin_g + ci) * g.kh + i) * g.kw + j];
                                }
                            }
                        }
                        out[((b * g.c_out + co) * g.oh + oy) * g.ow + ox] = s;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((7919 * i + 104_729 * seed) % 2003) as f64 / 1001.5 - 1.0)
            .collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        for (stride, padding, dilation, groups) in [
            ([1, 1], [0, 0], [1, 1], 1),
            ([2, 1], [1, 2], [1, 2], 2),
            ([1, 1], [0, 0], [1, 1], 3),
        ] {
            let geom = ConvGeometry::new(
                [2, 6, 5, 7],
                [6, 6 / groups, 3, 2],
                stride,
                padding,
                dilation,
                groups,
            )
            .unwrap();
            let x = values(2 * 6 * 35, 1);
            let w = values(6 * 6 / groups * 6, 2);
            let b = values(6, 3);
            let mut out = vec![f64::NAN; geom.out_shape().iter().product()];
            conv2d(&geom, &x, &w, Some(&b), &mut out);
            let want = naive(&geom, &x, &w, &b);
            for (a, e) in out.iter().zip(&want) {
                assert!((a - e).abs() < 1e-12, "{a} vs {e}");
            }
        }
    }

    #[test]
    fn geometry_errors() {
        let e = ConvGeometry::new([1, 3, 4, 4], [2, 2, 3, 3], [1, 1], [0, 0], [1, 1], 1);
        assert!(matches!(e, Err(ConvGeometryError::Channels { .. })));
        let e = ConvGeometry::new([1, 4, 4, 4], [3, 2, 3, 3], [1, 1], [0, 0], [1, 1], 2);
        assert!(matches!(e, Err(ConvGeometryError::Groups { .. })));
        let e = ConvGeometry::new([1, 1, 2, 2], [1, 1, 3, 3], [1, 1], [0, 0], [1, 1], 1);
        assert!(matches!(
            e,
            Err(ConvGeometryError::Kernel {
                extent: 3,
                padded: 2,
                ..
            })
        ));
        let e = ConvGeometry::new([1, 1, 2, 2], [1, 1, 1, 1], [0, 1], [0, 0], [1, 1], 1);
        assert_eq!(e, Err(ConvGeometryError::Zero("stride")));
    }
}
