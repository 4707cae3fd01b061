//! Stable text renders of a tape and its gradients, for snapshot tests.

use crate::Gradients;
use descent_tape::{NodeId, Tape};
use descent_tensor::{Float, View};
use std::fmt::Write;

/// How numbers are written in a render.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderOptions {
    /// Significant digits of every number.
    pub digits: usize,
    /// Values smaller in magnitude than this print as `0` (so that rounding noise at
    /// the level of `1e-17` does not make a snapshot flaky). `None` prints everything.
    pub zero_below: Option<f64>,
    /// Tensors with more elements than this print the first ones, then a summary.
    pub max_elements: usize,
}

impl Default for RenderOptions {
    /// 6 significant digits, magnitudes below `1e-12` as zero, up to 12 elements.
    fn default() -> Self {
        Self {
            digits: 6,
            zero_below: Some(1e-12),
            max_elements: 12,
        }
    }
}

/// Writes `x` with `digits` significant digits: plain notation for magnitudes in
/// `[1e-4, 1e6)`, scientific otherwise, trailing zeros trimmed, no negative zero.
///
/// ```
/// use descent_backprop::format_number;
/// assert_eq!(format_number(0.7615941559557649, 6, None), "0.761594");
/// assert_eq!(format_number(-2.0, 6, None), "-2");
/// assert_eq!(format_number(1.5e-9, 3, None), "1.5e-9");
/// assert_eq!(format_number(1.5e-9, 3, Some(1e-6)), "0");
/// assert_eq!(format_number(f64::NAN, 3, None), "NaN");
/// ```
pub fn format_number(x: f64, digits: usize, zero_below: Option<f64>) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 || zero_below.is_some_and(|t| x.abs() < t) {
        return "0".into();
    }
    let digits = digits.max(1);
    let mag = x.abs();
    let s = if (1e-4..1e6).contains(&mag) {
        let exp = mag.log10().floor() as i32;
        let decimals = (digits as i32 - 1 - exp).max(0) as usize;
        let s = format!("{x:.decimals$}");
        trim_zeros(&s)
    } else {
        let s = format!("{:.*e}", digits - 1, x);
        let (mant, exp) = s
            .split_once('e')
            .expect("scientific notation has an exponent");
        format!("{}e{exp}", trim_zeros(mant))
    };
    if s == "-0" { "0".into() } else { s }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

fn format_view<T: Float>(v: View<'_, T>, o: &RenderOptions) -> String {
    let num = |x: T| format_number(x.as_f64(), o.digits, o.zero_below);
    if v.ndim() == 0 {
        return num(v.item());
    }
    let data = v.data();
    let shown: Vec<String> = data.iter().take(o.max_elements).map(|&x| num(x)).collect();
    if data.len() <= o.max_elements {
        format!("[{}]", shown.join(", "))
    } else {
        let sum: f64 = data.iter().map(|x| x.as_f64()).sum();
        format!(
            "[{}, … {} more; sum {}]",
            shown.join(", "),
            data.len() - o.max_elements,
            num(T::from_f64(sum))
        )
    }
}

/// Renders every node of `tape`, one per line: id, op with attributes, operands, name
/// and scope, shape, value and (with `grads`) gradient. The text has no addresses and
/// no hash order, so it is stable across runs and machines and suits
/// `insta::assert_snapshot!`.
///
/// ```
/// use descent_backprop::{render, Backward, RenderOptions};
/// let tape = descent_tape::Tape::<f64>::new();
/// let x = tape.var(0.5).named("x");
/// let y = x.tanh();
/// let grads = y.backward();
/// let text = render(&tape, Some(&grads), &RenderOptions::default());
/// assert_eq!(text, "\
/// #0 var 'x' [] value 0.5 grad 0.786448
/// #1 tanh(#0) [] value 0.462117 grad 1
/// ");
/// ```
pub fn render<T: Float>(
    tape: &Tape<T>,
    grads: Option<&Gradients<T>>,
    options: &RenderOptions,
) -> String {
    let read = tape.read();
    let mut out = String::new();
    for i in 0..read.nodes().len() {
        let id = NodeId::from_index(i);
        let _ = read.write_node_head(id, &mut out);
        let _ = write!(out, " value {}", format_view(read.value(id), options));
        if let Some(g) = grads {
            match g.by_id(id) {
                Some(v) => {
                    let _ = write!(out, " grad {}", format_view(v, options));
                }
                None => out.push_str(" grad -"),
            }
        }
        out.push('\n');
    }
    out
}
