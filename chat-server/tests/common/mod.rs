//! A test harness over `chat_server::app`: requests without a socket, and every
//! response checked against the OpenAPI document (status documented, body valid).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chat_core::testing::Faults;
use chat_core::{InMemoryRepository, JwtIssuer, Layered, UserId};
use chat_server::config::Cli;
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// A token for `user`, signed with [`SECRET`], valid for ten minutes.
pub fn token(user: i64) -> String {
    JwtIssuer::hs256(SECRET.as_bytes())
        .unwrap()
        .mint(UserId::new(user), Duration::from_secs(600))
        .unwrap()
}

/// An answer, with its body parsed as JSON (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The field names of a 422's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}

pub struct TestApp {
    pub app: Router,
    openapi: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// SQLite in memory.
    Sqlite,
    /// A fresh schema in the database at `CHAT_TEST_POSTGRES_URL`.
    Postgres,
}

tokio::task_local! {
    /// The store of the running test (SQLite when unset).
    pub static STORE: Store;
}

static SCHEMAS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static SWEEP: std::sync::Once = std::sync::Once::new();

/// Schemas older than this belong to no live test process, whatever their name says.
const STALE_SCHEMA_SECONDS: u64 = 6 * 3600;

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Whether the test process that named a schema `chat_e2e_<pid>_<created>_<n>` is
/// certainly gone: its pid is not running (where `/proc` tells) or the schema is
/// older than any test run. Schemas of live processes, this one's or a parallel
/// runner's, are never dropped.
fn abandoned(name: &str) -> bool {
    let mut parts = name.trim_start_matches("chat_e2e_").split('_');
    let (Some(Ok(pid)), Some(Ok(created))) = (
        parts.next().map(str::parse::<u32>),
        parts.next().map(str::parse::<u64>),
    ) else {
        // Named by an older harness, which ran long ago.
        return true;
    };
    if unix_seconds().saturating_sub(created) > STALE_SCHEMA_SECONDS {
        return true;
    }
    let proc = std::path::Path::new("/proc");
    pid != std::process::id() && proc.is_dir() && !proc.join(pid.to_string()).exists()
}

/// Drops the schemas that test processes no longer running left behind.
fn sweep_old_schemas(url: &str) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let Ok(pool) = chat_store_postgres::sqlx::PgPool::connect(&url).await else { return };
            let names: Vec<String> = chat_store_postgres::sqlx::query_scalar(
                "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name LIKE 'chat\\_e2e\\_%'",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            for name in names.into_iter().filter(|name| abandoned(name)) {
                let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                let _ = chat_store_postgres::sqlx::raw_sql(chat_store_postgres::sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            }
            pool.close().await;
        });
    })
    .join()
    .unwrap();
}

/// Builds settings from command-line style arguments, as the binary would, on the
/// store of the running test.
pub fn settings(extra: &[&str]) -> chat_server::config::Settings {
    let store = STORE.try_with(|store| *store).unwrap_or(Store::Sqlite);
    let mut args: Vec<String> = vec!["chat-server".into(), "--jwt-secret".into(), SECRET.into()];
    match store {
        Store::Sqlite => args.extend(["--database-url".into(), "sqlite::memory:".into()]),
        Store::Postgres => {
            let url = std::env::var("CHAT_TEST_POSTGRES_URL").expect("CHAT_TEST_POSTGRES_URL");
            SWEEP.call_once(|| sweep_old_schemas(&url));
            let schema = format!(
                "chat_e2e_{}_{}_{}",
                std::process::id(),
                unix_seconds(),
                SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            args.extend([
                "--database-url".into(),
                url,
                "--database-schema".into(),
                schema,
            ]);
        }
    }
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    Cli::try_parse_from(args).unwrap().settings
}

/// Runs each listed `async fn` test on SQLite and on Postgres (`name::sqlite`,
/// `name::postgres`); the Postgres one skips with a printed reason when
/// `CHAT_TEST_POSTGRES_URL` is unset, and fails then with `CHAT_REQUIRE_SERVICES=1`.
#[macro_export]
macro_rules! both_stores {
    ($flavor:literal; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = $flavor)]
                async fn sqlite() {
                    $crate::common::STORE.scope($crate::common::Store::Sqlite, super::$name()).await;
                }

                #[tokio::test(flavor = $flavor)]
                async fn postgres() {
                    if chat_core::testing::service_url("CHAT_TEST_POSTGRES_URL").is_none() {
                        return;
                    }
                    $crate::common::STORE.scope($crate::common::Store::Postgres, super::$name()).await;
                }
            }
        )*
    };
}

