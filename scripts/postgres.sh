#!/usr/bin/env bash
# Private PostgreSQL cluster for streamstats tests and local development.
#
#   scripts/postgres.sh start    # install (apt) if needed, init, start, create db; last line = URL
#   scripts/postgres.sh stop     # fast shutdown
#   scripts/postgres.sh status   # exit 0 if running, 3 if not
#   scripts/postgres.sh url      # print the connection URL
#
# Environment:
#   STREAMSTATS_PG_DIR   data directory      (default: $REPO/.tmp/postgres, or
#                        /tmp/streamstats-postgres-<hash> when run as root and the
#                        server user cannot reach $REPO, e.g. a checkout under /root)
#   STREAMSTATS_PG_PORT  TCP port            (default: 55432)
#   STREAMSTATS_PG_WAIT  readiness timeout s (default: 60)
#
# The server listens on 127.0.0.1 only (no unix socket), superuser `postgres`,
# trust auth on loopback. It is tuned for tests (fsync=off, synchronous_commit=off):
# data survives stop/start and a crash of the server process, not an OS crash.
set -euo pipefail
shopt -s inherit_errexit   # make failures inside $(...) fatal too

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_PORT="${STREAMSTATS_PG_PORT:-55432}"
PG_WAIT="${STREAMSTATS_PG_WAIT:-60}"
PG_HOST=127.0.0.1
PG_SUPERUSER=postgres
PG_DB=streamstats
RUN_USER=postgres   # OS user that runs the server when this script runs as root

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Newest /usr/lib/postgresql/*/bin holding initdb+postgres+pg_ctl (or the one
# matching an existing cluster's PG_VERSION). Prints nothing if none found.
find_bin() {
    local want="" d
    [[ -f "$PG_DIR/PG_VERSION" ]] && want="$(cat "$PG_DIR/PG_VERSION")"
    if [[ -n "$want" && -x "/usr/lib/postgresql/$want/bin/postgres" ]]; then
        echo "/usr/lib/postgresql/$want/bin"; return 0
    fi
    for d in $(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/postgres" && -x "$d/pg_ctl" && -x "$d/psql" ]]; then
            echo "$d"; return 0
        fi
    done
    return 0
}

# Install Debian's postgresql without letting it create/start its own "main" cluster.
install_pg() {
    [[ $EUID -eq 0 ]] || die "PostgreSQL binaries not found and not root; run: apt-get install -y postgresql"
    log "PostgreSQL binaries not found; installing Debian package 'postgresql'"
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/streamstats-no-main.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Serialise start/stop (e.g. several test threads calling start at once).
lock() {
    mkdir -p "$REPO/.tmp"
    exec 9>"$REPO/.tmp/.postgres.lock"
    flock -w "$PG_WAIT" 9 || die "timed out waiting for $REPO/.tmp/.postgres.lock"
}

# Run a command as the server's OS user (postgres refuses to run as root).
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$RUN_USER" -- "$@")
    else
        "$@"
    fi
}

ensure_run_user() {
    [[ $EUID -eq 0 ]] || return 0
    if ! id -u "$RUN_USER" >/dev/null 2>&1; then
        log "creating system user $RUN_USER"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$RUN_USER"
    fi
}

# Data directory: the override, else under the repo if the server user can reach it.
resolve_dir() {
    if [[ -n "${STREAMSTATS_PG_DIR:-}" ]]; then
        PG_DIR="$STREAMSTATS_PG_DIR"
        return 0
    fi
    PG_DIR="$REPO/.tmp/postgres"
    if [[ $EUID -eq 0 ]] && id -u "$RUN_USER" >/dev/null 2>&1 &&
        ! (cd / && runuser -u "$RUN_USER" -- test -x "$REPO"); then
        PG_DIR="${TMPDIR:-/tmp}/streamstats-postgres-$(printf '%s' "$REPO" | cksum | cut -d' ' -f1)"
        log "user $RUN_USER cannot reach $REPO; using $PG_DIR"
    fi
    return 0
}

# Actual port of a running server (line 4 of postmaster.pid), else the configured one.
current_port() {
    local p=""
    [[ -r "$PG_DIR/postmaster.pid" ]] && p="$(sed -n 4p "$PG_DIR/postmaster.pid" 2>/dev/null || true)"
    echo "${p:-$PG_PORT}"
}

url() { echo "postgres://$PG_SUPERUSER@$PG_HOST:$(current_port)/$PG_DB"; }

is_running() {
    [[ -n "${BIN:-}" ]] || return 1
    [[ -f "$PG_DIR/PG_VERSION" ]] || return 1
    as_pg "$BIN/pg_ctl" status -D "$PG_DIR" >/dev/null 2>&1
}

psql_q() { "$BIN/psql" -X -q -h "$PG_HOST" -p "$(current_port)" -U "$PG_SUPERUSER" -d postgres -tA -v ON_ERROR_STOP=1 -c "$1"; }

init_cluster() {
    mkdir -p "$PG_DIR"
    if [[ $EUID -eq 0 ]]; then
        chown "$RUN_USER:" "$PG_DIR"
        # The server user must be able to reach the directory (e.g. not under /root).
        as_pg test -w "$PG_DIR" ||
            die "user $RUN_USER cannot access $PG_DIR; set STREAMSTATS_PG_DIR to a path it can reach"
    fi
    chmod 700 "$PG_DIR"
    log "initializing cluster in $PG_DIR"
    as_pg "$BIN/initdb" -D "$PG_DIR" -U "$PG_SUPERUSER" --auth=trust --encoding=UTF8 --no-locale >/dev/null
    # Loopback-only TCP; no unix socket (avoids socket path length and /var/run permission issues).
    cat >> "$PG_DIR/postgresql.conf" <<'EOF'

# --- streamstats test settings (scripts/postgres.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
}

start() {
    PG_DIR="${STREAMSTATS_PG_DIR:-$REPO/.tmp/postgres}"   # provisional, for find_bin
    BIN="$(find_bin)"
    if [[ -z "$BIN" ]]; then
        install_pg
        BIN="$(find_bin)"
        [[ -n "$BIN" ]] || die "PostgreSQL binaries still not found under /usr/lib/postgresql/*/bin after install"
    fi
    ensure_run_user
    resolve_dir
    BIN="$(find_bin)"
    [[ -f "$PG_DIR/PG_VERSION" ]] || init_cluster

    if is_running; then
        log "already running ($PG_DIR)"
    else
        # Another server (e.g. another checkout's cluster) on the port? Say so plainly.
        if (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null; then
            die "port $PG_HOST:$PG_PORT is already in use; set STREAMSTATS_PG_PORT to another port"
        fi
        [[ $EUID -eq 0 ]] && chown -R "$RUN_USER:" "$PG_DIR"
        log "starting PostgreSQL ($("$BIN/postgres" --version)) on $PG_HOST:$PG_PORT"
        # -p on the command line so STREAMSTATS_PG_PORT works for an existing cluster too.
        # 9>&-: the server must not inherit (and hold) our lock.
        if ! as_pg "$BIN/pg_ctl" start -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t "$PG_WAIT" \
                -o "-p $PG_PORT -c listen_addresses=$PG_HOST" >/dev/null 9>&-; then
            tail -n 30 "$PG_DIR/server.log" >&2 || true
            die "server did not start (log: $PG_DIR/server.log)"
        fi
    fi

    # Wait until it accepts TCP connections and queries.
    local deadline=$((SECONDS + PG_WAIT))
    until psql_q "select 1" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { tail -n 30 "$PG_DIR/server.log" >&2 || true; die "server not ready after ${PG_WAIT}s"; }
        sleep 0.2
    done

    if [[ "$(psql_q "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]]; then
        log "creating database $PG_DB"
        psql_q "create database $PG_DB"
    fi
    url
}

stop() {
    BIN="$(find_bin)"
    if is_running; then
        as_pg "$BIN/pg_ctl" stop -D "$PG_DIR" -m fast -w -t "$PG_WAIT" >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

status() {
    BIN="$(find_bin)"
    if is_running; then
        echo "running: $(url) (data: $PG_DIR)"
    else
        echo "not running (data: $PG_DIR)"
        exit 3
    fi
}

case "${1:-}" in
    start | stop) lock ;;
esac
case "${1:-}" in
    stop | status | url) resolve_dir ;;
esac
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    url) BIN="$(find_bin)"; url ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
