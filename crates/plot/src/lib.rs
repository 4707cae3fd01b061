//! # descent-plot
//!
//! Pictures of a [`FlowReport`]: a bar chart of every parameter's gradient norm,
//! grouped by layer, on a log scale, with flagged layers shaded and labelled. Saved as
//! SVG ([`save_svg`]) or PNG ([`save_png`]), or drawn on any plotters backend
//! ([`draw`]).
//!
//! Also training curves ([`Curve`]: a loss or an accuracy against the step or the
//! epoch), several to a chart, saved by [`save_curves_svg`] and [`save_curves_png`].
//!
//! Through the facade this crate is `descent::plot`, behind the `descent` crate's
//! feature `plot`. It is a crate of its own so that the engine's crates never build
//! plotters and its font and image code. PNG files need this crate's feature `png`
//! (on by default); without it, pictures are SVG only. Nothing outside Rust is
//! needed: the text is drawn with the DejaVu Sans font that the `dejavu` crate embeds,
//! registered with plotters as its `sans-serif` family (see [`register_fonts`]).
//!
//! Files are written safely: the picture goes to a temporary file in the target's
//! directory, which is then renamed over the target, so a reader never sees half a
//! file and a failed write leaves an existing picture as it was.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let report: descent_backprop::FlowReport = todo!();
//! use descent_plot::{PlotOptions, save_svg};
//! let options = PlotOptions { title: "sigmoid MLP".into(), ..PlotOptions::default() };
//! save_svg(&report, "out/flow.svg", &options)?;
//! #[cfg(feature = "png")] // on by default
//! descent_plot::save_png(&report, "out/flow.png", &options)?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use descent_backprop::{Flag, FlowReport, format_number};
use plotters::coord::Shift;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a picture could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// plotters failed to draw or encode the picture.
    #[error("drawing the gradient flow chart: {0}")]
    Draw(String),
}

/// Size and title of a picture.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    /// The caption above the chart.
    pub title: String,
    /// Width in pixels (default 1000).
    pub width: u32,
    /// Height in pixels (default 560).
    pub height: u32,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            title: "Gradient flow".into(),
            width: 1000,
            height: 560,
        }
    }
}

/// Registers DejaVu Sans (regular and bold) as plotters' `sans-serif` family, once
/// per process. [`draw`], [`save_svg`] and [`save_png`] call it; call it yourself
/// before drawing text with plotters elsewhere in a program that uses this module's
/// font setup (plotters' `ab_glyph` text has no fonts until one is registered).
pub fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Both byte slices are valid TrueType fonts shipped by the crate; a failure
        // would only leave plotters without text, never draw wrong numbers.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
        // Layer names are drawn in a monospace font: no kerning, so `net.0` keeps its
        // dot at small sizes.
        let _ = plotters::style::register_font(
            "monospace",
            FontStyle::Normal,
            dejavu::sans_mono::regular(),
        );
    });
}

/// Bar colours, one per parameter kind (the name after the layer: `weight`, `bias`).
const SERIES: [RGBColor; 8] = [
    RGBColor(0x35, 0x6c, 0xb0), // blue
    RGBColor(0xe0, 0x8a, 0x2c), // orange
    RGBColor(0x3f, 0x9b, 0x5a), // green
    RGBColor(0x8a, 0x5a, 0xb5), // purple
    RGBColor(0x7f, 0x7f, 0x7f), // grey
    RGBColor(0xb5, 0x8f, 0x2e), // ochre
    RGBColor(0xc0, 0x39, 0x2b), // red
    RGBColor(0x1f, 0x8f, 0xa8), // teal
];

/// The colour of each flag's shading and label.
fn flag_colour(flag: Flag) -> RGBColor {
    match flag {
        Flag::Vanishing => RGBColor(0x1f, 0x8f, 0xa8), // teal
        Flag::Exploding => RGBColor(0xc6, 0x28, 0x28), // red
        Flag::NonFinite => RGBColor(0x9c, 0x27, 0xb0), // magenta
    }
}

