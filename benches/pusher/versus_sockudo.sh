#!/usr/bin/env bash
# The chat server's Pusher side next to Sockudo's, with the same client on the same
# machine: `chat-bench pusher` (Pusher protocol 7 connections, each on a private
# channel, then events published through the HTTP API to a channel the subscribers
# share) against each server in turn, alternating, every server fresh for its run.
# Not part of CI.
#
# Sockudo is built once from the Rust package registry into SOCKUDO_ROOT (outside the
# repository); its build needs `protoc` (Debian's protobuf-compiler). It runs with its
# in-memory drivers and no config file, on loopback only. The chat server runs on a
# fresh SQLite file: it stores every chat message, but the published events here are
# not chat messages, so neither figure includes storage.
#
# Three servers: the chat server, Sockudo at its defaults, and Sockudo "lean": its
# documented per-connection buffers (`WEBSOCKET_MAX_MESSAGES`, the outgoing queue of
# each connection, allocated in full when it connects, and
# `WEBSOCKET_WRITE_BUFFER_SIZE`) at the smallest values that still deliver every
# event at 20 events/s (at higher rates its full queues close subscribers' connections).
# Two phases, each alternating the servers:
# - `rounds` rounds at `connections` connections: memory per idle connection, then
#   publish-to-arrival latency at `subscribers` subscribers, 20 events/s;
# - `RATE_ROUNDS` rounds (default 1) of a rate ladder at `subscribers` connections,
#   all subscribed: events published at a fixed rate of 1000/INTERVAL per second for
#   each INTERVAL (ms) in INTERVALS (EVENTS events each, default 200), for the
#   highest rate with p99 under 50 ms.
#
# Usage: benches/pusher/versus_sockudo.sh [rounds] [connections] [subscribers]
# Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
connections=${2:-15000}
subscribers=${3:-5000}
sockudo_version=${SOCKUDO_VERSION:-5.2.0}
sockudo_root=${SOCKUDO_ROOT:-$HOME/.cache/chat-bench/sockudo-$sockudo_version}
app_id=bench-app
app_key=bench-key
app_secret=bench-secret-0123456789
work=$(mktemp -d)
pid=""
stop_server() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

if [ ! -x "$sockudo_root/bin/sockudo" ]; then
  command -v protoc >/dev/null || { echo "install protoc first (Debian: protobuf-compiler)" >&2; exit 1; }
  cargo install sockudo --version "$sockudo_version" --locked --root "$sockudo_root"
fi
cargo build --release -q -p chat-server -p chat-bench

source benches/loopback.sh
wait_for() {
  wait_for_url "http://127.0.0.1:$1/"
}

# chat PORT: the chat server with the bench's Pusher app.
chat() {
  env CHAT_ADDR="127.0.0.1:$1" CHAT_DATABASE_URL="sqlite://$work/chat-$1.db" \
    CHAT_JWT_SECRET=benchmark-secret-benchmark-secret-benchmark \
    CHAT_PUSHER_APP_ID=$app_id CHAT_PUSHER_APP_KEY=$app_key CHAT_PUSHER_APP_SECRET=$app_secret \
    CHAT_LOG=warn target/release/chat-server >>"$work/chat.log" 2>&1 &
  pid=$!
  wait_for "$1"
}

# sockudo PORT: Sockudo at its defaults, with the bench's app, metrics off, and the
# limits that would refuse the benchmark itself raised: its per-address rate limits
# (20 connections and 100 API requests a minute) and the default app's 100
# connections.
sockudo() {
  (cd "$work" && exec env HOST=127.0.0.1 PORT="$1" METRICS_ENABLED=false RATE_LIMITER_ENABLED=false \
    SOCKUDO_DEFAULT_APP_ID=$app_id SOCKUDO_DEFAULT_APP_KEY=$app_key \
    SOCKUDO_DEFAULT_APP_SECRET=$app_secret SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 \
    "$sockudo_root/bin/sockudo" >>"$work/sockudo.log" 2>&1) &
  pid=$!
  wait_for "$1"
}

# sockudo_lean PORT: as `sockudo`, with the smallest per-connection buffers.
sockudo_lean() {
  WEBSOCKET_MAX_MESSAGES=16 WEBSOCKET_WRITE_BUFFER_SIZE=1024 sockudo "$1"
}

# run SERVER PORT ROUND CONNECTIONS SUBSCRIBERS EVENTS INTERVAL_MS
run() {
  local server=$1 port=$2 round=$3
  "$server" "$port"
  local result
  result=$(timeout 600 target/release/chat-bench --url "http://127.0.0.1:$port" \
    --secret benchmark-secret-benchmark-secret-benchmark --json \
    pusher --pid "$pid" --connections "$4" --subscribers "$5" --events "$6" \
    --event-interval-ms "$7" --app-id $app_id --app-key $app_key --app-secret $app_secret) || result=null
  echo "{\"round\":\"$round\",\"server\":\"$server\",\"interval_ms\":$7,\"pusher\":$result}"
  stop_server
}

servers=(chat sockudo sockudo_lean)
echo "{\"sockudo\":\"$("$sockudo_root/bin/sockudo" --version 2>/dev/null | head -n 1)\"}"
for round in $(seq 1 "$rounds"); do
  for n in "${!servers[@]}"; do
    run "${servers[$n]}" $((18201 + n)) "$round" "$connections" "$subscribers" 100 50
  done
done
for round in $(seq 1 "${RATE_ROUNDS:-1}"); do
  for interval in ${INTERVALS:-100 50 20 10 5 2}; do
    for n in "${!servers[@]}"; do
      run "${servers[$n]}" $((18201 + n)) "rate-$round" "$subscribers" "$subscribers" "${EVENTS:-200}" "$interval"
    done
  done
done
