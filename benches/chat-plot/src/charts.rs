//! The four curves of `docs/PERFORMANCE.md`: what each plots from which figures.

use plotters::chart::SeriesLabelPosition;
use serde_json::{Map, Value};

use crate::runs::{Kind, Run};

/// The values measured at one x, before their median is taken.
type Gathered = (f64, Vec<f64>);

/// Figures of one report → the value plotted.
type Pick = fn(&Map<String, Value>) -> Option<f64>;

/// One chart.
pub(crate) struct Chart {
    /// The `curve` of its runs, and its file name.
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    pub(crate) x_label: &'static str,
    pub(crate) y_label: &'static str,
    /// A logarithmic x axis (sizes that grow by factors).
    pub(crate) x_log: bool,
    /// The lines each point run gives: a suffix to its series name and the figure.
    lines: &'static [(&'static str, Pick)],
    /// The figure a limit run gives, drawn across the chart.
    limit: Option<Pick>,
    /// Where the legend sits, clear of the lines.
    pub(crate) legend: SeriesLabelPosition,
}

/// The values of a chart, ready to draw.
pub(crate) struct Data {
    /// Each line's label and its points, sorted by x; a point is the median of the
    /// runs at that x.
    pub(crate) lines: Vec<(String, Vec<(f64, f64)>)>,
    /// Each limit's label and median value.
    pub(crate) limits: Vec<(String, f64)>,
}

fn figure(results: &Map<String, Value>, name: &str) -> Option<f64> {
    results.get(name)?.as_f64()
}

/// The growth of the server's memory over the run, in MiB.
fn rss_growth_mib(results: &Map<String, Value>) -> Option<f64> {
    let before = figure(results, "server RSS before")?;
    let after = figure(results, "server RSS after")?;
    Some((after - before) / 1024.0)
}

/// The charts, in the order `docs/PERFORMANCE.md` shows them.
pub(crate) const CHARTS: &[Chart] = &[
    Chart {
        name: "delivery",
        title: "Delivery: send to arrival against connected receivers",
        x_label: "receivers connected",
        y_label: "latency, ms",
        x_log: false,
        lines: &[
            (" p99", |r| figure(r, "latency p99")),
            (" p50", |r| figure(r, "latency p50")),
        ],
        limit: None,
        legend: SeriesLabelPosition::UpperLeft,
    },
    Chart {
        name: "sends",
        title: "Durable sends per second against concurrent senders",
        x_label: "concurrent senders (closed loop)",
        y_label: "requests per second",
        x_log: true,
        // `send` reports sends; `baseline` (the bare handler) reports requests.
        lines: &[("", |r| figure(r, "sends").or_else(|| figure(r, "requests")))],
        limit: Some(|r| figure(r, "fsyncs per second")),
        legend: SeriesLabelPosition::MiddleRight,
    },
    Chart {
        name: "history",
        title: "History page latency against messages stored",
        x_label: "messages in the table",
        y_label: "p99 latency, ms",
        x_log: true,
        lines: &[
            (", latest page", |r| figure(r, "latest page p99")),
            (", middle cursor page", |r| {
                figure(r, "middle cursor page p99")
            }),
            (", page 1 with total", |r| {
                figure(r, "page 1 with total p99")
            }),
        ],
        limit: None,
        legend: SeriesLabelPosition::UpperLeft,
    },
    Chart {
        name: "memory",
        title: "Server memory against idle connections",
        x_label: "idle connections",
        y_label: "server RSS growth, MiB",
        x_log: false,
        lines: &[("", rss_growth_mib)],
        limit: None,
        legend: SeriesLabelPosition::UpperLeft,
    },
];

/// The lines and limits of `chart` from `runs`.
pub(crate) fn collect(chart: &Chart, runs: &[Run]) -> Data {
    let mut lines: Vec<(String, Vec<Gathered>)> = Vec::new();
    let mut limits: Vec<(String, Vec<f64>)> = Vec::new();
    for run in runs.iter().filter(|run| run.curve == chart.name) {
        match &run.kind {
            Kind::Point { series, x } => {
                for (suffix, pick) in chart.lines {
                    let Some(y) = pick(&run.results).filter(|y| y.is_finite()) else {
                        continue;
                    };
                    let label = format!("{series}{suffix}");
                    let points = entry(&mut lines, label);
                    match points.iter_mut().find(|(at, _)| at == x) {
                        Some((_, ys)) => ys.push(y),
                        None => points.push((*x, vec![y])),
                    }
                }
            }
            Kind::Limit(label) => {
                if let Some(y) = chart.limit.and_then(|pick| pick(&run.results)) {
                    entry(&mut limits, label.clone()).push(y);
                }
            }
        }
    }
    Data {
        lines: lines
            .into_iter()
            .map(|(label, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let points = points.into_iter().map(|(x, ys)| (x, median(ys))).collect();
                (label, points)
            })
            .collect(),
        limits: limits
            .into_iter()
            .map(|(label, ys)| (label, median(ys)))
            .collect(),
    }
}

/// The values under `label`, added in first-seen order if new.
fn entry<T>(list: &mut Vec<(String, Vec<T>)>, label: String) -> &mut Vec<T> {
    let at = match list.iter().position(|(l, _)| *l == label) {
        Some(at) => at,
        None => {
            list.push((label, Vec::new()));
            list.len() - 1
        }
    };
    &mut list[at].1
}

/// The median (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::Kind;

    fn point(curve: &str, series: &str, x: f64, results: Value) -> Run {
        Run {
            curve: curve.to_owned(),
            kind: Kind::Point {
                series: series.to_owned(),
                x,
            },
            results: results.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn points_are_medians_sorted_by_x_and_limits_are_kept() {
        let runs = vec![
            point("sends", "SQLite", 64.0, serde_json::json!({"sends": 300.0})),
            point("sends", "SQLite", 1.0, serde_json::json!({"sends": 10.0})),
            point("sends", "SQLite", 64.0, serde_json::json!({"sends": 100.0})),
            point("sends", "SQLite", 64.0, serde_json::json!({"sends": 200.0})),
            point("sends", "Postgres", 1.0, serde_json::json!({"sends": 5.0})),
            point("memory", "chat", 1.0, serde_json::json!({"sends": 1.0})),
            Run {
                curve: "sends".to_owned(),
                kind: Kind::Limit("fsync".to_owned()),
                results: serde_json::json!({"fsyncs per second": 900.0})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
        ];
        let data = collect(&CHARTS[1], &runs);
        assert_eq!(
            data.lines,
            vec![
                ("SQLite".to_owned(), vec![(1.0, 10.0), (64.0, 200.0)]),
                ("Postgres".to_owned(), vec![(1.0, 5.0)]),
            ]
        );
        assert_eq!(data.limits, vec![("fsync".to_owned(), 900.0)]);
    }

    #[test]
    fn memory_is_the_growth_in_mib() {
        let runs = vec![point(
            "memory",
            "chat",
            1000.0,
            serde_json::json!({"server RSS before": 1024, "server RSS after": 3072}),
        )];
        let data = collect(&CHARTS[3], &runs);
        assert_eq!(data.lines, vec![("chat".to_owned(), vec![(1000.0, 2.0)])]);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
