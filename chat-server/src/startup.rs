//! Assembling the server from its settings: store, authenticator, limits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chat_bus_redis::{RedisBroadcast, RedisNotifier, RedisPresence, RedisRateLimiter};
use chat_core::jwt::KeyError;
use chat_core::{
    Authenticator, ChatService, Fallback, FallbackPresence, FallbackRateLimiter,
    GovernorRateLimiter, InMemoryPresence, InProcessNotifier, JobStore, JwtAlgorithm,
    JwtAuthenticator, JwtIssuer, MessageRepository, Notifier, Presence, RateLimiter,
};
#[cfg(feature = "postgres")]
use chat_store_postgres::PostgresStore;
#[cfg(feature = "sqlite")]
use chat_store_sqlite::SqliteStore;

use chat_http::{AppState, Metrics};
use chat_transport_pusher::PusherApp;
use chat_webhooks::{PoolStats, PoolWaker, WebhookConfig, WebhookPlan, WebhookSender, WorkerPool};

use crate::config::{Database, DemoMode, Settings};
use crate::demo::Demo;
use crate::dev_key;

/// Why the server cannot start; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// A key cannot be used.
    #[error("JWT key: {0}")]
    Key(#[from] KeyError),
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The store cannot be opened.
    #[error("cannot open the database: {0}")]
    Store(#[source] chat_core::Error),
}

/// The file of the development secret: beside a SQLite file, in the working directory
/// for Postgres, none for a memory database.
pub fn dev_secret_path(settings: &Settings) -> Result<Option<PathBuf>, StartError> {
    Ok(
        match Database::parse(&settings.database_url).map_err(StartError::Config)? {
            Database::SqliteFile(path) => Some(dev_key::path_beside(&path)),
            Database::Postgres(_) => Some(PathBuf::from("chat.dev-jwt-secret")),
            Database::SqliteMemory => None,
        },
    )
}

/// How tokens are checked.
enum KeySource {
    Secret(Vec<u8>),
    PublicKey(JwtAlgorithm, Vec<u8>),
}

fn configured_key(settings: &Settings) -> Result<Option<KeySource>, StartError> {
    match (&settings.jwt_secret, &settings.jwt_public_key_file) {
        (Some(_), Some(_)) => Err(StartError::Config(
            "set CHAT_JWT_SECRET or CHAT_JWT_PUBLIC_KEY_FILE, not both".to_owned(),
        )),
        (Some(secret), None) => {
            if let Some(algorithm) = &settings.jwt_algorithm
                && algorithm.parse::<JwtAlgorithm>()? != JwtAlgorithm::Hs256
            {
                return Err(StartError::Config(format!(
                    "CHAT_JWT_ALGORITHM={algorithm} needs CHAT_JWT_PUBLIC_KEY_FILE, not a secret"
                )));
            }
            Ok(Some(KeySource::Secret(secret.as_bytes().to_vec())))
        }
        (None, Some(path)) => {
            let algorithm: JwtAlgorithm = settings
                .jwt_algorithm
                .as_deref()
                .ok_or_else(|| {
                    StartError::Config(
                        "CHAT_JWT_PUBLIC_KEY_FILE needs CHAT_JWT_ALGORITHM (RS256, ES256 or EdDSA)"
                            .to_owned(),
                    )
                })?
                .parse()?;
            let pem = std::fs::read(path).map_err(|source| StartError::File {
                path: path.clone(),
                source,
            })?;
            Ok(Some(KeySource::PublicKey(algorithm, pem)))
        }
        (None, None) => Ok(None),
    }
}

/// The development secret: beside the database file, or random for a memory database.
fn development_secret(settings: &Settings) -> Result<Vec<u8>, StartError> {
    match dev_secret_path(settings)? {
        Some(path) => {
            dev_key::load_or_create(&path).map_err(|source| StartError::File { path, source })
        }
        None => dev_key::random_secret().map_err(|source| StartError::File {
            path: PathBuf::from("(random)"),
            source,
        }),
    }
}

/// The key tokens are checked with, and whether it is the development key.
struct TokenKey {
    source: KeySource,
    development: bool,
}

/// The configured key, or in development mode the development secret (said loudly).
fn token_key(settings: &Settings) -> Result<TokenKey, StartError> {
    if let Some(source) = configured_key(settings)? {
        return Ok(TokenKey {
            source,
            development: false,
        });
    }
    let location = dev_secret_path(settings)?;
    tracing::warn!(
        secret = %location.as_ref().map_or_else(|| "in memory only".to_owned(), |p| p.display().to_string()),
        "DEVELOPMENT MODE: no CHAT_JWT_SECRET or CHAT_JWT_PUBLIC_KEY_FILE is set, \
         so tokens are signed with a development secret. Mint one with \
         `chat-server token --user 1`. Never run like this in production."
    );
    Ok(TokenKey {
        source: KeySource::Secret(development_secret(settings)?),
        development: true,
    })
}

fn authenticator(
    settings: &Settings,
    key: &TokenKey,
) -> Result<Arc<dyn Authenticator>, StartError> {
    let mut auth = match &key.source {
        KeySource::Secret(secret) => JwtAuthenticator::hs256(secret)?,
        KeySource::PublicKey(algorithm, pem) => {
            JwtAuthenticator::from_public_key_pem(*algorithm, pem)?
        }
    }
    .with_leeway(Duration::from_secs(settings.jwt_leeway_seconds));
    if let Some(issuer) = &settings.jwt_issuer {
        auth = auth.with_issuer(issuer.clone());
    }
    if let Some(audience) = &settings.jwt_audience {
        auth = auth.with_audience(audience.clone());
    }
    Ok(Arc::new(auth))
}

/// An issuer of tokens signed with `secret` that the settings' authenticator accepts.
fn issuer_with(settings: &Settings, secret: &[u8]) -> Result<JwtIssuer, StartError> {
    let mut issuer = JwtIssuer::hs256(secret)?;
    if let Some(iss) = &settings.jwt_issuer {
        issuer = issuer.with_issuer(iss.clone());
    }
    if let Some(aud) = &settings.jwt_audience {
        issuer = issuer.with_audience(aud.clone());
    }
    Ok(issuer)
}

/// A token issuer for `chat-server token`: the configured secret or the development key.
pub(crate) fn token_issuer(settings: &Settings) -> Result<JwtIssuer, StartError> {
    let secret = match configured_key(settings)? {
        Some(KeySource::Secret(secret)) => secret,
        Some(KeySource::PublicKey(..)) => {
            return Err(StartError::Config(
                "tokens for a public key are minted by whoever holds the private key".to_owned(),
            ));
        }
        None => match dev_secret_path(settings)? {
            Some(path) => dev_key::load_or_create(&path)
                .map_err(|source| StartError::File { path, source })?,
            None => {
                return Err(StartError::Config(
                    "a memory database has no development key to share; set CHAT_JWT_SECRET"
                        .to_owned(),
                ));
            }
        },
    };
    issuer_with(settings, &secret)
}

/// The demo page and development tokens of the settings: the page with `CHAT_DEMO=on`,
/// or by default in development mode; tokens in development mode only.
fn demo(settings: &Settings, key: &TokenKey) -> Result<Demo, StartError> {
    let page = match settings.demo {
        DemoMode::On => true,
        DemoMode::Off => false,
        DemoMode::Auto => key.development,
    };
    let mut demo = if page { Demo::page() } else { Demo::off() };
    if let (true, KeySource::Secret(secret)) = (key.development, &key.source) {
        demo = demo.with_dev_tokens(issuer_with(settings, secret)?);
    }
    if page {
        tracing::info!(
            page = %format!("http://{}/", settings.addr),
            dev_tokens = key.development,
            "demo page on (CHAT_DEMO=off turns it off)"
        );
    }
    Ok(demo)
}

/// A database's two faces: the messages and the job outbox beside them.
pub(crate) struct Stores {
    pub(crate) messages: Arc<dyn MessageRepository>,
    pub(crate) jobs: Arc<dyn JobStore>,
}

impl Stores {
    fn of<S: MessageRepository + JobStore>(store: S) -> Self {
        let store = Arc::new(store);
        Self {
            messages: store.clone(),
            jobs: store,
        }
    }
}

/// Opens (and migrates) the store `database` names.
pub(crate) async fn open_store(
    database: &Database,
    schema: Option<&str>,
) -> Result<Stores, StartError> {
    if schema.is_some() && !matches!(database, Database::Postgres(_)) {
        tracing::warn!("CHAT_DATABASE_SCHEMA applies to Postgres only; ignored");
    }
    match database {
        #[cfg(feature = "sqlite")]
        Database::SqliteFile(path) => Ok(Stores::of(
            SqliteStore::open(path).await.map_err(StartError::Store)?,
        )),
        #[cfg(feature = "sqlite")]
        Database::SqliteMemory => Ok(Stores::of(
            SqliteStore::open_in_memory()
                .await
                .map_err(StartError::Store)?,
        )),
        #[cfg(feature = "postgres")]
        Database::Postgres(url) => {
            let store = match schema {
                Some(schema) => PostgresStore::connect_with_schema(url, schema).await,
                None => PostgresStore::connect(url).await,
            }
            .map_err(StartError::Store)?;
            store.migrate().await.map_err(StartError::Store)?;
            Ok(Stores::of(store))
        }
        #[allow(unreachable_patterns, reason = "reached when a store feature is off")]
        other => Err(StartError::Config(format!(
            "this build of chat-server has no {0} store (build it with the `{0}` feature)",
            other.store_name()
        ))),
    }
}

/// The Redis every node shares, when `CHAT_REDIS_URL` names one: its URL and prefix.
fn redis(settings: &Settings) -> Result<Option<(&str, &str)>, StartError> {
    let Some(url) = &settings.redis_url else {
        return Ok(None);
    };
    if settings.redis_prefix.trim().is_empty() {
        return Err(StartError::Config(
            "CHAT_REDIS_PREFIX must not be empty".to_owned(),
        ));
    }
    Ok(Some((url, &settings.redis_prefix)))
}

/// The error for a Redis URL that does not parse; it does not repeat the URL, which may
/// hold a password.
fn invalid_redis_url(error: chat_core::Error) -> StartError {
    match error {
        // The adapter's own explanation (it never repeats the URL).
        chat_core::Error::Validation(errors) => {
            StartError::Config(format!("CHAT_REDIS_URL: {errors}"))
        }
        _ => StartError::Config("CHAT_REDIS_URL is not a valid redis:// URL".to_owned()),
    }
}

/// Events to this node's connections: within this process, or with `CHAT_REDIS_URL`
/// across every node on Redis pub/sub.
fn notifier(settings: &Settings) -> Result<Arc<dyn Notifier>, StartError> {
    // Each WebSocket's outbound queue is its subscription to the notifier.
    let local = InProcessNotifier::with_capacity(settings.ws_outbound_queue.get());
    Ok(match redis(settings)? {
        None => Arc::new(local),
        Some((url, prefix)) => {
            Arc::new(RedisNotifier::connect_with(url, prefix, local).map_err(invalid_redis_url)?)
        }
    })
}

/// Who is connected: within this process, or with `CHAT_REDIS_URL` on Redis for every
/// node (which makes the per-user connection limit hold across nodes), falling back to
/// this node's own count while Redis is away.
fn presence(settings: &Settings, metrics: &Metrics) -> Result<Arc<dyn Presence>, StartError> {
    let local = Arc::new(InMemoryPresence::new());
    let Some((url, prefix)) = redis(settings)? else {
        return Ok(local);
    };
    let ttl = Duration::from_secs(u64::from(settings.presence_ttl_seconds.get()));
    let shared = RedisPresence::connect(url, prefix, ttl).map_err(invalid_redis_url)?;
    let presence = FallbackPresence::new(Arc::new(shared), local);
    Ok(counted(presence, "connections", metrics))
}

/// The per-user send limit: on this node alone, or with `CHAT_REDIS_URL` on Redis for
/// every node, falling back to this node's own while Redis is away.
fn send_limiter(
    settings: &Settings,
    metrics: &Metrics,
) -> Result<Arc<dyn RateLimiter>, StartError> {
    let (rate, burst) = (settings.send_rate_per_minute, settings.send_burst);
    let local = Arc::new(GovernorRateLimiter::per_minute(rate, burst));
    let Some((url, prefix)) = redis(settings)? else {
        return Ok(local);
    };
    let shared = RedisRateLimiter::connect(url, prefix, rate, burst).map_err(invalid_redis_url)?;
    let limiter = FallbackRateLimiter::new(Arc::new(shared), local);
    Ok(counted(limiter, "send", metrics))
}

/// `fallback`, with its local answers counted on `/metrics` as
/// `chat_rate_limiter_fallbacks_total{limit="…"}`.
fn counted<P>(fallback: Fallback<P>, limit: &str, metrics: &Metrics) -> Arc<Fallback<P>>
where
    P: ?Sized + Send + Sync + 'static,
{
    let fallback = Arc::new(fallback);
    let counted = Arc::clone(&fallback);
    metrics.observe_counter(
        format!("chat_rate_limiter_fallbacks_total{{limit=\"{limit}\"}}"),
        move || counted.fallbacks(),
    );
    fallback
}

/// The assembled server: the state its routes run on, and the workers that run its
/// background jobs (when webhooks are configured).
#[derive(Debug)]
pub struct Server {
    /// What the routes run on.
    pub state: AppState,
    /// The job workers: stop them with [`JobWorkers::shut_down`] after the listener.
    pub workers: Option<JobWorkers>,
    /// The demo page and development tokens, for [`app_with_demo`](crate::app_with_demo).
    pub demo: Demo,
}

/// The worker pool, on a runtime of its own: one thread (and its blocking threads) at a
/// lower CPU priority, so that when the CPU is short, deliveries wait and the chat's
/// requests do not. Deliveries catch up as soon as there is CPU to spare.
pub struct JobWorkers {
    pool: Option<WorkerPool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for JobWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobWorkers")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// The niceness of the job threads (0 is the default, 19 the lowest priority): under
/// contention they get about a tenth of the CPU a request thread gets.
const JOB_NICENESS: i32 = 10;

impl JobWorkers {
    /// Starts `start`'s pool on its own runtime.
    fn start(start: impl FnOnce() -> WorkerPool) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("chat-jobs")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        let pool = {
            let _entered = runtime.enter();
            start()
        };
        Ok(Self {
            pool: Some(pool),
            runtime: Some(runtime),
        })
    }

    /// What the pool has done so far.
    fn stats(&self) -> Arc<PoolStats> {
        self.pool
            .as_ref()
            .map_or_else(Arc::default, WorkerPool::stats)
    }

    /// Stops the pool: jobs in flight finish within `grace` or go back to the outbox.
    pub async fn shut_down(mut self, grace: Duration) {
        if let Some(pool) = self.pool.take() {
            pool.shut_down(grace).await;
        }
    }
}

impl Drop for JobWorkers {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropped from within the server's runtime: no blocking wait.
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's CPU priority (Linux applies it to the thread alone).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), JOB_NICENESS)
    {
        tracing::debug!(%error, "job threads keep the normal priority");
    }
}

/// Opens the store and assembles the state the server runs on, without job workers:
/// with webhooks configured, jobs are stored with each change and wait for a node that
/// runs workers ([`assemble`] starts them and hands them over for a graceful stop).
pub async fn build_state(settings: &Settings) -> Result<AppState, StartError> {
    Ok(assemble(settings).await?.state)
}

/// Opens the store, assembles the state and starts the job workers.
pub async fn assemble(settings: &Settings) -> Result<Server, StartError> {
    let database = Database::parse(&settings.database_url).map_err(StartError::Config)?;
    let key = token_key(settings)?;
    let authenticator = authenticator(settings, &key)?;
    let demo = demo(settings, &key)?;
    let webhooks = settings.webhook_config().map_err(StartError::Config)?;
    let stores = open_store(&database, settings.database_schema.as_deref()).await?;
    let metrics = Metrics::new();
    let repository: Arc<dyn MessageRepository> = Arc::new(metrics.measure(stores.messages));
    let mut chat = ChatService::new(repository, notifier(settings)?)
        .with_presence(presence(settings, &metrics)?)
        .with_config(settings.chat_config())
        .with_send_limiter(send_limiter(settings, &metrics)?);
    if let Some((url, prefix)) = redis(settings)? {
        // Presence news crosses nodes, so a watcher hears of a user on any node.
        let news = RedisBroadcast::connect(url, prefix, "presence", PRESENCE_NEWS_CAPACITY)
            .map_err(invalid_redis_url)?;
        chat = chat.with_presence_changes(Arc::new(news));
    }
    let waker = PoolWaker::new();
    if let Some(config) = &webhooks {
        let plan = WebhookPlan::new(config, waker.clone());
        chat = chat.with_jobs(Arc::new(plan));
    }
    let workers = match &webhooks {
        Some(config) => Some(start_workers(
            settings,
            &chat,
            stores.jobs,
            config,
            waker,
            &metrics,
        )?),
        None => None,
    };
    let mut builder = AppState::builder(chat, authenticator);
    if let Some(app) = pusher_app(settings, &key)? {
        builder = builder.pusher(app, settings.pusher_config().map_err(StartError::Config)?);
        if let Some((url, prefix)) = redis(settings)? {
            let broadcast =
                RedisBroadcast::connect(url, prefix, "pusher", PUSHER_BROADCAST_CAPACITY)
                    .map_err(invalid_redis_url)?;
            builder = builder.pusher_broadcast(Arc::new(broadcast));
        }
    }
    let state = builder
        .websocket(settings.ws_config())
        .allowed_origins(settings.allowed_origins.iter().cloned())
        .auth_failure_limiter(Arc::new(GovernorRateLimiter::per_minute(
            settings.auth_failures_per_minute,
            settings.auth_failure_burst,
        )))
        .trusted_proxies(settings.trusted_proxies())
        .metrics(metrics)
        .max_body_bytes(settings.max_body_bytes.get())
        .build();
    Ok(Server {
        state,
        workers,
        demo,
    })
}

/// Starts the workers that deliver webhooks, counted on `/metrics`.
fn start_workers(
    settings: &Settings,
    chat: &ChatService,
    jobs: Arc<dyn JobStore>,
    config: &WebhookConfig,
    waker: PoolWaker,
    metrics: &Metrics,
) -> Result<JobWorkers, StartError> {
    let sender = WebhookSender::new(chat.clone(), config)
        .map_err(|error| StartError::Config(format!("cannot build the webhook client: {error}")))?;
    let observed = metrics.clone();
    let pool_config = settings.pool_config();
    let workers = JobWorkers::start(move || {
        WorkerPool::start(
            jobs,
            vec![Arc::new(sender)],
            pool_config,
            waker,
            Some(Arc::new(move |_, latency| observed.job_succeeded(latency))),
        )
    })
    .map_err(|error| StartError::Config(format!("cannot start the job workers: {error}")))?;
    let enqueued = chat.clone();
    metrics.observe_counter("chat_jobs_enqueued_total", move || enqueued.jobs_enqueued());
    let stats = workers.stats();
    for (outcome, read) in [
        ("succeeded", PoolStats::succeeded as fn(&PoolStats) -> u64),
        ("skipped", PoolStats::skipped),
        ("retried", PoolStats::retried),
        ("dead", PoolStats::dead),
        ("released", PoolStats::released),
    ] {
        let stats = Arc::clone(&stats);
        metrics.observe_counter(
            format!("chat_jobs_finished_total{{outcome=\"{outcome}\"}}"),
            move || read(&stats),
        );
    }
    tracing::info!(
        endpoints = config.endpoints.len(),
        events = ?config.events.iter().map(|event| event.name()).collect::<Vec<_>>(),
        workers = settings.job_workers.get(),
        "webhooks on"
    );
    Ok(workers)
}

/// Channel events a node may fall behind on before it rebuilds its copy of the others'
/// presence members.
const PUSHER_BROADCAST_CAPACITY: usize = 65_536;

/// Presence news a node's relay may fall behind by before it gets a gap (and every
/// watch looks again at everyone it watches).
const PRESENCE_NEWS_CAPACITY: usize = 4_096;

/// The Pusher app of the settings: the three `CHAT_PUSHER_APP_*` values, or in
/// development mode (no JWT key configured) development values, printed.
fn pusher_app(settings: &Settings, key: &TokenKey) -> Result<Option<PusherApp>, StartError> {
    let app = match (
        &settings.pusher_app_id,
        &settings.pusher_app_key,
        &settings.pusher_app_secret,
    ) {
        (Some(id), Some(key), Some(secret)) => PusherApp::new(id, key, secret)
            .map_err(|error| StartError::Config(format!("CHAT_PUSHER_APP_*: {error}")))?,
        (None, None, None) => {
            let (true, KeySource::Secret(secret)) = (key.development, &key.source) else {
                return Ok(None);
            };
            let app = PusherApp::development(secret);
            tracing::warn!(
                app_id = app.id(),
                key = app.key(),
                secret = app.secret_text(),
                "DEVELOPMENT MODE: the Pusher protocol (Laravel Echo, pusher-js) runs with \
                 development credentials; set CHAT_PUSHER_APP_ID, CHAT_PUSHER_APP_KEY and \
                 CHAT_PUSHER_APP_SECRET in production."
            );
            app
        }
        _ => {
            return Err(StartError::Config(
                "set all three of CHAT_PUSHER_APP_ID, CHAT_PUSHER_APP_KEY and CHAT_PUSHER_APP_SECRET, or none".to_owned(),
            ));
        }
    };
    Ok(Some(app))
}

/// Mints a token for `user` valid for `ttl` with the settings' key.
pub fn mint_token(settings: &Settings, user: i64, ttl: Duration) -> Result<String, StartError> {
    if user < 1 {
        return Err(StartError::Config("--user must be at least 1".to_owned()));
    }
    token_issuer(settings)?
        .mint(chat_core::UserId::new(user), ttl)
        .map_err(|e| StartError::Config(format!("cannot sign a token: {e}")))
}
