//! A bare axum server with one trivial handler: `POST /api/chat/send` answers 201 with
//! a small JSON body and does nothing else. Load tests run it next to the real server
//! to report sends per second as a ratio to what this machine can do at all.
//!
//! Run with: `cargo run --release -p chat-server --example baseline -- 127.0.0.1:18081`

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let app = Router::new().route(
        "/api/chat/send",
        post(|| async {
            (
                StatusCode::CREATED,
                axum::Json(serde_json::json!({"data": {"id": 1}})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("baseline listening on http://{address}");
    axum::serve(listener, app)
        .with_graceful_shutdown(chat_server::shutdown_signal())
        .await
}