/// Draws `report` on `area`: one group of bars per layer (one bar per parameter, its
/// gradient's L2 norm on a log scale), flagged layers shaded in their flag's colour and
/// labelled with the flag, and the thresholds a flag crossed as dashed lines. A zero
/// norm is marked `0` at the bottom of its group; a non-finite one is a bar to the top
/// of the chart. Does not call `present`.
///
/// # Errors
/// [`PlotError::Draw`] when plotters fails.
pub fn draw<DB: DrawingBackend>(
    report: &FlowReport,
    area: &DrawingArea<DB, Shift>,
    options: &PlotOptions,
) -> Result<(), PlotError> {
    register_fonts();
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| PlotError::Draw(e.to_string());
    area.fill(&WHITE).map_err(err)?;
    let layers = report.layers();
    let n = layers.len().max(1);

    // Parameter kinds in order of first appearance: one colour and legend entry each.
    let mut kinds: Vec<&str> = Vec::new();
    let kind_of = |name: &str, layer: &str| -> String {
        name.strip_prefix(layer)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(name)
            .to_owned()
    };
    let kind_names: Vec<String> = report
        .params()
        .iter()
        .map(|p| kind_of(&p.name, &layers[p.layer].name))
        .collect();
    for k in &kind_names {
        if !kinds.contains(&k.as_str()) {
            kinds.push(k);
        }
    }

    // The y range: whole decades, a decade below the smallest positive norm and above
    // the largest, stretched to show any threshold a layer crossed.
    let o = report.options();
    let mut lo = f64::INFINITY;
    let mut hi = 0.0f64;
    for p in report.params() {
        let v = p.stats.norm;
        if v.is_finite() && v > 0.0 {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    for l in report.flagged() {
        match l.stats.flag {
            Some(Flag::Vanishing) => {
                lo = lo.min(o.vanishing_below);
                hi = hi.max(o.vanishing_below);
            }
            Some(Flag::Exploding) => {
                lo = lo.min(o.exploding_above);
                hi = hi.max(o.exploding_above);
            }
            _ => {}
        }
    }
    if !lo.is_finite() || hi <= 0.0 {
        (lo, hi) = (1e-8, 1.0);
    }
    // A hair below the decade, so that plotters labels the bottom decade too.
    let lo = 10f64.powf(lo.log10().floor() - 1.0) * (1.0 - 1e-9);
    // Headroom of a decade for the flag labels.
    let hi = 10f64.powf(hi.log10().ceil() + 1.0);
    let decades = (hi / lo).log10().round() as usize;

    // x in thousandths of a layer (plotters formats labels of integer axes with key
    // points, not of float ones): layer i spans [1000·i, 1000·(i + 1)).
    let px = |x: f64| (x * 1000.0).round() as i32;
    let centers: Vec<i32> = (0..n).map(|i| px(i as f64 + 0.5)).collect();
    let names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    // The legend gets a strip of its own on the right, so it never hides a bar.
    let legend_width = 190.min(options.width / 3);
    // The title over the whole width, in a smaller font if it would not fit.
    let mut title_size = 24.0;
    while title_size > 12.0
        && area
            .estimate_text_size(
                &options.title,
                &TextStyle::from(("sans-serif", title_size).into_font()),
            )
            .is_ok_and(|(w, _)| w + 32 > options.width)
    {
        title_size -= 1.0;
    }
    let area = area
        .titled(&options.title, ("sans-serif", title_size))
        .map_err(err)?;
    let (plot_area, legend_area) = area.split_horizontally(options.width - legend_width);
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (0..px(n as f64)).with_key_points(centers),
            (lo..hi).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_labels(decades + 1)
        .x_label_formatter(&|x| {
            names
                .get((*x).max(0) as usize / 1000)
                .cloned()
                .unwrap_or_default()
        })
        .y_label_formatter(&|y| format_number(*y, 2, None))
        .y_desc("‖g‖ (L2 norm of the gradient)")
        .x_desc("layer")
        .label_style(("sans-serif", 14))
        .x_label_style(("monospace", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(err)?;

    // Flagged layers: a shaded band behind the bars.
    let bands = layers.iter().enumerate().filter_map(|(i, layer)| {
        let colour = flag_colour(layer.stats.flag?);
        let x = i as f64;
        Some(Rectangle::new(
            [(px(x + 0.03), lo), (px(x + 0.97), hi)],
            colour.mix(0.12).filled(),
        ))
    });
    chart.draw_series(bands).map_err(err)?;

    // The bars: one per parameter, coloured by its kind. A zero norm has no bar on a
    // log scale and a non-finite one no height: both are written at the bottom.
    let mut marks = Vec::new();
    let mut bars = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let slot_width = 0.8 / layer.params.len() as f64;
        for (j, &p) in layer.params.iter().enumerate() {
            let kind = kinds
                .iter()
                .position(|k| *k == kind_names[p])
                .expect("every kind is listed");
            let colour = SERIES[kind % SERIES.len()];
            let x0 = i as f64 + 0.1 + j as f64 * slot_width;
            let x1 = x0 + slot_width * 0.85;
            let norm = report.params()[p].stats.norm;
            if norm.is_finite() && norm > 0.0 {
                bars.push(Rectangle::new(
                    [(px(x0), lo), (px(x1), norm.min(hi))],
                    colour.filled(),
                ));
            } else {
                let text = format_number(norm, 2, None);
                marks.push((text, px((x0 + x1) / 2.0), colour));
            }
        }
    }
    chart.draw_series(bars).map_err(err)?;
    chart
        .draw_series(marks.into_iter().map(|(text, x, colour)| {
            Text::new(
                text,
                (x, lo * 10f64.powf(0.1)),
                ("sans-serif", 14)
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&colour)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))
        .map_err(err)?;

    // Thresholds that some layer crossed, as dashed lines over the bars.
    let crossed = |f: Flag| report.flagged().any(|l| l.stats.flag == Some(f));
    let thresholds: Vec<(Flag, f64, String)> = [
        (Flag::Vanishing, o.vanishing_below, "vanishing below"),
        (Flag::Exploding, o.exploding_above, "exploding above"),
    ]
    .into_iter()
    .filter(|&(flag, _, _)| crossed(flag))
    .map(|(flag, level, what)| {
        (
            flag,
            level,
            format!("{what} {}", format_number(level, 3, None)),
        )
    })
    .collect();
    for &(flag, level, _) in &thresholds {
        let colour = flag_colour(flag);
        let dashes = (0..n * 8).map(|k| {
            let x0 = k as f64 / 8.0;
            PathElement::new(
                vec![(px(x0), level), (px(x0 + 1.0 / 16.0), level)],
                colour.stroke_width(2),
            )
        });
        chart.draw_series(dashes).map_err(err)?;
    }

    // The flag's name on top of each flagged layer.
    let labels = layers.iter().enumerate().filter_map(|(i, layer)| {
        let flag = layer.stats.flag?;
        Some(Text::new(
            flag.as_str().to_owned(),
            (px(i as f64 + 0.5), hi / 10f64.powf(0.08)),
            ("sans-serif", 15)
                .into_font()
                .style(FontStyle::Bold)
                .color(&flag_colour(flag))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
    });
    chart.draw_series(labels).map_err(err)?;

    // The legend: parameter kinds, thresholds drawn, flags shown.
    let font = ("sans-serif", 14).into_font().color(&BLACK);
    let mut y = 30;
    let step = 24;
    let entry = |y: i32, text: &str| {
        legend_area.draw(&Text::new(
            text.to_owned(),
            (36, y),
            font.pos(Pos::new(HPos::Left, VPos::Center)),
        ))
    };
    for (k, kind) in kinds.iter().enumerate() {
        let colour = SERIES[k % SERIES.len()];
        legend_area
            .draw(&Rectangle::new([(10, y - 7), (26, y + 7)], colour.filled()))
            .map_err(err)?;
        entry(y, kind).map_err(err)?;
        y += step;
    }
    for (flag, _, text) in &thresholds {
        let style = flag_colour(*flag).stroke_width(2);
        legend_area
            .draw(&PathElement::new(vec![(8, y), (15, y)], style))
            .map_err(err)?;
        legend_area
            .draw(&PathElement::new(vec![(20, y), (27, y)], style))
            .map_err(err)?;
        entry(y, text).map_err(err)?;
        y += step;
    }
    for flag in [Flag::Vanishing, Flag::Exploding, Flag::NonFinite] {
        if !crossed(flag) {
            continue;
        }
        let colour = flag_colour(flag);
        legend_area
            .draw(&Rectangle::new(
                [(10, y - 7), (26, y + 7)],
                colour.mix(0.12).filled(),
            ))
            .map_err(err)?;
        legend_area
            .draw(&Rectangle::new(
                [(10, y - 7), (26, y + 7)],
                colour.stroke_width(1),
            ))
            .map_err(err)?;
        entry(y, &format!("{} layer", flag.as_str())).map_err(err)?;
        y += step;
    }
    if report.flagged().next().is_none() {
        entry(y, "no layer flagged").map_err(err)?;
    }
    Ok(())
}

/// The chart of `report` as an SVG document.
///
/// # Errors
/// [`PlotError::Draw`] when plotters fails.
pub fn to_svg(report: &FlowReport, options: &PlotOptions) -> Result<String, PlotError> {
    render_svg((options.width, options.height), |area| {
        draw(report, area, options)
    })
}

/// Draws a `size` picture with `paint` and returns it as an SVG document: the
/// in-memory counterpart of `write_png`.
fn render_svg(
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        paint(&area)?;
        area.present().map_err(|e| PlotError::Draw(e.to_string()))?;
    }
    Ok(svg)
}

/// Saves the chart of `report` as an SVG file at `path` (through a temporary file in
/// the same directory, renamed over `path`).
///
/// # Errors
/// [`PlotError::Io`] when the file cannot be written, [`PlotError::Draw`] when
/// plotters fails.
pub fn save_svg(
    report: &FlowReport,
    path: impl AsRef<Path>,
    options: &PlotOptions,
) -> Result<(), PlotError> {
    write_svg(path.as_ref(), &to_svg(report, options)?)
}

/// Writes `svg` to `path` through a temporary file in the same directory.
fn write_svg(path: &Path, svg: &str) -> Result<(), PlotError> {
    let tmp = temp_path(path, "svg");
    let io = |source| PlotError::Io {
        path: path.to_owned(),
        source,
    };
    if let Err(e) = std::fs::write(&tmp, svg) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Saves the chart of `report` as a PNG file at `path` (through a temporary file in
/// the same directory, renamed over `path`). Needs the feature `png`.
///
/// # Errors
/// [`PlotError::Io`] when the file cannot be written, [`PlotError::Draw`] when
/// plotters fails to draw or the image cannot be encoded.
#[cfg(feature = "png")]
pub fn save_png(
    report: &FlowReport,
    path: impl AsRef<Path>,
    options: &PlotOptions,
) -> Result<(), PlotError> {
    write_png(path.as_ref(), (options.width, options.height), |area| {
        draw(report, area, options)
    })
}

/// Draws a `size` picture with `paint` and writes it to `path` as a PNG, through a
/// temporary file in the same directory.
#[cfg(feature = "png")]
fn write_png(
    path: &Path,
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    // plotters draws into memory (8-bit RGB); `png` encodes it. plotters' own file
    // output would build the `image` crate for this one format.
    let (width, height) = size;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        paint(&area)?;
        area.present().map_err(|e| PlotError::Draw(e.to_string()))?;
    }
    let tmp = temp_path(path, "png");
    let io = |source| PlotError::Io {
        path: path.to_owned(),
        source,
    };
    let written = (|| {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        let mut encoder = png::Encoder::new(file, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let encode = |e: png::EncodingError| PlotError::Draw(format!("encoding a PNG: {e}"));
        let mut writer = encoder.write_header().map_err(encode)?;
        writer.write_image_data(&rgb).map_err(encode)?;
        writer.finish().map_err(encode)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// How a [`Curve`] is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CurveStyle {
    /// A solid line, 2 pixels wide.
    #[default]
    Line,
    /// A thin, pale line: for noisy data drawn under smoother curves (the loss of
    /// every mini-batch under the loss of every epoch).
    Faint,
    /// A solid line with a dot at every point: for a few points (one per epoch).
    Points,
}

/// One named line of a training chart: `(x, y)` points in order, such as the loss
/// against the step. Points whose `x` or `y` is not finite (a diverged loss) are left
/// out, and so are points with `y ≤ 0` on a log scale; the line joins the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curve {
    /// The name in the legend.
    pub name: String,
    /// The points, `(x, y)`, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// How the line is drawn.
    pub style: CurveStyle,
}

impl Curve {
    /// A [`CurveStyle::Line`] curve through `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            style: CurveStyle::Line,
        }
    }

    /// The curve `y[i]` against `x = i` (`0, 1, 2, …`): a value per step.
    pub fn from_values(name: impl Into<String>, values: &[f64]) -> Self {
        Self::new(
            name,
            values
                .iter()
                .enumerate()
                .map(|(i, &y)| (i as f64, y))
                .collect(),
        )
    }

    /// The same curve drawn in `style`.
    pub fn style(mut self, style: CurveStyle) -> Self {
        self.style = style;
        self
    }
}

/// Title, axis names, scale and size of a chart of [`Curve`]s.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveOptions {
    /// The caption above the chart.
    pub title: String,
    /// The x axis' name (default `"step"`).
    pub x_desc: String,
    /// The y axis' name (default `"loss"`).
    pub y_desc: String,
    /// A log scale for y (default `true`: a loss falls over decades).
    pub log_y: bool,
    /// Width in pixels (default 1000).
    pub width: u32,
    /// Height in pixels (default 560).
    pub height: u32,
}

impl Default for CurveOptions {
    fn default() -> Self {
        Self {
            title: "Training".into(),
            x_desc: "step".into(),
            y_desc: "loss".into(),
            log_y: true,
            width: 1000,
            height: 560,
        }
    }
}

/// Draws `curves` on `area`: one coloured line per curve, a legend in the upper right
/// corner, the y axis on a log scale if [`CurveOptions::log_y`]. Does not call
/// `present`.
///
/// # Errors
/// [`PlotError::Draw`] when plotters fails.
pub fn draw_curves<DB: DrawingBackend>(
    curves: &[Curve],
    area: &DrawingArea<DB, Shift>,
    options: &CurveOptions,
) -> Result<(), PlotError> {
    register_fonts();
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| PlotError::Draw(e.to_string());
    area.fill(&WHITE).map_err(err)?;
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!options.log_y || y > 0.0);
    let kept: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|c| c.points.iter().copied().filter(keep).collect())
        .collect();
    let all = || kept.iter().flatten();
    let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (mut y0, mut y1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.1, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let area = area
        .titled(&options.title, ("sans-serif", 24))
        .map_err(err)?;
    let mut builder = ChartBuilder::on(&area);
    builder
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72);
    let x_fmt = |x: &f64| format_number(*x, 3, Some(1e-12));
    // On a log scale every tick is positive: a tiny one is a value, not a rounded zero.
    let zero_below = (!options.log_y).then_some(1e-12);
    let y_fmt = |y: &f64| format_number(*y, 2, zero_below);
    if options.log_y {
        // Whole decades around the data, so the ticks land on round numbers.
        let lo = 10f64.powf(y0.log10().floor());
        let hi = 10f64.powf(y1.log10().ceil().max(lo.log10() + 1.0));
        // A hair below the decade, so that plotters labels the bottom decade too.
        let lo = lo * (1.0 - 1e-9);
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(options.x_desc.as_str())
            .y_desc(options.y_desc.as_str())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            // Enough labels for a range of many decades.
            .y_labels(24)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, curves, &kept)
    } else {
        let pad = if y1 > y0 { 0.05 * (y1 - y0) } else { 0.5 };
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(options.x_desc.as_str())
            .y_desc(options.y_desc.as_str())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, curves, &kept)
    }
}

/// The lines and the legend of [`draw_curves`], on a chart of either y scale.
fn draw_lines<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    curves: &[Curve],
    kept: &[Vec<(f64, f64)>],
) -> Result<(), PlotError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| PlotError::Draw(e.to_string());
    for (k, (curve, points)) in curves.iter().zip(kept).enumerate() {
        let colour = SERIES[k % SERIES.len()];
        let (line, width) = match curve.style {
            CurveStyle::Faint => (colour.mix(0.35), 1),
            CurveStyle::Line | CurveStyle::Points => (colour.mix(1.0), 2),
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                points.clone(),
                line.stroke_width(width),
            )))
            .map_err(err)?
            .label(curve.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], line.stroke_width(3))
            });
        if curve.style == CurveStyle::Points {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)
}

