//! Configuration: flags with `CHAT_*` environment fallbacks, checked before start.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use chat_http::client_address::TrustedProxies;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "The chat server: REST API over the chat library."
)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub settings: Settings,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a token for a user, signed with the configured HS256 secret or the
    /// development key.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user: i64,
        /// How long the token is valid: `90s`, `15m`, `1h`, `7d`.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// See and act on background jobs (webhook deliveries) in the configured database.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

/// `chat-server jobs …`: what operators do with background jobs.
#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// List jobs in a state, oldest first, with their attempts and last error.
    List {
        /// `pending` (waiting, including retries), `running` or `dead`.
        #[arg(long, value_enum, default_value_t = JobStateArg::Dead)]
        state: JobStateArg,
        /// The most jobs shown.
        #[arg(long, default_value = "50", value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a dead job pending again, due at once.
    Retry {
        /// The job's id.
        id: i64,
    },
    /// Remove a job that is not running.
    Discard {
        /// The job's id.
        id: i64,
    },
}

/// A job state on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobStateArg {
    /// Waiting for its due time or a worker.
    Pending,
    /// Claimed by a worker.
    Running,
    /// Failed its last attempt.
    Dead,
}

impl From<JobStateArg> for chat_core::JobState {
    fn from(state: JobStateArg) -> Self {
        match state {
            JobStateArg::Pending => Self::Pending,
            JobStateArg::Running => Self::Running,
            JobStateArg::Dead => Self::Dead,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Whether the demo page is served at `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMode {
    /// In development mode (no JWT key configured) only.
    Auto,
    /// Always (it signs in with a pasted token when no key is the development key).
    On,
    /// Never.
    Off,
}

/// Every setting, from flags or the environment.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "CHAT_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// `sqlite://path`, `sqlite::memory:` or `postgres://user@host/database`.
    #[arg(long, env = "CHAT_DATABASE_URL", default_value = "sqlite://chat.db")]
    pub database_url: String,
    /// Postgres only: keep the tables in this schema (created if missing).
    #[arg(long, env = "CHAT_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// HS256 secret, at least 32 bytes.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key file, for RS256, ES256 or EdDSA tokens.
    #[arg(long, env = "CHAT_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The algorithm of the public key: RS256, ES256 or EdDSA.
    #[arg(long, env = "CHAT_JWT_ALGORITHM")]
    pub jwt_algorithm: Option<String>,
    /// Required `iss` of tokens.
    #[arg(long, env = "CHAT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens.
    #[arg(long, env = "CHAT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "CHAT_JWT_LEEWAY_SECONDS", default_value_t = 5)]
    pub jwt_leeway_seconds: u64,
    /// Sends per minute and user, on average.
    #[arg(long, env = "CHAT_SEND_RATE_PER_MINUTE", default_value = "120")]
    pub send_rate_per_minute: NonZeroU32,
    /// Sends a user may make in a burst.
    #[arg(long, env = "CHAT_SEND_BURST", default_value = "30")]
    pub send_burst: NonZeroU32,
    /// `redis://[user:pass@]host:port[/db]` (TLS is not supported): the Redis every node of
    /// a deployment shares. Turns on live events, presence and the per-user limits
    /// across nodes.
    #[arg(long, env = "CHAT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// The prefix of this deployment's keys and topics in Redis.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat")]
    pub redis_prefix: String,
    /// Seconds a connection stays present on Redis without its node refreshing it
    /// (every third of this): the users of a node that died go offline within it.
    #[arg(long, env = "CHAT_PRESENCE_TTL_SECONDS", default_value = "15")]
    pub presence_ttl_seconds: NonZeroU32,
    /// Failed authentications per minute and client address, on average.
    #[arg(long, env = "CHAT_AUTH_FAILURES_PER_MINUTE", default_value = "30")]
    pub auth_failures_per_minute: NonZeroU32,
    /// Failed authentications a client address may make in a burst.
    #[arg(long, env = "CHAT_AUTH_FAILURE_BURST", default_value = "10")]
    pub auth_failure_burst: NonZeroU32,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers name the client
    /// address (the key of the failed-login limit), comma-separated CIDR blocks or
    /// single addresses (`10.0.0.0/8,::1/128`). Unset or blank: the connection's peer
    /// address is the client, whatever the headers say.
    #[arg(long, env = "CHAT_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<TrustedProxies>,
    /// Longest message, in characters.
    #[arg(long, env = "CHAT_MAX_MESSAGE_CHARS", default_value = "4000")]
    pub max_message_chars: NonZeroUsize,
    /// How long, in seconds, a user still shows online after their last connection
    /// closed, so a reconnecting phone does not flicker (0–10).
    #[arg(long, env = "CHAT_PRESENCE_GRACE_SECONDS", default_value = "5",
          value_parser = clap::value_parser!(u64).range(0..=10))]
    pub presence_grace_seconds: u64,
    /// How long after sending, in seconds, a sender may still edit a message.
    #[arg(long, env = "CHAT_EDIT_WINDOW_SECONDS", default_value = "900")]
    pub edit_window_seconds: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "CHAT_MAX_BODY_BYTES", default_value = "65536")]
    pub max_body_bytes: NonZeroUsize,
    /// Origins browsers may open WebSockets from, comma-separated
    /// (`https://app.example,https://admin.example`); unset allows every origin.
    /// Requests without an `Origin` header are always allowed.
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Largest inbound WebSocket message, in bytes (larger closes with 1009).
    #[arg(long, env = "CHAT_WS_MAX_MESSAGE_BYTES", default_value = "65536")]
    pub ws_max_message_bytes: NonZeroUsize,
    /// Inbound WebSocket messages per second and connection (faster closes with 1008).
    #[arg(long, env = "CHAT_WS_MESSAGES_PER_SECOND", default_value = "20")]
    pub ws_messages_per_second: NonZeroU32,
    /// Inbound WebSocket messages a connection may send in a burst.
    #[arg(long, env = "CHAT_WS_MESSAGE_BURST", default_value = "40")]
    pub ws_message_burst: NonZeroU32,
    /// Events a WebSocket may fall behind before it is closed as a slow consumer (4008).
    #[arg(long, env = "CHAT_WS_OUTBOUND_QUEUE", default_value = "256")]
    pub ws_outbound_queue: NonZeroUsize,
    /// Seconds one write to a WebSocket may take; a client that does not read for
    /// that long is closed as a slow consumer (4008) and its place freed.
    #[arg(long, env = "CHAT_WS_WRITE_TIMEOUT_SECONDS", default_value = "5")]
    pub ws_write_timeout_seconds: NonZeroU32,
    /// Seconds between server pings.
    #[arg(long, env = "CHAT_WS_HEARTBEAT_SECONDS", default_value = "30")]
    pub ws_heartbeat_seconds: NonZeroU32,
    /// Seconds of silence after which a WebSocket closes (4002).
    #[arg(long, env = "CHAT_WS_IDLE_TIMEOUT_SECONDS", default_value = "75")]
    pub ws_idle_timeout_seconds: NonZeroU32,
    /// WebSocket connections one user may hold at once.
    #[arg(long, env = "CHAT_WS_MAX_CONNECTIONS_PER_USER", default_value = "16")]
    pub ws_max_connections_per_user: NonZeroUsize,
    /// Pusher app id (`/apps/{id}/…`). With the key and secret, enables the Pusher
    /// protocol for Laravel Echo and pusher-js; in development mode (no JWT key set),
    /// development values are used and printed.
    #[arg(long, env = "CHAT_PUSHER_APP_ID")]
    pub pusher_app_id: Option<String>,
    /// Pusher app key (clients connect to `/app/{key}`).
    #[arg(long, env = "CHAT_PUSHER_APP_KEY")]
    pub pusher_app_key: Option<String>,
    /// Pusher app secret: signs channel authorizations and HTTP API requests.
    #[arg(long, env = "CHAT_PUSHER_APP_SECRET", hide_env_values = true)]
    pub pusher_app_secret: Option<String>,
    /// Seconds of silence after which a Pusher client pings (and the server pings a
    /// silent client, closing it with 4201 when no answer comes as long again).
    #[arg(
        long,
        env = "CHAT_PUSHER_ACTIVITY_TIMEOUT_SECONDS",
        default_value = "30"
    )]
    pub pusher_activity_timeout_seconds: NonZeroU32,
    /// Distinct members one presence channel may hold.
    #[arg(long, env = "CHAT_PUSHER_MAX_PRESENCE_MEMBERS", default_value = "100")]
    pub pusher_max_presence_members: NonZeroUsize,
    /// Client events (whispers) one Pusher connection may send per second.
    #[arg(
        long,
        env = "CHAT_PUSHER_CLIENT_EVENTS_PER_SECOND",
        default_value = "10"
    )]
    pub pusher_client_events_per_second: NonZeroU32,
    /// Largest `data` of an event published through the Pusher HTTP API, in bytes.
    #[arg(long, env = "CHAT_PUSHER_MAX_EVENT_BYTES", default_value = "10240")]
    pub pusher_max_event_bytes: NonZeroUsize,
    /// Namespace of the chat's Pusher events (`App\Events\MessageSent`); empty for
    /// bare names.
    #[arg(
        long,
        env = "CHAT_PUSHER_EVENT_NAMESPACE",
        default_value = "App\\Events"
    )]
    pub pusher_event_namespace: String,
    /// Webhook endpoints, comma-separated `http(s)://` URLs: each gets every event
    /// (Standard Webhooks v1). Needs `CHAT_WEBHOOK_SECRET`.
    #[arg(long, env = "CHAT_WEBHOOK_URL", value_delimiter = ',')]
    pub webhook_url: Vec<String>,
    /// The secret webhooks are signed with: `whsec_` and the base64 of 24–64 random
    /// bytes.
    #[arg(long, env = "CHAT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// The events sent, comma-separated: `message.created`, `message.read`,
    /// `message.undelivered` (default: all three).
    #[arg(
        long,
        env = "CHAT_WEBHOOK_EVENTS",
        value_delimiter = ',',
        default_value = "message.created,message.read,message.undelivered"
    )]
    pub webhook_events: Vec<String>,
    /// Seconds a message stays undelivered before `message.undelivered` is sent.
    #[arg(
        long,
        env = "CHAT_WEBHOOK_UNDELIVERED_AFTER_SECONDS",
        default_value = "30"
    )]
    pub webhook_undelivered_after_seconds: NonZeroU32,
    /// Seconds one delivery attempt may take.
    #[arg(long, env = "CHAT_WEBHOOK_TIMEOUT_SECONDS", default_value = "10")]
    pub webhook_timeout_seconds: NonZeroU32,
    /// The waits between attempts, comma-separated (`5s,5m,30m,2h`); after the last,
    /// a delivery is dead.
    #[arg(
        long,
        env = "CHAT_WEBHOOK_RETRY_SCHEDULE",
        value_delimiter = ',',
        value_parser = parse_ttl,
        default_value = "5s,5m,30m,2h,5h,10h,14h,20h,24h"
    )]
    pub webhook_retry_schedule: Vec<Duration>,
    /// Background jobs (webhook deliveries) one node runs at once.
    #[arg(long, env = "CHAT_JOB_WORKERS", default_value = "8")]
    pub job_workers: NonZeroUsize,
    /// Seconds a node holds a job it claimed: if it dies, another node takes the job
    /// over after this. Longer than the webhook timeout.
    #[arg(long, env = "CHAT_JOB_LEASE_SECONDS", default_value = "60")]
    pub job_lease_seconds: NonZeroU32,
    /// The demo chat page at `/`: `auto` serves it in development mode only.
    #[arg(long, env = "CHAT_DEMO", value_enum, default_value_t = DemoMode::Auto)]
    pub demo: DemoMode,
    /// Log filter, e.g. `info` or `chat_server=debug,info`.
    #[arg(long, env = "CHAT_LOG", default_value = "info")]
    pub log: String,
    /// Log format.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

