//! Gradient flow: per layer and per parameter, how large the gradients are, how large
//! they are next to the parameters, and which layers' gradients vanish, explode or are
//! not finite.
//!
//! A parameter's **layer** is its [`ParamStore`] name up to the last `.`:
//! `"layer1.weight"` and `"layer1.bias"` form layer `"layer1"`, `"enc.0.weight"` layer
//! `"enc.0"` (the names `descent-nn`'s layers give their parameters). A name without
//! a `.` is a layer of its own. Layers and parameters are listed in the store's
//! insertion order (a layer where its first parameter is), so the report reads input
//! to output for a model built input first.

use crate::{Gradients, ParamGrads, format_number};
use descent_tape::norm::{l2_norm, norm_of_norms};
use descent_tape::{ParamId, ParamStore};
use descent_tensor::{Float, ShapeDisplay};
use std::fmt::{self, Write};

/// What is wrong with a gradient. At most one flag applies: a non-finite element
/// takes precedence over the norm's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// The gradient's L2 norm is below [`FlowOptions::vanishing_below`] (a gradient of
    /// exactly zero, for a parameter no gradient reached, included).
    Vanishing,
    /// The gradient's L2 norm is above [`FlowOptions::exploding_above`].
    Exploding,
    /// Some gradient element is NaN or infinite.
    NonFinite,
}

impl Flag {
    /// The flag as written in reports: `vanishing`, `exploding`, `non-finite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Vanishing => "vanishing",
            Flag::Exploding => "exploding",
            Flag::NonFinite => "non-finite",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Thresholds of a [`FlowReport`] and how it writes numbers.
///
/// ```
/// use descent_backprop::FlowOptions;
/// let strict = FlowOptions { vanishing_below: 1e-5, ..FlowOptions::default() };
/// assert_eq!(strict.exploding_above, 1e3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowOptions {
    /// A gradient whose L2 norm is below this is flagged [`Flag::Vanishing`]
    /// (default `1e-7`).
    pub vanishing_below: f64,
    /// A gradient whose L2 norm is above this is flagged [`Flag::Exploding`]
    /// (default `1e3`).
    pub exploding_above: f64,
    /// Significant digits of every number in [`FlowReport::render`] (default 4).
    pub digits: usize,
}

impl Default for FlowOptions {
    fn default() -> Self {
        Self {
            vanishing_below: 1e-7,
            exploding_above: 1e3,
            digits: 4,
        }
    }
}

/// Sizes of a gradient `g` (of one parameter, or of a whole layer's parameters taken
/// together) and of the parameter `p` it belongs to. Computed in `f64`, summed in order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowStats {
    /// Number of elements.
    pub elements: usize,
    /// Mean of `|g|` over the elements (0 for no element).
    pub mean_abs: f64,
    /// Largest `|g|` (NaN if any element is NaN).
    pub max_abs: f64,
    /// L2 norm `‖g‖ = √(Σ g²)`.
    pub norm: f64,
    /// L2 norm `‖p‖` of the parameter's current value in the store.
    pub param_norm: f64,
    /// `‖g‖ / ‖p‖`, the relative size of a plain gradient step; `None` when `‖p‖` is 0
    /// (a zero-initialised bias).
    pub ratio: Option<f64>,
    /// What is wrong with the gradient, if anything.
    pub flag: Option<Flag>,
}

impl FlowStats {
    fn finish(
        elements: usize,
        sum_abs: f64,
        max_abs: f64,
        norm: f64,
        param_norm: f64,
        all_finite: bool,
        options: &FlowOptions,
    ) -> Self {
        let flag = if !all_finite {
            Some(Flag::NonFinite)
        } else if norm < options.vanishing_below {
            Some(Flag::Vanishing)
        } else if norm > options.exploding_above {
            Some(Flag::Exploding)
        } else {
            None
        };
        Self {
            elements,
            mean_abs: if elements == 0 {
                0.0
            } else {
                sum_abs / elements as f64
            },
            max_abs,
            norm,
            param_norm,
            ratio: (param_norm != 0.0).then(|| norm / param_norm),
            flag,
        }
    }
}

