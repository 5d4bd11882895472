//! `chat-server`: serve the API, mint development tokens, print the OpenAPI document.

use std::process::ExitCode;
use std::time::Duration;

use chat_server::config::{Cli, Command, JobsCommand, Settings};
use clap::Parser;

/// Many long-lived connections interleave small long-lived allocations with large
/// short-lived ones (each handshake's buffers); mimalloc keeps that from fragmenting
/// the heap, which the system allocator does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long WebSockets get to send their close frames at shutdown.
const WEBSOCKET_DRAIN: Duration = Duration::from_secs(5);

/// How long background jobs in flight get to finish at shutdown.
const JOB_DRAIN: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings),
        Command::Token { user, ttl } => match chat_server::mint_token(&cli.settings, user, ttl) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        // The document states the configured limits, as the served one does.
        Command::Jobs(command) => jobs(&cli.settings, &command),
        Command::Openapi => {
            match chat_server::openapi_for(&cli.settings.chat_config()).to_pretty_json() {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
    }
}

fn jobs(settings: &Settings, command: &JobsCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    match runtime.block_on(chat_server::jobs::run(settings, command)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn serve(settings: &Settings) -> ExitCode {
    if let Err(error) = chat_server::telemetry::init(&settings.log, settings.log_format) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    runtime.block_on(async {
        let chat_server::Server {
            state,
            workers,
            demo,
        } = match chat_server::assemble(settings).await {
            Ok(server) => server,
            Err(error) => return fail(&error),
        };
        let listener = match tokio::net::TcpListener::bind(settings.addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("error: cannot listen on {}: {error}", settings.addr);
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            address = %settings.addr,
            docs = %format!("http://{}/docs", settings.addr),
            "chat server listening"
        );
        let hub = state.websocket().hub().clone();
        let app = chat_server::app_with_demo(state, &demo);
        let signal = {
            let hub = hub.clone();
            async move {
                chat_server::shutdown_signal().await;
                // Open WebSockets close with 1001 so clients reconnect elsewhere.
                hub.shut_down();
            }
        };
        let served = chat_server::serve(listener, app, signal).await;
        let deadline = tokio::time::Instant::now() + WEBSOCKET_DRAIN;
        while hub.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(workers) = workers {
            // Deliveries in flight finish, or go back to the outbox for any node.
            workers.shut_down(JOB_DRAIN).await;
        }
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        }
    })
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    let mut message = format!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}