impl Settings {
    /// The chat rules' limits of these settings.
    pub fn chat_config(&self) -> chat_core::ChatConfig {
        chat_core::ChatConfig::default()
            .with_max_message_chars(self.max_message_chars.get())
            .with_edit_window(Duration::from_secs(self.edit_window_seconds))
            .with_presence_grace(Duration::from_secs(self.presence_grace_seconds))
    }

    /// The WebSocket limits of these settings.
    pub fn ws_config(&self) -> chat_transport_ws::WsConfig {
        chat_transport_ws::WsConfig::default()
            .with_max_message_bytes(self.ws_max_message_bytes.get())
            .with_inbound_rate(
                self.ws_messages_per_second.get(),
                self.ws_message_burst.get(),
            )
            .with_heartbeat(
                Duration::from_secs(u64::from(self.ws_heartbeat_seconds.get())),
                Duration::from_secs(u64::from(self.ws_idle_timeout_seconds.get())),
            )
            .with_max_connections_per_user(self.ws_max_connections_per_user.get())
            .with_write_timeout(Duration::from_secs(u64::from(
                self.ws_write_timeout_seconds.get(),
            )))
    }

    /// The Pusher limits of these settings (the WebSocket limits are the native ones).
    pub fn pusher_config(&self) -> Result<chat_transport_pusher::PusherConfig, String> {
        let namespace = self
            .pusher_event_namespace
            .parse()
            .map_err(|error| format!("CHAT_PUSHER_EVENT_NAMESPACE: {error}"))?;
        let trigger = chat_transport_pusher::TriggerLimits {
            max_data_bytes: self.pusher_max_event_bytes.get(),
            ..Default::default()
        };
        let activity = Duration::from_secs(u64::from(self.pusher_activity_timeout_seconds.get()));
        Ok(chat_transport_pusher::PusherConfig::default()
            .with_websocket(self.ws_config())
            .with_activity_timeout(activity, activity)
            .with_max_presence_members(self.pusher_max_presence_members.get())
            .with_client_events_per_second(self.pusher_client_events_per_second.get())
            .with_trigger_limits(trigger)
            .with_namespace(namespace))
    }

