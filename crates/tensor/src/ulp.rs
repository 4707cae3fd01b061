//! Test helpers: distances in ulp between `f32` values, and grids of `f32` inputs.

/// Maps `f32` bits onto a line where adjacent floats differ by 1 (−0 and +0 meet).
fn ordered(x: f32) -> i64 {
    let b = x.to_bits() as i32;
    (if b < 0 { i32::MIN - b } else { b }) as i64
}

/// How many floats apart `a` and `b` are.
pub(crate) fn ulp_diff(a: f32, b: f32) -> u64 {
    (ordered(a) - ordered(b)).unsigned_abs()
}

/// Every `stride`-th bit pattern of the non-negative floats in `[lo, hi]`, both signs.
pub(crate) fn grid(lo: f32, hi: f32, stride: u32) -> Vec<f32> {
    (lo.to_bits()..=hi.to_bits())
        .step_by(stride as usize)
        .map(f32::from_bits)
        .flat_map(|x| [x, -x])
        .collect()
}