/// One parameter's line of a [`FlowReport`].
#[derive(Clone, Debug, PartialEq)]
pub struct ParamFlow {
    /// The parameter.
    pub id: ParamId,
    /// Its name in the store (`"layer1.weight"`).
    pub name: String,
    /// Index of its layer in [`FlowReport::layers`].
    pub layer: usize,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its gradient's sizes.
    pub stats: FlowStats,
}

/// One layer's line of a [`FlowReport`]: its parameters' gradients taken together
/// (`‖g‖` is the L2 norm over all of their elements, `‖p‖` likewise).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerFlow {
    /// The layer's name: its parameters' names up to the last `.`.
    pub name: String,
    /// Indices of its parameters in [`FlowReport::params`], in store order.
    pub params: Vec<usize>,
    /// The sizes of its parameters' gradients together. The flag is
    /// [`Flag::NonFinite`] if any parameter's is, else it is set by the layer's norm.
    pub stats: FlowStats,
}

/// How the gradient flows through a model: for each layer and each of its parameters,
/// mean and largest `|g|`, `‖g‖`, `‖p‖` and `‖g‖/‖p‖`, with layers flagged where the
/// gradient vanishes, explodes or is not finite (see [`FlowOptions`]).
///
/// A parameter's **layer** is its [`ParamStore`] name up to the last `.` (see
/// [`layer_of`]): `"layer1.weight"` and `"layer1.bias"` form layer `"layer1"`,
/// `"enc.0.weight"` layer `"enc.0"` (the names `descent-nn`'s layers give their
/// parameters); a name without a `.` is a layer of its own. Layers and parameters are
/// listed in the store's insertion order (a layer where its first parameter is), so
/// the report reads input to output for a model built input first.
///
/// Its text form ([`FlowReport::render`], also its `Display`) writes every number
/// with a fixed number of significant digits and lists everything in store order, so
/// it suits `insta::assert_snapshot!`.
///
/// ```
/// use descent_backprop::{Backward, Flag, FlowOptions, FlowReport};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// let mut store = ParamStore::<f64>::new();
/// let w1 = store.insert("layer1.weight", Tensor::from([[0.5, -1.0], [2.0, 0.25]]));
/// let b1 = store.insert("layer1.bias", Tensor::from([0.0, 0.0]));
/// let w2 = store.insert("layer2.weight", Tensor::from([[1e-9], [-1e-9]]));
///
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from([[1.0, 2.0]]));
/// let h = (x.matmul(tape.param(&store, w1)) + tape.param(&store, b1)).tanh();
/// let loss = h.matmul(tape.param(&store, w2)).sum();
/// let grads = loss.backward();
///
/// let report = FlowReport::from_gradients(&grads, &store, FlowOptions::default());
/// assert_eq!(report.layers().len(), 2);
/// let [layer1, layer2] = report.layers() else { unreachable!() };
/// assert_eq!(layer1.name, "layer1");
/// // The tiny second-layer weight starves the first layer of gradient.
/// assert_eq!(layer1.stats.flag, Some(Flag::Vanishing));
/// assert_eq!(layer2.stats.flag, None);
/// assert_eq!(report.params()[1].stats.ratio, None); // ‖bias‖ = 0
/// assert!(report.render().starts_with("gradient flow: 2 layers, 3 parameters"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FlowReport {
    layers: Vec<LayerFlow>,
    params: Vec<ParamFlow>,
    options: FlowOptions,
}

impl FlowReport {
    /// The report for the parameters of `store` that have a gradient in `grads`.
    /// Parameters of the store without one are left out, and so are gradients of ids
    /// that are not in the store.
    pub fn new<T: Float>(
        grads: &ParamGrads<T>,
        store: &ParamStore<T>,
        options: FlowOptions,
    ) -> Self {
        Self::build(store, |id| grads.get(id).map(|g| g.data()), options)
    }

    /// The report for the parameters bound on the tape `grads` was computed on (with
    /// [`descent_tape::Tape::param`]): a bound parameter that no gradient reached has
    /// a zero gradient, and is flagged [`Flag::Vanishing`]. Parameters of `store` that
    /// were not bound are left out.
    pub fn from_gradients<T: Float>(
        grads: &Gradients<T>,
        store: &ParamStore<T>,
        options: FlowOptions,
    ) -> Self {
        let bound: Vec<_> = grads.params().collect();
        Self::build(
            store,
            |id| bound.iter().find(|(p, _)| *p == id).map(|(_, v)| v.data()),
            options,
        )
    }