/// The chart of `curves` as an SVG document.
///
/// # Errors
/// [`PlotError::Draw`] when plotters fails.
pub fn curves_to_svg(curves: &[Curve], options: &CurveOptions) -> Result<String, PlotError> {
    render_svg((options.width, options.height), |area| {
        draw_curves(curves, area, options)
    })
}

/// Saves the chart of `curves` as an SVG file at `path` (through a temporary file in
/// the same directory, renamed over `path`).
///
/// # Errors
/// [`PlotError::Io`] when the file cannot be written, [`PlotError::Draw`] when
/// plotters fails.
pub fn save_curves_svg(
    curves: &[Curve],
    path: impl AsRef<Path>,
    options: &CurveOptions,
) -> Result<(), PlotError> {
    write_svg(path.as_ref(), &curves_to_svg(curves, options)?)
}

/// Saves the chart of `curves` as a PNG file at `path` (through a temporary file in
/// the same directory, renamed over `path`). Needs the feature `png`.
///
/// ```
/// use descent_plot::{Curve, CurveOptions, CurveStyle, save_curves_png};
/// let dir = std::env::temp_dir().join(format!("descent-curve-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let losses = [2.3, 1.1, 0.6, 0.35, 0.2, 0.15];
/// let curves = [
///     Curve::from_values("train loss", &losses).style(CurveStyle::Faint),
///     Curve::new("test loss", vec![(0.0, 2.3), (5.0, 0.25)]).style(CurveStyle::Points),
/// ];
/// let path = dir.join("loss.png");
/// save_curves_png(&curves, &path, &CurveOptions::default()).unwrap();
/// assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Errors
/// [`PlotError::Io`] when the file cannot be written, [`PlotError::Draw`] when
/// plotters fails to draw or the image cannot be encoded.
#[cfg(feature = "png")]
pub fn save_curves_png(
    curves: &[Curve],
    path: impl AsRef<Path>,
    options: &CurveOptions,
) -> Result<(), PlotError> {
    write_png(path.as_ref(), (options.width, options.height), |area| {
        draw_curves(curves, area, options)
    })
}

