#!/usr/bin/env bash
# The whole test suite on a fresh machine: builds, runs every test (the PostgreSQL and Kafka tests
# install and start their servers on 127.0.0.1 through scripts/postgres.sh and scripts/kafka.sh),
# and stops those servers again. Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Free ports of our own, so a server another checkout left running cannot get in the way.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export STREAMSTATS_PG_PORT=${STREAMSTATS_PG_PORT:-$(free_port)}
export STREAMSTATS_KAFKA_PORT=${STREAMSTATS_KAFKA_PORT:-$(free_port)}
stop_services() {
    scripts/postgres.sh stop >/dev/null 2>&1 || true
    if [ -x scripts/kafka.sh ]; then scripts/kafka.sh stop >/dev/null 2>&1 || true; fi
}
trap stop_services EXIT
cargo build --release --locked --all-targets
cargo test --release --locked "$@"