    fn build<'g, T: Float + 'g>(
        store: &ParamStore<T>,
        grad_of: impl Fn(ParamId) -> Option<&'g [T]>,
        options: FlowOptions,
    ) -> Self {
        // Per layer: parameter indices and running sums (Σ|g|, max |g|, finite); the
        // layer's norms are the norms of its parameters' norms (`descent_tape::norm`).
        struct Acc {
            name: String,
            params: Vec<usize>,
            elements: usize,
            sum_abs: f64,
            max_abs: f64,
            finite: bool,
        }
        let mut accs: Vec<Acc> = Vec::new();
        let mut params = Vec::new();
        for (id, name, value) in store.iter() {
            let Some(g) = grad_of(id) else { continue };
            let layer_name = layer_of(name);
            let layer = match accs.iter().position(|a| a.name == layer_name) {
                Some(i) => i,
                None => {
                    accs.push(Acc {
                        name: layer_name.to_owned(),
                        params: Vec::new(),
                        elements: 0,
                        sum_abs: 0.0,
                        max_abs: 0.0,
                        finite: true,
                    });
                    accs.len() - 1
                }
            };
            let (mut sum_abs, mut max_abs, mut finite) = (0.0f64, 0.0f64, true);
            for &x in g {
                let x = x.as_f64();
                finite &= x.is_finite();
                sum_abs += x.abs();
                max_abs = nan_max(max_abs, x.abs());
            }
            let stats = FlowStats::finish(
                g.len(),
                sum_abs,
                max_abs,
                l2_norm(g),
                l2_norm(value.data()),
                finite,
                &options,
            );
            let acc = &mut accs[layer];
            acc.params.push(params.len());
            acc.elements += g.len();
            acc.sum_abs += sum_abs;
            acc.max_abs = nan_max(acc.max_abs, max_abs);
            acc.finite &= finite;
            params.push(ParamFlow {
                id,
                name: name.to_owned(),
                layer,
                shape: value.shape().to_vec(),
                stats,
            });
        }
        let layers = accs
            .into_iter()
            .map(|a| LayerFlow {
                stats: FlowStats::finish(
                    a.elements,
                    a.sum_abs,
                    a.max_abs,
                    norm_of_norms(a.params.iter().map(|&i| params[i].stats.norm)),
                    norm_of_norms(a.params.iter().map(|&i| params[i].stats.param_norm)),
                    a.finite,
                    &options,
                ),
                name: a.name,
                params: a.params,
            })
            .collect();
        Self {
            layers,
            params,
            options,
        }
    }

    /// The layers, in store order.
    pub fn layers(&self) -> &[LayerFlow] {
        &self.layers
    }

    /// The parameters, in store order.
    pub fn params(&self) -> &[ParamFlow] {
        &self.params
    }

