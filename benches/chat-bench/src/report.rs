//! Results: a table for people, or JSON.

use serde_json::{Map, Value};

/// The figures of one scenario, in the order measured.
pub(crate) struct Report {
    scenario: &'static str,
    rows: Vec<(&'static str, Value, &'static str)>,
}

impl Report {
    pub(crate) fn new(scenario: &'static str) -> Self {
        Self {
            scenario,
            rows: Vec::new(),
        }
    }

    /// Adds a figure with its unit.
    pub(crate) fn add(&mut self, name: &'static str, value: impl Into<Value>, unit: &'static str) {
        self.rows.push((name, value.into(), unit));
    }

    /// The server's RSS before and after opening `connections`, and their quotient (or
    /// why it is missing).
    pub(crate) fn memory_per_connection(
        &mut self,
        before: Option<u64>,
        after: Option<u64>,
        connections: usize,
    ) {
        if let (Some(before), Some(after)) = (before, after) {
            let per_connection = (after.saturating_sub(before)) as f64 / connections as f64;
            self.add("server RSS before", before, "KiB");
            self.add("server RSS after", after, "KiB");
            self.add("server memory per connection", per_connection, "KiB");
        } else {
            self.add("server memory per connection", "n/a (pass --pid)", "");
        }
    }

    pub(crate) fn print(&self, json: bool) {
        if json {
            let mut figures = Map::new();
            for (name, value, _) in &self.rows {
                figures.insert((*name).to_owned(), value.clone());
            }
            let mut root = Map::new();
            root.insert("scenario".to_owned(), Value::from(self.scenario));
            root.insert("results".to_owned(), Value::Object(figures));
            println!("{}", Value::Object(root));
            return;
        }
        println!("scenario: {}", self.scenario);
        let width = self.rows.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
        for (name, value, unit) in &self.rows {
            let shown = match value {
                Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(f64::NAN)),
                other => other.to_string(),
            };
            println!("  {name:<width$}  {shown:>12} {unit}");
        }
    }
}
