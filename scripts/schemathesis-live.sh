#!/usr/bin/env bash
# An external schemathesis run against a live server, as an outside client sees the API:
#   1. a private SQLite database, filesystem broker and locmem cache under its temp folder (always:
#      the caller's DATABASE_URL / CELERY_BROKER_URL / CACHE_URL are ignored, so CI's are never touched),
#   2. migrations and the world of scripts/schemathesis_world.py (the demo organization plus one of
#      everything) with an `admin`-scoped API key of its owner,
#   3. gunicorn on a free local port (the production settings of gunicorn.conf.py, an access log),
#   4. `schemathesis run` with the server-error, response-schema, status-code, content-type and
#      header checks, authenticated with the key; scripts/schemathesis.toml draws ids from the world's,
#      scripts/schemathesis_hooks.py keeps the run from revoking its own key,
#   5. a summary from the access log: how many operations reached a 2xx, which did not.
# Exits non-zero on any failure. Usage: scripts/schemathesis-live.sh [EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
EXAMPLES=${1:-${SCHEMATHESIS_MAX_EXAMPLES:-5}}  # random examples per operation, after the coverage phase
read -r -a SCHEMATHESIS_ARGS <<<"${SCHEMATHESIS_EXTRA_ARGS:-}"  # e.g. --include-path-regex runs --phases coverage

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

export PLANASONIX_VAR_DIR="$WORK/var"
# Two server processes and two schemathesis workers share the file: WAL lets readers through, and
# IMMEDIATE transactions with a 30 s busy timeout queue the writers instead of failing them.
export DATABASE_URL="sqlite:///$WORK/db.sqlite3?timeout=30&transaction_mode=IMMEDIATE&init_command=PRAGMA+journal_mode%3DWAL"
export CELERY_BROKER_URL="filesystem://"  # folders under $PLANASONIX_VAR_DIR/broker
export CACHE_URL="locmemcache://schemathesis"
unset CELERY_RESULT_BACKEND TEST_POSTGRES_URL
export API_THROTTLE_RATE_KEY=100000/minute  # 429 is tested on its own (tests/core/test_errors.py)
export API_THROTTLE_RATE_USER=100000/minute
mkdir -p "$PLANASONIX_VAR_DIR"

"$BIN/python" scripts/schemathesis_world.py | tail -n 1 >"$WORK/world.json"
TOKEN=$("$BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/world.json")
SCHEMATHESIS_PROTECTED=$(cat "$WORK/world.json")
export SCHEMATHESIS_PROTECTED SCHEMATHESIS_HOOKS=scripts/schemathesis_hooks.py

PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/gunicorn" planasonix_env.wsgi:application --config gunicorn.conf.py --bind "127.0.0.1:$PORT" \
  --workers 2 --threads 2 --timeout 60 --log-level warning --access-logfile "$WORK/access.log" \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/schema/?format=json" >"$WORK/schema.json"

status=0
"$BIN/schemathesis" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$PORT/api/v1/schema/" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,response_headers_conformance \
  --max-examples "$EXAMPLES" --workers 2 \
  --generation-with-security-parameters false \
  --generation-deterministic \
  --no-color "${SCHEMATHESIS_ARGS[@]}" || status=$?
"$BIN/python" scripts/schemathesis_coverage.py "$WORK/schema.json" "$WORK/access.log" || true
if [ "$status" -ne 0 ]; then
  echo "schemathesis: failures (server log: last lines below)" >&2
  tail -n 40 "$WORK/server.log" >&2
fi
exit "$status"