    /// The parameters of `layer`, in store order.
    pub fn params_of<'a>(
        &'a self,
        layer: &'a LayerFlow,
    ) -> impl Iterator<Item = &'a ParamFlow> + 'a {
        layer.params.iter().map(|&i| &self.params[i])
    }

    /// The layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerFlow> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The layers with a flag, in store order.
    pub fn flagged(&self) -> impl Iterator<Item = &LayerFlow> + '_ {
        self.layers.iter().filter(|l| l.stats.flag.is_some())
    }

    /// The options the report was made with.
    pub fn options(&self) -> &FlowOptions {
        &self.options
    }

    /// The report as a text table: a heading, one line per layer followed by one
    /// indented line per parameter (named without the layer's prefix), and a closing
    /// line naming the flagged layers. Columns are aligned, lines carry no trailing
    /// spaces, numbers have [`FlowOptions::digits`] significant digits; a ratio with
    /// `‖p‖ = 0` prints as `-`.
    pub fn render(&self) -> String {
        let o = &self.options;
        let num = |x: f64| format_number(x, o.digits, None);
        let cells = |stats: &FlowStats| -> [String; 6] {
            [
                num(stats.mean_abs),
                num(stats.max_abs),
                num(stats.norm),
                num(stats.param_norm),
                stats.ratio.map_or_else(|| "-".to_owned(), num),
                stats
                    .flag
                    .map_or_else(String::new, |f| f.as_str().to_uppercase()),
            ]
        };
        let mut rows: Vec<[String; 8]> = vec![[
            "layer / parameter".into(),
            "shape".into(),
            "mean |g|".into(),
            "max |g|".into(),
            "‖g‖".into(),
            "‖p‖".into(),
            "‖g‖/‖p‖".into(),
            "flag".into(),
        ]];
        for layer in &self.layers {
            let [a, b, c, d, e, f] = cells(&layer.stats);
            rows.push([layer.name.clone(), String::new(), a, b, c, d, e, f]);
            for p in self.params_of(layer) {
                let short = p
                    .name
                    .strip_prefix(layer.name.as_str())
                    .and_then(|s| s.strip_prefix('.'))
                    .unwrap_or(&p.name);
                let [a, b, c, d, e, f] = cells(&p.stats);
                rows.push([
                    format!("  {short}"),
                    ShapeDisplay(&p.shape).to_string(),
                    a,
                    b,
                    c,
                    d,
                    e,
                    f.to_lowercase(),
                ]);
            }
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "gradient flow: {}, {} (vanishing: ‖g‖ < {}, exploding: ‖g‖ > {})",
            count(self.layers.len(), "layer"),
            count(self.params.len(), "parameter"),
            num(o.vanishing_below),
            num(o.exploding_above),
        );
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let flagged: Vec<String> = self
            .flagged()
            .map(|l| format!("{} ({})", l.name, l.stats.flag.expect("flagged")))
            .collect();
        if flagged.is_empty() {
            out.push_str("flagged: none\n");
        } else {
            let _ = writeln!(out, "flagged: {}", flagged.join(", "));
        }
        out
    }
}

impl fmt::Display for FlowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl<T: Float> Gradients<T> {
    /// The [`FlowReport`] of the parameters bound on this tape, with default options:
    /// shorthand for [`FlowReport::from_gradients`].
    pub fn flow_report(&self, store: &ParamStore<T>) -> FlowReport {
        FlowReport::from_gradients(self, store, FlowOptions::default())
    }
}

/// The layer of a parameter name: everything before the last `.`, or the whole name.
///
/// ```
/// use descent_backprop::layer_of;
/// assert_eq!(layer_of("layer1.weight"), "layer1");
/// assert_eq!(layer_of("enc.0.bias"), "enc.0");
/// assert_eq!(layer_of("w"), "w");
/// ```
pub fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(layer, _)| layer)
}

