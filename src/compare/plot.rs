//! PNG and SVG plots of training curves and descent paths, drawn with `plotters`.
//!
//! Text uses DejaVu Sans, embedded from `assets/fonts`, so drawing never reads system fonts.

use super::landscape::Landscape;
use super::RunResult;
use crate::methods::MethodSpec;
use crate::train::EpochRecord;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (960, 600);
/// Points on the shared x grid of each method's band.
const BAND_POINTS: usize = 120;
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Registers the embedded font once per process.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registration fails only for bytes that are not a font, and these are the fixed
        // DejaVu Sans file.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One curve per method: a mean line and a min–max band over seeds.
pub struct Curve {
    /// Legend label.
    pub name: String,
    /// (x, mean, min, max) on a grid where every seed has data.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// A plot: title, axis labels, curves and whether the y axis is logarithmic.
pub struct Figure {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Curves.
    pub curves: Vec<Curve>,
    /// Logarithmic y axis.
    pub log_y: bool,
}

/// Draws figures stacked vertically into one PNG, or SVG when `path` ends in `.svg`.
pub fn draw_panels(path: &Path, figures: &[Figure]) -> Result<()> {
    register_font();
    let size = (SIZE.0, SIZE.1 * figures.len().max(1) as u32);
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let result = if svg {
        draw_stacked(SVGBackend::new(path, size).into_drawing_area(), figures)
    } else {
        draw_stacked(BitMapBackend::new(path, size).into_drawing_area(), figures)
    };
    result.map_err(|e| Error::Data(format!("failed to draw {}: {e}", path.display())))
}

fn draw_stacked<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, figures: &[Figure]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let areas = root.split_evenly((figures.len().max(1), 1));
    for (area, figure) in areas.into_iter().zip(figures) {
        draw_curves(area, figure)?;
    }
    root.present()?;
    Ok(())
}

/// Draws the figure as `stem.png` and `stem.svg` and returns the PNG path.
pub fn draw_figure(stem: &Path, figure: &Figure) -> Result<PathBuf> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |p: &Path, e: Box<dyn std::error::Error>| {
        Error::Data(format!("failed to draw {}: {e}", p.display()))
    };
    draw_curves(BitMapBackend::new(&png, SIZE).into_drawing_area(), figure)
        .map_err(|e| fail(&png, e))?;
    draw_curves(SVGBackend::new(&svg, SIZE).into_drawing_area(), figure)
        .map_err(|e| fail(&svg, e))?;
    Ok(png)
}

