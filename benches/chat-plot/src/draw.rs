//! Drawing a chart as a PNG with `plotters`, in a compiled-in font.

use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

use crate::charts::{Chart, Data};

/// The font family every text of a chart uses.
const FONT: &str = "sans-serif";

/// The line colours, in series order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Makes DejaVu Sans the charts' font.
pub(crate) fn register_font() -> Result<(), String> {
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the compiled-in font does not load".to_owned())
}

/// An axis of real values from `low` to `high`, linear or logarithmic, with its
/// labels at `ticks`.
struct Axis {
    low: f64,
    high: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    /// Where `value` sits on the drawn scale.
    fn scaled(&self, value: f64) -> f64 {
        if self.log { value.log10() } else { value }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (low, high) = (self.scaled(self.low), self.scaled(self.high));
        let share = (self.scaled(*value) - low) / (high - low);
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Labels and bold lines only, at the chosen ticks.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.low..self.high
    }
}

/// The x axis of `chart` over `xs`: a little wider than the data, labelled at every
/// measured x on a logarithmic axis and at round values on a linear one.
fn x_axis(chart: &Chart, xs: &[f64]) -> Axis {
    let (low, high) = bounds(xs.iter().copied());
    if chart.x_log {
        let (low, high) = (low.max(f64::MIN_POSITIVE), high.max(f64::MIN_POSITIVE));
        let factor = if high > low {
            (high / low).powf(0.04)
        } else {
            2.0
        };
        let mut ticks = xs.to_vec();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        Axis {
            low: low / factor,
            high: high * factor,
            log: true,
            ticks,
        }
    } else {
        let low = low.min(0.0);
        let pad = if high > low { (high - low) * 0.04 } else { 0.5 };
        Axis {
            low: low - pad,
            high: high + pad,
            log: false,
            ticks: nice_ticks(low, high),
        }
    }
}

/// Draws `data` as `chart` into the PNG file `path`.
pub(crate) fn chart(chart: &Chart, data: &Data, path: &Path) -> Result<(), String> {
    let xs: Vec<f64> = data
        .lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|&(x, _)| x))
        .collect();
    let x_axis = x_axis(chart, &xs);
    let (x_low, x_high) = (x_axis.low, x_axis.high);
    let (_, y_high) = bounds(
        data.lines
            .iter()
            .flat_map(|(_, points)| points.iter().map(|&(_, y)| y))
            .chain(data.limits.iter().map(|&(_, y)| y)),
    );
    let y_high = if y_high > 0.0 { y_high * 1.15 } else { 1.0 };
    let y_axis = Axis {
        low: 0.0,
        high: y_high,
        log: false,
        ticks: nice_ticks(0.0, y_high),
    };

    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, (FONT, 24))
        .margin(18)
        .x_label_area_size(56)
        .y_label_area_size(80)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(|e| e.to_string())?;
    plot.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(WHITE)
        .x_label_formatter(&|&x| number(x))
        .y_label_formatter(&|&y| number(y))
        .draw()
        .map_err(|e| e.to_string())?;

    for (n, (label, points)) in data.lines.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let drawn = points.clone();
        plot.draw_series(LineSeries::new(drawn.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
        plot.draw_series(
            drawn
                .into_iter()
                .map(|at| Circle::new(at, 4, colour.filled())),
        )
        .map_err(|e| e.to_string())?;
    }
    for (label, y) in &data.limits {
        let grey = RGBColor(110, 110, 110);
        let across = vec![(x_low, *y), (x_high, *y)];
        plot.draw_series(DashedLineSeries::new(across, 8, 6, grey.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{label}: {}", number(*y)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(2))
            });
    }
    plot.configure_series_labels()
        .position(chart.legend.clone())
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// The lowest and highest of `values` (0, 1 when there are none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold(None, |range: Option<(f64, f64)>, v| match range {
            None => Some((v, v)),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        })
        .unwrap_or((0.0, 1.0))
}

/// Round tick values from `low` to `high`: steps of 1, 2 or 5 times a power of ten,
/// about six of them.
fn nice_ticks(low: f64, high: f64) -> Vec<f64> {
    let span = (high - low).max(f64::MIN_POSITIVE);
    let rough = span / 6.0;
    let power = 10_f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&step| step >= rough)
        .unwrap_or(10.0 * power);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A number as people read it on an axis: 2.5k, 10M, 0.85.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, unit) = if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e4 || (magnitude >= 1e3 && value.fract() == 0.0 && value % 100.0 == 0.0)
    {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if scaled.fract().abs() < 1e-9 || scaled.abs() >= 100.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 12.0),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
        );
        assert_eq!(nice_ticks(0.0, 45_000.0).get(1), Some(&10_000.0));
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(10_000_000.0), "10M");
        assert_eq!(number(2_500.0), "2.5k");
        assert_eq!(number(15_000.0), "15k");
        assert_eq!(number(256.0), "256");
        assert_eq!(number(0.85), "0.85");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(4_711.2), "4711");
    }

    #[test]
    fn a_chart_is_written_as_png() {
        register_font().unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!("chat-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("sends.png");
        let data = Data {
            lines: vec![("SQLite".to_owned(), vec![(1.0, 900.0), (64.0, 17_000.0)])],
            limits: vec![("raw fsync".to_owned(), 2_000.0)],
        };
        chart(&crate::charts::CHARTS[1], &data, &path).unwrap_or_else(|e| panic!("{e}"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
