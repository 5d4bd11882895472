#!/usr/bin/env bash
# Sends per second through the real server on SQLite next to a bare axum handler,
# measured in one run on loopback; with CHAT_BENCH_POSTGRES_URL set, also on Postgres
# (in a fresh schema). Usage: benches/wrk/sends_vs_baseline.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
connections=${2:-64}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -q -p chat-server --bin chat-server --example baseline
secret=benchmark-secret-benchmark-secret-benchmark
export TOKEN
TOKEN=$(CHAT_JWT_SECRET=$secret target/release/chat-server token --user 1 --ttl 1h)

CHAT_ADDR=127.0.0.1:18080 CHAT_DATABASE_URL="sqlite://$work/bench.db" CHAT_JWT_SECRET=$secret \
  CHAT_SEND_RATE_PER_MINUTE=1000000000 CHAT_SEND_BURST=1000000000 CHAT_LOG=warn \
  target/release/chat-server &
target/release/examples/baseline 127.0.0.1:18081 >/dev/null &
ports="18080 18081"
if [ -n "${CHAT_BENCH_POSTGRES_URL:-}" ]; then
  CHAT_ADDR=127.0.0.1:18082 CHAT_DATABASE_URL="$CHAT_BENCH_POSTGRES_URL" \
    CHAT_DATABASE_SCHEMA="chat_bench_$$" CHAT_JWT_SECRET=$secret \
    CHAT_SEND_RATE_PER_MINUTE=1000000000 CHAT_SEND_BURST=1000000000 CHAT_LOG=warn \
    target/release/chat-server &
  ports="$ports 18082"
fi
for port in $ports; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

run() {
  wrk -t2 -c"$connections" -d"${seconds}s" --latency -s benches/wrk/send.lua "$1" | tee "$work/$2.txt"
}
echo "== chat-server on SQLite (durable), $connections connections, ${seconds}s"
run http://127.0.0.1:18080/api/chat/send server
echo "== bare axum 201 handler, same client"
run http://127.0.0.1:18081/api/chat/send baseline
if [ -n "${CHAT_BENCH_POSTGRES_URL:-}" ]; then
  echo "== chat-server on Postgres, same client"
  run http://127.0.0.1:18082/api/chat/send postgres
  if grep -q "Non-2xx" "$work/postgres.txt"; then echo "some Postgres sends failed" >&2; exit 1; fi
  postgres=$(awk '/Requests\/sec/ {print $2}' "$work/postgres.txt")
  psql "$CHAT_BENCH_POSTGRES_URL" -qc "DROP SCHEMA chat_bench_$$ CASCADE" >/dev/null 2>&1 || true
fi
# Every request must have been a committed send (wrk lists non-2xx answers itself).
if grep -q "Non-2xx" "$work/server.txt"; then echo "some sends failed" >&2; exit 1; fi
stored=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:18080/api/chat/messages/2?per_page=1" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["meta"]["total"])')
requests=$(awk '/requests in/ {print $1}' "$work/server.txt")
echo "stored messages: $stored (wrk completed $requests requests; in-flight ones at the end are stored too)"
server=$(awk '/Requests\/sec/ {print $2}' "$work/server.txt")
baseline=$(awk '/Requests\/sec/ {print $2}' "$work/baseline.txt")
awk -v s="$server" -v b="$baseline" 'BEGIN { printf "SQLite sends/s %.0f, baseline %.0f requests/s, ratio %.1f%%\n", s, b, 100 * s / b }'
if [ -n "${postgres:-}" ]; then
  awk -v p="$postgres" -v s="$server" -v b="$baseline" 'BEGIN { printf "Postgres sends/s %.0f: %.1f%% of baseline, %.1f%% of SQLite\n", p, 100 * p / b, 100 * p / s }'
fi
