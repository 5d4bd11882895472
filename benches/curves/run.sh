#!/usr/bin/env bash
# The curves of docs/PERFORMANCE.md: each a series of `chat-bench --json` runs at
# growing sizes, printed as JSON lines for `chat-plot` to draw. Not part of CI.
#
#   delivery  send-to-arrival p50/p99 against receivers connected, at two send rates
#   sends     durable sends/s against concurrent senders, SQLite and (with a URL)
#             Postgres, beside the bare handler and the raw fsync rate
#   history   history page p99 against messages in the table (SQLite)
#   memory    server RSS growth against idle connections: the chat server's native
#             WebSocket beside a bare tokio server holding plain TCP connections
#
# Every server runs on loopback, fresh for its curve (for each point, for memory),
# on a SQLite file in a scratch folder or a fresh Postgres schema dropped afterwards.
#
# Usage: [CHAT_BENCH_POSTGRES_URL=postgres://…] benches/curves/run.sh [curve…] >runs.jsonl
#        cargo run --release -p chat-plot -- --out docs/curves runs.jsonl
# Sizes can be narrowed for a quick look: RECEIVERS, RATES, SENDERS, TABLE_ROWS,
# CONNECTIONS (space-separated lists) and SECONDS_PER_RUN.
set -euo pipefail
cd "$(dirname "$0")/../.."
curves=("$@")
[ ${#curves[@]} -gt 0 ] || curves=(delivery sends history memory)
receivers_list=${RECEIVERS:-1000 2500 5000 10000 15000}
rates=${RATES:-2000 5000}
senders_list=${SENDERS:-1 2 4 8 16 32 64 128 256}
table_rows_list=${TABLE_ROWS:-10000 100000 1000000 10000000}
connections_list=${CONNECTIONS:-1000 2500 5000 10000 15000}
seconds=${SECONDS_PER_RUN:-8}
postgres=${CHAT_BENCH_POSTGRES_URL:-}
secret=benchmark-secret-benchmark-secret-benchmark
port=18401
work=$(mktemp -d)
pid=""
schema=""
stop_server() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
  if [ -n "$schema" ]; then
    psql -q "$postgres" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    schema=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

cargo build --release -q -p chat-server -p chat-bench

source benches/loopback.sh
wait_for() {
  wait_for_url "http://127.0.0.1:$port/health" "$work/server.log"
}

# server sqlite|postgres: a fresh chat server without send limits.
server() {
  local database
  if [ "$1" = postgres ]; then
    schema="bench_curves_$$_$RANDOM"
    database=(CHAT_DATABASE_URL="$postgres" CHAT_DATABASE_SCHEMA="$schema")
  else
    database=(CHAT_DATABASE_URL="sqlite://$work/chat-$RANDOM.db")
  fi
  env CHAT_ADDR="127.0.0.1:$port" "${database[@]}" CHAT_JWT_SECRET=$secret \
    CHAT_SEND_RATE_PER_MINUTE=1000000000 CHAT_SEND_BURST=1000000000 CHAT_LOG=warn \
    target/release/chat-server >>"$work/server.log" 2>&1 &
  pid=$!
  wait_for
}

bench() {
  timeout 1200 target/release/chat-bench --url "http://127.0.0.1:$port" --secret $secret --json "$@"
}

# point CURVE SERIES X REPORT
point() {
  echo "{\"curve\":\"$1\",\"series\":\"$2\",\"x\":$3,\"report\":$4}"
}

delivery() {
  local first_user=50000000
  for rate in $rates; do
    server sqlite
    for receivers in $receivers_list; do
      point delivery "$rate sends/s" "$receivers" \
        "$(bench deliver --receivers "$receivers" --rate "$rate" --seconds "$seconds" \
          --first-user "$first_user")"
      first_user=$((first_user + 100000))
    done
    stop_server
  done
}

sends() {
  local stores=(sqlite)
  [ -n "$postgres" ] && stores+=(postgres)
  echo "{\"curve\":\"sends\",\"limit\":\"raw fsync, one 4 KiB append each\",\"report\":$(bench fsync --dir "$work" --seconds "$seconds")}"
  for store in "${stores[@]}"; do
    server "$store"
    local first_user=60000000 label=SQLite
    [ "$store" = postgres ] && label=Postgres
    for senders in $senders_list; do
      point sends "$label" "$senders" \
        "$(bench send --senders "$senders" --seconds "$seconds" --no-baseline --first-user "$first_user")"
      first_user=$((first_user + 1000))
    done
    stop_server
  done
  for senders in $senders_list; do
    point sends "bare handler (no storage)" "$senders" \
      "$(bench baseline --senders "$senders" --seconds "$seconds")"
  done
}

# Each point adds rows until the table holds the next size, then a conversation of
# 5,000 messages of two new users, and reads its pages.
history() {
  server sqlite
  local held=0 user=4000000
  for rows in $table_rows_list; do
    point history SQLite "$rows" \
      "$(bench history --messages 5000 --table-rows $((rows - held)) --requests 2000 --user "$user")"
    held=$rows
    user=$((user + 10000))
  done
  stop_server
}

memory() {
  for connections in $connections_list; do
    server sqlite
    point memory "chat server, native WebSocket" "$connections" \
      "$(bench idle --pid "$pid" --connections "$connections")"
    stop_server
    target/release/chat-bench hold --listen "127.0.0.1:$port" >/dev/null &
    pid=$!
    sleep 0.5
    point memory "bare tokio server, plain TCP" "$connections" \
      "$(bench idle --raw --pid "$pid" --connections "$connections")"
    stop_server
  done
}

echo "{\"machine\":\"$(nproc) cores\",\"date\":\"$(date -u +%F)\",\"commit\":\"$(git rev-parse --short HEAD)\"}"
for curve in "${curves[@]}"; do
  case "$curve" in
    delivery | sends | history | memory) "$curve" ;;
    *) echo "unknown curve $curve (delivery, sends, history, memory)" >&2; exit 2 ;;
  esac
done