/// A temporary file name beside `path`, unique in the process:
/// `dir/.name.<pid>-<n>.tmp.<ext>`.
fn temp_path(path: &Path, ext: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "plot".into(), |n| n.to_string_lossy().into_owned());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp.{ext}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use descent_backprop::{FlowOptions, ParamGrads};
    use descent_tape::ParamStore;
    use descent_tensor::Tensor;

    fn report() -> FlowReport {
        let mut store = ParamStore::<f64>::new();
        let mut grads = ParamGrads::new();
        for (name, g) in [
            ("a.weight", 1e-9),
            ("a.bias", 0.0),
            ("b.weight", 0.5),
            ("b.bias", 0.1),
            ("c.weight", 5e3),
            ("d.weight", f64::NAN),
        ] {
            let id = store.insert(name, Tensor::from([1.0, 2.0]));
            grads.insert(id, Tensor::from([g, g]));
        }
        FlowReport::new(&grads, &store, FlowOptions::default())
    }

    #[test]
    fn the_svg_names_every_layer_and_flag() {
        let svg = to_svg(&report(), &PlotOptions::default()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        for text in [
            "vanishing",
            "exploding",
            "non-finite",
            "a",
            "d",
            "NaN",
            "vanishing below 1e-7",
            "exploding above 1000",
            "weight",
            "bias",
        ] {
            assert!(texts.contains(&text), "{text} missing");
        }
    }

    #[test]
    #[cfg(feature = "png")]
    fn saving_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("descent-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (svg, png) = (dir.join("flow.svg"), dir.join("flow.png"));
        std::fs::write(&svg, "old").unwrap();
        save_svg(&report(), &svg, &PlotOptions::default()).unwrap();
        save_png(&report(), &png, &PlotOptions::default()).unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["flow.png", "flow.svg"]);
        // A failed write leaves the old file alone.
        let missing = dir.join("no-such-dir").join("flow.svg");
        assert!(matches!(
            save_svg(&report(), &missing, &PlotOptions::default()),
            Err(PlotError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg(feature = "png")]
    fn curves_are_drawn_with_their_names_and_skip_points_they_cannot_show() {
        let curves = [
            Curve::from_values("batch loss", &[2.3, 1.0, f64::NAN, 0.5, 0.0, 0.2])
                .style(CurveStyle::Faint),
            Curve::new("test loss", vec![(0.0, 2.2), (5.0, 0.3)]).style(CurveStyle::Points),
            Curve::new("nothing to draw", vec![(f64::INFINITY, 1.0)]),
        ];
        let options = CurveOptions {
            title: "losses".into(),
            ..CurveOptions::default()
        };
        let svg = curves_to_svg(&curves, &options).unwrap();
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        for text in [
            "losses",
            "batch loss",
            "test loss",
            "nothing to draw",
            "step",
            "loss",
        ] {
            assert!(texts.contains(&text), "{text} missing");
        }
        // Log scale: whole decades from 0.1 to 10 are labelled.
        for label in ["0.1", "1", "10"] {
            assert!(texts.contains(&label), "y label {label} missing");
        }
        // Linear scale and no drawable point at all both draw.
        let linear = CurveOptions {
            log_y: false,
            ..CurveOptions::default()
        };
        curves_to_svg(&curves, &linear).unwrap();
        curves_to_svg(&[], &options).unwrap();

        let dir = std::env::temp_dir().join(format!("descent-curve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        save_curves_png(&curves, dir.join("loss.png"), &options).unwrap();
        save_curves_svg(&curves, dir.join("loss.svg"), &options).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["loss.png", "loss.svg"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
