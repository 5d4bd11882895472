//! The runs a chart is drawn from: `chat-bench --json` reports, each on a line with
//! the curve it belongs to.
//!
//! A line is `{"curve": C, "series": S, "x": X, "report": R}` for a point of series `S`
//! at `X`, or `{"curve": C, "limit": L, "report": R}` for a machine limit drawn across
//! the chart; `R` is what `chat-bench --json` printed.

use std::path::PathBuf;

use serde_json::{Map, Value};

/// One run.
pub(crate) struct Run {
    /// The chart it belongs to.
    pub(crate) curve: String,
    /// What it is: a series at a point, or a limit.
    pub(crate) kind: Kind,
    /// The report's figures by name.
    pub(crate) results: Map<String, Value>,
}

/// A point of a series, or a limit.
pub(crate) enum Kind {
    /// A point of the named series at x.
    Point { series: String, x: f64 },
    /// A machine limit with this label.
    Limit(String),
}

/// Reads every run of `paths`, skipping lines that are not runs.
pub(crate) fn read(paths: &[PathBuf]) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: {e}", path.display(), number + 1))?;
            if let Some(run) = parse(&value) {
                runs.push(run);
            }
        }
    }
    Ok(runs)
}

/// The run on one line, if it is one.
fn parse(value: &Value) -> Option<Run> {
    let curve = value.get("curve")?.as_str()?.to_owned();
    let results = value.get("report")?.get("results")?.as_object()?.clone();
    let kind = if let Some(limit) = value.get("limit").and_then(Value::as_str) {
        Kind::Limit(limit.to_owned())
    } else {
        Kind::Point {
            series: value.get("series")?.as_str()?.to_owned(),
            x: value.get("x")?.as_f64()?,
        }
    };
    Some(Run {
        curve,
        kind,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_limits_and_other_lines() {
        let point = serde_json::json!({"curve": "sends", "series": "SQLite", "x": 4,
            "report": {"scenario": "send", "results": {"sends": 100.0}}});
        let Some(run) = parse(&point) else {
            panic!("a point is a run");
        };
        assert!(
            matches!(run.kind, Kind::Point { ref series, x } if series == "SQLite" && x == 4.0)
        );
        let limit = serde_json::json!({"curve": "sends", "limit": "fsync",
            "report": {"scenario": "fsync", "results": {"fsyncs per second": 900.0}}});
        assert!(matches!(parse(&limit).map(|r| r.kind), Some(Kind::Limit(l)) if l == "fsync"));
        assert!(parse(&serde_json::json!({"sockudo": "5.2.0"})).is_none());
        assert!(parse(&serde_json::json!({"curve": "sends", "report": {"results": {}}})).is_none());
    }
}
