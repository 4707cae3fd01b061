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

/// The largest distance in ulp of `got[i]` from `want(xs[i])` (computed in `f64`,
/// rounded to `f32`), and the `x` where it occurs.
pub(crate) fn worst_ulp(xs: &[f32], got: &[f32], want: impl Fn(f64) -> f64) -> (u64, f32) {
    let mut worst = (0, 0.0f32);
    for (&x, &y) in xs.iter().zip(got) {
        let d = ulp_diff(y, want(f64::from(x)) as f32);
        if d > worst.0 {
            worst = (d, x);
        }
    }
    worst
}

/// Prints `worst` (from [`worst_ulp`] over `count` values) and asserts it is at most
/// `limit` ulp.
pub(crate) fn assert_within(what: &str, count: usize, (ulp, at): (u64, f32), limit: u64) {
    println!("{what}: {count} values, max {ulp} ulp at x = {at:e}");
    assert!(ulp <= limit, "{what}: {ulp} ulp at x = {at:e}");
}

/// The largest of `max_ulp` over every float of magnitude at most `hi`, both signs,
/// taken in slices of 2^22 (so that memory stays small).
pub(crate) fn worst_over_all(hi: f32, max_ulp: impl Fn(&[f32]) -> (u64, f32)) -> (u64, f32) {
    let hi = hi.to_bits();
    let mut worst = (0, 0.0f32);
    let mut lo = 0u32;
    while lo <= hi {
        let end = (lo + (1 << 22)).min(hi + 1);
        let xs: Vec<f32> = (lo..end)
            .map(f32::from_bits)
            .flat_map(|x| [x, -x])
            .collect();
        let w = max_ulp(&xs);
        if w.0 > worst.0 {
            worst = w;
        }
        lo = end;
    }
    worst
}
