#!/usr/bin/env bash
# Property-based testing of the HTTP API against its own OpenAPI document: schemathesis
# generates valid and invalid requests for every operation from /api/openapi.json of the
# real binary and runs every check on the answers (no 5xx, only documented statuses,
# bodies and headers as documented, invalid input refused, valid input accepted).
#
# Usage: tests/reliability/schemathesis.sh [extra schemathesis run options]
# Environment: CHAT_SERVER (default target/debug/chat-server, built first),
#              SCHEMATHESIS_MAX_EXAMPLES (default 300 per operation),
#              SCHEMATHESIS_VENV (default target/ci-venv when it exists, else
#              target/schemathesis-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

here=tests/reliability
server=${CHAT_SERVER:-target/debug/chat-server}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-300}

if [ ! -x "$server" ]; then
  echo "$server is missing: build it with cargo build -p chat-server" >&2
  exit 1
fi

# The pinned schemathesis, in CI's virtual environment or one of our own.
if [ -n "${SCHEMATHESIS_VENV:-}" ]; then
  venv=$SCHEMATHESIS_VENV
elif [ -d target/ci-venv ]; then
  venv=target/ci-venv
else
  venv=target/schemathesis-venv
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pinned=$(grep -E '^schemathesis==' "$here/requirements.txt")
if ! "$venv/bin/pip" freeze 2>/dev/null | grep -qxF "$pinned"; then
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi

# A free loopback port, and a throwaway secret shared by the server and the token.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export CHAT_JWT_SECRET=$secret
export CHAT_ADDR=127.0.0.1:$port
export CHAT_DATABASE_URL=sqlite::memory:
# Thousands of requests from one user and one address: the limits would otherwise turn
# most of the run into 429s (documented, but then nothing else gets tested).
export CHAT_SEND_RATE_PER_MINUTE=1000000
export CHAT_SEND_BURST=1000000
export CHAT_AUTH_FAILURES_PER_MINUTE=1000000
export CHAT_AUTH_FAILURE_BURST=1000000
export CHAT_LOG=warn

log=target/schemathesis-server.log
"$server" serve > "$log" 2>&1 &
server_pid=$!
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

base=http://127.0.0.1:$port
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

# The caller; hooks.py needs it to tell a request naming the caller as their own
# counterpart (refused with 422, as documented) from a real rejection.
export SCHEMATHESIS_CALLER=1
token=$("$server" token --user "$SCHEMATHESIS_CALLER")

# One message to the caller, so marking a message read (id 1) is reached, not only 404.
other_token=$("$server" token --user 2)
python3 - "$base" "$other_token" "$SCHEMATHESIS_CALLER" <<'PY'
import json, sys, urllib.request
base, token, caller = sys.argv[1], sys.argv[2], int(sys.argv[3])
request = urllib.request.Request(
    f"{base}/api/chat/send",
    data=json.dumps({"receiver_id": caller, "message": "seed"}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(request) as response:
    assert response.status == 201, response.status
PY

# One worker: with several, hypothesis parses lambda sources from two threads at once and
# CPython 3.11 can then fail inside ast.parse ("AST constructor recursion depth
# mismatch"), an error in the tool rather than in the API.
start=$(date +%s)
status=0
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/api/openapi.json" \
  --url "$base" \
  -H "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$max_examples" \
  --seed "${SCHEMATHESIS_SEED:-20260101}" \
  --generation-database none \
  --workers 1 \
  --report junit --report-dir target/schemathesis \
  "$@" || status=$?
echo "schemathesis finished in $(($(date +%s) - start)) s with status $status"
exit "$status"
