#!/usr/bin/env bash
# Benchmark of the sessions workload (not a test): heartbeats/s processed and session rows/s
# written to PostgreSQL, at -w 1 and -w 2.
#
#   scripts/bench-sessions.sh [EVENTS]      # default 2,000,000 heartbeats
#
# Sessions are few per heartbeat (one row per ~100 heartbeats), so the sessions runs measure the
# engine. To measure the sink itself, the SPS dataflow (about one row per event) is also written
# to PostgreSQL: SPS_EVENTS (default 500,000) events.
#
# Generates heartbeats once (rate 2000/s: ~8,000 concurrent sessions), then for each worker count:
#   1. run to /dev/null                 -> heartbeats/s through the engine
#   2. run to PostgreSQL (fresh table)  -> wall time, rows/s committed (rows counted in the table)
# PostgreSQL comes from scripts/postgres.sh start (a private cluster on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-2000000}"
SPS_EVENTS="${SPS_EVENTS:-500000}"
BIN=target/release/streamstats
[[ -x $BIN ]] || cargo build --release
DIR="${TMPDIR:-/tmp}/streamstats-bench-sessions"
mkdir -p "$DIR"
INPUT="$DIR/heartbeats-$EVENTS.jsonl"
if [[ ! -s $INPUT ]]; then
    $BIN generate sessions --events "$EVENTS" --rate 2000 --seed 1 --disorder-ms 2000 --bound 10s --out "$INPUT"
fi
URL="$(scripts/postgres.sh start | tail -n 1)"
PSQL=(psql -X -q -tA "$URL")
command -v psql >/dev/null || PSQL=("$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql" -X -q -tA "$URL")
echo "input: $INPUT ($EVENTS heartbeats, $(du -h "$INPUT" | cut -f1)); postgres: $URL; cores: $(nproc)"
now() { date +%s.%N; }
# to_postgres DATAFLOW INPUT WORKERS TABLE: fresh table, timed run; sets SECONDS_TAKEN and ROWS.
to_postgres() {
    "${PSQL[@]}" -c "DROP TABLE IF EXISTS $4" >/dev/null 2>&1
    local t0 t1
    t0=$(now)
    $BIN run "$1" --input "$2" -w "$3" --output "$URL?table=$4" --dead-letter /dev/null 2>"$DIR/$4.log"
    t1=$(now)
    SECONDS_TAKEN=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    ROWS=$("${PSQL[@]}" -c "SELECT count(*) FROM $4")
}
for w in 1 2; do
    t0=$(now)
    $BIN run dataflows/sessions.toml --input "$INPUT" -w "$w" --output /dev/null --dead-letter /dev/null 2>"$DIR/run-$w.log"
    t1=$(now)
    rows=$(grep -o '[0-9]* rows emitted' "$DIR/run-$w.log" | cut -d' ' -f1)
    awk -v n="$EVENTS" -v r="$rows" -v a="$t0" -v b="$t1" -v w="$w" \
        'BEGIN { printf "-w %s  jsonl:    %.2fs  %.0f heartbeats/s  %d sessions\n", w, b-a, n/(b-a), r }'
    to_postgres dataflows/sessions.toml "$INPUT" "$w" "bench_sessions_w$w"
    awk -v n="$EVENTS" -v r="$ROWS" -v s="$SECONDS_TAKEN" -v w="$w" \
        'BEGIN { printf "-w %s  postgres: %.2fs  %.0f heartbeats/s  %.0f rows/s written (%d rows in table)\n", w, s, n/s, r/s, r }'
done

SPS="$DIR/sps-$SPS_EVENTS.jsonl"
[[ -s $SPS ]] || $BIN generate sps --events "$SPS_EVENTS" --rate 1000 --seed 1 --out "$SPS"
for w in 1 2; do
    to_postgres dataflows/sps.toml "$SPS" "$w" "bench_sps_w$w"
    awk -v r="$ROWS" -v s="$SECONDS_TAKEN" -v w="$w" \
        'BEGIN { printf "-w %s  sps -> postgres: %.2fs  %.0f rows/s written (%d rows in table)\n", w, s, r/s, r }'
done
