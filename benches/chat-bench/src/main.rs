//! `chat-bench`: drives a running chat server over loopback with real HTTP and
//! WebSocket clients and prints its figures.
//!
//! Run with: `cargo run --release -p chat-bench -- <scenario> --help`
//!
//! Scenarios:
//! - `send`: sends per second through `POST /api/chat/send` with concurrent senders,
//!   next to `baseline` measured in the same run.
//! - `baseline`: the same client against a trivial 201 handler in this process: what
//!   this machine can do at all.
//! - `history`: latest-page and cursor-page latency on a large conversation.
//! - `idle`: opens many idle WebSocket connections and reports the server's memory per
//!   connection (read from `/proc/<pid>/status`, so pass `--pid`).
//! - `deliver`: holds many receivers connected while senders post at a steady rate,
//!   and reports latency from send to arrival, with every message accounted for.
//! - `catch-up`: a receiver with a large backlog connects and reads it as fast as it
//!   can, once resuming with `after_id` and once as an undelivered backlog.
//! - `pusher`: Pusher connections on private channels, then events published through
//!   the HTTP API: memory per connection and latency from publish to arrival.
//! - `fsync` and `hold`: this machine's limits, with no chat server: flushes per
//!   second of small appends, and a bare TCP server for `idle --raw`.
//!
//! Every loop is bounded in count and time; connections spread over several
//! 127.0.0.x source addresses so ephemeral ports never run out.

mod answers;
mod clients;
mod report;
mod scenarios;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "chat-bench", about = "Load generator for the chat server")]
struct Cli {
    /// The server's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's HS256 secret, to mint a token per simulated user.
    #[arg(long, global = true, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Print the results as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Sends per second with concurrent senders, and the baseline ratio.
    Send(scenarios::send::Args),
    /// A trivial 201 handler in this process, driven by the same client.
    Baseline(scenarios::send::BaselineArgs),
    /// History page latency on a large conversation.
    History(scenarios::history::Args),
    /// Idle WebSocket connections: server memory per connection.
    Idle(scenarios::idle::Args),
    /// Receivers connected, senders at a steady rate: latency from send to arrival.
    Deliver(scenarios::deliver::Args),
    /// A large backlog read by one connection: messages per second.
    CatchUp(scenarios::catch_up::Args),
    /// Pusher connections on their private-chat channels: memory per connection, and
    /// latency from the HTTP API's POST to each arrival on a shared channel.
    Pusher(scenarios::pusher::Args),
    /// Small appends each flushed with `fsync`: this machine's flushes per second.
    Fsync(scenarios::limits::FsyncArgs),
    /// A bare TCP server that holds every connection it accepts (for `idle --raw`).
    Hold(scenarios::limits::HoldArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let machine_only = match &cli.scenario {
        Scenario::Fsync(args) => Some(runtime.block_on(scenarios::limits::fsync(args))),
        Scenario::Hold(args) => Some(runtime.block_on(scenarios::limits::hold(args))),
        _ => None,
    };
    if let Some(result) = machine_only {
        return finish(result, cli.json);
    }
    let Some(secret) = cli.secret.clone() else {
        eprintln!("error: pass --secret or set CHAT_JWT_SECRET (the server's HS256 secret)");
        return ExitCode::from(2);
    };
    let target = match clients::Target::new(&cli.url, &secret) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match &cli.scenario {
            Scenario::Send(args) => scenarios::send::run(&target, args).await,
            Scenario::Baseline(args) => scenarios::send::baseline(args).await,
            Scenario::History(args) => scenarios::history::run(&target, args).await,
            Scenario::Idle(args) => scenarios::idle::run(&target, args).await,
            Scenario::Deliver(args) => scenarios::deliver::run(&target, args).await,
            Scenario::CatchUp(args) => scenarios::catch_up::run(&target, args).await,
            Scenario::Pusher(args) => scenarios::pusher::run(&target, args).await,
            Scenario::Fsync(args) => scenarios::limits::fsync(args).await,
            Scenario::Hold(args) => scenarios::limits::hold(args).await,
        }
    });
    finish(result, cli.json)
}

/// Prints the report, or the error and a failing exit status.
fn finish(result: Result<report::Report, String>, json: bool) -> ExitCode {
    match result {
        Ok(report) => {
            report.print(json);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
