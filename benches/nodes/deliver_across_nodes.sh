#!/usr/bin/env bash
# Delivery across nodes next to delivery on one node, alternating, on one Postgres
# database and one Redis: `chat-bench deliver` with the senders on node A and the
# receivers on nodes B and C (three nodes on Redis), then the same run on node A alone
# (no Redis). Each run gets a fresh schema and Redis prefix, dropped afterwards.
# Prints one JSON line a run.
#
# Usage: CHAT_BENCH_POSTGRES_URL=postgres://… CHAT_BENCH_REDIS_URL=redis://… \
#   benches/nodes/deliver_across_nodes.sh [runs] [sends per second] [receivers]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
rate=${2:-2000}
receivers=${3:-5000}
postgres=${CHAT_BENCH_POSTGRES_URL:?set CHAT_BENCH_POSTGRES_URL}
redis=${CHAT_BENCH_REDIS_URL:?set CHAT_BENCH_REDIS_URL}
secret=benchmark-secret-benchmark-secret-benchmark
work=$(mktemp -d)
pids=()
stop_nodes() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_nodes; rm -rf "$work"' EXIT

cargo build --release -q -p chat-server -p chat-bench

# node PORT SCHEMA [PREFIX]: a node on loopback, on Redis when PREFIX is given.
node() {
  local port=$1 schema=$2 prefix=${3:-}
  env CHAT_ADDR="127.0.0.1:$port" CHAT_DATABASE_URL="$postgres" CHAT_DATABASE_SCHEMA="$schema" \
    CHAT_JWT_SECRET=$secret CHAT_SEND_RATE_PER_MINUTE=1000000000 CHAT_SEND_BURST=1000000000 \
    CHAT_LOG=warn ${prefix:+CHAT_REDIS_URL=$redis CHAT_REDIS_PREFIX=$prefix} \
    target/release/chat-server >>"$work/nodes.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health" && return 0
    sleep 0.2
  done
  echo "node on port $port did not start; its log:" >&2
  cat "$work/nodes.log" >&2
  exit 1
}

first_user=30000000
for run in $(seq 1 "$runs"); do
  for shape in one three; do
    schema="bench_nodes_$$_${run}_$shape"
    prefix="bench_nodes_$$_${run}"
    receivers_at=()
    if [ "$shape" = one ]; then
      node 18101 "$schema"
    else
      node 18101 "$schema" "$prefix"
      node 18102 "$schema" "$prefix"
      node 18103 "$schema" "$prefix"
      receivers_at=(--receivers-at http://127.0.0.1:18102 --receivers-at http://127.0.0.1:18103)
    fi
    result=$(timeout 300 target/release/chat-bench --url http://127.0.0.1:18101 --secret $secret \
      --json deliver --receivers "$receivers" --rate "$rate" --seconds 20 \
      --first-user "$first_user" "${receivers_at[@]}")
    echo "{\"run\":$run,\"nodes\":\"$shape\",\"rate\":$rate,\"deliver\":$result}"
    first_user=$((first_user + 100000))
    stop_nodes
    psql -q "$postgres" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
    redis-cli -u "$redis" --scan --pattern "$prefix:*" | xargs -r redis-cli -u "$redis" del >/dev/null
  done
done
