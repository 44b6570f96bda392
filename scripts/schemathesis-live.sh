#!/usr/bin/env bash
# An external schemathesis run against a live server, as an outside client sees the API:
#   1. a private SQLite database and broker folder (or DATABASE_URL / CELERY_BROKER_URL if set),
#   2. an organization with stages, its owner and an `admin`-scoped API key, made by manage.py,
#   3. gunicorn on a free local port,
#   4. `schemathesis run` with the server-error and response-schema-conformance checks (and the
#      status-code, content-type and header checks), authenticated with the key.
# Exits non-zero on any server error or schema violation. Usage: scripts/schemathesis-live.sh [EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
EXAMPLES=${1:-${SCHEMATHESIS_MAX_EXAMPLES:-30}}
read -r -a SCHEMATHESIS_ARGS <<<"${SCHEMATHESIS_EXTRA_ARGS:-}"  # e.g. --include-path-regex runs --phases coverage

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

export PLANASONIX_VAR_DIR="$WORK/var"
export DATABASE_URL=${DATABASE_URL:-sqlite:///$WORK/db.sqlite3}
export API_THROTTLE_RATE_KEY=${API_THROTTLE_RATE_KEY:-100000/minute}  # 429 is tested on its own
export API_THROTTLE_RATE_USER=${API_THROTTLE_RATE_USER:-100000/minute}
mkdir -p "$PLANASONIX_VAR_DIR"

"$BIN/python" manage.py migrate --no-input --verbosity 0
TOKEN=$("$BIN/python" manage.py shell --no-imports -c '
from django.contrib.auth import get_user_model
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition
users = get_user_model().objects
operator = users.create_superuser("st-operator", "st-operator@example.com", None)
owner = users.create_user("st-owner", "st-owner@example.com", None, is_staff=True)
org = tenancy_services.organization_create(
    actor=operator, name="Fuzz", slug="fuzz", edition=Edition.ENTERPRISE, max_environments=5, owner=owner
)
production = env_services.environment_create(actor=owner, organization=org, name="Production", kind=Kind.PRODUCTION)
staging = env_services.environment_create(
    actor=owner, organization=org, name="Staging", kind=Kind.STAGING, promotes_to=production
)
env_services.environment_create(
    actor=owner, organization=org, name="Development", kind=Kind.DEVELOPMENT, promotes_to=staging, position=0
)
_, token = tenancy_services.api_key_create(actor=owner, organization=org, name="schemathesis", scopes=["admin"])
print(token)
' | tail -n 1)

PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/gunicorn" planasonix_env.wsgi:application --bind "127.0.0.1:$PORT" --workers 1 --threads 4 \
  --timeout 60 --log-level warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done

status=0
"$BIN/schemathesis" run "http://127.0.0.1:$PORT/api/v1/schema/" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,response_headers_conformance \
  --max-examples "$EXAMPLES" \
  --generation-with-security-parameters false \
  --generation-deterministic \
  --no-color "${SCHEMATHESIS_ARGS[@]}" || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis: failures (server log: last lines below)" >&2
  tail -n 40 "$WORK/server.log" >&2
fi
exit "$status"