impl TestApp {
    /// The server as the binary assembles it, on SQLite in memory.
    pub async fn new() -> Self {
        Self::with_args(&[]).await
    }

    /// The same with extra command-line settings.
    pub async fn with_args(extra: &[&str]) -> Self {
        let state = chat_server::build_state(&settings(extra)).await.unwrap();
        Self::from_app(chat_server::app(state))
    }

    pub fn from_app(app: Router) -> Self {
        let mut openapi = serde_json::to_value(chat_server::openapi()).unwrap();
        forbid_undocumented_fields(&mut openapi["components"]);
        Self {
            app,
            openapi,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// A JSON request as `user` (no token when `None`).
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        user: Option<i64>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(user) = user {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token(user)));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    pub async fn get(&self, uri: &str, user: i64) -> Answer {
        self.call(Method::GET, uri, Some(user), None).await
    }

    pub async fn post(&self, uri: &str, user: i64, body: Value) -> Answer {
        self.call(Method::POST, uri, Some(user), Some(body)).await
    }

    /// The status of a send of `message` from `from` to `to`.
    pub async fn send_status(&self, from: i64, to: i64, message: &str) -> StatusCode {
        self.post(
            "/api/chat/send",
            from,
            serde_json::json!({"receiver_id": to, "message": message}),
        )
        .await
        .status
    }

    /// Sends `message` from `from` to `to`; panics unless it is created.
    pub async fn send_message(&self, from: i64, to: i64, message: &str) -> Value {
        let answer = self
            .post(
                "/api/chat/send",
                from,
                serde_json::json!({"receiver_id": to, "message": message}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.body["data"].clone()
    }

    /// Any request; the answer is checked against the OpenAPI document.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.check_documented(&method, &path, status, &headers, &body);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    fn check_documented(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Value,
    ) {
        let Some(template) = self.template_of(path) else {
            return;
        };
        let method_key = method.as_str().to_ascii_lowercase();
        let operation = &self.openapi["paths"][&template][&method_key];
        if operation.is_null() {
            // The router answers 405 for a method the path does not have.
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {template} is undocumented"
            );
            return;
        }
        let documented = &operation["responses"][status.as_str()];
        assert!(
            !documented.is_null(),
            "{method} {template} answered {status}, which the OpenAPI document does not list"
        );
        let content = &documented["content"];
        let Some((content_type, media)) = content.as_object().and_then(|c| c.iter().next()) else {
            return;
        };
        if content_type != "application/json" {
            let actual = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                actual.starts_with(content_type.as_str()),
                "{method} {template}: content type {actual}"
            );
            return;
        }
        let key = format!("{method_key} {template} {status}");
        let validator = self
            .validators
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_insert_with(|| {
                let mut schema = media["schema"].clone();
                schema["components"] = self.openapi["components"].clone();
                Arc::new(jsonschema::draft202012::new(&schema).unwrap())
            })
            .clone();
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{key}: body does not match the OpenAPI schema: {errors:?}\n{body}"
        );
    }

    fn template_of(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.openapi["paths"]
            .as_object()?
            .keys()
            .find(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
            })
            .cloned()
    }
}

/// Makes every documented object closed, so a response field the document does not
/// describe fails the check.
fn forbid_undocumented_fields(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".to_owned(), Value::Bool(false));
            }
            for value in map.values_mut() {
                forbid_undocumented_fields(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_undocumented_fields),
        _ => {}
    }
}

/// A store that works like the in-memory one until it is switched off, then answers
/// every call with `Unavailable` (a lost database connection).
pub fn switchable_store() -> Arc<Layered<Faults>> {
    Arc::new(Layered::new(
        Arc::new(InMemoryRepository::new()),
        Faults::default(),
    ))
}
