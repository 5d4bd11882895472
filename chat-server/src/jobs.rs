//! `chat-server jobs …`: operators see pending, running and dead jobs with their last
//! error, retry dead ones and discard any that is not running, straight in the
//! configured database (the one every node shares).

use std::fmt::Write as _;

use chat_core::{Job, JobId, JobState, timestamp};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::config::{Database, JobsCommand, Settings};
use crate::startup::{StartError, open_store};

/// Runs one jobs command against the configured database; what to print.
pub async fn run(settings: &Settings, command: &JobsCommand) -> Result<String, StartError> {
    let database = Database::parse(&settings.database_url).map_err(StartError::Config)?;
    if database == Database::SqliteMemory {
        return Err(StartError::Config(
            "a memory database is gone with its server: name the database file or Postgres URL"
                .to_owned(),
        ));
    }
    let jobs = open_store(&database, settings.database_schema.as_deref())
        .await?
        .jobs;
    match *command {
        JobsCommand::List { state, limit, json } => {
            let listed = jobs
                .list(state.into(), limit)
                .await
                .map_err(StartError::Store)?;
            Ok(if json {
                listed.iter().fold(String::new(), |mut out, job| {
                    let _ = writeln!(out, "{}", as_json(job));
                    out
                })
            } else {
                table(&listed)
            })
        }
        JobsCommand::Retry { id } => {
            let found = jobs
                .retry(JobId::new(id), timestamp::now())
                .await
                .map_err(StartError::Store)?;
            if found {
                Ok(format!("job {id} is pending again, due now\n"))
            } else {
                Err(StartError::Config(format!("no dead job {id}")))
            }
        }
        JobsCommand::Discard { id } => {
            let found = jobs
                .discard(JobId::new(id))
                .await
                .map_err(StartError::Store)?;
            if found {
                Ok(format!("job {id} discarded\n"))
            } else {
                Err(StartError::Config(format!(
                    "no job {id} that is not running"
                )))
            }
        }
    }
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        _ => "dead",
    }
}

fn time_text(at: time::OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// What a job does, for people: a webhook's event and URL, or its kind.
fn summary(job: &Job) -> String {
    chat_webhooks::describe(&job.payload).unwrap_or_else(|| job.kind.clone())
}

fn as_json(job: &Job) -> serde_json::Value {
    let payload: serde_json::Value =
        serde_json::from_str(&job.payload).unwrap_or(serde_json::Value::Null);
    json!({
        "id": job.id.get(),
        "kind": job.kind,
        "state": state_name(job.state),
        "message_id": job.subject.map(|id| id.get()),
        "attempts": job.attempts,
        "due_at": time_text(job.due_at),
        "created_at": time_text(job.created_at),
        "last_error": job.last_error,
        "payload": payload,
    })
}

fn table(jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".to_owned();
    }
    let mut out = String::from("ID\tSTATE\tMESSAGE\tATTEMPTS\tDUE\tWHAT\tLAST ERROR\n");
    for job in jobs {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            job.id,
            state_name(job.state),
            job.subject
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            job.attempts,
            time_text(job.due_at),
            summary(job),
            job.last_error.as_deref().unwrap_or("-"),
        );
    }
    out
}