/// `1 layer`, `2 layers`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The larger of two magnitudes, NaN if either is.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use descent_tensor::Tensor;

    /// A store with one parameter per `(name, value)` and gradients `grads` for them.
    fn report(entries: &[(&str, &[f64], &[f64])], options: FlowOptions) -> FlowReport {
        let mut store = ParamStore::<f64>::new();
        let mut grads = ParamGrads::new();
        for &(name, value, grad) in entries {
            let id = store.insert(name, Tensor::new(&[value.len()], value.to_vec()).unwrap());
            grads.insert(id, Tensor::new(&[grad.len()], grad.to_vec()).unwrap());
        }
        FlowReport::new(&grads, &store, options)
    }

    fn flag(entries: &[(&str, &[f64], &[f64])]) -> Option<Flag> {
        report(entries, FlowOptions::default()).layers()[0]
            .stats
            .flag
    }

    #[test]
    fn healthy_gradients_have_no_flag() {
        assert_eq!(flag(&[("l.w", &[1.0], &[0.5])]), None);
        assert_eq!(
            flag(&[("l.w", &[1.0], &[1e-7])]),
            None,
            "the threshold itself is not below"
        );
        assert_eq!(
            flag(&[("l.w", &[1.0], &[1e3])]),
            None,
            "the threshold itself is not above"
        );
    }

    #[test]
    fn small_norms_vanish() {
        assert_eq!(flag(&[("l.w", &[1.0], &[9e-8])]), Some(Flag::Vanishing));
        assert_eq!(flag(&[("l.w", &[1.0], &[0.0, 0.0])]), Some(Flag::Vanishing));
        assert_eq!(
            flag(&[("l.w", &[1.0], &[-5e-8, 5e-8])]),
            Some(Flag::Vanishing)
        );
    }

    #[test]
    fn large_norms_explode() {
        assert_eq!(flag(&[("l.w", &[1.0], &[-1001.0])]), Some(Flag::Exploding));
        // Each element is below the threshold; the norm is above it.
        assert_eq!(
            flag(&[("l.w", &[1.0], &[800.0, 800.0])]),
            Some(Flag::Exploding)
        );
    }

    #[test]
    fn non_finite_elements_take_precedence() {
        assert_eq!(
            flag(&[("l.w", &[1.0], &[f64::NAN, 0.0])]),
            Some(Flag::NonFinite)
        );
        assert_eq!(
            flag(&[("l.w", &[1.0], &[f64::INFINITY])]),
            Some(Flag::NonFinite)
        );
        let r = report(&[("l.w", &[1.0], &[f64::NAN, 5.0])], FlowOptions::default());
        assert!(r.params()[0].stats.max_abs.is_nan());
        assert!(r.layers()[0].stats.norm.is_nan());
    }

    #[test]
    fn thresholds_are_configurable() {
        let options = FlowOptions {
            vanishing_below: 1e-2,
            exploding_above: 10.0,
            ..FlowOptions::default()
        };
        let r = report(
            &[
                ("a.w", &[1.0], &[5e-3]),
                ("b.w", &[1.0], &[5.0]),
                ("c.w", &[1.0], &[11.0]),
            ],
            options,
        );
        let flags: Vec<_> = r.layers().iter().map(|l| l.stats.flag).collect();
        assert_eq!(flags, [Some(Flag::Vanishing), None, Some(Flag::Exploding)]);
        assert_eq!(
            r.flagged().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
    }

    #[test]
    fn a_layer_is_flagged_by_its_own_norm_or_any_non_finite_parameter() {
        // The bias vanishes on its own, but the layer as a whole does not.
        let r = report(
            &[
                ("l.weight", &[1.0, 1.0], &[0.3, 0.4]),
                ("l.bias", &[0.0], &[1e-9]),
            ],
            FlowOptions::default(),
        );
        assert_eq!(r.params()[1].stats.flag, Some(Flag::Vanishing));
        assert_eq!(r.layers()[0].stats.flag, None);
        let r = report(
            &[
                ("l.weight", &[1.0], &[0.3]),
                ("l.bias", &[0.0], &[f64::NAN]),
            ],
            FlowOptions::default(),
        );
        assert_eq!(r.layers()[0].stats.flag, Some(Flag::NonFinite));
    }

    #[test]
    fn stats_and_grouping() {
        let r = report(
            &[
                ("enc.0.weight", &[3.0, 4.0], &[-3.0, 4.0]),
                ("dec.weight", &[1.0], &[2.0]),
                ("enc.0.bias", &[0.0, 0.0], &[0.0, 0.0]),
                ("scale", &[2.0], &[1.0]),
            ],
            FlowOptions::default(),
        );
        let names: Vec<_> = r.layers().iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["enc.0", "dec", "scale"]);
        let enc = r.layer("enc.0").unwrap();
        assert_eq!(enc.params, [0, 2]);
        assert_eq!(enc.stats.elements, 4);
        assert_eq!(enc.stats.mean_abs, 7.0 / 4.0);
        assert_eq!(enc.stats.max_abs, 4.0);
        assert_eq!(enc.stats.norm, 5.0);
        assert_eq!(enc.stats.param_norm, 5.0);
        assert_eq!(enc.stats.ratio, Some(1.0));
        assert_eq!(r.params()[2].stats.ratio, None, "‖p‖ = 0 has no ratio");
        assert_eq!(r.params()[2].layer, 0);
        assert_eq!(r.layer("scale").unwrap().stats.ratio, Some(0.5));
    }

    #[test]
    fn parameters_without_a_gradient_and_foreign_ids_are_left_out() {
        let mut store = ParamStore::<f64>::new();
        let a = store.insert("a.w", Tensor::from([1.0]));
        store.insert("b.w", Tensor::from([1.0]));
        let mut other = ParamStore::<f64>::new();
        let foreign = other.insert("c.w", Tensor::from([1.0]));
        let grads: ParamGrads<f64> = [(a, Tensor::from([1.0])), (foreign, Tensor::from([1.0]))]
            .into_iter()
            .collect();
        let r = FlowReport::new(&grads, &store, FlowOptions::default());
        assert_eq!(r.params().len(), 1);
        assert_eq!(r.params()[0].name, "a.w");
    }
}