fn draw_curves<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, figure: &Figure) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let all = figure.curves.iter().flat_map(|c| c.points.iter());
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, _, lo, hi) in all {
        if x.is_finite() && lo.is_finite() && hi.is_finite() {
            (x0, x1) = (x0.min(x), x1.max(x));
            (y0, y1) = (y0.min(lo), y1.max(hi));
        }
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 1e-3, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let floor = if figure.log_y {
        1e-12
    } else {
        f64::NEG_INFINITY
    };
    y0 = y0.max(floor);
    y1 = y1.max(y0 * 1.01 + 1e-12);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&figure.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    let style = |i: usize| COLORS[i % COLORS.len()];
    if figure.log_y {
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(&figure.x_label)
            .y_desc(&figure.y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        for (i, c) in figure.curves.iter().enumerate() {
            let color = style(i);
            let clamp = |v: f64| v.max(y0);
            let band = band_polygon(&c.points, clamp);
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.2))))?;
            let line = c.points.iter().map(|p| (p.0, clamp(p.1)));
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))?
                .label(&c.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    } else {
        let pad = (y1 - y0) * 0.05;
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc(&figure.x_label)
            .y_desc(&figure.y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        for (i, c) in figure.curves.iter().enumerate() {
            let color = style(i);
            let band = band_polygon(&c.points, |v| v);
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.2))))?;
            let line = c.points.iter().map(|p| (p.0, p.1));
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))?
                .label(&c.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Formats an axis tick with at most three decimals, or in scientific notation for very large
/// or small values.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// Returns the outline of a min–max band: the max edge forwards, then the min edge backwards.
fn band_polygon(points: &[(f64, f64, f64, f64)], clamp: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let upper = points.iter().map(|p| (p.0, clamp(p.3)));
    let lower = points.iter().rev().map(|p| (p.0, clamp(p.2)));
    upper.chain(lower).collect()
}

/// Builds a method's curve from its seeds' records, with `x` and `y` picking the coordinates.
/// The band covers the x range that every seed reaches. Each seed's value at a grid point is
/// its last record at or before that point.
pub fn seed_curve(
    name: &str,
    runs: &[&[EpochRecord]],
    x: impl Fn(&EpochRecord) -> f64,
    y: impl Fn(&EpochRecord) -> f64,
) -> Curve {
    let series: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            r.iter()
                .map(|e| (x(e), y(e)))
                .filter(|p| p.1.is_finite())
                .collect()
        })
        .filter(|s: &Vec<(f64, f64)>| !s.is_empty())
        .collect();
    if series.is_empty() {
        return Curve {
            name: name.to_string(),
            points: Vec::new(),
        };
    }
    let start = series
        .iter()
        .map(|s| s[0].0)
        .fold(f64::NEG_INFINITY, f64::max);
    let end = series
        .iter()
        .map(|s| s[s.len() - 1].0)
        .fold(f64::INFINITY, f64::min);
    let steps = if end > start { BAND_POINTS } else { 1 };
    let points = (0..steps)
        .map(|k| {
            let gx = if steps == 1 {
                start
            } else {
                start + (end - start) * k as f64 / (steps - 1) as f64
            };
            let values: Vec<f64> = series.iter().map(|s| value_at(s, gx)).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (gx, mean, lo, hi)
        })
        .collect();
    Curve {
        name: name.to_string(),
        points,
    }
}

/// Returns the value of the last point at or before `x`, or of the first point before the
/// series starts.
fn value_at(series: &[(f64, f64)], x: f64) -> f64 {
    let k = series.partition_point(|p| p.0 <= x);
    series[k.saturating_sub(1)].1
}

/// Draws the three comparison plots and returns their PNG paths.
pub fn draw_comparison(
    out: &Path,
    results: &[RunResult],
    methods: &[(String, MethodSpec)],
) -> Result<Vec<PathBuf>> {
    let per_method = |name: &str| -> Vec<&[EpochRecord]> {
        results
            .iter()
            .filter(|r| r.method == name)
            .map(|r| r.records.as_slice())
            .collect()
    };
    let curves = |x: &dyn Fn(&EpochRecord) -> f64, y: &dyn Fn(&EpochRecord) -> f64| {
        methods
            .iter()
            .map(|(name, _)| seed_curve(name, &per_method(name), x, y))
            .collect::<Vec<_>>()
    };
    let time = |e: &EpochRecord| e.elapsed_seconds;
    let evals = |e: &EpochRecord| e.evaluations as f64;
    let train_loss = |e: &EpochRecord| e.train_loss;
    let classify = results
        .iter()
        .all(|r| r.records.iter().all(|e| e.validation.accuracy.is_some()));
    let (metric_label, metric): (&str, &dyn Fn(&EpochRecord) -> f64) = if classify {
        ("validation accuracy", &|e: &EpochRecord| {
            e.validation.accuracy.unwrap_or(f64::NAN)
        })
    } else {
        ("validation loss", &|e: &EpochRecord| e.validation.loss)
    };
    let figures = [
        (
            "loss_vs_time",
            Figure {
                title: "Training loss against wall time (mean, min–max over seeds)".into(),
                x_label: "wall time (s)".into(),
                y_label: "training loss".into(),
                curves: curves(&time, &train_loss),
                log_y: true,
            },
        ),
        (
            "loss_vs_evaluations",
            Figure {
                title: "Training loss against evaluations (mean, min–max over seeds)".into(),
                x_label: "evaluations (forward-sample units)".into(),
                y_label: "training loss".into(),
                curves: curves(&evals, &train_loss),
                log_y: true,
            },
        ),
        (
            "metric_vs_time",
            Figure {
                title: format!("{metric_label} against wall time (mean, min–max over seeds)"),
                x_label: "wall time (s)".into(),
                y_label: metric_label.into(),
                curves: curves(&time, metric),
                log_y: !classify,
            },
        ),
    ];
    figures
        .iter()
        .map(|(stem, figure)| draw_figure(&out.join(stem), figure))
        .collect()
}

