#!/usr/bin/env bash
# SPS throughput benchmark (issue 2): generates EVENTS stream-start events (default 10M) and runs
# dataflows/sps.toml over the file with -w 1 and -w 2, reporting events/s, MB/s, CPU seconds and
# peak memory. Usage: scripts/bench.sh [EVENTS] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000000}
dir=${2:-.tmp/bench}
mkdir -p "$dir"
cargo build --release --quiet
bin=target/release/streamstats
input="$dir/sps-$events.jsonl"
if [ ! -s "$input" ]; then
    echo "generating $events events into $input" >&2
    "$bin" generate sps --events "$events" --seed 1 --disorder-ms 2000 --out "$input"
fi
bytes=$(stat -c %s "$input")
printf '%-8s %14s %10s %10s %12s %10s\n' workers events/s MB/s wall_s cpu_s peak_MiB
for workers in 1 2; do
    log="$dir/bench-w$workers.log"
    /usr/bin/time -f 'TIME %e %U %S %M' "$bin" run dataflows/sps.toml --input "$input" \
        --output /dev/null --dead-letter /dev/null -w "$workers" 2>"$log"
    read -r wall user sys rss < <(grep '^TIME' "$log" | cut -d' ' -f2-)
    awk -v w="$workers" -v n="$events" -v b="$bytes" -v wall="$wall" -v user="$user" -v sys="$sys" -v rss="$rss" \
        'BEGIN { printf "%-8s %14.0f %10.1f %10.2f %12.2f %10.1f\n", w, n / wall, b / wall / 1e6, wall, user + sys, rss / 1024 }'
done
