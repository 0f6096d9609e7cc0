#!/usr/bin/env bash
# Benchmark (not a test): records/s of the stock moving-average dataflow (CSV, 5-minute windows
# sliding by 1 minute) at -w 1 and -w 2, and the server-sent-events ingest rate (serve-sse on
# 127.0.0.1, unpaced, into the SPS dataflow). Usage: scripts/bench-windows.sh [TRADES] [SSE_EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
trades=${1:-2000000}
sse_events=${2:-1000000}
cargo build --release --quiet
bin=./target/release/streamstats
work=$(mktemp -d)
server=
cleanup() {
    [[ -n "$server" ]] && kill "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Peak memory when GNU time is there; the run's own summary line gives records/s.
measure() {
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f "peak memory: %M KiB" "$@" >/dev/null 2>"$work/log" || { cat "$work/log"; exit 1; }
    else
        "$@" >/dev/null 2>"$work/log" || { cat "$work/log"; exit 1; }
    fi
    grep -E "records/s|peak memory" "$work/log"
}

"$bin" generate trades --events "$trades" --rate 1000 --out "$work/trades.csv"
echo "stock moving average: $trades trades, $(du -h "$work/trades.csv" | cut -f1)"
for w in 1 2; do
    echo "-w $w:"
    measure "$bin" run dataflows/stock-moving-average.toml --input "$work/trades.csv" -w "$w" --dead-letter /dev/null
done

"$bin" generate sps --events "$sse_events" --out "$work/sps.jsonl"
"$bin" serve-sse "$work/sps.jsonl" --port 0 >"$work/server.out" &
server=$!
for _ in $(seq 50); do [[ -s "$work/server.out" ]] && break; sleep 0.1; done
url="sse+http://$(sed 's|.*http://||' "$work/server.out")"
echo "SSE ingest: $sse_events SPS events from $url"
measure "$bin" run dataflows/sps.toml --input "$url" -w 2 --dead-letter /dev/null