/// Draws the descent paths over a heat map of the loss as `descent_paths.png` and `.svg`.
pub fn draw_landscape(out: &Path, landscape: &Landscape) -> Result<PathBuf> {
    register_font();
    let png = out.join("descent_paths.png");
    let svg = out.join("descent_paths.svg");
    let size = (900, 760);
    let fail = |p: &Path, e: Box<dyn std::error::Error>| {
        Error::Data(format!("failed to draw {}: {e}", p.display()))
    };
    draw_paths(
        BitMapBackend::new(&png, size).into_drawing_area(),
        landscape,
    )
    .map_err(|e| fail(&png, e))?;
    draw_paths(SVGBackend::new(&svg, size).into_drawing_area(), landscape)
        .map_err(|e| fail(&svg, e))?;
    Ok(png)
}

fn draw_paths<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, l: &Landscape) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (main, bar) = root.split_horizontally(780);
    let finite = l
        .loss
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo.ln(), hi.ln().max(lo.ln() + 1e-9))
    } else {
        (0.0, 1.0)
    };
    let shade = |v: f64| {
        let t = if v.is_finite() && v > 0.0 {
            (v.ln() - lo) / (hi - lo)
        } else {
            1.0
        };
        viridis(t.clamp(0.0, 1.0))
    };
    let (xs, ys) = (&l.xs, &l.ys);
    let (dx, dy) = (xs[1] - xs[0], ys[1] - ys[0]);
    let mut chart = ChartBuilder::on(&main)
        .caption(
            format!(
                "Descent paths, seed 0 (plane captures {:.0}% of the movement)",
                100.0 * l.explained
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (xs[0] - dx / 2.0)..(xs[xs.len() - 1] + dx / 2.0),
            (ys[0] - dy / 2.0)..(ys[ys.len() - 1] + dy / 2.0),
        )?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("first principal direction")
        .y_desc("second principal direction")
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    let cells = ys.iter().enumerate().flat_map(|(j, &y)| {
        xs.iter().enumerate().map(move |(i, &x)| {
            let corners = [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)];
            Rectangle::new(corners, shade(l.loss[j][i]).filled())
        })
    });
    chart.draw_series(cells)?;
    for (i, (name, path)) in l.paths.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(path.iter().copied(), color.stroke_width(3)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        let markers = path.iter().map(|&p| Circle::new(p, 3, color.filled()));
        chart.draw_series(markers)?;
        if let Some(&end) = path.last() {
            chart.draw_series(std::iter::once(Cross::new(end, 7, BLACK.stroke_width(2))))?;
        }
    }
    if let Some(&start) = l.paths.first().and_then(|(_, p)| p.first()) {
        chart.draw_series(std::iter::once(Circle::new(
            start,
            7,
            WHITE.stroke_width(3),
        )))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    draw_colorbar(&bar, lo, hi)?;
    root.present()?;
    Ok(())
}

/// Draws a vertical colour scale for the loss, labelled in loss units with log-spaced colours.
fn draw_colorbar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, lo: f64, hi: f64) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .margin_top(50)
        .margin_bottom(57)
        .margin_right(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, (lo.exp()..hi.exp()).log_scale())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("training loss")
        .y_label_formatter(&tick)
        .y_label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    let steps = 100;
    let bands = (0..steps).map(|k| {
        let (a, b) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        let (va, vb) = ((lo + a * (hi - lo)).exp(), (lo + b * (hi - lo)).exp());
        Rectangle::new([(0.0, va), (1.0, vb)], viridis(a).filled())
    });
    chart.draw_series(bands)?;
    Ok(())
}

/// Maps `t` in [0, 1] to a colour of an approximate viridis map, interpolating linearly
/// between five of its stops.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let s = t * (STOPS.len() - 1) as f64;
    let k = (s.floor() as usize).min(STOPS.len() - 2);
    let f = s - k as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}