    /// The webhooks of these settings: `None` when no endpoint is configured.
    pub fn webhook_config(&self) -> Result<Option<chat_webhooks::WebhookConfig>, String> {
        let urls: Vec<&str> = self
            .webhook_url
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .collect();
        if urls.is_empty() {
            return Ok(None);
        }
        let endpoints = urls
            .into_iter()
            .map(chat_webhooks::WebhookConfig::endpoint)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("CHAT_WEBHOOK_URL: {error}"))?;
        let secret = self
            .webhook_secret
            .as_deref()
            .ok_or("CHAT_WEBHOOK_URL needs CHAT_WEBHOOK_SECRET (whsec_ and the base64 of 24–64 random bytes)")?
            .parse()
            .map_err(|error| format!("CHAT_WEBHOOK_SECRET: {error}"))?;
        let mut events = Vec::new();
        for name in self
            .webhook_events
            .iter()
            .filter(|name| !name.trim().is_empty())
        {
            let event = name
                .parse()
                .map_err(|error| format!("CHAT_WEBHOOK_EVENTS: {error}"))?;
            if !events.contains(&event) {
                events.push(event);
            }
        }
        let timeout = Duration::from_secs(u64::from(self.webhook_timeout_seconds.get()));
        if u64::from(self.job_lease_seconds.get()) <= timeout.as_secs() {
            return Err(
                "CHAT_JOB_LEASE_SECONDS must be longer than CHAT_WEBHOOK_TIMEOUT_SECONDS"
                    .to_owned(),
            );
        }
        Ok(Some(chat_webhooks::WebhookConfig {
            endpoints,
            secret,
            events,
            undelivered_after: Duration::from_secs(u64::from(
                self.webhook_undelivered_after_seconds.get(),
            )),
            timeout,
            schedule: chat_webhooks::RetrySchedule::new(self.webhook_retry_schedule.clone()),
        }))
    }

    /// The worker pool's settings.
    pub fn pool_config(&self) -> chat_webhooks::PoolConfig {
        chat_webhooks::PoolConfig {
            workers: self.job_workers.get(),
            lease: Duration::from_secs(u64::from(self.job_lease_seconds.get())),
            ..Default::default()
        }
    }

    /// The trusted proxies of these settings.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        self.trusted_proxies.clone().unwrap_or_default()
    }
}

