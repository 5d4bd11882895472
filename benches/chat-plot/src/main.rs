//! `chat-plot`: draws the benchmark curves of `docs/PERFORMANCE.md` as PNG files from
//! the JSON lines `benches/curves/run.sh` collects (each a `chat-bench --json` report
//! with the curve, series and x value it belongs to). No network and no system fonts:
//! the font is compiled in.
//!
//! Run with: `cargo run --release -p chat-plot -- --out docs/curves docs/curves/runs.jsonl`

mod charts;
mod draw;
mod runs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "chat-plot", about = "Draws chat-bench curves as PNG files")]
struct Cli {
    /// Where to write one PNG per chart.
    #[arg(long, default_value = "docs/curves")]
    out: PathBuf,
    /// JSON-lines files of runs; lines that are not runs are skipped.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match plot(&cli) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Draws every chart that has runs; returns the files written.
fn plot(cli: &Cli) -> Result<Vec<PathBuf>, String> {
    draw::register_font()?;
    let runs = runs::read(&cli.runs)?;
    std::fs::create_dir_all(&cli.out).map_err(|e| format!("{}: {e}", cli.out.display()))?;
    let mut written = Vec::new();
    for chart in charts::CHARTS {
        let data = charts::collect(chart, &runs);
        if data.lines.is_empty() {
            eprintln!("{}: no runs, skipped", chart.name);
            continue;
        }
        let path = cli.out.join(format!("{}.png", chart.name));
        draw::chart(chart, &data, &path)?;
        written.push(path);
    }
    if written.is_empty() {
        return Err("no runs for any chart".to_owned());
    }
    Ok(written)
}
