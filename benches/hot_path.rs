//! Micro-benchmarks of the pieces every send and delivery passes through: JWT
//! verification, message JSON encoding (REST body and WebSocket frame), and the
//! notifier's fan-out to a user's devices.
//!
//! Run with: `cargo bench --bench hot_path`
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chat::testing::record;
use chat::{
    Authenticator, Event, InProcessNotifier, JwtAuthenticator, JwtIssuer, Message, MessageId,
    Notifier, UserId,
};
use chat_transport_ws::protocol::ServerFrame;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{FutureExt, StreamExt};

const SECRET: &[u8] = b"a-benchmark-secret-of-at-least-32-bytes";

fn message() -> Message {
    record(
        1,
        2,
        "a message of ordinary length, about sixty characters long!",
    )
    .into_message(MessageId::new(123_456))
}

fn jwt(c: &mut Criterion) {
    let auth = JwtAuthenticator::hs256(SECRET).unwrap();
    let token = JwtIssuer::hs256(SECRET)
        .unwrap()
        .mint(UserId::new(42), Duration::from_secs(3600))
        .unwrap();
    c.bench_function("jwt_verify_hs256", |b| {
        b.iter(|| {
            auth.authenticate(black_box(&token))
                .now_or_never()
                .unwrap()
                .unwrap()
        });
    });
}

fn encoding(c: &mut Criterion) {
    let message = message();
    let mut group = c.benchmark_group("message_json");
    // The server's `{"data": Message}` envelope, serialized straight from the message.
    #[derive(serde::Serialize)]
    struct Data<'a> {
        data: &'a Message,
    }
    group.bench_function("rest_body", |b| {
        b.iter(|| {
            serde_json::to_vec(&Data {
                data: black_box(&message),
            })
            .unwrap()
        });
    });
    group.bench_function("websocket_frame", |b| {
        b.iter(|| {
            serde_json::to_string(&ServerFrame::Message {
                data: black_box(&message),
            })
            .unwrap()
        });
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("notifier_fan_out");
    for devices in [1usize, 4, 16] {
        let notifier = InProcessNotifier::new();
        let mut streams: Vec<_> = (0..devices)
            .map(|_| {
                notifier
                    .subscribe(UserId::new(1))
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let shared = Arc::new(message());
        group.throughput(Throughput::Elements(devices as u64));
        group.bench_function(format!("{devices}_devices"), |b| {
            b.iter(|| {
                // Publish once, then every device takes its copy, as connections do.
                notifier
                    .publish(UserId::new(1), Event::Message(Arc::clone(&shared)))
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                for stream in &mut streams {
                    black_box(stream.next().now_or_never().flatten().unwrap());
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, jwt, encoding, fan_out);
criterion_main!(benches);
