#!/usr/bin/env bash
# A tracking server for many jobs: PostgreSQL (the backend store) + `mlflow server` with proxied
# artifacts, both bound to 127.0.0.1 on free ports. Jobs need only the printed http URI.
#
#   bash scripts/tracking_server.sh start    # prints logger.tracking_uri=http://127.0.0.1:<port>
#   bash scripts/tracking_server.sh status
#   bash scripts/tracking_server.sh stop     # stops both, by the process ids it recorded
#
# State (data, artifacts, logs, pids, ports, the database password) lives in
# $GLASSWORKS_TRACKING_DIR (default: <repo>/.tracking, ignored by git). `start` again reuses the
# same database and port: after the mlflow server died (kill -9, a crash), it comes back on the
# same URI and the same PostgreSQL. MLFLOW_PORT / PG_PORT pick the ports of a first start.
# PostgreSQL refuses to run as root: as root, it runs as the `postgres` user, which must be able
# to reach the state folder. Exit codes: 3 PostgreSQL missing and not installable, 4 mlflow server
# failed, 5 PostgreSQL failed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$(mkdir -p "${GLASSWORKS_TRACKING_DIR:-$ROOT/.tracking}" && cd "${GLASSWORKS_TRACKING_DIR:-$ROOT/.tracking}" && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
HOST=127.0.0.1
STATE="$DIR/server.env"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A killed server can linger as a zombie for a moment (kill -0 succeeds): check its state too.
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! ps -o stat= -p "$1" | grep -q '^Z'; }
healthy() { "$PY" -c "import urllib.request; urllib.request.urlopen('http://$HOST:$1/health', timeout=2)" 2>/dev/null; }

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$bin" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL (apt-get install postgresql)..." >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  fi
  [ -n "$bin" ] || { echo "error: PostgreSQL not found in /usr/lib/postgresql and apt-get could not install it" >&2; exit 3; }
  echo "$bin"
}

as_pg() {  # run a PostgreSQL binary as the data directory's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

load_state() { [ -f "$STATE" ] && . "$STATE" || true; }
save_state() {
  cat > "$STATE" <<EOF
PG_PORT=$PG_PORT
MLFLOW_PORT=${MLFLOW_PORT:-}
PG_PASSWORD=$PG_PASSWORD
MLFLOW_PID=${MLFLOW_PID:-}
TRACKING_URI=http://$HOST:${MLFLOW_PORT:-}
EOF
  chmod 600 "$STATE"
}

start_postgres() {
  local bin; bin=$(pg_bin)
  local data="$DIR/pgdata"
  PG_PORT=${PG_PORT:-$(free_port)}
  if [ ! -f "$data/PG_VERSION" ]; then
    PG_PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
    mkdir -p "$data"
    local pwfile; pwfile=$(mktemp)
    echo "$PG_PASSWORD" > "$pwfile"
    if [ "$(id -u)" = 0 ]; then
      chown -R postgres "$data" "$pwfile"; chmod 755 "$DIR"
      runuser -u postgres -- test -x "$data" || { rm -f "$pwfile"
        echo "error: the postgres user cannot reach $data (a parent folder is private): choose another GLASSWORKS_TRACKING_DIR" >&2; exit 5; }
    fi
    as_pg "$bin/initdb" -D "$data" -U mlflow --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 >"$DIR/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; echo "error: initdb failed:" >&2; tail -5 "$DIR/initdb.log" >&2; exit 5; }
    rm -f "$pwfile"
  fi
  save_state
  if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Loopback only; the socket in the data directory (no /var/run/postgresql needed).
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/postgres.log" -w -t 60 \
      -o "-c listen_addresses=$HOST -p $PG_PORT -k $data" start >/dev/null \
      || { echo "error: PostgreSQL did not start, see $data/postgres.log" >&2; exit 5; }
  fi
  if ! PGPASSWORD=$PG_PASSWORD "$bin/psql" -h $HOST -p "$PG_PORT" -U mlflow -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='mlflow'" | grep -q 1; then
    PGPASSWORD=$PG_PASSWORD "$bin/createdb" -h $HOST -p "$PG_PORT" -U mlflow mlflow
  fi
}

start_mlflow() {
  if alive "${MLFLOW_PID:-}"; then
    if healthy "$MLFLOW_PORT"; then return; fi
    kill -KILL -- "-$MLFLOW_PID" 2>/dev/null || true  # alive but not answering: replace it
  fi
  MLFLOW_PORT=${MLFLOW_PORT:-$(free_port)}
  mkdir -p "$DIR/artifacts"
  # setsid: the server and its workers are one process group, stopped (or killed) together.
  # MLflow's server-side job runner (GenAI scorers; ~9 huey processes) is off unless asked for:
  # glassworks does not use it and it triples the start-up time.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
  setsid "$ROOT/.venv/bin/mlflow" server \
    --backend-store-uri "postgresql+psycopg2://mlflow:$PG_PASSWORD@$HOST:$PG_PORT/mlflow" \
    --artifacts-destination "$DIR/artifacts" --serve-artifacts \
    --host $HOST --port "$MLFLOW_PORT" --workers "${MLFLOW_WORKERS:-2}" \
    >>"$DIR/mlflow.log" 2>&1 < /dev/null &
  MLFLOW_PID=$!
  save_state
  for _ in $(seq 1 240); do
    if healthy "$MLFLOW_PORT"; then return; fi
    alive "$MLFLOW_PID" || { echo "error: mlflow server exited, see $DIR/mlflow.log" >&2; tail -20 "$DIR/mlflow.log" >&2; exit 4; }
    sleep 0.5
  done
  echo "error: mlflow server not healthy after 120 s, see $DIR/mlflow.log" >&2
  exit 4
}

stop_all() {
  load_state
  if alive "${MLFLOW_PID:-}"; then
    kill -TERM -- "-$MLFLOW_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do alive "$MLFLOW_PID" || break; sleep 0.25; done
    kill -KILL -- "-$MLFLOW_PID" 2>/dev/null || true
  fi
  if [ -f "$DIR/pgdata/PG_VERSION" ]; then
    local bin; bin=$(pg_bin)
    as_pg "$bin/pg_ctl" -D "$DIR/pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  MLFLOW_PID=""
  [ -n "${PG_PORT:-}" ] && save_state
  echo "stopped"
}

case "${1:-start}" in
  start)
    load_state
    start_postgres
    start_mlflow
    echo "PostgreSQL on $HOST:$PG_PORT (data: $DIR/pgdata), artifacts in $DIR/artifacts"
    echo "mlflow server pid $MLFLOW_PID, log $DIR/mlflow.log"
    echo "logger.tracking_uri=http://$HOST:$MLFLOW_PORT"
    ;;
  stop) stop_all ;;
  status)
    load_state
    if alive "${MLFLOW_PID:-}"; then echo "running: http://$HOST:$MLFLOW_PORT (pid $MLFLOW_PID)"; else echo "not running"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