/// Where the messages live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    SqliteFile(PathBuf),
    /// SQLite in memory: gone when the server stops.
    SqliteMemory,
    /// Postgres, shared by every node.
    Postgres(String),
}

impl Database {
    /// The store this database needs, as its cargo feature is named.
    pub fn store_name(&self) -> &'static str {
        match self {
            Self::SqliteFile(_) | Self::SqliteMemory => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Parses `CHAT_DATABASE_URL`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(Self::SqliteMemory);
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(format!("CHAT_DATABASE_URL {url:?} names no file"));
            }
            return Ok(Self::SqliteFile(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        // The URL may hold a password: never echo it.
        Err("CHAT_DATABASE_URL is not understood: use sqlite://path, sqlite::memory: or postgres://…".to_owned())
    }
}

/// Parses `90s`, `15m`, `1h`, `7d` or a number of seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        "d" => number.saturating_mul(86_400),
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    if seconds == 0 || seconds > 366 * 86_400 {
        return Err("the ttl must be between 1 second and 366 days".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            Database::parse("sqlite://chat.db"),
            Ok(Database::SqliteFile("chat.db".into()))
        );
        assert_eq!(
            Database::parse("sqlite:///var/lib/chat.db"),
            Ok(Database::SqliteFile("/var/lib/chat.db".into()))
        );
        assert_eq!(
            Database::parse("sqlite::memory:"),
            Ok(Database::SqliteMemory)
        );
        assert!(Database::parse("sqlite://").is_err());
        assert!(Database::parse("mysql://x").is_err());
        assert_eq!(
            Database::parse("postgres://localhost/chat"),
            Ok(Database::Postgres("postgres://localhost/chat".into()))
        );
    }

    #[test]
    fn trusted_proxies() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["chat-server"].iter().chain(args)).map(|cli| cli.settings)
        };
        let settings = parse(&["--trusted-proxies", "10.0.0.0/8, ::1/128,192.0.2.1"]).unwrap();
        let proxies = settings.trusted_proxies();
        assert!(proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(proxies.contains("::1".parse().unwrap()));
        assert!(proxies.contains("192.0.2.1".parse().unwrap()));
        assert!(!proxies.contains("192.0.2.2".parse().unwrap()));
        assert!(parse(&[]).unwrap().trusted_proxies().is_empty());
        let blank = parse(&["--trusted-proxies", ""]).unwrap();
        assert!(blank.trusted_proxies().is_empty());
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/8,",
            "localhost",
            "10.0.0.0/8,::1/x",
        ] {
            let error = parse(&["--trusted-proxies", bad]).unwrap_err().to_string();
            assert!(error.contains("--trusted-proxies"), "{bad}: {error}");
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "0", "1y", "-1h", "999d", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
